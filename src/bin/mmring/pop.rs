//! `mmring pop`: remove the oldest entries and print them, optionally waiting for
//! them to arrive.

use std::cell::Cell;
use std::time::{Duration, Instant};

use mmring::{Entry, Ring};

use crate::cli::PopArgs;
use crate::output::print_entries;
use crate::{AtPath, Failure, Outcome};

/// Pops up to `-n` entries (or all with `--all`), printing each as it is taken. A
/// corrupt record is reported on stderr and skipped, and popping goes on; the exit
/// status then says records were skipped. With `--wait`, an empty ring is waited on
/// (until `--timeout`, if given).
pub(crate) fn run(args: &PopArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    let limit = if args.all { u64::MAX } else { args.count };
    if limit == 0 {
        return Ok(());
    }
    // A timeout too long to add to the clock is no deadline at all.
    let deadline = args
        .timeout
        .and_then(|timeout| Instant::now().checked_add(timeout));
    let timed_out = Cell::new(false);
    let mut waited_for_first = false;
    let popped = std::iter::from_fn(|| {
        // Without --wait, and with --all once something arrived: only what is ready.
        if !args.wait || (args.all && waited_for_first) {
            return pop_ready(&ring).transpose();
        }
        waited_for_first = true;
        match pop_waiting(&ring, deadline) {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                timed_out.set(true);
                None
            }
            Err(error) => Some(Err(error)),
        }
    });
    print_entries(&args.path, popped, limit, args.format, args.wait)?;
    if timed_out.get() {
        return Err(Failure::TimedOut {
            path: args.path.clone(),
            waited: args.timeout.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Pops the oldest entry if one is ready.
///
/// Nothing to pop while `read_pos < write_pos` means the head is reserved but not
/// committed: its producer is writing it, or died. Readers skip a dead producer's
/// record after the ring's abandon timeout, timed from when each reader first sees the
/// head stuck; so this one-shot reader gives the head that long (a live producer
/// commits within microseconds) before it reports nothing ready. Otherwise a
/// producer that died mid-push would hide every entry behind it from `mmring pop`
/// for good.
fn pop_ready(ring: &Ring) -> mmring::Result<Option<Entry>> {
    const MAX_SLEEP: Duration = Duration::from_millis(10);
    let mut sleep = Duration::from_micros(50);
    let mut deadline = None;
    loop {
        if let Some(entry) = ring.pop()? {
            return Ok(Some(entry));
        }
        let stats = ring.stats();
        if stats.read_pos >= stats.write_pos {
            return Ok(None);
        }
        let now = Instant::now();
        // A little past the timeout: the ring checks it only when polled.
        let deadline = *deadline
            .get_or_insert_with(|| now + ring.abandon_timeout() + Duration::from_millis(50));
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(sleep.min(deadline - now));
        sleep = (sleep * 2).min(MAX_SLEEP);
    }
}

/// Pops an entry, waiting for one while the ring is empty until `deadline` (`None`:
/// forever); `Ok(None)` when the deadline passed. The wait sleeps on the ring's futex,
/// so an idle `pop --wait` uses no CPU.
fn pop_waiting(ring: &Ring, deadline: Option<Instant>) -> mmring::Result<Option<Entry>> {
    match deadline {
        None => ring.pop_blocking().map(Some),
        Some(deadline) => ring.pop_timeout(deadline.saturating_duration_since(Instant::now())),
    }
}
