//! Threads hammering one ring through one shared handle.
//!
//! Proves, on rings small enough to be full most of the time and to wrap (with
//! padding records) hundreds of times:
//! - reject mode delivers every pushed entry exactly once, intact, with the ID its
//!   push returned, in each producer's order as seen by every consumer, and the
//!   counters balance (`pushed == popped`, `len() == 0`);
//! - overwrite mode never returns a torn, corrupt or duplicated entry, keeps each
//!   producer's order per consumer, and accounts for every entry as popped or evicted;
//! - `peek` running beside pushes and pops never yields a torn entry and yields IDs in
//!   increasing order within one iteration;
//! - entries with a TTL, mixed with entries without, are either delivered intact or
//!   counted as expired, and the ones left past their TTL are all expired.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Received, Watch, assert_consumer_order, assert_delivered_once_with_push_ids,
    assert_push_ids_increase, decode, payload, push_retrying,
};
use mmring::{OnFull, Options, Ring};

/// Every test must finish well within this; a wedge fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);
/// Abandon timeout of the stress rings: far longer than any scheduling delay, so no
/// live producer is ever taken for a dead one and the counters must balance exactly.
const NO_ABANDON: Duration = Duration::from_secs(30);

fn ring(dir: &tempfile::TempDir, size: u64, on_full: OnFull) -> Ring {
    Options::new()
        .size(size)
        .on_full(on_full)
        .abandon_timeout(NO_ABANDON)
        .create(dir.path().join("stress.ring"))
        .unwrap()
}

/// Pops one entry, checks its payload and returns it as received; `None` when the
/// ring had nothing ready. Any error fails the test: nothing here is damaged.
fn pop_checked(ring: &Ring, buf: &mut Vec<u8>) -> Option<Received> {
    let info = ring
        .pop_into(buf)
        .unwrap_or_else(|e| panic!("pop failed: {e}"))?;
    let (producer, seq) = decode(buf).unwrap_or_else(|e| panic!("entry {}: {e}", info.id()));
    assert_eq!(info.len(), buf.len(), "entry {}: length", info.id());
    Some(Received {
        id: info.id(),
        producer,
        seq,
    })
}

/// Waits until `condition` holds, yielding meanwhile.
fn await_condition(watch: &Watch, what: &str, condition: impl Fn() -> bool) {
    while !condition() {
        watch.check(|| what.to_string());
        thread::yield_now();
    }
}

#[test]
fn reject_mode_delivers_every_entry_exactly_once_in_producer_order() {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: usize = 3;
    const PER_PRODUCER: u64 = 15_000;
    const TOTAL: usize = PRODUCERS as usize * PER_PRODUCER as usize;

    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, 32 << 10, OnFull::Reject);
    let watch = &Watch::new(LIMIT);
    let delivered = AtomicUsize::new(0);
    let full_hits = AtomicU64::new(0);
    let started = Instant::now();

    let (push_ids, received): (Vec<Vec<u64>>, Vec<Vec<Received>>) = thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (ring, full_hits) = (&ring, &full_hits);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    (0..PER_PRODUCER)
                        .map(|seq| {
                            push_retrying(ring, &payload(producer, seq), None, watch, full_hits)
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|consumer| {
                let (ring, delivered, full_hits) = (&ring, &delivered, &full_hits);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    // Start only once the ring has refused a push, so that the
                    // producers certainly run into a full ring.
                    await_condition(watch, "the ring to fill up", || {
                        full_hits.load(Ordering::Relaxed) > 0
                    });
                    let mut buf = Vec::new();
                    let mut received = Vec::new();
                    while delivered.load(Ordering::Relaxed) < TOTAL {
                        watch.check(|| {
                            format!(
                                "consumer {consumer}: {} of {TOTAL} delivered, {:?}",
                                delivered.load(Ordering::Relaxed),
                                ring.stats()
                            )
                        });
                        match pop_checked(ring, &mut buf) {
                            Some(entry) => {
                                received.push(entry);
                                delivered.fetch_add(1, Ordering::Relaxed);
                            }
                            None => thread::yield_now(),
                        }
                    }
                    received
                })
            })
            .collect();
        (
            producers.into_iter().map(|h| h.join().unwrap()).collect(),
            consumers.into_iter().map(|h| h.join().unwrap()).collect(),
        )
    });

    for (consumer, entries) in received.iter().enumerate() {
        assert_consumer_order(&format!("consumer {consumer}"), entries);
    }
    assert_push_ids_increase(&push_ids);
    let count = assert_delivered_once_with_push_ids(received.iter().map(Vec::as_slice), &push_ids);
    assert_eq!(count, TOTAL, "every pushed entry is delivered");

    // Pops are linearized by the CAS on read_pos, which takes entries in ID order:
    // sorted by ID, all consumers' entries are the global pop order, and each
    // producer's sequence numbers must run 0, 1, 2, ... in it.
    let mut all: Vec<Received> = received.concat();
    all.sort_unstable();
    let mut next_seq = vec![0u64; PRODUCERS as usize];
    for entry in &all {
        assert_eq!(
            entry.seq, next_seq[entry.producer as usize],
            "global pop order of producer {}",
            entry.producer
        );
        next_seq[entry.producer as usize] += 1;
    }

    let stats = ring.stats();
    assert_eq!(stats.pushed, TOTAL as u64, "{stats:?}");
    assert_eq!(stats.popped, stats.pushed, "{stats:?}");
    assert_eq!(
        (stats.evicted, stats.expired, stats.corrupt, stats.abandoned),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!((stats.len, ring.len()), (0, 0), "{stats:?}");
    assert_eq!(stats.read_pos, stats.write_pos, "{stats:?}");
    assert!(
        stats.write_pos > 50 * ring.capacity_bytes(),
        "the ring wrapped many times: {stats:?}"
    );
    assert!(ring.pop().unwrap().is_none());
    eprintln!(
        "reject: {TOTAL} entries, {} laps, {} full pushes retried, {:?}",
        stats.write_pos / ring.capacity_bytes(),
        full_hits.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[test]
fn overwrite_mode_never_returns_torn_or_duplicate_entries() {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: usize = 3;
    const PER_PRODUCER: u64 = 15_000;
    const TOTAL: u64 = PRODUCERS as u64 * PER_PRODUCER;

    let dir = tempfile::tempdir().unwrap();
    // The smallest ring: a 4 KiB region holds about 20 of these entries.
    let ring = ring(&dir, 8 << 10, OnFull::Overwrite);
    let watch = &Watch::new(LIMIT);
    let producers_left = AtomicUsize::new(PRODUCERS as usize);
    let started = Instant::now();

    let (push_ids, received): (Vec<Vec<u64>>, Vec<Vec<Received>>) = thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (ring, producers_left) = (&ring, &producers_left);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    let ids = (0..PER_PRODUCER)
                        .map(|seq| ring.push(&payload(producer, seq)).unwrap())
                        .collect::<Vec<u64>>();
                    producers_left.fetch_sub(1, Ordering::Release);
                    ids
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|consumer| {
                let (ring, producers_left) = (&ring, &producers_left);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    // Start once pushes have evicted entries: consumers then race
                    // overwriting producers for the oldest entries.
                    await_condition(watch, "the first eviction", || ring.stats().evicted > 0);
                    let mut buf = Vec::new();
                    let mut received = Vec::new();
                    loop {
                        watch.check(|| format!("consumer {consumer}: {:?}", ring.stats()));
                        // Read before popping: once no producer is left, an empty pop
                        // means the ring is drained (nothing is half-written).
                        let done = producers_left.load(Ordering::Acquire) == 0;
                        match pop_checked(ring, &mut buf) {
                            Some(entry) => received.push(entry),
                            None if done => break,
                            None => thread::yield_now(),
                        }
                    }
                    received
                })
            })
            .collect();
        (
            producers.into_iter().map(|h| h.join().unwrap()).collect(),
            consumers.into_iter().map(|h| h.join().unwrap()).collect(),
        )
    });

    for (consumer, entries) in received.iter().enumerate() {
        assert_consumer_order(&format!("consumer {consumer}"), entries);
    }
    assert_push_ids_increase(&push_ids);
    let delivered =
        assert_delivered_once_with_push_ids(received.iter().map(Vec::as_slice), &push_ids) as u64;

    let stats = ring.stats();
    assert_eq!(stats.pushed, TOTAL, "{stats:?}");
    assert_eq!(stats.popped, delivered, "{stats:?}");
    assert_eq!(delivered + stats.evicted, TOTAL, "{stats:?}");
    assert!(stats.evicted > 0, "{stats:?}");
    assert_eq!(
        (stats.expired, stats.corrupt, stats.abandoned),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!((stats.len, ring.len()), (0, 0), "{stats:?}");
    assert!(ring.pop().unwrap().is_none());
    eprintln!(
        "overwrite: {TOTAL} pushed, {delivered} delivered, {} evicted, {:?}",
        stats.evicted,
        started.elapsed()
    );
}

#[test]
fn peek_beside_pushes_and_pops_never_yields_torn_entries() {
    const PRODUCERS: u32 = 2;
    const PEEKERS: usize = 2;
    const PER_PRODUCER: u64 = 15_000;

    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, 8 << 10, OnFull::Overwrite);
    let watch = &Watch::new(LIMIT);
    let producers_left = AtomicUsize::new(PRODUCERS as usize);
    // Peekers are iterating before the first push.
    let start = Barrier::new(PRODUCERS as usize + PEEKERS);
    let started = Instant::now();
    // Set once a peek has yielded an entry. While the producers overwrite the small
    // ring faster than a peek copies a record, every iteration is lapped and yields
    // nothing, and a consumer that then drained the ring before the peekers' last
    // iteration left them nothing to see; so the consumer waits for this first.
    let peeked_any = AtomicBool::new(false);
    // Entries peeked while producers were still pushing: reported, not required (on a
    // fast host every such peek may be lapped).
    let peeked_while_pushing = AtomicUsize::new(0);

    let (push_ids, peeked, popped) = thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (ring, producers_left, start) = (&ring, &producers_left, &start);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    start.wait();
                    let ids = (0..PER_PRODUCER)
                        .map(|seq| ring.push(&payload(producer, seq)).unwrap())
                        .collect::<Vec<u64>>();
                    producers_left.fetch_sub(1, Ordering::Release);
                    ids
                })
            })
            .collect();
        let peekers: Vec<_> = (0..PEEKERS)
            .map(|peeker| {
                let (ring, producers_left, start) = (&ring, &producers_left, &start);
                let (peeked_any, peeked_while_pushing) = (&peeked_any, &peeked_while_pushing);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    let mut seen = Vec::new();
                    start.wait();
                    loop {
                        watch.check(|| format!("peeker {peeker}: {:?}", ring.stats()));
                        let done = producers_left.load(Ordering::Acquire) == 0;
                        let mut iteration = Vec::new();
                        for entry in ring.peek() {
                            let entry = entry
                                .unwrap_or_else(|e| panic!("peeker {peeker}: peek failed: {e}"));
                            let (producer, seq) = decode(entry.data()).unwrap_or_else(|e| {
                                panic!("peeker {peeker}: entry {}: {e}", entry.id())
                            });
                            iteration.push(Received {
                                id: entry.id(),
                                producer,
                                seq,
                            });
                        }
                        // Within one iteration, peek goes oldest first.
                        assert_consumer_order(&format!("peeker {peeker} iteration"), &iteration);
                        if !iteration.is_empty() {
                            peeked_any.store(true, Ordering::Release);
                        }
                        if !done {
                            peeked_while_pushing.fetch_add(iteration.len(), Ordering::Relaxed);
                        }
                        seen.extend(iteration);
                        if done {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        let consumer = scope.spawn(|| {
            let _guard = watch.guard();
            await_condition(watch, "the first eviction", || ring.stats().evicted > 0);
            await_condition(watch, "a peeked entry", || {
                peeked_any.load(Ordering::Acquire)
            });
            let mut buf = Vec::new();
            let mut received = Vec::new();
            loop {
                watch.check(|| format!("consumer: {:?}", ring.stats()));
                let done = producers_left.load(Ordering::Acquire) == 0;
                match pop_checked(&ring, &mut buf) {
                    Some(entry) => received.push(entry),
                    None if done => return received,
                    None => thread::yield_now(),
                }
            }
        });
        let push_ids: Vec<Vec<u64>> = producers.into_iter().map(|h| h.join().unwrap()).collect();
        let peeked: Vec<Vec<Received>> = peekers.into_iter().map(|h| h.join().unwrap()).collect();
        (push_ids, peeked, consumer.join().unwrap())
    });

    assert_consumer_order("consumer", &popped);
    assert_delivered_once_with_push_ids([popped.as_slice()], &push_ids);
    // Every peeked entry is one that was pushed, under the ID its push returned.
    let by_entry: HashMap<(u32, u64), u64> = push_ids
        .iter()
        .enumerate()
        .flat_map(|(producer, ids)| {
            ids.iter()
                .enumerate()
                .map(move |(seq, id)| ((producer as u32, seq as u64), *id))
        })
        .collect();
    let mut peeked_count = 0;
    for entry in peeked.iter().flatten() {
        assert_eq!(
            by_entry.get(&(entry.producer, entry.seq)),
            Some(&entry.id),
            "peeked producer {} seq {}",
            entry.producer,
            entry.seq
        );
        peeked_count += 1;
    }
    assert!(peeked_count > 0, "peek saw entries");
    let stats = ring.stats();
    assert_eq!(stats.popped + stats.evicted, stats.pushed, "{stats:?}");
    assert_eq!(stats.corrupt, 0, "{stats:?}");
    eprintln!(
        "peek: {peeked_count} entries peeked ({} while producers pushed), {} popped, {} evicted, {:?}",
        peeked_while_pushing.load(Ordering::Relaxed),
        popped.len(),
        stats.evicted,
        started.elapsed()
    );
}

#[test]
fn ttl_entries_are_delivered_intact_or_counted_as_expired() {
    const PRODUCERS: u32 = 2;
    const CONSUMERS: usize = 2;
    const PER_PRODUCER: u64 = 10_000;
    const LEFT_OVER: u64 = 40;
    const TTL: Duration = Duration::from_secs(1);

    let dir = tempfile::tempdir().unwrap();
    let ring = ring(&dir, 64 << 10, OnFull::Reject);
    let watch = &Watch::new(LIMIT);
    // Even sequence numbers carry the TTL, odd ones none (the ring's default is none).
    let has_ttl = |seq: u64| seq.is_multiple_of(2);
    let ttl_for = |seq: u64| has_ttl(seq).then_some(TTL);

    // Phase 1: concurrent pushes and pops.
    let producers_left = AtomicUsize::new(PRODUCERS as usize);
    let full_hits = &AtomicU64::new(0);
    let (push_ids, mut received) = thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (ring, producers_left) = (&ring, &producers_left);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    let ids = (0..PER_PRODUCER)
                        .map(|seq| {
                            push_retrying(
                                ring,
                                &payload(producer, seq),
                                ttl_for(seq),
                                watch,
                                full_hits,
                            )
                        })
                        .collect::<Vec<u64>>();
                    producers_left.fetch_sub(1, Ordering::Release);
                    ids
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|consumer| {
                let (ring, producers_left) = (&ring, &producers_left);
                scope.spawn(move || {
                    let _guard = watch.guard();
                    let mut received = Vec::new();
                    loop {
                        watch.check(|| format!("consumer {consumer}: {:?}", ring.stats()));
                        let done = producers_left.load(Ordering::Acquire) == 0;
                        match ring.pop().unwrap() {
                            Some(entry) => received.push(entry),
                            None if done => return received,
                            None => thread::yield_now(),
                        }
                    }
                })
            })
            .collect();
        let push_ids: Vec<Vec<u64>> = producers.into_iter().map(|h| h.join().unwrap()).collect();
        let received: Vec<Vec<mmring::Entry>> =
            consumers.into_iter().map(|h| h.join().unwrap()).collect();
        (push_ids, received)
    });

    let mut delivered = Vec::new();
    for (consumer, entries) in received.iter_mut().enumerate() {
        let entries: Vec<Received> = entries
            .drain(..)
            .map(|entry| {
                let (producer, seq) =
                    decode(entry.data()).unwrap_or_else(|e| panic!("entry {}: {e}", entry.id()));
                let expected_ttl = ttl_for(seq).unwrap_or(Duration::ZERO);
                assert_eq!(entry.ttl(), expected_ttl, "producer {producer} seq {seq}");
                Received {
                    id: entry.id(),
                    producer,
                    seq,
                }
            })
            .collect();
        assert_consumer_order(&format!("consumer {consumer}"), &entries);
        delivered.push(entries);
    }
    let count =
        assert_delivered_once_with_push_ids(delivered.iter().map(Vec::as_slice), &push_ids) as u64;
    // Every entry without a TTL arrived; the missing ones all had a TTL and expired.
    let arrived: HashSet<(u32, u64)> = delivered
        .iter()
        .flatten()
        .map(|r| (r.producer, r.seq))
        .collect();
    for producer in 0..PRODUCERS {
        for seq in (0..PER_PRODUCER).filter(|seq| !has_ttl(*seq)) {
            assert!(
                arrived.contains(&(producer, seq)),
                "producer {producer} seq {seq} (no TTL) was lost"
            );
        }
    }
    let stats = ring.stats();
    let total = u64::from(PRODUCERS) * PER_PRODUCER;
    assert_eq!(stats.pushed, total, "{stats:?}");
    assert_eq!(stats.popped, count, "{stats:?}");
    assert_eq!(count + stats.expired, total, "{stats:?}");
    assert_eq!((stats.len, ring.len()), (0, 0), "{stats:?}");
    let expired_concurrently = stats.expired;

    // Phase 2: entries left in the ring past their TTL are never returned.
    thread::scope(|scope| {
        for producer in 0..PRODUCERS {
            let ring = &ring;
            scope.spawn(move || {
                let _guard = watch.guard();
                for seq in 0..LEFT_OVER {
                    let data = payload(PRODUCERS + producer, seq);
                    match ttl_for(seq) {
                        Some(ttl) => ring.push_with_ttl(&data, ttl).unwrap(),
                        None => ring.push(&data).unwrap(),
                    };
                }
            });
        }
    });
    let pushed_at = Instant::now();
    assert_eq!(ring.len() as u64, u64::from(PRODUCERS) * LEFT_OVER);
    // Waiting for wall-clock time itself: the TTL has to run out. The margin covers
    // the coarse clock the ring reads.
    thread::sleep((TTL + Duration::from_millis(100)).saturating_sub(pushed_at.elapsed()));
    let survivors: Vec<Vec<Received>> = thread::scope(|scope| {
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                scope.spawn(|| {
                    let _guard = watch.guard();
                    let mut buf = Vec::new();
                    std::iter::from_fn(|| pop_checked(&ring, &mut buf)).collect()
                })
            })
            .collect();
        consumers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut survivors: Vec<(u32, u64)> = survivors
        .iter()
        .flatten()
        .map(|r| (r.producer, r.seq))
        .collect();
    survivors.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..PRODUCERS)
        .flat_map(|producer| {
            (0..LEFT_OVER)
                .filter(|seq| !has_ttl(*seq))
                .map(move |seq| (PRODUCERS + producer, seq))
        })
        .collect();
    assert_eq!(
        survivors, expected,
        "only the entries without a TTL survive"
    );
    let stats = ring.stats();
    assert_eq!(
        stats.expired - expired_concurrently,
        u64::from(PRODUCERS) * LEFT_OVER / 2,
        "{stats:?}"
    );
    assert_eq!(
        stats.pushed,
        stats.popped + stats.expired + stats.evicted + stats.corrupt + stats.abandoned,
        "{stats:?}"
    );
    assert_eq!(ring.len(), 0);
    eprintln!("ttl: {expired_concurrently} expired while consumed concurrently");
}

/// Guards the helper the other tests rely on: a torn, mixed, flipped or truncated
/// copy never decodes, and payload lengths vary.
#[test]
fn self_validating_payload_detects_tearing() {
    let a = payload(1, 2);
    let b = payload(2, 1);
    assert_eq!(decode(&a), Ok((1, 2)));
    assert_eq!(decode(&b), Ok((2, 1)));
    let cut = a.len().min(b.len()) / 2;
    let mixed = [&a[..cut], &b[cut..]].concat();
    assert!(
        decode(&mixed).is_err(),
        "half of one entry, half of another"
    );
    let mut flipped = a.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(decode(&flipped).is_err(), "one flipped bit");
    assert!(decode(&a[..a.len() - 1]).is_err(), "truncated");
    let lengths: HashSet<usize> = (0..100).map(|seq| payload(0, seq).len()).collect();
    assert!(lengths.len() > 20, "payload lengths vary: {lengths:?}");
}
