//! `mmring pop`: remove the oldest entries and print them, optionally waiting for
//! them to arrive.

use std::cell::Cell;
use std::time::Instant;

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
    let deadline = args.timeout.map(|timeout| Instant::now() + timeout);
    let timed_out = Cell::new(false);
    let mut waited_for_first = false;
    let popped = std::iter::from_fn(|| {
        // Without --wait, and with --all once something arrived: only what is ready.
        if !args.wait || (args.all && waited_for_first) {
            return ring.pop().transpose();
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
    print_entries(&args.path, popped, limit, args.format)?;
    if timed_out.get() {
        return Err(Failure::TimedOut {
            path: args.path.clone(),
            waited: args.timeout.unwrap_or_default(),
        });
    }
    Ok(())
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
