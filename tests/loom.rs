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
//!   skipped, and an entry pushed after it by another thread is delivered exactly once;
//! - a batch push racing a batch pop, within a lap and across a padded wrap: the
//!   consumer gets a prefix of the batch in push order, intact, and nothing is lost;
//! - a batch run whose reader abandons it while it is written: each entry delivered
//!   exactly once, in order, none from the abandoned run, and the batch pushed again;
//! - a batch written as records of their own (a file without batch runs) racing a
//!   batch pop, as above;
//! - two batch pops racing for a batch: each entry goes to exactly one, in order;
//! - an overwriting push evicting entries while a batch pop copies them: every entry
//!   is popped once or counted as evicted, never torn.
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

/// Two producers pushing `payload_len`-byte entries into a full reject-mode ring while
/// a consumer frees its 128-byte head: each push is `Ok` or `Error::Full` depending on
/// when it looks, and afterwards the ring yields exactly the `Ok` entries.
fn producers_racing_for_freed_space(payload_len: usize) {
    let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
    // A full ring: the head the consumer frees, then a filler.
    let head = push(&ring, 1, LARGE).unwrap();
    let filler = push(&ring, 2, LARGE).unwrap();
    assert!(matches!(push(&ring, 9, 0), Err(Error::Full)));
    let producers = [4u8, 5].map(|tag| {
        let ring = ring.clone();
        thread::spawn(move || (tag, push(&ring, tag, payload_len)))
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
    assert!(
        pushed.len() as u64 * record_len(payload_len) <= record_len(LARGE),
        "more pushes succeeded than the freed space holds: {pushed:?}"
    );
    pushed.sort_unstable();
    let mut expected = vec![filler];
    expected.extend(&pushed);
    assert_eq!(drain(&ring), expected, "pushed {pushed:?}");
}

#[test]
fn two_producers_racing_for_freed_space_push_exactly_what_is_popped() {
    // Two 64-byte records fit in the freed 128 bytes: both, one or neither succeed.
    check(|| producers_racing_for_freed_space(SMALL));
}

#[test]
fn two_producers_racing_for_one_freed_slot_push_exactly_what_is_popped() {
    // One 128-byte record fits in the freed space: one or neither succeeds, and the
    // loser's look at the old head races the winner's writes into it.
    check(|| producers_racing_for_freed_space(LARGE));
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

/// An overwriting push racing a consumer, a peek, or both, on a full ring of two
/// 64-byte records (the largest a 128-byte region takes). The push lands on the first
/// entry's bytes: it evicts it unless the consumer popped it first.
fn overwrite_model(with_consumer: bool, with_peek: bool) {
    let region_len = 2 * record_len(SMALL);
    let ring = Arc::new(LoomRing::new(region_len, true, NEVER));
    let mut all: Vec<Seen> = (1..=2)
        .map(|tag| push(&ring, tag, SMALL).unwrap())
        .collect();
    let producer = {
        let ring = ring.clone();
        thread::spawn(move || push(&ring, 9, SMALL).unwrap())
    };
    let consumer = with_consumer.then(|| {
        let ring = ring.clone();
        thread::spawn(move || pop(&ring).expect("the ring is never empty"))
    });
    let peeker = with_peek.then(|| {
        let ring = ring.clone();
        thread::spawn(move || {
            let peeked = ring.peek_all().expect("peek of a healthy ring");
            peeked.into_iter().map(seen).collect::<Vec<_>>()
        })
    });
    all.push(producer.join().unwrap());
    assert_eq!(all[2].0, region_len);
    let popped = consumer.map(|consumer| consumer.join().unwrap());
    if let Some(peeker) = peeker {
        let peeked = peeker.join().unwrap();
        assert!(
            peeked.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "peek out of ID order: {peeked:?}"
        );
        assert!(
            peeked.iter().all(|entry| all.contains(entry)),
            "peek yielded an entry never pushed: {peeked:?}"
        );
    }
    let evicted = ring.evicted() as usize;
    assert!(evicted <= 1, "a 64-byte record evicts at most one entry");
    // The consumer got the oldest entry the producer had not evicted, and every later
    // one is still there: each entry was popped once or counted as evicted.
    let mut delivered: Vec<Seen> = popped.into_iter().collect();
    delivered.extend(drain(&ring));
    assert_eq!(delivered, all[evicted..], "evicted {evicted}");
    if !with_consumer {
        assert_eq!(evicted, 1, "a full ring makes room by evicting");
    }
}

#[test]
fn overwrite_racing_a_consumer_evicts_or_delivers_each_entry_once() {
    check(|| overwrite_model(true, false));
}

#[test]
fn overwrite_racing_a_peek_never_yields_a_torn_or_false_corrupt_entry() {
    check(|| overwrite_model(false, true));
}

#[test]
#[ignore = "three racing threads: slow; run with --ignored"]
fn overwrite_racing_a_consumer_and_a_peek_never_tears_and_loses_nothing() {
    check(|| overwrite_model(true, true));
}

/// Pops batches of up to `max` entries, checked intact.
fn pop_batch(ring: &LoomRing, max: usize) -> Vec<Seen> {
    let got: Vec<Seen> = ring
        .pop_batch(max)
        .expect("pop_batch")
        .into_iter()
        .map(seen)
        .collect();
    assert!(got.len() <= max);
    got
}

/// A producer pushing two 64-byte entries, with one `push_batch` or (`as_batch`
/// false) two pushes, while a consumer pops batches, after `advance` filler entries
/// moved both positions. `ring` is a reject-mode ring of `REGION_LEN` bytes.
fn batch_model(ring: LoomRing, advance: &[usize], first_id: u64, second_id: u64, as_batch: bool) {
    let ring = Arc::new(ring);
    for &len in advance {
        let filler = push(&ring, 0xf0, len).unwrap();
        assert_eq!(pop(&ring), Some(filler));
    }
    let producer = {
        let ring = ring.clone();
        thread::spawn(move || {
            if as_batch {
                ring.push_batch(&[&[1u8; SMALL], &[2u8; SMALL]]).unwrap()
            } else {
                push(&ring, 1, SMALL).unwrap();
                push(&ring, 2, SMALL).unwrap();
                2
            }
        })
    };
    let consumer = {
        let ring = ring.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..MAX_POPS {
                got.extend(pop_batch(&ring, 2));
                if got.len() == 2 {
                    break;
                }
                thread::yield_now();
            }
            got
        })
    };
    assert_eq!(producer.join().unwrap(), 2);
    let pushed = [(first_id, 1, SMALL), (second_id, 2, SMALL)];
    let mut got = consumer.join().unwrap();
    assert_eq!(got, pushed[..got.len()], "a prefix of the batch, in order");
    got.extend(pop_batch(&ring, 2));
    assert_eq!(got, pushed);
}

/// The ring of most models: reject mode, `REGION_LEN` bytes, nothing abandoned.
fn reject_ring() -> LoomRing {
    LoomRing::new(REGION_LEN, false, NEVER)
}

#[test]
fn batch_push_racing_a_batch_pop_delivers_the_batch_in_order_once() {
    // Both records in one reservation, written as a batch run: one claim, the second
    // record stamped BATCHED, one commit.
    check(|| batch_model(reject_ring(), &[], 0, record_len(SMALL), true));
}

#[test]
fn per_record_batch_push_racing_a_batch_pop_delivers_the_batch_in_order_once() {
    // The same in a file without batch runs: each record claimed and committed.
    check(|| {
        let ring = LoomRing::per_record(REGION_LEN, NEVER);
        batch_model(ring, &[], 0, record_len(SMALL), true)
    });
}

#[test]
fn pushes_racing_a_batch_pop_deliver_in_order_once() {
    // Two reservations: the second record is written after the first is committed, so
    // the batch pop must synchronize with each record's commit, not just the first.
    check(|| batch_model(reject_ring(), &[], 0, record_len(SMALL), false));
}

#[test]
fn batch_push_racing_a_batch_pop_across_a_padded_wrap_delivers_in_order_once() {
    // Positions at 160: the first record fits in the lap, the second follows 32 bytes
    // of padding at the start of the next lap (a second reservation).
    check(|| batch_model(reject_ring(), &[40, SMALL], 160, REGION_LEN, true));
}

/// A batch run pushed while a consumer that gives up on any head it sees stuck twice
/// pops: the consumer may abandon the run while its producer writes it, stepping
/// over all of it; the producer's commit then fails and it pushes the batch again.
/// Whatever happens, each entry is delivered exactly once, in order, intact (never a
/// record of an abandoned run), and every abandoned run was one retry.
#[test]
fn batch_run_racing_a_reader_that_abandons_it_is_delivered_once_in_order() {
    // Executions in which the run was abandoned at least once: the model must reach
    // the case it is about.
    static ABANDONED_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, 1));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || ring.push_batch(&[&[1u8; SMALL], &[2u8; SMALL]]).unwrap())
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop_until(&ring, 2))
        };
        assert_eq!(producer.join().unwrap(), 2);
        let mut got = consumer.join().unwrap();
        got.extend(drain(&ring));
        let run_len = 2 * record_len(SMALL);
        let first = got.first().map_or(0, |entry| entry.0);
        assert_eq!(
            got,
            [(first, 1, SMALL), (first + record_len(SMALL), 2, SMALL)],
            "delivered once, in order"
        );
        assert_eq!(first % run_len, 0, "a run starts where a reservation did");
        assert_eq!(
            ring.abandoned(),
            first / run_len,
            "one abandoned run per retry"
        );
        if first > 0 {
            ABANDONED_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let abandoned = ABANDONED_RUNS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{abandoned} executions abandoned the run at least once");
    assert!(abandoned > 0, "no execution abandoned the run");
}

#[test]
fn two_batch_pops_racing_for_a_batch_each_entry_goes_to_exactly_one() {
    check(|| {
        let ring = Arc::new(LoomRing::new(REGION_LEN, false, NEVER));
        assert_eq!(ring.push_batch(&[&[1u8; SMALL], &[2u8; SMALL]]).unwrap(), 2);
        let consumers = [0, 1].map(|_| {
            let ring = ring.clone();
            thread::spawn(move || pop_batch(&ring, 2))
        });
        let mut got: Vec<Seen> = consumers
            .into_iter()
            .flat_map(|consumer| consumer.join().unwrap())
            .collect();
        got.extend(drain(&ring));
        got.sort();
        assert_eq!(got, [(0, 1, SMALL), (record_len(SMALL), 2, SMALL)]);
    });
}

#[test]
fn overwrite_racing_a_batch_pop_evicts_or_delivers_each_entry_once() {
    check(|| {
        let region_len = 2 * record_len(SMALL);
        let ring = Arc::new(LoomRing::new(region_len, true, NEVER));
        let all: Vec<Seen> = (1..=2)
            .map(|tag| push(&ring, tag, SMALL).unwrap())
            .collect();
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || push(&ring, 9, SMALL).unwrap())
        };
        let consumer = {
            let ring = ring.clone();
            thread::spawn(move || pop_batch(&ring, 2))
        };
        let mut all = all;
        all.push(producer.join().unwrap());
        let mut delivered = consumer.join().unwrap();
        let evicted = ring.evicted() as usize;
        delivered.extend(drain(&ring));
        // Each entry popped once or evicted (the oldest ones), in order.
        assert_eq!(delivered, all[evicted..], "evicted {evicted}");
    });
}

/// A producer that died after claiming its record, once `advance` filler entries have
/// been pushed and popped; a live producer pushes after it while a consumer pops.
/// Returns the dead record's position.
fn abandoned_model(advance: &[usize]) -> u64 {
    // One clock reading starts a stall, the next one ends it: the consumer gives up on
    // any head it sees stuck twice, including the live producer's.
    let abandon_ms = 1;
    let ring = Arc::new(LoomRing::new(REGION_LEN, false, abandon_ms));
    for &len in advance {
        let filler = push(&ring, 0xf0, len).unwrap();
        assert_eq!(pop(&ring), Some(filler));
    }
    let dead = ring.push_and_die_after_claim(SMALL as u32).unwrap();
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
    // producer pushed again right after it.
    let first_try = dead + record_len(SMALL);
    let retries = (entry.0 - first_try) / record_len(SMALL);
    assert_eq!(ring.abandoned(), 1 + retries, "entry {entry:?}");
    dead
}

#[test]
fn abandoned_claim_is_skipped_and_the_next_entry_delivered_once() {
    check(|| assert_eq!(abandoned_model(&[]), 0));
}

#[test]
fn abandoned_claim_behind_padding_is_skipped_and_the_next_entry_delivered_once() {
    // Both positions at 224: the dead record needs 32 bytes of padding before it.
    check(|| assert_eq!(abandoned_model(&[LARGE, 40]), REGION_LEN));
}
