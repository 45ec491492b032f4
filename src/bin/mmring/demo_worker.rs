//! `mmring demo-worker`: the body of the demo's producer and consumer processes.
//!
//! A producer pushes its numbered payloads, retrying while the ring (in reject mode)
//! is full, and prints one line, `pushed N full-retries R`. A consumer pops until it
//! takes a stop marker and writes a binary report of everything it popped, in order,
//! to stdout (see [`demo_wire`]). Both give up when the ring makes no progress for the
//! stall timeout, so a wedged ring fails the demo instead of hanging it.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use mmring::{Error, Ring};

use crate::cli::{DemoWorkerArgs, WorkerRole};
use crate::demo_wire::{self, MIN_PAYLOAD, Received, STOP_MARKER};
use crate::output::stdout_failure;
use crate::{AtPath, Failure, Outcome};

/// Runs one worker.
pub(crate) fn run(args: &DemoWorkerArgs) -> Outcome {
    // If the demo is interrupted, its workers must not outlive it. Best effort: without
    // it a worker still gives up after the stall timeout.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    match &args.role {
        WorkerRole::Produce {
            ring,
            producer,
            entries,
            entry_size,
            stall_ms,
        } => produce(
            ring,
            *producer,
            *entries,
            *entry_size,
            Duration::from_millis(*stall_ms),
        ),
        WorkerRole::Consume { ring, stall_ms } => consume(ring, Duration::from_millis(*stall_ms)),
    }
}

/// Waits a little after an attempt that found the ring full (producer) or empty
/// (consumer): first yields the CPU, which is usually enough for the other side to
/// catch up, then sleeps briefly so a long wait does not burn a core.
pub(crate) struct Backoff {
    attempts: u32,
    since: Option<Instant>,
}

impl Backoff {
    /// A backoff that has not waited yet.
    pub(crate) fn new() -> Backoff {
        Backoff {
            attempts: 0,
            since: None,
        }
    }

    /// The operation succeeded: the next wait starts short again.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
        self.since = None;
    }

    /// Waits once; `Err` with how long it has waited in a row once that exceeds `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> Result<(), Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts <= 64 {
            std::thread::yield_now();
        } else {
            let waited = since.elapsed();
            if waited > limit {
                return Err(waited);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }
}

/// The failure of a worker that waited too long.
pub(crate) fn stalled(path: &Path, role: &str, waited: Duration) -> Failure {
    Failure::Check {
        message: format!(
            "{role} gave up on {} after waiting {:.1} s without progress (see --stall-timeout)",
            path.display(),
            waited.as_secs_f64()
        ),
    }
}

fn produce(
    path: &Path,
    producer: u32,
    entries: u64,
    entry_size: usize,
    stall: Duration,
) -> Outcome {
    let ring = Ring::open(path).at(path)?;
    if entry_size < MIN_PAYLOAD {
        return Err(Failure::Usage {
            what: "--entry-size".to_owned(),
            message: format!("must be at least {MIN_PAYLOAD} bytes"),
        });
    }
    let mut payload = vec![0u8; entry_size];
    let mut full_retries: u64 = 0;
    let mut backoff = Backoff::new();
    for seq in 0..entries {
        demo_wire::encode(&mut payload, producer, seq);
        loop {
            match ring.push(&payload) {
                Ok(_) => break,
                Err(Error::Full) => {
                    full_retries += 1;
                    backoff
                        .wait(stall)
                        .map_err(|waited| stalled(path, "producer", waited))?;
                }
                Err(error) => return Err(error).at(path),
            }
        }
        backoff.reset();
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "pushed {entries} full-retries {full_retries}")
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

fn consume(path: &Path, stall: Duration) -> Outcome {
    let ring = Ring::open(path).at(path)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut buf = Vec::with_capacity(ring.max_entry_size());
    let mut backoff = Backoff::new();
    loop {
        let received = match ring.pop_into(&mut buf) {
            Ok(Some(_)) if buf == STOP_MARKER => Received::Stop,
            Ok(Some(_)) => match demo_wire::decode(&buf) {
                Some((producer, seq)) => Received::Entry { producer, seq },
                None => Received::BadPayload,
            },
            Ok(None) => {
                backoff
                    .wait(stall)
                    .map_err(|waited| stalled(path, "consumer", waited))?;
                continue;
            }
            Err(Error::Corrupt { .. }) => Received::RingCorrupt,
            Err(error) => return Err(error).at(path),
        };
        backoff.reset();
        received.write_to(&mut out).map_err(stdout_failure)?;
        if received == Received::Stop {
            return out.flush().map_err(stdout_failure);
        }
    }
}
