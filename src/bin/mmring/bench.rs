//! `mmring bench`: a quick throughput and latency measurement on a temporary ring.
//!
//! Producers (threads, or with `--processes` worker processes running `mmring
//! bench-worker`) push entries whose first 8 bytes are the monotonic clock at the
//! push; consumers pop them and record the push-to-pop latency in a histogram. The
//! ring rejects pushes when full, so producers retry and nothing is lost. When every
//! entry has been popped, the parent pushes one empty stop marker per consumer. A
//! progress bar goes to stderr when it is a terminal; the summary table to stdout.
//! With `--batch N`, producers use `push_batch` and consumers `pop_batch`, N entries
//! at a time.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mmring::{Batch, Error, Ring};

use crate::cli::{BenchArgs, BenchWorkerArgs};
use crate::demo::{Workers, read_in_background, scratch_ring};
use crate::demo_worker::Backoff;
use crate::info::human_bytes;
use crate::output::stdout_failure;
use crate::{AtPath, Failure, Outcome};

/// Give up when the ring makes no progress for this long.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// The payload prefix: the push time in nanoseconds.
const TIME_LEN: usize = 8;

/// Runs the benchmark and prints the summary.
pub(crate) fn run(args: &BenchArgs) -> Outcome {
    let min_entry = ("--entry", TIME_LEN, " (the send time)");
    let (_dir, path, ring, entry) = scratch_ring("bench", args.size, args.entry, min_entry)?;
    let total = u64::from(args.producers) * args.entries;
    let started = Instant::now();
    let histogram = if args.processes {
        run_processes(args, &ring, &path, entry, total).map_err(as_bench)?
    } else {
        run_threads(args, &ring, &path, entry, total)?
    };
    let elapsed = started.elapsed();
    if histogram.total() != total {
        return Err(Failure::Bench {
            message: format!(
                "consumers received {} entries of the {total} pushed through {}",
                histogram.total(),
                path.display()
            ),
        });
    }
    let summary = summary(args, entry, total, elapsed, &histogram);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(summary.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// Producers and consumers as threads of this process.
fn run_threads(
    args: &BenchArgs,
    ring: &Ring,
    path: &Path,
    entry: usize,
    total: u64,
) -> Result<Histogram, Failure> {
    let failed = AtomicBool::new(false);
    let batch = args.batch as usize;
    std::thread::scope(|scope| {
        let consumers: Vec<_> = (0..args.consumers)
            .map(|_| scope.spawn(|| consume(ring, path, batch, &failed)))
            .collect();
        let producers: Vec<_> = (0..args.producers)
            .map(|_| scope.spawn(|| produce(ring, path, args.entries, entry, batch, &failed)))
            .collect();
        let watched = watch_progress(ring, path, total, &failed);
        let mut outcome = watched.and_then(|()| push_stop_markers(ring, path, args.consumers));
        if outcome.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        for producer in producers {
            let result = producer
                .join()
                .unwrap_or_else(|_| Err(panicked("a producer")));
            outcome = outcome.and(result);
        }
        let mut histogram = Histogram::default();
        for consumer in consumers {
            let result = consumer
                .join()
                .unwrap_or_else(|_| Err(panicked("a consumer")));
            match result {
                Ok(part) => histogram.merge(&part),
                Err(failure) => outcome = outcome.and(Err(failure)),
            }
        }
        outcome.map(|()| histogram)
    })
}

fn panicked(who: &str) -> Failure {
    Failure::Bench {
        message: format!("{who} thread panicked"),
    }
}

/// The failure of a party that saw no progress for `waited`.
fn stalled(path: &Path, role: &str, waited: Duration) -> Failure {
    Failure::Bench {
        message: format!(
            "{role} gave up on {} after waiting {:.1} s without progress",
            path.display(),
            waited.as_secs_f64()
        ),
    }
}

/// A failure of the worker machinery shared with the demo, reported as the bench's.
fn as_bench(failure: Failure) -> Failure {
    match failure {
        Failure::Check { message } => Failure::Bench { message },
        other => other,
    }
}

/// Producers and consumers as `mmring bench-worker` processes.
fn run_processes(
    args: &BenchArgs,
    ring: &Ring,
    path: &Path,
    entry: usize,
    total: u64,
) -> Result<Histogram, Failure> {
    let exe = std::env::current_exe().map_err(|error| Failure::Io {
        what: "current executable".to_owned(),
        error,
    })?;
    let mut workers = Workers::default();
    let mut reports = Vec::new();
    for consumer in 0..args.consumers {
        let mut command = Command::new(&exe);
        command.args(["bench-worker", "--ring"]).arg(path);
        command.args(["--batch", &args.batch.to_string()]);
        reports.push(read_in_background(
            workers.spawn(format!("consumer {consumer}"), command)?,
        ));
    }
    let mut producer_outputs = Vec::new();
    for producer in 0..args.producers {
        let mut command = Command::new(&exe);
        command.args(["bench-worker", "--ring"]).arg(path);
        command.args(["--produce", &args.entries.to_string()]);
        command.args(["--entry", &entry.to_string()]);
        command.args(["--batch", &args.batch.to_string()]);
        producer_outputs.push(read_in_background(
            workers.spawn(format!("producer {producer}"), command)?,
        ));
    }
    let never = AtomicBool::new(false);
    watch_progress(ring, path, total, &never)?;
    let consumers = args.consumers as usize;
    for (index, output) in producer_outputs.into_iter().enumerate() {
        workers.finish(consumers + index, output)?;
    }
    push_stop_markers(ring, path, args.consumers)?;
    let mut histogram = Histogram::default();
    for (index, report) in reports.into_iter().enumerate() {
        let output = workers.finish(index, report)?;
        let part = Histogram::parse(&output).ok_or_else(|| Failure::Bench {
            message: format!(
                "consumer {index} reported {:?}",
                String::from_utf8_lossy(&output)
            ),
        })?;
        histogram.merge(&part);
    }
    Ok(histogram)
}

/// `mmring bench-worker`: one producer (`--produce N`) or consumer process.
pub(crate) fn worker(args: &BenchWorkerArgs) -> Outcome {
    // Workers must not outlive an interrupted benchmark (best effort).
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let ring = Ring::open(&args.ring).at(&args.ring)?;
    let never = AtomicBool::new(false);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match args.produce {
        Some(entries) => produce(&ring, &args.ring, entries, args.entry, args.batch, &never),
        None => {
            let histogram = consume(&ring, &args.ring, args.batch, &never)?;
            out.write_all(histogram.to_line().as_bytes())
                .and_then(|()| out.flush())
                .map_err(stdout_failure)
        }
    }
}

/// Nanoseconds of the system-wide monotonic clock, comparable across processes.
fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Pushes `entries` payloads of `entry` bytes stamped with the push time, `batch` at a
/// time.
fn produce(
    ring: &Ring,
    path: &Path,
    entries: u64,
    entry: usize,
    batch: usize,
    failed: &AtomicBool,
) -> Outcome {
    let mut payloads = vec![vec![0x5a; entry.max(TIME_LEN)]; batch.max(1)];
    let mut backoff = Backoff::new();
    let mut left = entries;
    while left > 0 {
        let run = &mut payloads[..(left as usize).min(batch.max(1))];
        let now = now_ns().to_le_bytes();
        for payload in run.iter_mut() {
            payload[..TIME_LEN].copy_from_slice(&now);
        }
        let mut done = 0;
        while done < run.len() {
            let pushed = if run.len() == 1 {
                ring.push(&run[0]).map(|_| 1)
            } else {
                ring.push_batch(&run[done..])
            };
            match pushed {
                Ok(n) => {
                    done += n;
                    backoff.reset();
                }
                Err(Error::Full) => {
                    if failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    backoff
                        .wait(STALL_LIMIT)
                        .map_err(|waited| stalled(path, "a producer", waited))?;
                }
                Err(error) => return Err(error).at(path),
            }
        }
        left -= run.len() as u64;
    }
    Ok(())
}

/// Pops until a stop marker (an empty entry), recording each entry's latency; `batch`
/// at a time with `pop_batch` when above 1.
fn consume(
    ring: &Ring,
    path: &Path,
    batch: usize,
    failed: &AtomicBool,
) -> Result<Histogram, Failure> {
    let mut histogram = Histogram::default();
    let mut buf = Vec::new();
    let mut taken = Batch::new();
    let mut backoff = Backoff::new();
    let record = |histogram: &mut Histogram, data: &[u8]| {
        let mut sent = [0u8; TIME_LEN];
        sent.copy_from_slice(&data[..TIME_LEN.min(data.len())]);
        histogram.record(now_ns().saturating_sub(u64::from_le_bytes(sent)));
    };
    loop {
        let got = if batch > 1 {
            ring.pop_batch(&mut taken, batch).at(path)?
        } else {
            usize::from(ring.pop_into(&mut buf).at(path)?.is_some())
        };
        if got == 0 {
            if failed.load(Ordering::Relaxed) {
                return Ok(histogram);
            }
            backoff
                .wait(STALL_LIMIT)
                .map_err(|waited| stalled(path, "a consumer", waited))?;
            continue;
        }
        backoff.reset();
        if batch <= 1 {
            if buf.is_empty() {
                return Ok(histogram);
            }
            record(&mut histogram, &buf);
            continue;
        }
        let mut markers = 0;
        for (_, data) in &taken {
            if data.is_empty() {
                markers += 1;
            } else {
                record(&mut histogram, data);
            }
        }
        if markers > 0 {
            // One stop marker is this consumer's; the others go back for the rest.
            push_stop_markers(ring, path, markers - 1)?;
            return Ok(histogram);
        }
    }
}

/// Waits until `total` entries have been popped from the new ring (its shared
/// counters say so), drawing a progress bar on stderr if it is a terminal.
fn watch_progress(ring: &Ring, path: &Path, total: u64, failed: &AtomicBool) -> Outcome {
    let bar = io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} entries, {per_sec}, {elapsed}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut last = (0, Instant::now());
    loop {
        let done = ring.stats().popped;
        if let Some(bar) = &bar {
            bar.set_position(done.min(total));
        }
        if done >= total || failed.load(Ordering::Relaxed) {
            break;
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > STALL_LIMIT {
            return Err(stalled(path, "the benchmark", last.1.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

/// One empty entry per consumer, retrying while the ring is full.
fn push_stop_markers(ring: &Ring, path: &Path, consumers: u32) -> Outcome {
    let mut backoff = Backoff::new();
    for _ in 0..consumers {
        while let Err(error) = ring.push(b"") {
            match error {
                Error::Full => backoff
                    .wait(STALL_LIMIT)
                    .map_err(|waited| stalled(path, "the benchmark", waited))?,
                other => return Err(other).at(path),
            }
        }
        backoff.reset();
    }
    Ok(())
}

/// Latencies in log-linear buckets: exact below 16 ns, then 8 buckets per power of
/// two (within 12.5%).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Histogram {
    counts: Vec<u64>,
}

const BUCKETS: usize = 16 + 60 * 8;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }
}

impl Histogram {
    fn bucket(ns: u64) -> usize {
        if ns < 16 {
            return ns as usize;
        }
        let exponent = 63 - ns.leading_zeros() as usize; // >= 4
        let sub = ((ns >> (exponent - 3)) & 7) as usize;
        (16 + (exponent - 4) * 8 + sub).min(BUCKETS - 1)
    }

    /// The smallest value in bucket `index`.
    fn floor(index: usize) -> u64 {
        if index < 16 {
            return index as u64;
        }
        let exponent = (index - 16) / 8 + 4;
        let sub = ((index - 16) % 8) as u64;
        (8 + sub) << (exponent - 3)
    }

    fn record(&mut self, ns: u64) {
        self.counts[Self::bucket(ns)] += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency below which `fraction` of the samples lie (a bucket's lower bound).
    fn quantile(&self, fraction: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * fraction).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::floor(index));
            }
        }
        None
    }

    /// `popped N` and the nonzero buckets as `index:count`, one line.
    fn to_line(&self) -> String {
        let mut line = format!("popped {}", self.total());
        for (index, count) in self.counts.iter().enumerate() {
            if *count > 0 {
                let _ = write!(line, " {index}:{count}");
            }
        }
        line.push('\n');
        line
    }

    fn parse(output: &[u8]) -> Option<Histogram> {
        let text = std::str::from_utf8(output).ok()?;
        let mut words = text.split_whitespace();
        if words.next()? != "popped" {
            return None;
        }
        let total: u64 = words.next()?.parse().ok()?;
        let mut histogram = Histogram::default();
        for word in words {
            let (index, count) = word.split_once(':')?;
            let index: usize = index.parse().ok()?;
            *histogram.counts.get_mut(index)? = count.parse().ok()?;
        }
        (histogram.total() == total).then_some(histogram)
    }
}

fn duration_text(ns: Option<u64>) -> String {
    match ns {
        None => "-".to_owned(),
        Some(ns) if ns < 1_000 => format!("{ns} ns"),
        Some(ns) if ns < 1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        Some(ns) => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

/// The summary table.
fn summary(
    args: &BenchArgs,
    entry: usize,
    total: u64,
    elapsed: Duration,
    histogram: &Histogram,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = total as f64 / secs;
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["measure", "value"]);
    let rows = [
        (
            "setup",
            format!(
                "{} producer(s), {} consumer(s) as {}, {} ring, {entry}-byte entries{}",
                args.producers,
                args.consumers,
                if args.processes {
                    "processes"
                } else {
                    "threads"
                },
                human_bytes(args.size),
                if args.batch > 1 {
                    format!(", batches of {}", args.batch)
                } else {
                    String::new()
                }
            ),
        ),
        ("entries", format!("{total} in {secs:.3} s")),
        ("throughput", format!("{rate:.0} entries/s")),
        (
            "bandwidth",
            format!("{:.1} MB/s of payload", rate * entry as f64 / 1e6),
        ),
        ("latency p50", duration_text(histogram.quantile(0.5))),
        ("latency p99", duration_text(histogram.quantile(0.99))),
        ("latency p99.9", duration_text(histogram.quantile(0.999))),
        ("latency max", duration_text(histogram.quantile(1.0))),
    ];
    for (name, value) in rows {
        table.add_row([name.to_owned(), value]);
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_bound_their_values_within_an_eighth() {
        for ns in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            10_000_000_000,
            u64::MAX,
        ] {
            let index = Histogram::bucket(ns);
            let floor = Histogram::floor(index);
            assert!(floor <= ns, "{ns}: floor {floor}");
            if index < BUCKETS - 1 {
                assert!(ns < Histogram::floor(index + 1), "{ns}");
                assert!(ns - floor <= floor / 8 + 1, "{ns}: floor {floor}");
            }
        }
    }

    #[test]
    fn histogram_quantiles_and_wire_format_round_trip() {
        let mut histogram = Histogram::default();
        for ns in 1..=1000u64 {
            histogram.record(ns * 1000);
        }
        let p50 = histogram.quantile(0.5).unwrap();
        assert!((437_500..=500_000).contains(&p50), "{p50}");
        assert_eq!(
            Histogram::parse(histogram.to_line().as_bytes()),
            Some(histogram)
        );
        assert_eq!(Histogram::parse(b"popped 3 1:2"), None, "totals must agree");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
