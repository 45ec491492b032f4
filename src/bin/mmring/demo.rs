//! `mmring demo`: producer and consumer processes on one ring, checked end to end.
//!
//! The parent creates a reject-mode ring in a fresh temporary directory and starts
//! this executable again as worker processes (`mmring demo-worker`, see
//! [`demo_worker`](crate::demo_worker)). Producers push numbered, checksummed
//! payloads; once every producer has exited the parent pushes one stop marker per
//! consumer; each consumer pops until it takes one and reports, in order, what it
//! popped. The parent then checks that every entry arrived exactly once, intact, and
//! in its producer's order as each consumer saw it, and that the ring's own counters
//! balance, and prints a report. Any failure makes the exit status non-zero.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mmring::{Error, OnFull, Options, Ring, Stats};

use crate::cli::DemoArgs;
use crate::demo_wire::{MIN_PAYLOAD, RECORD_LEN, Received, STOP_MARKER};
use crate::demo_worker::{Backoff, stalled};
use crate::info::human_bytes;
use crate::output::stdout_failure;
use crate::{AtPath, Failure, Outcome};

/// Runs the demo and prints its report on stdout.
pub(crate) fn run(args: &DemoArgs) -> Outcome {
    let entry_size = usize::try_from(args.entry_size)
        .ok()
        .filter(|size| *size >= MIN_PAYLOAD)
        .ok_or_else(|| Failure::Usage {
            what: "--entry-size".to_owned(),
            message: format!("must be at least {MIN_PAYLOAD} bytes"),
        })?;
    let dir = TempDir::new("demo")?;
    let path = dir.path.join("demo.ring");
    // A generous abandon timeout: on a loaded machine a live producer must never be
    // taken for a dead one, or the demo's counters would not balance exactly.
    let ring = Options::new()
        .size(args.size)
        .on_full(OnFull::Reject)
        .abandon_timeout(Duration::from_secs(10))
        .create(&path)
        .at(&path)?;
    if entry_size > ring.max_entry_size() {
        return Err(Failure::Usage {
            what: "--entry-size".to_owned(),
            message: format!(
                "{entry_size} bytes exceeds the largest entry a {} ring holds ({} bytes); \
                 pass a larger --size",
                human_bytes(args.size),
                ring.max_entry_size()
            ),
        });
    }
    let exe = std::env::current_exe().map_err(|error| Failure::Io {
        what: "current executable".to_owned(),
        error,
    })?;
    let stall_ms = args.stall_timeout.as_millis().to_string();

    let started = Instant::now();
    let mut workers = Workers::default();
    let mut reports = Vec::new();
    for consumer in 0..args.consumers {
        let mut command = Command::new(&exe);
        command.args(["demo-worker", "consume", "--stall-ms", &stall_ms, "--ring"]);
        command.arg(&path);
        let stdout = workers.spawn(format!("consumer {consumer}"), command)?;
        reports.push(read_in_background(stdout));
    }
    let mut producer_outputs = Vec::new();
    for producer in 0..args.producers {
        let mut command = Command::new(&exe);
        command.args(["demo-worker", "produce", "--stall-ms", &stall_ms]);
        command.args(["--producer", &producer.to_string()]);
        command.args(["--entries", &args.entries.to_string()]);
        command.args(["--entry-size", &entry_size.to_string()]);
        command.arg("--ring").arg(&path);
        let stdout = workers.spawn(format!("producer {producer}"), command)?;
        producer_outputs.push(read_in_background(stdout));
    }

    // Producers were started after the consumers, so they follow them in `workers`.
    let consumers = args.consumers as usize;
    let mut full_retries = 0;
    for (index, output) in producer_outputs.into_iter().enumerate() {
        let output = workers.finish(consumers + index, output)?;
        full_retries +=
            parse_producer_output(&output, args.entries).ok_or_else(|| Failure::Check {
                message: format!(
                    "producer {index} reported {:?}",
                    String::from_utf8_lossy(&output)
                ),
            })?;
    }
    push_stop_markers(&ring, &path, args.consumers, args.stall_timeout)?;
    let mut streams = Vec::new();
    for (index, report) in reports.into_iter().enumerate() {
        streams.push(workers.finish(index, report)?);
    }
    let elapsed = started.elapsed();

    let tally = Tally::from_reports(args.producers, args.entries, &streams);
    let stats = ring.stats();
    let problems = tally.problems(&stats, u64::from(args.consumers));
    let report = Report {
        args,
        entry_size,
        ring: &ring,
        path: &path,
        tally: &tally,
        stats: &stats,
        elapsed,
        full_retries,
        problems: &problems,
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(report.render().as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failure)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check {
            message: format!("verification failed: {}", problems.join("; ")),
        })
    }
}

/// A directory under the system's temporary directory, removed with its contents
/// when dropped. Shared with `mmring bench`.
pub(crate) struct TempDir {
    /// The directory.
    pub(crate) path: PathBuf,
}

impl TempDir {
    /// A new directory named after `command` (`demo`, `bench`) and this process.
    pub(crate) fn new(command: &str) -> Result<TempDir, Failure> {
        let base = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let mut attempt = 0;
        loop {
            let name = format!("mmring-{command}-{}-{nanos}-{attempt}", std::process::id());
            let path = base.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(error) => {
                    return Err(Failure::Io {
                        what: path.display().to_string(),
                        error,
                    });
                }
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a failure to clean up must not hide the demo's result.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The worker processes. Any still running when this is dropped (the demo failed
/// early) are killed, so none outlives the demo.
#[derive(Default)]
pub(crate) struct Workers {
    children: Vec<(String, Child)>,
}

impl Workers {
    /// Starts `command` with stdin closed, stdout captured and stderr shared (a worker
    /// reports its own failure there), and returns its stdout.
    pub(crate) fn spawn(
        &mut self,
        name: String,
        mut command: Command,
    ) -> Result<ChildStdout, Failure> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| Failure::Io {
                what: format!("starting {name}"),
                error,
            })?;
        let stdout = child.stdout.take().ok_or_else(|| Failure::Check {
            message: format!("{name} has no stdout pipe"),
        })?;
        self.children.push((name, child));
        Ok(stdout)
    }

    /// Waits for worker `index` and the thread reading its stdout; fails unless it
    /// exited successfully.
    pub(crate) fn finish(
        &mut self,
        index: usize,
        output: JoinHandle<io::Result<Vec<u8>>>,
    ) -> Result<Vec<u8>, Failure> {
        let (name, child) = &mut self.children[index];
        let status = child.wait().map_err(|error| Failure::Io {
            what: format!("waiting for {name}"),
            error,
        })?;
        if !status.success() {
            return Err(Failure::Check {
                message: format!("{name} failed ({status})"),
            });
        }
        match output.join() {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(error)) => Err(Failure::Io {
                what: format!("output of {name}"),
                error,
            }),
            Err(_) => Err(Failure::Check {
                message: format!("the thread reading {name}'s output panicked"),
            }),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                // Best effort on the way out of a failed demo.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Reads all of `stdout` on another thread, so a worker never blocks on a full pipe
/// while the parent waits for someone else.
pub(crate) fn read_in_background(mut stdout: ChildStdout) -> JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    })
}

/// The full-ring retry count from a producer's `pushed N full-retries R` line, if it
/// pushed all `entries`.
fn parse_producer_output(output: &[u8], entries: u64) -> Option<u64> {
    let text = std::str::from_utf8(output).ok()?;
    let mut words = text.split_whitespace();
    let pushed: u64 = (words.next() == Some("pushed"))
        .then(|| words.next()?.parse().ok())
        .flatten()?;
    let retries: u64 = (words.next() == Some("full-retries"))
        .then(|| words.next()?.parse().ok())
        .flatten()?;
    (pushed == entries && words.next().is_none()).then_some(retries)
}

/// Pushes one stop marker per consumer, retrying while the ring is full.
fn push_stop_markers(ring: &Ring, path: &Path, consumers: u32, stall: Duration) -> Outcome {
    let mut backoff = Backoff::new();
    for _ in 0..consumers {
        loop {
            match ring.push(STOP_MARKER) {
                Ok(_) => break,
                Err(Error::Full) => backoff
                    .wait(stall)
                    .map_err(|waited| stalled(path, "the demo's parent", waited))?,
                Err(error) => return Err(error).at(path),
            }
        }
        backoff.reset();
    }
    Ok(())
}

/// What the consumers' reports add up to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Entries the producers pushed.
    expected: u64,
    /// Distinct `(producer, seq)` pairs received.
    distinct: u64,
    /// Pairs received more than once (each extra copy counts).
    duplicates: u64,
    /// Payloads that failed their checksum, named an unknown producer or sequence
    /// number, or records the ring reported corrupt.
    corrupt: u64,
    /// Entries a consumer received before one with a smaller sequence number from the
    /// same producer.
    out_of_order: u64,
    /// Valid entries each consumer received.
    per_consumer: Vec<u64>,
    /// What is wrong with the reports themselves (truncated, no stop marker).
    report_errors: Vec<String>,
}

impl Tally {
    fn from_reports(producers: u32, entries: u64, reports: &[Vec<u8>]) -> Tally {
        let words_per_producer = usize::try_from(entries.div_ceil(64)).unwrap_or(usize::MAX);
        let mut seen = vec![vec![0u64; words_per_producer]; producers as usize];
        let mut tally = Tally {
            expected: u64::from(producers) * entries,
            ..Tally::default()
        };
        for (consumer, report) in reports.iter().enumerate() {
            let mut last_seq: Vec<Option<u64>> = vec![None; producers as usize];
            let mut received = 0;
            let mut stopped = false;
            if report.len() % RECORD_LEN != 0 {
                tally.report_errors.push(format!(
                    "consumer {consumer}'s report is truncated ({} bytes)",
                    report.len()
                ));
            }
            for chunk in report.chunks_exact(RECORD_LEN) {
                if stopped {
                    tally.report_errors.push(format!(
                        "consumer {consumer} reported entries after its stop marker"
                    ));
                    break;
                }
                let mut record = [0u8; RECORD_LEN];
                record.copy_from_slice(chunk);
                match Received::from_bytes(&record) {
                    Some(Received::Entry { producer, seq })
                        if producer < producers && seq < entries =>
                    {
                        received += 1;
                        let slot = &mut seen[producer as usize][(seq / 64) as usize];
                        let bit = 1 << (seq % 64);
                        if *slot & bit == 0 {
                            *slot |= bit;
                            tally.distinct += 1;
                        } else {
                            tally.duplicates += 1;
                        }
                        let last = &mut last_seq[producer as usize];
                        if last.is_some_and(|last| last >= seq) {
                            tally.out_of_order += 1;
                        }
                        *last = Some(seq);
                    }
                    Some(Received::Stop) => stopped = true,
                    Some(Received::Entry { .. } | Received::BadPayload | Received::RingCorrupt) => {
                        tally.corrupt += 1;
                    }
                    None => tally.report_errors.push(format!(
                        "consumer {consumer}'s report has an unknown record"
                    )),
                }
            }
            if !stopped {
                tally.report_errors.push(format!(
                    "consumer {consumer}'s report ends without its stop marker"
                ));
            }
            tally.per_consumer.push(received);
        }
        tally
    }

    /// Entries never received.
    fn lost(&self) -> u64 {
        self.expected - self.distinct
    }

    /// Everything that is wrong, given the ring's final counters; empty if all is well.
    fn problems(&self, stats: &Stats, stop_markers: u64) -> Vec<String> {
        let mut problems = self.report_errors.clone();
        for (count, what) in [
            (self.duplicates, "duplicated"),
            (self.lost(), "lost"),
            (self.corrupt, "corrupt"),
            (self.out_of_order, "out of order"),
        ] {
            if count > 0 {
                problems.push(format!("{count} entries {what}"));
            }
        }
        let removed =
            stats.popped + stats.evicted + stats.expired + stats.corrupt + stats.abandoned;
        if stats.pushed != removed + stats.len
            || stats.popped != self.expected + stop_markers
            || stats.len != 0
            || stats.evicted + stats.expired + stats.corrupt != 0
        {
            problems.push(format!(
                "the ring's counters do not balance: expected {} popped and nothing \
                 evicted, expired, corrupt or left, found {stats:?}",
                self.expected + stop_markers
            ));
        }
        problems
    }
}

/// Everything the report shows.
struct Report<'a> {
    args: &'a DemoArgs,
    entry_size: usize,
    ring: &'a Ring,
    path: &'a Path,
    tally: &'a Tally,
    stats: &'a Stats,
    elapsed: Duration,
    full_retries: u64,
    problems: &'a [String],
}

impl Report<'_> {
    fn render(&self) -> String {
        let Report { args, tally, .. } = self;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let delivered = tally.distinct + tally.duplicates;
        let payload_bytes = delivered as f64 * self.entry_size as f64;
        let per_consumer = tally
            .per_consumer
            .iter()
            .enumerate()
            .map(|(index, count)| format!("#{index} popped {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ring_holds = self.ring.capacity_bytes() / Ring::entry_footprint(self.entry_size);
        let order = if tally.out_of_order == 0 {
            "OK".to_owned()
        } else {
            format!("VIOLATED {} times", tally.out_of_order)
        };
        let stats = self.stats;
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "mmring demo: {} producer and {} consumer processes share one {} ring file\n\
             \x20 ring file   {} (temporary, removed at exit; rejects pushes when full)\n\
             \x20 entries     {delivered} delivered of {} pushed ({} producers x {}, {}-byte payloads)\n\
             \x20 consumers   {per_consumer}\n\
             \x20 bytes       {:.1} MB of payload\n\
             \x20 elapsed     {:.3} s\n\
             \x20 throughput  {:.0} entries/s, {:.1} MB/s\n\
             \x20 full ring   {} pushes refused and retried (the ring holds {ring_holds} such entries)\n\
             \x20 check       duplicates {}, lost {}, corrupt {}, order {order}\n\
             \x20 ring stats  pushed {}, popped {}, evicted {}, expired {}, corrupt {}, abandoned {}, len {}\n",
            args.producers,
            args.consumers,
            human_bytes(args.size),
            self.path.display(),
            tally.expected,
            args.producers,
            args.entries,
            self.entry_size,
            payload_bytes / 1e6,
            secs,
            delivered as f64 / secs,
            payload_bytes / 1e6 / secs,
            self.full_retries,
            tally.duplicates,
            tally.lost(),
            tally.corrupt,
            stats.pushed,
            stats.popped,
            stats.evicted,
            stats.expired,
            stats.corrupt,
            stats.abandoned,
            stats.len,
        );
        if self.problems.is_empty() {
            text.push_str(
                "OK: every entry was delivered exactly once, intact, and in its producer's order\n",
            );
        } else {
            text.push_str("FAILED:\n");
            for problem in self.problems {
                let _ = writeln!(text, "  - {problem}");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(records: &[Received]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for record in records {
            record.write_to(&mut bytes).unwrap();
        }
        bytes
    }

    fn entry(producer: u32, seq: u64) -> Received {
        Received::Entry { producer, seq }
    }

    #[test]
    fn clean_reports_tally_to_no_problems() {
        let reports = [
            report(&[entry(0, 0), entry(1, 0), entry(0, 2), Received::Stop]),
            report(&[entry(1, 1), entry(0, 1), entry(1, 2), Received::Stop]),
        ];
        let tally = Tally::from_reports(2, 3, &reports);
        assert_eq!((tally.expected, tally.distinct, tally.lost()), (6, 6, 0));
        assert_eq!(
            (tally.duplicates, tally.corrupt, tally.out_of_order),
            (0, 0, 0)
        );
        assert_eq!(tally.per_consumer, [3, 3]);
        let mut stats = Stats::default();
        stats.pushed = 8;
        stats.popped = 8;
        assert_eq!(tally.problems(&stats, 2), Vec::<String>::new());
        stats.popped = 7;
        stats.len = 1;
        assert_eq!(
            tally.problems(&stats, 2).len(),
            1,
            "an entry left in the ring"
        );
    }

    #[test]
    fn losses_duplicates_corruption_and_reordering_are_all_reported() {
        let reports = [
            report(&[
                entry(0, 1),
                entry(0, 0),
                Received::BadPayload,
                Received::Stop,
            ]),
            report(&[entry(0, 1), entry(7, 0), Received::RingCorrupt]),
        ];
        let tally = Tally::from_reports(1, 3, &reports);
        assert_eq!(tally.distinct, 2);
        assert_eq!(tally.lost(), 1);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.out_of_order, 1);
        assert_eq!(
            tally.corrupt, 3,
            "bad payload, unknown producer, ring corrupt"
        );
        assert_eq!(
            tally.report_errors,
            ["consumer 1's report ends without its stop marker"]
        );
        let mut stats = Stats::default();
        stats.pushed = 5;
        stats.popped = 5;
        assert_eq!(
            tally.problems(&stats, 2),
            [
                "consumer 1's report ends without its stop marker",
                "1 entries duplicated",
                "1 entries lost",
                "3 entries corrupt",
                "1 entries out of order",
            ]
        );
    }

    #[test]
    fn producer_output_must_confirm_every_entry() {
        assert_eq!(
            parse_producer_output(b"pushed 10 full-retries 3\n", 10),
            Some(3)
        );
        assert_eq!(
            parse_producer_output(b"pushed 9 full-retries 3\n", 10),
            None
        );
        assert_eq!(parse_producer_output(b"pushed 10\n", 10), None);
        assert_eq!(parse_producer_output(b"", 10), None);
    }
}
