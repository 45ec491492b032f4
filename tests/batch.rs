//! `push_batch` and `pop_batch`: entries pushed and popped in batches are the same
//! entries, in the same order, with the same IDs, as one by one. Batches cross the end
//! of a lap (padding), mix with single pushes and pops, stop before a damaged record
//! (reported by the next call, nothing else lost), drop expired entries, push what
//! fits in a rejecting ring, evict in an overwriting one, wait in a blocking one, go
//! one entry per removal while subscribers exist, and deliver every entry exactly
//! once, in each producer's order, with two producers and two consumers. New files
//! hold batch runs; files made before them get batches of records of their own.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{decode, payload};
use mmring::{Batch, Error, OnFull, Options, Ring};

/// Bytes in a ring file before the region.
const HEADER_LEN: u64 = 4096;
/// Bytes of a record header before the payload.
const RECORD_HEADER_LEN: u64 = 56;

fn ring(size: u64, on_full: OnFull) -> (tempfile::TempDir, Ring) {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(size)
        .on_full(on_full)
        .create(dir.path().join("batch.ring"))
        .unwrap();
    (dir, ring)
}

/// `(id, payload)` of every entry in `batch`.
fn entries(batch: &Batch) -> Vec<(u64, Vec<u8>)> {
    batch
        .iter()
        .map(|(info, data)| {
            assert_eq!(info.len(), data.len());
            (info.id(), data.to_vec())
        })
        .collect()
}

/// Byte offset in the file of the payload of the entry with ID `id`.
fn payload_offset(ring: &Ring, id: u64) -> u64 {
    HEADER_LEN + id % ring.capacity_bytes() + RECORD_HEADER_LEN
}

#[test]
fn batches_deliver_what_single_pushes_would_in_order_across_laps() {
    // A small ring and payloads of varying sizes: many laps, padding at most lap ends,
    // batches of every size from 1 to 9, pushed and popped in alternation.
    let (_dir, ring) = ring(16 << 10, OnFull::Reject);
    let mut batch = Batch::new();
    let (mut next_push, mut next_pop) = (0u64, 0u64);
    let mut last_id = None;
    let mut laps_seen = 0;
    for round in 0..2000u64 {
        let n = (round % 9 + 1) as usize;
        let entries_in: Vec<Vec<u8>> = (0..n as u64).map(|i| payload(0, next_push + i)).collect();
        match ring.push_batch(&entries_in) {
            Ok(pushed) => next_push += pushed as u64,
            Err(Error::Full) => assert!(!ring.is_empty(), "full while empty"),
            Err(e) => panic!("{e}"),
        }
        let max = (round % 7 + 1) as usize;
        let got = ring.pop_batch(&mut batch, max).unwrap();
        assert_eq!(got, batch.len());
        assert!(got <= max);
        for (id, data) in entries(&batch) {
            assert_eq!(decode(&data), Ok((0, next_pop)), "entry {id}");
            assert!(last_id.is_none_or(|last| id > last), "IDs increase");
            if last_id.is_some_and(|last| id / ring.capacity_bytes() > last / ring.capacity_bytes())
            {
                laps_seen += 1;
            }
            last_id = Some(id);
            next_pop += 1;
        }
    }
    while ring.pop_batch(&mut batch, 5).unwrap() > 0 {
        for (_, data) in entries(&batch) {
            assert_eq!(decode(&data), Ok((0, next_pop)));
            next_pop += 1;
        }
    }
    assert_eq!(next_pop, next_push, "every pushed entry popped once");
    assert!(laps_seen > 20, "the test crossed {laps_seen} lap ends");
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.popped, stats.len),
        (next_push, next_pop, 0)
    );
}

#[test]
fn batches_of_long_entries_arrive_whole_and_in_order_across_laps() {
    // Entries from 3 KiB (the vector copy) to 40 KiB, alone or beside short ones, in
    // batches whose records average more than the 4 KiB per record a producer
    // prefetches, around a 256 KiB ring many times.
    let (_dir, ring) = ring(256 << 10, OnFull::Reject);
    let mut batch = Batch::new();
    let (mut next_push, mut next_pop) = (0u64, 0u64);
    let entry = |seq: u64| -> Vec<u8> {
        let len = [3072, 40_000, 64, 9001, 4097, 17][(seq % 6) as usize];
        (0..len)
            .map(|i| (seq as usize * 31 + i * 7) as u8)
            .collect()
    };
    for round in 0..600u64 {
        let n = (round % 4 + 1) as usize;
        let entries_in: Vec<Vec<u8>> = (0..n as u64).map(|i| entry(next_push + i)).collect();
        match ring.push_batch(&entries_in) {
            Ok(pushed) => next_push += pushed as u64,
            Err(Error::Full) => assert!(!ring.is_empty(), "full while empty"),
            Err(e) => panic!("{e}"),
        }
        while ring.pop_batch(&mut batch, 3).unwrap() > 0 {
            for (_, data) in entries(&batch) {
                assert!(data == entry(next_pop), "entry {next_pop} differs");
                next_pop += 1;
            }
        }
    }
    assert_eq!(next_pop, next_push);
    assert!(next_push > 1000, "{next_push} entries pushed");
    let lap = ring.capacity_bytes();
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.popped, stats.corrupt),
        (next_push, next_pop, 0)
    );
    assert!(stats.write_pos / lap > 50, "{} laps", stats.write_pos / lap);
}

#[test]
fn batch_ids_are_the_ids_single_pushes_get() {
    let (_dir, ring) = ring(1 << 20, OnFull::Reject);
    let first = ring.push(b"single").unwrap();
    assert_eq!(ring.push_batch(&[&b"a"[..], b"bb", b"ccc"]).unwrap(), 3);
    let after = ring.push(b"after").unwrap();
    let mut batch = Batch::new();
    assert_eq!(ring.pop_batch(&mut batch, 10).unwrap(), 5);
    let got = entries(&batch);
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    // Each record takes 56 bytes of header plus its payload, rounded up to 8.
    assert_eq!(
        ids,
        [first, first + 64, first + 128, first + 192, first + 256]
    );
    assert_eq!(ids[4], after);
    let data: Vec<&[u8]> = got.iter().map(|(_, d)| &d[..]).collect();
    assert_eq!(data, [&b"single"[..], b"a", b"bb", b"ccc", b"after"]);
    assert_eq!(ring.pop_batch(&mut batch, 10).unwrap(), 0);
    assert!(batch.is_empty());
}

/// The state of the stamp of the record at `id`, read from the file (stamps are
/// `(position | state) ^ key`, with the file's stamp key, 0 in files without one).
fn stamp_state(ring: &Ring, id: u64) -> u64 {
    let file = std::fs::read(ring.path()).unwrap();
    let key = mmring::layout::stamp_key(&file).expect("the first 76 bytes of a ring file");
    let at = (HEADER_LEN + id % ring.capacity_bytes()) as usize;
    let stamp = u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) ^ key;
    assert_eq!(stamp & !7, id, "a stamp for the record's own position");
    stamp & 7
}

/// A new file's batches are runs: the first record committed (state 2), the others
/// stamped BATCHED (7). A file made before batch runs (`flags` 0, as older mmring
/// versions write it: no batch runs and no stamp key) still opens, and its batches
/// are records of their own, each committed, so that older processes sharing the file
/// can read them. So are a keyed file's without batch runs.
#[test]
fn batches_are_runs_except_in_files_made_before_batch_runs() {
    let entries_in: Vec<Vec<u8>> = (0..5).map(|i| payload(0, i)).collect();
    let states = |ring: &Ring| -> Vec<u64> {
        assert_eq!(ring.push_batch(&entries_in).unwrap(), 5);
        let mut batch = Batch::new();
        assert_eq!(ring.pop_batch(&mut batch, 10).unwrap(), 5);
        let got = entries(&batch);
        let data: Vec<Vec<u8>> = got.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(data, entries_in);
        got.iter().map(|(id, _)| stamp_state(ring, *id)).collect()
    };
    let (dir, ring) = ring(16 << 10, OnFull::Reject);
    assert_eq!(
        std::fs::read(ring.path()).unwrap()[44..48],
        [3, 0, 0, 0],
        "new files have FLAG_BATCH_RUNS and FLAG_STAMP_KEY"
    );
    assert_eq!(states(&ring), [2, 7, 7, 7, 7]);

    // Older versions wrote no stamp key: made without one, the file differs from
    // theirs only in FLAG_BATCH_RUNS.
    let path = dir.path().join("older.ring");
    drop(
        Options::new()
            .size(16 << 10)
            .on_full(OnFull::Reject)
            .stamp_key(false)
            .create(&path)
            .unwrap(),
    );
    // flags (file offset 44) to 0, and the header checksum (offset 60: CRC32C of
    // bytes 0..60) with it.
    let mut header = std::fs::read(&path).unwrap();
    assert_eq!(
        header[44..48],
        [1, 0, 0, 0],
        "new files without a stamp key have FLAG_BATCH_RUNS"
    );
    header[44..48].copy_from_slice(&[0; 4]);
    let crc = crc32c::crc32c(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &header).unwrap();
    let older = Ring::open(&path).unwrap();
    assert_eq!(states(&older), [2, 2, 2, 2, 2]);
    let stats = older.stats();
    assert_eq!((stats.pushed, stats.popped, stats.len), (5, 5, 0));

    // The same file, made for processes of older versions to share.
    let shared = Options::new()
        .size(16 << 10)
        .on_full(OnFull::Reject)
        .batch_runs(false)
        .stamp_key(false)
        .create(dir.path().join("shared.ring"))
        .unwrap();
    assert_eq!(std::fs::read(shared.path()).unwrap()[44..48], [0; 4]);
    assert_eq!(states(&shared), [2, 2, 2, 2, 2]);

    // Without batch runs but keyed: records of their own, under the key.
    let keyed = Options::new()
        .size(16 << 10)
        .on_full(OnFull::Reject)
        .batch_runs(false)
        .create(dir.path().join("keyed.ring"))
        .unwrap();
    let bytes = std::fs::read(keyed.path()).unwrap();
    assert_eq!(bytes[44..48], [2, 0, 0, 0]);
    assert_ne!(
        mmring::layout::stamp_key(&bytes).expect("the first 76 bytes of a ring file"),
        0
    );
    assert_eq!(states(&keyed), [2, 2, 2, 2, 2]);
}

#[test]
fn batch_with_an_entry_too_large_pushes_nothing() {
    let (_dir, ring) = ring(8192, OnFull::Reject);
    let big = vec![0u8; ring.max_entry_size() + 1];
    let r = ring.push_batch(&[&b"ok"[..], &big]);
    assert!(
        matches!(r, Err(Error::TooLarge { len, .. }) if len == big.len()),
        "{r:?}"
    );
    assert_eq!(ring.len(), 0);
    assert_eq!(ring.stats().pushed, 0);
    assert_eq!(ring.push_batch::<&[u8]>(&[]).unwrap(), 0);
}

#[test]
fn rejecting_ring_takes_what_fits_and_then_says_full() {
    let (_dir, ring) = ring(8192, OnFull::Reject);
    let entry = [7u8; 1000]; // 1056-byte records: 3 fit in 4096 bytes
    let all = vec![&entry[..]; 5];
    assert_eq!(ring.push_batch(&all).unwrap(), 3);
    assert!(matches!(ring.push_batch(&all[3..]), Err(Error::Full)));
    assert_eq!(ring.len(), 3);
    let mut batch = Batch::new();
    assert_eq!(ring.pop_batch(&mut batch, 1).unwrap(), 1);
    assert_eq!(ring.push_batch(&all[3..]).unwrap(), 1);
}

#[test]
fn overwriting_ring_pushes_a_batch_larger_than_the_ring() {
    let (_dir, ring) = ring(8192, OnFull::Overwrite);
    let entries_in: Vec<Vec<u8>> = (0..20).map(|i| payload(3, i)).collect();
    assert_eq!(ring.push_batch(&entries_in).unwrap(), 20);
    let stats = ring.stats();
    assert_eq!(stats.pushed, 20);
    assert!(stats.evicted > 0);
    let mut batch = Batch::new();
    let mut seqs = Vec::new();
    while ring.pop_batch(&mut batch, 100).unwrap() > 0 {
        seqs.extend(entries(&batch).iter().map(|(_, d)| decode(d).unwrap().1));
    }
    assert_eq!(
        seqs.len() as u64 + stats.evicted,
        20,
        "kept or evicted, each once"
    );
    // What is left is the newest entries, in order.
    assert_eq!(seqs, (stats.evicted..20).collect::<Vec<_>>());
}

#[test]
fn damaged_entry_ends_a_batch_and_is_reported_by_the_next_call() {
    let (dir, ring) = ring(1 << 20, OnFull::Reject);
    let entries_in: Vec<Vec<u8>> = (0..6).map(|i| payload(1, i)).collect();
    ring.push_batch(&entries_in).unwrap();
    // Flip a payload byte of the third entry (its payload checksum no longer matches).
    let ids: Vec<u64> = ring.peek().map(|e| e.unwrap().id()).collect();
    let damaged_at = payload_offset(&ring, ids[2]) + 20;
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("batch.ring"))
            .unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, damaged_at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x40], damaged_at).unwrap();
    }
    let mut batch = Batch::new();
    assert_eq!(
        ring.pop_batch(&mut batch, 10).unwrap(),
        2,
        "stops before the damage"
    );
    let r = ring.pop_batch(&mut batch, 10);
    match r {
        Err(Error::Corrupt { offset, .. }) => {
            assert_eq!(
                offset,
                payload_offset(&ring, ids[2]),
                "reported at its payload"
            );
        }
        other => panic!("expected the damaged entry reported, got {other:?}"),
    }
    assert_eq!(ring.pop_batch(&mut batch, 10).unwrap(), 3);
    let seqs: Vec<u64> = entries(&batch)
        .iter()
        .map(|(_, d)| decode(d).unwrap().1)
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    let stats = ring.stats();
    assert_eq!((stats.popped, stats.corrupt, stats.len), (5, 1, 0));
}

#[test]
fn expired_entries_are_dropped_from_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(1 << 20)
        .on_full(OnFull::Reject)
        .create(dir.path().join("ttl.ring"))
        .unwrap();
    ring.push(b"keep-1").unwrap();
    ring.push_with_ttl(b"expires", Duration::from_secs(1))
        .unwrap();
    ring.push(b"keep-2").unwrap();
    ring.push_with_ttl(b"expires too", Duration::from_secs(1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let mut batch = Batch::new();
    assert_eq!(ring.pop_batch(&mut batch, 10).unwrap(), 2);
    let data: Vec<Vec<u8>> = entries(&batch).into_iter().map(|(_, d)| d).collect();
    assert_eq!(data, [b"keep-1".to_vec(), b"keep-2".to_vec()]);
    let stats = ring.stats();
    assert_eq!((stats.popped, stats.expired, stats.len), (2, 2, 0));
}

#[test]
fn with_a_subscriber_batches_still_count_each_missed_entry() {
    let (_dir, ring) = ring(1 << 20, OnFull::Reject);
    let mut sub = ring.subscribe("audit").unwrap();
    let entries_in: Vec<Vec<u8>> = (0..10).map(|i| payload(2, i)).collect();
    ring.push_batch(&entries_in).unwrap();
    let mut batch = Batch::new();
    assert_eq!(ring.pop_batch(&mut batch, 4).unwrap(), 4);
    // The subscriber missed exactly the four entries popped under it, then reads on.
    match sub.next() {
        Err(Error::Lapped { missed }) => assert_eq!(missed, 4),
        other => panic!("expected Lapped {{ missed: 4 }}, got {other:?}"),
    }
    let next = sub.next().unwrap().expect("the fifth entry");
    assert_eq!(decode(next.data()), Ok((2, 4)));
}

#[test]
fn blocking_ring_waits_for_room_until_the_whole_batch_is_in() {
    let (_dir, ring) = ring(8192, OnFull::Block);
    let entries_in: Vec<Vec<u8>> = (0..40).map(|i| payload(4, i)).collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut batch = Batch::new();
            let mut seqs = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while seqs.len() < 40 {
                assert!(Instant::now() < deadline, "got only {} entries", seqs.len());
                ring.pop_batch_timeout(&mut batch, 3, Duration::from_millis(50))
                    .unwrap();
                seqs.extend(entries(&batch).iter().map(|(_, d)| decode(d).unwrap().1));
            }
            seqs
        });
        assert_eq!(ring.push_batch(&entries_in).unwrap(), 40);
        done.store(true, Ordering::Relaxed);
        assert_eq!(consumer.join().unwrap(), (0..40).collect::<Vec<u64>>());
    });
    assert!(done.load(Ordering::Relaxed));
}

#[test]
fn pop_batch_timeout_returns_zero_when_nothing_comes() {
    let (_dir, ring) = ring(8192, OnFull::Reject);
    let mut batch = Batch::new();
    let started = Instant::now();
    assert_eq!(
        ring.pop_batch_timeout(&mut batch, 8, Duration::from_millis(30))
            .unwrap(),
        0
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn pop_batch_timeout_of_no_entries_returns_at_once() {
    let (_dir, ring) = ring(8192, OnFull::Reject);
    ring.push(b"ready").unwrap();
    let mut batch = Batch::new();
    let started = Instant::now();
    assert_eq!(
        ring.pop_batch_timeout(&mut batch, 0, Duration::from_secs(5))
            .unwrap(),
        0
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(ring.len(), 1, "nothing taken");
}

#[test]
fn two_producers_two_consumers_in_batches_deliver_each_entry_once_in_order() {
    const PER_PRODUCER: u64 = 20_000;
    let (_dir, ring) = ring(64 << 10, OnFull::Reject);
    let finished = AtomicBool::new(false);
    let received = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                let (ring, finished) = (&ring, &finished);
                s.spawn(move || {
                    let mut batch = Batch::with_capacity(16, 4096);
                    let mut got = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let done = finished.load(Ordering::Acquire);
                        let n = ring.pop_batch(&mut batch, 1 + c * 15).unwrap();
                        for (info, data) in &batch {
                            got.push((info.id(), decode(data).unwrap()));
                        }
                        if n == 0 {
                            if done {
                                break;
                            }
                            assert!(Instant::now() < deadline, "consumers stalled");
                            std::thread::yield_now();
                        }
                    }
                    got
                })
            })
            .collect();
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let ring = &ring;
                s.spawn(move || {
                    let mut seq = 0;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while seq < PER_PRODUCER {
                        let n = (seq % 13 + 1).min(PER_PRODUCER - seq);
                        let entries_in: Vec<Vec<u8>> =
                            (seq..seq + n).map(|i| payload(p, i)).collect();
                        match ring.push_batch(&entries_in) {
                            Ok(pushed) => seq += pushed as u64,
                            Err(Error::Full) => {
                                assert!(Instant::now() < deadline, "producers stalled");
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        finished.store(true, Ordering::Release);
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for got in &received {
        // Within one consumer, each producer's entries come in push order.
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (id, (producer, seq)) in got {
            assert!(ids.insert(*id), "entry {id} delivered twice");
            if let Some(prev) = last.insert(*producer, *seq) {
                assert!(*seq > prev, "producer {producer}: {seq} after {prev}");
            }
            *next.entry(*producer).or_default() += 1;
        }
    }
    assert_eq!(next.get(&0), Some(&PER_PRODUCER));
    assert_eq!(next.get(&1), Some(&PER_PRODUCER));
    assert!(
        received.iter().all(|got| !got.is_empty()),
        "both consumers took entries"
    );
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.popped, stats.len),
        (2 * PER_PRODUCER, 2 * PER_PRODUCER, 0)
    );
}
