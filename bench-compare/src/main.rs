//! `compare`: mmring against the queues a user would pick instead, measured in one run.
//!
//! Every scenario runs each contender once per round, rounds interleaved (round 1 runs
//! every contender, then round 2, ...), so a noisy neighbour slows all of them alike
//! rather than one. The table reports the median over rounds, the spread (min..max as
//! a percentage of the median), and the ratio of mmring to each peer (above 1: mmring
//! is faster): the median over rounds of the ratio within each round. `--quick` runs
//! one tiny round of everything: a smoke test, not a measurement. See
//! docs/BENCHMARKS.md for the latest results and how to read them.
//!
//! ```text
//! cargo run --release -p bench-compare -- [--quick] [--rounds N] [--dir DIR]
//!                                          [--only SUBSTRING] [--plot FILE.svg]
//! ```

mod contenders;
mod plot;
mod procs;

use std::path::PathBuf;
use std::time::Duration;

/// How one contender did in one round.
#[derive(Clone, Copy, Debug)]
pub enum Sample {
    /// Nanoseconds of wall-clock time per entry moved from producer to consumer, and
    /// of this process's CPU time (all threads, spinning included) when it did all
    /// the work.
    NsPerEntry(f64, Option<f64>),
    /// Round-trip latency percentiles in nanoseconds.
    RoundTrip { p50: f64, p99: f64 },
}

/// Parameters shared by every run.
#[derive(Clone, Debug)]
pub struct Config {
    /// One tiny round of everything.
    pub quick: bool,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Where ring files (and sockets) go.
    pub dir: PathBuf,
}

impl Config {
    /// `full` entries normally, a handful with `--quick`.
    pub fn count(&self, full: usize) -> usize {
        if self.quick {
            (full / 1000).max(50)
        } else {
            full
        }
    }
}

/// One implementation in a scenario.
pub struct Contender {
    pub name: &'static str,
    pub run: Box<dyn Fn(&Config) -> Sample>,
}

/// A row group of the table: contenders measured under the same conditions. The
/// contenders named "mmring…" come first; each peer's ratio compares every one of
/// them with it, in table order.
pub struct Scenario {
    pub name: &'static str,
    /// Payload bytes per entry, for GB/s.
    pub entry_len: usize,
    pub contenders: Vec<Contender>,
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--quick] [--rounds N] [--dir DIR] [--only SUBSTRING] [--plot FILE.svg]\n\
         \x20 --quick        one tiny round of every scenario (a smoke test)\n\
         \x20 --rounds N     rounds per scenario (default 7)\n\
         \x20 --dir DIR      where ring files and sockets go (default: a temporary directory)\n\
         \x20 --only S       only scenarios whose name starts with S\n\
         \x20 --plot F       also measure throughput by entry size and write an SVG chart to F\n\
         \x20 --hot-loop N SIZE [BATCH]  only push + pop_into N entries of SIZE bytes on one\n\
         \x20                    thread, or push_batch + pop_batch BATCH at a time (for\n\
         \x20                    instruction counts under valgrind; see docs/BENCHMARKS.md)"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut rounds = 7;
    let mut dir = None;
    let mut only = None;
    let mut plot_to = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--child" => {
                let rest: Vec<String> = args.collect();
                procs::child_main(&rest);
                return;
            }
            "--hot-loop" => {
                let n = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage());
                let size = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage());
                let batch = args.next().map(|b| b.parse().unwrap_or_else(|_| usage()));
                hot_loop(n, size, batch);
                return;
            }
            "--quick" => quick = true,
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--dir" => dir = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--only" => only = Some(args.next().unwrap_or_else(|| usage())),
            "--plot" => plot_to = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            _ => usage(),
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("mmring-compare")
        .tempdir_in(dir.clone().unwrap_or_else(std::env::temp_dir))
        .expect("create a temporary directory");
    let config = Config {
        quick,
        rounds: if quick { 1 } else { rounds.max(1) },
        dir: tmp.path().to_path_buf(),
    };
    let started = std::time::Instant::now();
    let scenarios: Vec<Scenario> = contenders::scenarios()
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| s.name.starts_with(o.as_str())))
        .collect();
    println!(
        "mmring peer comparison: {} round(s), interleaved; median, spread = (max - min) / median",
        config.rounds
    );
    println!();
    println!(
        "| scenario | contender | median | spread | mmring / this (each mmring row) | CPU per entry |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for scenario in &scenarios {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenario.contenders.len()];
        for _ in 0..config.rounds {
            for (i, c) in scenario.contenders.iter().enumerate() {
                samples[i].push((c.run)(&config));
            }
        }
        print_rows(scenario, &samples);
    }
    if let Some(path) = plot_to {
        plot::sweep_and_plot(&config, &path);
        println!();
        println!("plot written to {}", path.display());
    }
    eprintln!("compare: finished in {:.1?}", started.elapsed());
}

/// `n` push + pop_into pairs of `size`-byte entries on one thread, after a warm-up lap
/// that faults every page of the ring in. Run under callgrind twice with different `n`:
/// the difference in instructions over the difference in `n` is the cost of one pair.
/// With `batch`, entries go through `push_batch` and `pop_batch` that many at a time.
fn hot_loop(n: usize, size: usize, batch: Option<usize>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ring = mmring::Options::new()
        .size(contenders::RING_SIZE)
        .on_full(mmring::OnFull::Reject)
        .create(dir.path().join("hot.ring"))
        .expect("create the ring");
    let data = vec![0x5a_u8; size];
    let mut buf = Vec::with_capacity(size);
    let warmup = contenders::capacity(contenders::RING_SIZE, size);
    if let Some(batch) = batch {
        let entries = vec![data; batch];
        let mut got = mmring::Batch::new();
        for _ in 0..(warmup + n) / batch {
            let pushed = ring
                .push_batch(std::hint::black_box(&entries))
                .expect("push");
            assert_eq!(pushed, batch);
            let popped = ring.pop_batch(&mut got, batch).expect("pop");
            assert_eq!(popped, batch);
        }
        std::hint::black_box(&got);
        return;
    }
    for _ in 0..warmup + n {
        ring.push(std::hint::black_box(&data)).expect("push");
        ring.pop_into(&mut buf).expect("pop").expect("an entry");
    }
    std::hint::black_box(&buf);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn spread(values: &[f64], median: f64) -> f64 {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (max - min) / median * 100.0
}

/// Prints one table row per contender: throughput scenarios in M entries/s (and GB/s
/// for large entries), round trips as p50 / p99.
fn print_rows(scenario: &Scenario, samples: &[Vec<Sample>]) {
    // The figure each ratio compares, round by round: ns per entry, or p50.
    let mut times: Vec<Vec<f64>> = Vec::new();
    let mut cells = Vec::new();
    for s in samples {
        match s[0] {
            Sample::NsPerEntry(..) => {
                let (mut ns, cpu): (Vec<f64>, Vec<Option<f64>>) = s
                    .iter()
                    .map(|x| match x {
                        Sample::NsPerEntry(wall, cpu) => (*wall, *cpu),
                        Sample::RoundTrip { .. } => unreachable!(),
                    })
                    .unzip();
                times.push(ns.clone());
                let med = median(&mut ns);
                let spr = spread(&ns, med);
                let text = if scenario.entry_len >= 4096 {
                    format!("{:.2} GB/s", scenario.entry_len as f64 / med)
                } else {
                    format!("{:.2} M/s ({med:.1} ns)", 1e3 / med)
                };
                let cpu = match cpu.iter().copied().collect::<Option<Vec<f64>>>() {
                    Some(mut cpu) => format!("{:.1} ns", median(&mut cpu)),
                    None => "—".to_string(),
                };
                cells.push((text, spr, cpu));
            }
            Sample::RoundTrip { .. } => {
                let (mut p50, mut p99): (Vec<f64>, Vec<f64>) = s
                    .iter()
                    .map(|x| match x {
                        Sample::RoundTrip { p50, p99 } => (*p50, *p99),
                        Sample::NsPerEntry(..) => unreachable!(),
                    })
                    .unzip();
                times.push(p50.clone());
                let m50 = median(&mut p50);
                let m99 = median(&mut p99);
                cells.push((
                    format!("p50 {} / p99 {}", fmt_ns(m50), fmt_ns(m99)),
                    spread(&p50, m50),
                    "—".to_string(),
                ));
            }
        }
    }
    // Each peer is compared with every mmring row, in table order ("one at a time /
    // batches" where a scenario has both), round by round: the median of the ratios
    // of runs made seconds apart, which the machine's slower and faster minutes
    // affect alike, rather than the ratio of two medians taken over all rounds.
    let ours: Vec<usize> = (0..scenario.contenders.len())
        .filter(|&i| scenario.contenders[i].name.starts_with("mmring"))
        .collect();
    for (i, (c, (text, spr, cpu))) in scenario.contenders.iter().zip(cells).enumerate() {
        let ratio = if ours.contains(&i) {
            "—".to_string()
        } else {
            ours.iter()
                .map(|&m| format!("{:.2}×", paired_ratio(&times[i], &times[m])))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| {} | {} | {} | {:.0}% | {} | {} |",
            scenario.name, c.name, text, spr, ratio, cpu
        );
    }
}

/// The median over rounds of `peer[r] / ours[r]`: how many times faster mmring was
/// than the peer in the same round (times per entry, or latencies: lower is faster).
fn paired_ratio(peer: &[f64], ours: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = peer.iter().zip(ours).map(|(p, o)| p / o).collect();
    median(&mut ratios)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Wall-clock and process CPU time since a start.
pub struct Timer {
    wall: std::time::Instant,
    cpu: Duration,
}

fn process_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Timer {
    pub fn start() -> Timer {
        Timer {
            cpu: process_cpu(),
            wall: std::time::Instant::now(),
        }
    }

    /// Time per entry for `n` entries moved, all of them by this process's threads.
    pub fn per_entry(&self, n: usize) -> Sample {
        let wall = self.wall.elapsed().as_nanos() as f64 / n as f64;
        let cpu = (process_cpu() - self.cpu).as_nanos() as f64 / n as f64;
        Sample::NsPerEntry(wall, Some(cpu))
    }

    /// Wall-clock time per entry when another process did part of the work.
    pub fn wall_per_entry(&self, n: usize) -> Sample {
        Sample::NsPerEntry(self.wall.elapsed().as_nanos() as f64 / n as f64, None)
    }
}

/// Spins briefly, then yields: what every contender's consumer and producer do while
/// the queue is empty or full. On a machine with fewer idle cores than threads, pure
/// spinning would measure the scheduler, not the queue.
pub struct Backoff(u32);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(0)
    }
    pub fn reset(&mut self) {
        self.0 = 0;
    }
    pub fn wait(&mut self) {
        self.0 += 1;
        if self.0 < 128 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Time budget for a child process to report in; a wedge fails instead of hanging.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);
