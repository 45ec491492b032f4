//! Loom models of the ring algorithm (`src/ring.rs`) over a heap region of loom
//! atomics: every interleaving of a few threads, up to the preemption bound, and every
//! value a relaxed load may return, is explored.
//!
//! What each model proves, for all the interleavings loom explores:
//! - two producers racing for the space a consumer frees (reject mode): each push is
//!   `Ok` or `Error::Full`, and afterwards the ring yields exactly the `Ok` entries,
//!   each once, intact, in ID order;
//! - a producer and a consumer at the end of a lap, where the second push needs a
//!   padding record: the consumer gets both entries in push order, intact, once each;
//! - two consumers racing for one entry: exactly one of them gets it;
//! - an overwriting push evicting the entry a consumer is popping while a peek walks
//!   the ring: no torn payload and no false corruption report anywhere, every entry is
//!   either popped once or counted as evicted, and the peek yields intact entries in
//!   ID order;
//! - a producer that died after claiming its record: its record is abandoned and
//!   skipped, and an entry pushed after it by another thread is delivered exactly once.
//!
//! The regions are far smaller than a ring file allows (4096 bytes): the algorithm
//! works on any multiple of 8, and a ring that wraps after two to four records keeps
//! the models small. Each copied word is a loom operation, and each word a racing
//! thread may see old or new doubles the executions. Payloads are self-validating
//! (every byte is the entry's tag), so a torn copy shows.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom`;
//! `LOOM_MAX_PREEMPTIONS` (2 unless set) bounds the exploration.

#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use mmring::Error;
use mmring::loom_support::LoomRing;

/// The region of most models: two records of the largest size (128 bytes, a 72-byte
/// payload), or four of 64 bytes (an 8-byte payload).
const REGION_LEN: u64 = 256;
/// Bytes of a record header before the payload.
const RECORD_HEADER_LEN: u64 = 56;
/// The payload of the smallest record that carries data: 64 bytes in all.
const SMALL: usize = 8;
/// The payload of the largest record in `REGION_LEN`: 128 bytes in all.
const LARGE: usize = 72;
/// An abandon timeout no model reaches: a stalled head is never abandoned.
const NEVER: u32 = u32::MAX;
/// Pops a consumer thread tries before giving up on an entry it waits for. Each pop
/// already retries a stalled head many times, yielding to the producer.
const MAX_POPS: usize = 8;

/// An entry as the models compare it: ID, tag, payload length.
type Seen = (u64, u8, usize);

/// Runs `model` under loom with a preemption bound of 2 unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise, and reports how many executions were explored (`--nocapture`).
fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // Room for a pop that retries a stalled head before giving up.
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

/// Bytes a record with a `payload_len`-byte payload occupies.
fn record_len(payload_len: usize) -> u64 {
    (RECORD_HEADER_LEN + payload_len as u64).next_multiple_of(8)
}

/// Pushes a `len`-byte entry of `tag` bytes and returns what the models compare.
fn push(ring: &LoomRing, tag: u8, len: usize) -> Result<Seen, Error> {
    ring.push(&vec![tag; len]).map(|id| (id, tag, len))
}

/// Checks that an entry is intact (every byte equals the first) and summarizes it.
fn seen((id, data): (u64, Vec<u8>)) -> Seen {
    let tag = data.first().copied().unwrap_or(0);
    assert!(
        data.iter().all(|byte| *byte == tag),
        "entry {id} is torn: {} bytes, first {tag}",
        data.len()
    );
    (id, tag, data.len())
}

/// Pops one entry, checked intact.
fn pop(ring: &LoomRing) -> Option<Seen> {
    ring.pop().expect("pop").map(seen)
}

/// Pops until the ring reports nothing. Called on the main thread once every racing
/// thread has finished: nothing is being written, so nothing may be left behind.
fn drain(ring: &LoomRing) -> Vec<Seen> {
    std::iter::from_fn(|| pop(ring)).collect()
}

/// A consumer thread's loop: pops until it has `want` entries or `MAX_POPS` tries.
fn pop_until(ring: &LoomRing, want: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    for _ in 0..MAX_POPS {
        got.extend(pop(ring));
        if got.len() == want {
            break;
        }
        thread::yield_now();
    }
    got
}

#[test]
fn two_producers_racing_for_freed_space_push_exactly_what_is_popped() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        // A full ring: the head the consumer frees, then a filler.
        let head = push(&ring, 1, LARGE).unwrap();
        let filler = push(&ring, 2, LARGE).unwrap();
        assert!(matches!(push(&ring, 9, 0), Err(Error::Full)));
        // Each 64-byte push fits only once the consumer has freed the head: both,
        // one or neither may succeed, depending on when.
        let producers = [4u8, 5].map(|tag| {
            let ring = ring.clone();
            thread::spawn(move || (tag, push(&ring, tag, SMALL)))
        });
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop(&ring))
        };
        let mut pushed = Vec::new();
        for producer in producers {
            match producer.join().unwrap() {
                (_, Ok(entry)) => pushed.push(entry),
                (_, Err(Error::Full)) => {}
                (tag, Err(e)) => panic!("push of entry {tag}: {e}"),
            }
        }
        assert_eq!(consumer.join().unwrap(), Some(head));
        pushed.sort_unstable();
        let mut expected = vec![filler];
        expected.extend(&pushed);
        assert_eq!(drain(&ring), expected, "pushed {pushed:?}");
    });
}

#[test]
fn consumer_at_a_padded_wrap_gets_entries_in_push_order() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        // Move both positions to 160: 96 bytes are left in the lap, so the first
        // 64-byte record fits and the second needs 32 bytes of padding.
        for len in [40, SMALL] {
            let filler = push(&ring, 0xf0, len).unwrap();
            assert_eq!(pop(&ring), Some(filler));
        }
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || [1, 2].map(|tag| push(&ring, tag, SMALL).unwrap()))
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop_until(&ring, 2))
        };
        let pushed = producer.join().unwrap();
        assert_eq!(pushed[0].0, 160);
        assert_eq!(
            pushed[1].0, REGION_LEN,
            "the second record follows the padding"
        );
        let mut got = consumer.join().unwrap();
        assert_eq!(got, pushed[..got.len()], "a prefix of the pushes, in order");
        got.extend(drain(&ring));
        assert_eq!(got, pushed);
    });
}

#[test]
fn two_consumers_racing_for_one_entry_exactly_one_gets_it() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        let entry = push(&ring, 7, SMALL).unwrap();
        let consumers = [0, 1].map(|_| {
            let ring = ring.clone();
            thread::spawn(move || pop(&ring))
        });
        let got: Vec<Seen> = consumers
            .into_iter()
            .filter_map(|consumer| consumer.join().unwrap())
            .collect();
        assert_eq!(got, [entry]);
        assert_eq!(pop(&ring), None);
    });
}

#[test]
#[ignore = "three threads copying word by word: runs for hours even at LOOM_MAX_PREEMPTIONS=1; run with --ignored"]
fn overwrite_racing_a_consumer_and_a_peek_never_tears_and_loses_nothing() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, true, NEVER));
        // A full ring of four 64-byte records.
        let mut all: Vec<Seen> = (1..=4)
            .map(|tag| push(&ring, tag, SMALL).unwrap())
            .collect();
        // The push lands on the first entry's bytes: it evicts it unless the consumer
        // popped it first.
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || push(&ring, 9, SMALL).unwrap())
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop(&ring))
        };
        let peeker = {
            let ring = ring.clone();
            thread::spawn(move || {
                let peeked = ring.peek_all().expect("peek of a healthy ring");
                peeked.into_iter().map(seen).collect::<Vec<_>>()
            })
        };
        all.push(producer.join().unwrap());
        assert_eq!(all[4].0, REGION_LEN);
        let popped = consumer.join().unwrap().expect("the ring is never empty");
        let peeked = peeker.join().unwrap();
        assert!(
            peeked.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "peek out of ID order: {peeked:?}"
        );
        assert!(
            peeked.iter().all(|entry| all.contains(entry)),
            "peek yielded an entry never pushed: {peeked:?}"
        );
        let evicted = ring.evicted() as usize;
        assert!(evicted <= 1, "a 64-byte record evicts at most one entry");
        // The consumer got the oldest entry the producer had not evicted, and every
        // later one is still there.
        let mut delivered = vec![popped];
        delivered.extend(drain(&ring));
        assert_eq!(delivered, all[evicted..], "evicted {evicted}");
    });
}

#[test]
fn abandoned_claim_is_skipped_and_the_next_entry_delivered_once() {
    check(|| {
        let abandon_ms = 2;
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, abandon_ms));
        assert_eq!(ring.push_and_die_after_claim(SMALL as u32).unwrap(), 0);
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || push(&ring, 5, SMALL).unwrap())
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop_until(&ring, 1))
        };
        let entry = producer.join().unwrap();
        let mut got = consumer.join().unwrap();
        got.extend(drain(&ring));
        assert_eq!(got, [entry], "delivered exactly once");
        // The consumer may also have given up on the live producer while it stalled
        // between reserving and committing; each such record is abandoned too, and the
        // producer pushes again right after it.
        let retries = (entry.0 - record_len(SMALL)) / record_len(SMALL);
        assert_eq!(ring.abandoned(), 1 + retries);
    });
}
