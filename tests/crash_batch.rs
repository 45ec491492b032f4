//! A producer killed inside `push_batch` (`crash-points` feature): after it died
//! with its whole batch claimed, readers get past the batch within about one abandon
//! timeout, not one per record; after it died between reserving and claiming, the
//! counters still add up (`pushed = popped + evicted + expired + corrupt +
//! abandoned + len`) and `len` is exact. Readers that ask find the producer's process
//! gone and get past its records long before a long abandon timeout.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::disable_core_dumps;
use mmring::{OnFull, Options, Ring};

/// Entries in the killed producer's batch.
const N: usize = 40;
const ABANDON: Duration = Duration::from_millis(100);
/// Where the child process finds the ring; unset when this binary runs as tests.
const RING_VAR: &str = "MMRING_BATCH_CRASH_RING";

/// The child process's body: push one batch and abort at the crash point named by
/// `MMRING_CRASH_AT`. As an ordinary test (no ring given) it has nothing to do.
#[test]
fn child_pushes_a_batch_and_aborts() {
    let Ok(path) = std::env::var(RING_VAR) else {
        return;
    };
    disable_core_dumps();
    let ring = Ring::open(&path).unwrap();
    let entries: Vec<Vec<u8>> = (0..N).map(|i| vec![i as u8; 8]).collect();
    ring.push_batch(&entries).unwrap();
    panic!("crash point not reached");
}

/// A ring whose batch producer was killed at `point`.
fn kill_batch_producer(point: &str) -> (tempfile::TempDir, Ring) {
    kill_batch_producer_with(point, ABANDON)
}

/// `kill_batch_producer` on a ring with the abandon timeout `abandon`.
fn kill_batch_producer_with(point: &str, abandon: Duration) -> (tempfile::TempDir, Ring) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    Options::new()
        .size(1 << 16)
        .on_full(OnFull::Reject)
        .abandon_timeout(abandon)
        .create(&path)
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_pushes_a_batch_and_aborts", "--nocapture"])
        .args(["--test-threads=1"])
        .env(RING_VAR, &path)
        .env("MMRING_CRASH_AT", point)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must abort at {point}");
    let ring = Ring::open(&path).unwrap();
    (dir, ring)
}

/// Pops until `want` comes out; returns how long that took.
fn time_to(ring: &Ring, want: &[u8]) -> Duration {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "wedged: {:?}",
            ring.stats()
        );
        if let Some(e) = ring.pop().unwrap() {
            assert_eq!(
                e.data(),
                want,
                "only the entry pushed after the batch is live"
            );
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn batch_producer_killed_before_its_commits_holds_readers_up_for_one_timeout() {
    let (_dir, ring) = kill_batch_producer("push-before-commit");
    ring.push(b"after").unwrap();
    let took = time_to(&ring, b"after");
    // At most one timeout for the first record (about 10 ms once the reader finds
    // the process gone), whose claim covers the other 39: they are written as one
    // batch run (DESIGN: Batches) and stepped over with it (40 timeouts would be 4 s,
    // 40 questions about the process about 0.4 s).
    assert!(
        took < ABANDON * 2,
        "readers were held up for {took:?} (abandon timeout {ABANDON:?})"
    );
    assert_run_abandoned(&ring);
}

#[test]
fn batch_producer_killed_after_reserving_keeps_the_counters_adding_up() {
    let (_dir, ring) = kill_batch_producer("push-after-reserve");
    ring.push(b"after").unwrap();
    time_to(&ring, b"after");
    ring.push(b"one more").unwrap();
    let s = ring.stats();
    assert_eq!(ring.len(), 1, "one entry in the ring; {s:?}");
    assert_eq!(
        s.pushed,
        s.popped + s.evicted + s.expired + s.corrupt + s.abandoned + s.len,
        "{s:?}"
    );
}

#[test]
fn records_of_a_killed_producer_are_abandoned_long_before_a_long_timeout() {
    // The child was reaped by the time the ring is reopened, so a reader that finds
    // its claimed records stuck learns that their writer is gone.
    let long = Duration::from_secs(60);
    let (_dir, ring) = kill_batch_producer_with("push-before-commit", long);
    ring.push(b"after").unwrap();
    let took = time_to(&ring, b"after");
    assert!(
        took < Duration::from_secs(5),
        "a fresh handle was held up for {took:?} by a dead producer (timeout {long:?})"
    );
    assert_run_abandoned(&ring);
}

/// The dead producer's batch run was abandoned as the one reservation it was
/// counted as (the rest of a run counts once delivered): the counters add up, and
/// the ring is empty.
fn assert_run_abandoned(ring: &Ring) {
    let s = ring.stats();
    assert_eq!(
        (s.pushed, s.abandoned, s.popped, s.len),
        (2, 1, 1, 0),
        "{s:?}"
    );
}
