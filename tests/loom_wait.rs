//! Loom models of the wait/notify protocol (`src/wait.rs`, DESIGN.md "Waiting"): a
//! thread sleeping on the ring's futex word is always woken by the change it waits
//! for. The kernel futex is replaced by a model built from loom's mutex and condition
//! variable that compares the word and enqueues the sleeper atomically, as the kernel
//! does, and that never times out: a lost wake-up leaves a thread asleep forever,
//! which loom reports as a deadlock. So for every interleaving explored (all of them
//! up to the preemption bound, with every value a relaxed load may return):
//! - a consumer blocked in `pop_blocking` is woken by a push from another thread and
//!   gets the entry, intact;
//! - a producer blocked in a block-mode push on a full ring is woken when a consumer
//!   pops, and its entry lands after the ones already there;
//! - two consumers blocked on an empty ring are both woken by two pushes, and each
//!   entry goes to exactly one of them;
//! - afterwards no waiter is left registered (the count is back to 0);
//! - a subscriber reading the oldest entry while an overwriting push evicts it either
//!   gets it or is told it missed exactly one entry, never both, never a torn copy,
//!   and then reads every later entry once, in order (`src/sub_table.rs`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_wait`;
//! `LOOM_MAX_PREEMPTIONS` (2 unless set; at most 1 for the three-thread model) bounds
//! the exploration. Weakening either `SeqCst` fence of the protocol to `AcqRel`, or
//! leaving out the waiter's second look, makes the first model deadlock.

#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use mmring::loom_support::{LoomRing, SubRead};

/// A region that holds two records of the largest size (128 bytes: a 72-byte
/// payload), or four of 64 bytes (an 8-byte payload).
const REGION_LEN: u64 = 256;
/// The payload of a 64-byte record.
const SMALL: usize = 8;
/// The payload of a 128-byte record: two fill the region.
const LARGE: usize = 72;
/// An abandon timeout no model reaches.
const NEVER: u32 = u32::MAX;

/// Runs `model` under loom with a preemption bound of 2 unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise, and reports how many executions were explored (`--nocapture`).
fn check(model: impl Fn() + Sync + Send + 'static) {
    check_capped(usize::MAX, model);
}

/// [`check`] with the preemption bound capped at `cap`: the three-thread model is
/// explored with 1 (with 2 it runs for many minutes).
fn check_capped(cap: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2).min(cap));
    builder.max_branches = builder.max_branches.max(10_000);
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{executions} executions explored");
}

/// Asserts that every byte of an entry is its tag, and returns (id, tag, length).
fn intact((id, data): (u64, Vec<u8>)) -> (u64, u8, usize) {
    let tag = data.first().copied().unwrap_or(0);
    assert!(data.iter().all(|byte| *byte == tag), "entry {id} is torn");
    (id, tag, data.len())
}

#[test]
fn consumer_blocked_in_pop_is_woken_by_a_push() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || intact(ring.pop_blocking().expect("pop")))
        };
        let id = ring.push(&[7; SMALL]).expect("push");
        assert_eq!(consumer.join().unwrap(), (id, 7, SMALL));
        assert_eq!(ring.waiters(), 0, "a waiter is still registered");
    });
}

#[test]
fn block_mode_producer_is_woken_when_a_pop_frees_room() {
    check(|| {
        let ring = Arc::new(LoomRing::blocking(REGION_LEN, NEVER));
        let first = ring.push(&[1; LARGE]).expect("push");
        let second = ring.push(&[2; LARGE]).expect("push");
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || ring.push_blocking(&[3; LARGE]).expect("blocking push"))
        };
        let popped = ring.pop().expect("pop").map(intact);
        assert_eq!(popped, Some((first, 1, LARGE)));
        let third = producer.join().unwrap();
        assert!(third > second);
        let rest: Vec<_> = std::iter::from_fn(|| ring.pop().expect("pop").map(intact)).collect();
        assert_eq!(rest, [(second, 2, LARGE), (third, 3, LARGE)]);
        assert_eq!(ring.waiters(), 0, "a waiter is still registered");
    });
}

#[test]
fn two_blocked_consumers_are_both_woken_and_share_the_entries() {
    check_capped(1, || {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        let consumers = [0, 1].map(|_| {
            let ring = ring.clone();
            thread::spawn(move || intact(ring.pop_blocking().expect("pop")))
        });
        let ids = [5u8, 6].map(|tag| (ring.push(&[tag; 0]).expect("push"), tag));
        let mut got: Vec<u64> = consumers
            .into_iter()
            .map(|consumer| consumer.join().unwrap().0)
            .collect();
        got.sort_unstable();
        assert_eq!(got, ids.map(|(id, _)| id));
        assert_eq!(ring.waiters(), 0, "a waiter is still registered");
    });
}

#[test]
fn subscriber_racing_an_eviction_gets_the_entry_or_counts_it_missed_exactly_once() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, true, NEVER));
        let sub = ring.subscribe("s").expect("subscribe");
        // A full ring of four 64-byte records; the subscriber is at the first.
        let ids: Vec<u64> = (1..=4u8)
            .map(|tag| ring.push(&[tag; SMALL]).expect("push"))
            .collect();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || ring.push(&[9; SMALL]).expect("evicting push"))
        };
        let first = ring.sub_next(&sub).expect("subscriber read");
        let newest = producer.join().unwrap();
        assert_eq!(ring.evicted(), 1);
        let mut steps = vec![first];
        loop {
            match ring.sub_next(&sub).expect("subscriber read") {
                SubRead::Nothing => break,
                step => steps.push(step),
            }
        }
        let mut delivered = Vec::new();
        let mut missed = 0;
        for step in steps {
            match step {
                SubRead::Entry(id, data) => delivered.push(intact((id, data)).0),
                SubRead::Lapped(n) => missed += n,
                SubRead::Nothing => unreachable!(),
            }
        }
        let mut expected = ids.clone();
        expected.push(newest);
        if missed == 1 {
            expected.remove(0);
        }
        assert_eq!(delivered, expected, "missed {missed}");
        assert!(missed <= 1);
    });
}
