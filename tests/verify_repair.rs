//! `mmring::verify` and `mmring::repair` on damaged ring files: bytes are patched at
//! the offsets docs/FORMAT.md specifies and the exact findings asserted.
//!
//! Proves that verify reports each problem at the file offset and field at fault
//! (payload, record header, stamp, positions, static header) and never writes the
//! file; that repair drops exactly the damaged ranges it reports, resets impossible
//! positions, after which every intact entry is still delivered in order, peek shows
//! them too, the ring verifies clean and accepts pushes; that a write position damaged
//! to a plausible value behind intact records is found and restored from them, and a
//! lost one is rebuilt from the newest intact record, not from a stamp with a flipped
//! high bit nor past the position limit; that claimed records are notes, not damage;
//! that over hundreds of random byte overwrites verify and repair end, never panic,
//! and a drained repaired ring only returns pushed entries; and that under bit flips
//! aimed at stamps and positions a ring verify finds clean gives pop and peek nothing
//! corrupt, and a repaired one verifies clean and delivers exactly the intact entries
//! repair counted.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mmring::inspect::{Action, SpanKind};
use mmring::{Error, OnFull, Options, Ring};

// File offsets from docs/FORMAT.md.
const HEADER_LEN: u64 = 4096;
const FILE_LEN_OFFSET: u64 = 16;
const HEADER_CRC_OFFSET: u64 = 60;
const WRITE_POS_OFFSET: u64 = 128;
const READ_POS_OFFSET: u64 = 256;
const REC_CLAIM_OFFSET: u64 = 8;
const REC_META_CRC_OFFSET: u64 = 16;
const REC_TTL_OFFSET: u64 = 32;
const REC_HEADER_LEN: u64 = 56;
const STATE_CLAIMED: u64 = 1;

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ring");
    (dir, path)
}

/// A reject-mode ring of `size` bytes holding `entries`; returns their IDs.
fn ring_with(path: &Path, size: u64, entries: &[&[u8]]) -> Vec<u64> {
    let ring = Options::new()
        .size(size)
        .on_full(OnFull::Reject)
        .abandon_timeout(Duration::from_millis(5))
        .create(path)
        .unwrap();
    entries
        .iter()
        .map(|data| ring.push(data).unwrap())
        .collect()
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn read_u64(path: &Path, offset: u64) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, offset).unwrap();
    u64::from_le_bytes(word)
}

/// The key the stamps of the ring file at `path` are XORed with (docs/FORMAT.md, "File
/// header: stamp key"); every file these tests create has one.
fn stamp_key(path: &Path) -> u64 {
    let key = mmring::layout::stamp_key(&std::fs::read(path).unwrap())
        .expect("the first 76 bytes of a ring file");
    assert_ne!(key, 0, "new files have a stamp key");
    key
}

/// Writes the stamp `stamp` (a position plus a state, not yet keyed) at file offset
/// `offset`, XORed with the file's key as every stamp is.
fn patch_stamp(path: &Path, offset: u64, stamp: u64) {
    patch(path, offset, &(stamp ^ stamp_key(path)).to_le_bytes());
}

/// File offset of the record with ID (position) `id` in a ring of `size` bytes.
fn record_offset(size: u64, id: u64) -> u64 {
    HEADER_LEN + id % (size - HEADER_LEN)
}

/// Every entry a fresh handle pops, until the ring has read empty for 20 ms (longer
/// than the abandon timeouts used here); fails if a pop reports corruption.
fn drain(path: &Path) -> Vec<Vec<u8>> {
    let (entries, corrupt) = drain_counting_corrupt(path);
    assert_eq!(corrupt, 0, "pops after repair reported corrupt records");
    entries
}

fn peek_all(path: &Path) -> Vec<Vec<u8>> {
    let ring = Ring::open(path).unwrap();
    ring.peek()
        .map(|entry| entry.unwrap().into_data())
        .collect()
}

#[test]
fn clean_ring_verifies_clean_with_every_entry_counted() {
    let (_dir, path) = scratch();
    // 160-byte records in a 4096-byte region: 25 fill 4000 bytes, the 26th is
    // preceded by 96 bytes of padding, so the live range spans the wrap.
    let ring = Options::new().size(8192).create(&path).unwrap();
    for n in 0..28u8 {
        ring.push(&[n; 104]).unwrap();
        if n < 5 {
            ring.pop().unwrap().unwrap();
        }
    }
    let mut kinds = Vec::new();
    let report = mmring::inspect::walk(&path, |span| kinds.push(span.kind)).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(report.entries, ring.len() as u64);
    assert_eq!(report.entry_bytes, 104 * ring.len() as u64);
    assert!(kinds.contains(&SpanKind::Padding), "{kinds:?}");
    let stats = ring.stats();
    assert_eq!(
        (report.read_pos, report.write_pos),
        (stats.read_pos, stats.write_pos)
    );
}

#[test]
fn damaged_payload_is_reported_at_its_offset_and_repair_drops_only_that_entry() {
    let (_dir, path) = scratch();
    let size = 65536;
    let ids = ring_with(&path, size, &[b"first", b"second", b"third"]);
    let data_offset = record_offset(size, ids[1]) + REC_HEADER_LEN;
    patch(&path, data_offset, b"S");
    let before = std::fs::read(&path).unwrap();

    let report = mmring::verify(&path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "verify wrote the file"
    );
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(
        (problem.offset, problem.field, problem.position),
        (data_offset, "data", Some(ids[1]))
    );
    assert_eq!(
        problem.action,
        Action::Drop {
            start: ids[1],
            end: ids[2]
        }
    );
    assert_eq!(report.entries, 2);
    assert!(!report.repaired);

    let repaired = mmring::repair(&path).unwrap();
    assert!(repaired.repaired);
    assert_eq!(
        repaired.problems, report.problems,
        "repair did what verify said"
    );
    assert!(mmring::verify(&path).unwrap().is_clean());
    assert_eq!(peek_all(&path), vec![b"first".to_vec(), b"third".to_vec()]);
    assert_eq!(drain(&path), vec![b"first".to_vec(), b"third".to_vec()]);
    let ring = Ring::open(&path).unwrap();
    assert_eq!(ring.stats().corrupt, 1);
    let id = ring.push(b"after").unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().id(), id);
}

/// A damaged payload inside a batch run, in any of its records: verify reports it,
/// and repair splits the run into records of their own and drops exactly that record,
/// so the ring checks clean afterwards and pop delivers every other entry of the run
/// without a report. (Repair used to leave such a record in place where a later record
/// of the run followed it, and to mark it where none did, which made the run's first
/// record fail validation: it was lost. Found by fuzzing.)
#[test]
fn damaged_payload_inside_a_batch_run_is_dropped_alone() {
    let run: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
    for bad in 0..run.len() {
        let (_dir, path) = scratch();
        let size = 65536;
        let ring = Options::new()
            .size(size)
            .on_full(OnFull::Reject)
            .create(&path)
            .unwrap();
        assert_eq!(ring.push_batch(&run).unwrap(), 4);
        drop(ring);
        // The records are 64 bytes each, from position 0.
        let at = 64 * bad as u64;
        let data_offset = record_offset(size, at) + REC_HEADER_LEN;
        patch(&path, data_offset, b"T");

        let report = mmring::verify(&path).unwrap();
        assert_eq!(report.problems.len(), 1, "{bad}: {:?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(
            (problem.offset, problem.field),
            (data_offset, "data"),
            "{bad}"
        );
        let dropped = Action::Drop {
            start: at,
            end: at + 64,
        };
        assert_eq!(problem.action, dropped, "{bad}: {}", problem.message);
        assert_eq!(report.entries, 3, "{bad}");
        let repaired = mmring::repair(&path).unwrap();
        assert_eq!(repaired.problems, report.problems, "{bad}");
        let after = mmring::verify(&path).unwrap();
        assert!(after.is_clean(), "{bad}: {:?}", after.problems);
        assert_eq!(after.entries, 3, "{bad}");

        let (entries, corrupt) = drain_counting_corrupt(&path);
        assert_eq!(corrupt, 0, "{bad}: the repair dropped it");
        let mut want: Vec<Vec<u8>> = run.iter().map(|e| e.to_vec()).collect();
        want.remove(bad);
        assert_eq!(entries, want, "{bad}");
    }
}

/// Payloads long enough for the vector copy (`src/wide.rs`, from 3 KiB where the CPU
/// has AVX2 and VPCLMULQDQ) come back intact through pop, peek and verify, at lengths
/// around its steps and chunks; one changed byte, in any of the parts the copy cuts a
/// payload into (the start, the middle, the end, the word-wise rest), is reported at
/// the payload's offset by pop, peek and verify, and the entry after it still comes.
#[test]
fn long_payloads_round_trip_and_any_changed_byte_is_reported() {
    let size = 1 << 20;
    for len in [3071, 3072, 4096, 10_007, 30_000, 65_536, 65_543, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len / 5) as u8).collect();
        let (_dir, path) = scratch();
        ring_with(&path, size, &[&data, b"next"]);
        assert_eq!(
            peek_all(&path),
            vec![data.clone(), b"next".to_vec()],
            "{len}"
        );
        assert!(mmring::verify(&path).unwrap().is_clean(), "{len}");
        assert_eq!(drain(&path), vec![data.clone(), b"next".to_vec()], "{len}");

        for at in [0, 1, len / 3, len / 2, len * 3 / 4, len - 9, len - 1] {
            let (_dir, path) = scratch();
            let ids = ring_with(&path, size, &[&data, b"next"]);
            let data_offset = record_offset(size, ids[0]) + REC_HEADER_LEN;
            patch(&path, data_offset + at as u64, &[data[at] ^ 0x20]);
            let report = mmring::verify(&path).unwrap();
            assert_eq!(report.problems.len(), 1, "{len} at {at}");
            assert_eq!(report.problems[0].offset, data_offset, "{len} at {at}");
            let ring = Ring::open(&path).unwrap();
            let peeked: Vec<_> = ring.peek().collect();
            assert!(
                matches!(peeked[0], Err(Error::Corrupt { offset, .. }) if offset == data_offset),
                "{len} at {at}: {:?}",
                peeked[0].as_ref().map(|e| e.id())
            );
            match ring.pop() {
                Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, data_offset),
                other => panic!("{len} at {at}: {:?}", other.map(|e| e.map(|e| e.id()))),
            }
            assert_eq!(ring.pop().unwrap().unwrap().into_data(), b"next");
        }
    }
}

#[test]
fn damaged_record_header_is_reported_at_meta_crc_and_resynchronized() {
    let (_dir, path) = scratch();
    let size = 65536;
    let ids = ring_with(&path, size, &[b"a", b"b", b"c", b"d"]);
    let rec = record_offset(size, ids[2]);
    patch(&path, rec + REC_TTL_OFFSET, &[0x7f]);
    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(
        (problem.offset, problem.field),
        (rec + REC_META_CRC_OFFSET, "meta_crc")
    );
    // The length can't be trusted: the walk resynchronizes at the next stamp.
    assert_eq!(
        problem.action,
        Action::Drop {
            start: ids[2],
            end: ids[3]
        }
    );
    mmring::repair(&path).unwrap();
    assert_eq!(
        drain(&path),
        vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]
    );
}

#[test]
fn damaged_stamps_are_reported_at_the_record_start() {
    let (_dir, path) = scratch();
    let size = 65536;
    let ids = ring_with(&path, size, &[b"one", b"two", b"three", b"four"]);
    // COMMITTED (2) -> PADDING (3): a padding stamp where no padding can be.
    let rec = record_offset(size, ids[0]);
    patch_stamp(&path, rec, ids[0] | 3);
    // COMMITTED (2) -> 6: no state at all.
    let rec2 = record_offset(size, ids[2]);
    patch_stamp(&path, rec2, ids[2] | 6);
    let report = mmring::verify(&path).unwrap();
    let found: Vec<(u64, &str, Action)> = report
        .problems
        .iter()
        .map(|p| (p.offset, p.field, p.action))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                rec,
                "stamp",
                Action::Drop {
                    start: ids[0],
                    end: ids[1]
                }
            ),
            (
                rec2,
                "stamp",
                Action::Drop {
                    start: ids[2],
                    end: ids[3]
                }
            ),
        ]
    );
    mmring::repair(&path).unwrap();
    assert_eq!(drain(&path), vec![b"two".to_vec(), b"four".to_vec()]);
}

#[test]
fn impossible_write_position_is_reset_past_the_newest_record() {
    let (_dir, path) = scratch();
    let ids = ring_with(&path, 65536, &[b"x", b"yy"]);
    let true_write = read_u64(&path, WRITE_POS_OFFSET);
    patch(&path, WRITE_POS_OFFSET, &(true_write + 3).to_le_bytes());
    assert!(matches!(
        Ring::open(&path),
        Err(Error::Corrupt { offset, .. }) if offset == WRITE_POS_OFFSET
    ));
    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].field),
        (WRITE_POS_OFFSET, "write_pos")
    );
    assert_eq!(
        report.problems[0].action,
        Action::Reset {
            from: true_write + 3,
            to: true_write
        }
    );
    assert_eq!(report.entries, 2);
    mmring::repair(&path).unwrap();
    assert_eq!(read_u64(&path, WRITE_POS_OFFSET), true_write);
    let ring = Ring::open(&path).unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().id(), ids[0]);
    assert!(ring.push(b"z").is_ok());
}

#[test]
fn read_position_ahead_of_write_position_is_reset_to_empty() {
    let (_dir, path) = scratch();
    ring_with(&path, 65536, &[b"x", b"yy"]);
    let write = read_u64(&path, WRITE_POS_OFFSET);
    patch(&path, READ_POS_OFFSET, &(write + 800).to_le_bytes());
    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].field),
        (READ_POS_OFFSET, "read_pos")
    );
    assert_eq!(
        report.problems[0].action,
        Action::Reset {
            from: write + 800,
            to: write
        }
    );
    // One line of prose: no run of blanks left by a broken string continuation.
    assert!(
        !report.problems[0].message.contains("  "),
        "{:?}",
        report.problems[0].message
    );
    mmring::repair(&path).unwrap();
    let ring = Ring::open(&path).unwrap();
    assert!(ring.pop().unwrap().is_none(), "no entry delivered twice");
    let id = ring.push(b"new").unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().id(), id);
}

#[test]
fn damaged_static_header_is_one_problem_and_is_not_repaired() {
    let (_dir, path) = scratch();
    ring_with(&path, 65536, &[b"x"]);
    patch(&path, 33, &[0xff]); // default_ttl_secs, covered by header_crc
    let report = mmring::verify(&path).unwrap();
    assert!(!report.records_checked);
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].field),
        (HEADER_CRC_OFFSET, "header_crc")
    );
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        mmring::repair(&path),
        Err(Error::Corrupt { offset, .. }) if offset == HEADER_CRC_OFFSET
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn truncated_file_is_reported_at_file_len() {
    let (_dir, path) = scratch();
    ring_with(&path, 65536, &[b"x"]);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(65536 - 4096).unwrap();
    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].field),
        (FILE_LEN_OFFSET, "file_len")
    );
    assert_eq!(report.file_len, 65536 - 4096);
}

#[test]
fn files_that_are_not_rings_are_errors_not_reports() {
    let (dir, path) = scratch();
    assert!(matches!(mmring::verify(&path), Err(Error::Io { .. })));
    std::fs::write(&path, vec![7u8; 10_000]).unwrap();
    assert!(matches!(mmring::verify(&path), Err(Error::NotARing { .. })));
    assert!(matches!(mmring::repair(&path), Err(Error::NotARing { .. })));
    assert!(matches!(
        mmring::verify(dir.path()),
        Err(Error::NotARing { .. })
    ));
}

#[test]
fn claimed_record_is_a_note_not_a_problem() {
    let (_dir, path) = scratch();
    let size = 65536;
    let ids = ring_with(&path, size, &[b"done", b"in flight"]);
    let rec = record_offset(size, ids[1]);
    patch_stamp(&path, rec, ids[1] | STATE_CLAIMED);
    let report = mmring::verify(&path).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.notes.len(), 1);
    assert_eq!(
        (report.notes[0].offset, report.notes[0].position),
        (rec, Some(ids[1]))
    );
    assert_eq!(report.entries, 1);
    // A claimed record whose claim word is impossible is damage, at the claim word.
    patch(&path, rec + REC_CLAIM_OFFSET, &u32::MAX.to_le_bytes());
    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].field),
        (rec + REC_CLAIM_OFFSET, "claim")
    );
}

/// A tiny deterministic generator (64-bit LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
}

#[test]
fn random_damage_never_panics_or_hangs_and_repair_returns_only_pushed_entries() {
    // On another thread, so that a hang fails the test instead of stalling it.
    let (done, finished) = std::sync::mpsc::channel();
    let rounds = std::thread::spawn(move || {
        random_damage_rounds();
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => rounds.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = rounds.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(_) => panic!("verify, repair or draining did not finish within 60 s"),
    }
}

fn random_damage_rounds() {
    let (_dir, path) = scratch();
    let size = 16384;
    let region = size - HEADER_LEN;
    let mut rng = Lcg(0x5eed);
    for round in 0..200 {
        let _ = std::fs::remove_file(&path);
        let ring = Options::new()
            .size(size)
            .abandon_timeout(Duration::from_millis(1))
            .create(&path)
            .unwrap();
        let mut pushed = std::collections::HashSet::new();
        let mut popped = std::collections::HashSet::new();
        for n in 0..(rng.next() % 120) {
            let data = format!("round {round} entry {n} {}", "p".repeat((n % 90) as usize));
            if rng.next().is_multiple_of(4) {
                // A batch run, popped into below one entry at a time, so that
                // `read_pos` is often inside a run.
                let batch: Vec<Vec<u8>> = (0..2 + rng.next() % 4)
                    .map(|i| format!("{data} batch {i}").into_bytes())
                    .collect();
                assert_eq!(ring.push_batch(&batch).unwrap(), batch.len());
                pushed.extend(batch);
            } else {
                ring.push(data.as_bytes()).unwrap();
                pushed.insert(data.into_bytes());
            }
            if rng.next().is_multiple_of(3)
                && let Some(entry) = ring.pop().unwrap()
            {
                popped.insert(entry.into_data());
            }
        }
        drop(ring);
        for _ in 0..1 + rng.next() % 4 {
            if rng.next().is_multiple_of(4) {
                // A position made impossible (unaligned, or at or above 2^62). A
                // position damaged into another plausible value can't be detected.
                let field = [WRITE_POS_OFFSET, READ_POS_OFFSET][(rng.next() % 2) as usize];
                let (at, byte) = if rng.next().is_multiple_of(2) {
                    (field, rng.next() as u8 | 1)
                } else {
                    (field + 7, 0x40 | rng.next() as u8)
                };
                patch(&path, at, &[byte]);
            } else {
                // Anywhere in the region, a byte or a whole word.
                let offset = HEADER_LEN + rng.next() % region;
                let len = if rng.next().is_multiple_of(2) { 1 } else { 8 };
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let end = (offset + len).min(size);
                patch(&path, offset, &bytes[..(end - offset) as usize]);
            }
        }
        let verified = mmring::verify(&path).unwrap();
        let repaired = mmring::repair(&path).unwrap();
        assert_eq!(verified.problems, repaired.problems, "round {round}");
        assert!(
            mmring::verify(&path).unwrap().is_clean(),
            "round {round}: not clean after repair"
        );
        let drained = drain(&path);
        let unique: std::collections::HashSet<_> = drained.iter().collect();
        assert_eq!(unique.len(), drained.len(), "round {round}: an entry twice");
        // Every entry the check found intact is delivered: repair lost none.
        assert_eq!(
            drained.len() as u64,
            verified.entries,
            "round {round}: {verified:?}"
        );
        for entry in drained {
            assert!(
                pushed.contains(&entry) && !popped.contains(&entry),
                "round {round}: an entry that was never pushed, or popped before: {:?} {} {:?}",
                String::from_utf8_lossy(&entry),
                popped.contains(&entry),
                verified
            );
        }
        Ring::open(&path).unwrap().push(b"still usable").unwrap();
    }
}

/// Regression: a write position damaged to a value that is aligned and within a region
/// of the read position, but behind intact records, passed the position checks. verify
/// then called the last record damaged ("extends past the write position"), or did
/// not see it at all, and repair dropped it, or left it for a push to overwrite. The
/// records prove the write position wrong: a producer reserves before it writes.
#[test]
fn write_position_behind_intact_records_is_restored_from_them() {
    // 160: inside the third record; 128: at its start, so that it lies wholly past.
    for lowered in [160u64, 128] {
        let (_dir, path) = scratch();
        let ids = ring_with(&path, 65536, &[b"first", b"secnd", b"third"]);
        assert_eq!(ids, [0, 64, 128]);
        assert_eq!(read_u64(&path, WRITE_POS_OFFSET), 192);
        patch(&path, WRITE_POS_OFFSET, &lowered.to_le_bytes());
        let report = mmring::verify(&path).unwrap();
        assert_eq!(report.problems.len(), 1, "{lowered}: {:?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(
            (problem.offset, problem.field),
            (WRITE_POS_OFFSET, "write_pos")
        );
        assert_eq!(
            problem.action,
            Action::Reset {
                from: lowered,
                to: 192
            }
        );
        assert_eq!(report.entries, 3);

        mmring::repair(&path).unwrap();
        assert_eq!(read_u64(&path, WRITE_POS_OFFSET), 192);
        assert!(mmring::verify(&path).unwrap().is_clean());
        assert_eq!(
            drain(&path),
            [b"first".to_vec(), b"secnd".to_vec(), b"third".to_vec()]
        );
        let ring = Ring::open(&path).unwrap();
        assert_eq!(ring.push(b"after").unwrap(), 192);
        assert_eq!(ring.pop().unwrap().unwrap().data(), b"after");
    }
}

/// Regression: with the write position lost, it was rebuilt from the newest word that
/// looked like a stamp for its own offset. In a region whose length is a power of two,
/// one flipped high bit of any stamp (here of a record already popped) makes such a
/// word, 2^40 bytes ahead: the write position was set there, the read position was
/// out of reach of it, and repair emptied the ring, dropping every intact entry. A
/// stamp far past the newest intact record is no evidence of where writing stopped.
#[test]
fn lost_write_position_is_rebuilt_past_a_stamp_with_a_flipped_high_bit() {
    let (_dir, path) = scratch();
    let size = HEADER_LEN + (1 << 16);
    let ids = ring_with(&path, size, &[b"popped", b"kept", b"also kept"]);
    assert_eq!(
        Ring::open(&path).unwrap().pop().unwrap().unwrap().id(),
        ids[0]
    );
    let popped_stamp = record_offset(size, ids[0]);
    let stamp = read_u64(&path, popped_stamp);
    patch(&path, popped_stamp, &(stamp ^ 1 << 40).to_le_bytes());
    let true_write = read_u64(&path, WRITE_POS_OFFSET);
    patch(&path, WRITE_POS_OFFSET, &(true_write + 3).to_le_bytes());

    let report = mmring::repair(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        report.problems[0].action,
        Action::Reset {
            from: true_write + 3,
            to: true_write
        }
    );
    assert_eq!(read_u64(&path, WRITE_POS_OFFSET), true_write);
    assert_eq!(drain(&path), [b"kept".to_vec(), b"also kept".to_vec()]);
}

/// Regression: a padding stamp forged for the last lap below 2^62 made the rebuilt
/// write position 2^62 itself; repair stored it, and the "repaired" ring then failed
/// every open as corrupt.
#[test]
fn rebuilt_write_position_stays_below_the_position_limit() {
    let (_dir, path) = scratch();
    let size = 8192;
    ring_with(&path, size, &[]);
    let region_len = size - HEADER_LEN;
    let offset = 2048;
    let forged = (1u64 << 62) - region_len + offset;
    patch_stamp(&path, HEADER_LEN + offset, forged | 3);
    patch(&path, WRITE_POS_OFFSET, &3u64.to_le_bytes());
    mmring::repair(&path).unwrap();
    let ring = Ring::open(&path).unwrap();
    let id = ring.push(b"usable").unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().id(), id);
    assert!(mmring::verify(&path).unwrap().is_clean());
}

/// With both positions damaged (the read position out of reach, the write position
/// lowered into the last record), the write position is still raised to the end of
/// the intact records before the read position is reset to it: one repair leaves a
/// ring that verifies clean, and pushes do not land on the records.
#[test]
fn repair_of_both_positions_leaves_a_ring_that_verifies_clean() {
    let (_dir, path) = scratch();
    let ids = ring_with(&path, 65536, &[b"first", b"secnd", b"third"]);
    assert_eq!(ids, [0, 64, 128]);
    patch(&path, WRITE_POS_OFFSET, &160u64.to_le_bytes());
    patch(&path, READ_POS_OFFSET, &(1u64 << 20).to_le_bytes());
    let report = mmring::repair(&path).unwrap();
    let actions: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.field, p.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("write_pos", Action::Reset { from: 160, to: 192 }),
            (
                "read_pos",
                Action::Reset {
                    from: 1 << 20,
                    to: 192
                }
            )
        ]
    );
    let again = mmring::verify(&path).unwrap();
    assert!(again.is_clean(), "{:?}", again.problems);
    let ring = Ring::open(&path).unwrap();
    assert!(ring.pop().unwrap().is_none(), "no entry delivered twice");
    assert_eq!(ring.push(b"after").unwrap(), 192);
}

/// Every entry a fresh handle pops until the ring has read empty for 20 ms, and how
/// many records it reported as corrupt on the way.
fn drain_counting_corrupt(path: &Path) -> (Vec<Vec<u8>>, usize) {
    let ring = Ring::open(path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut out, mut corrupt, mut empty_since) = (Vec::new(), 0, None);
    while Instant::now() < deadline {
        match ring.pop() {
            Ok(Some(entry)) => {
                out.push(entry.into_data());
                empty_since = None;
            }
            Ok(None) => {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(20) {
                    return (out, corrupt);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(Error::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("pop: {e}"),
        }
    }
    panic!("the ring did not drain within 5 s");
}

/// Damage aimed at what the checker reasons about: single bit flips in stamps of the
/// live range, in any region word, and in the positions (plausible values included),
/// in rings of both policies whose region is a power of two or not. Where verify finds
/// a ring clean, peek and pop report nothing corrupt; repair leaves a ring that
/// verifies clean, and pops then deliver exactly the intact entries repair counted,
/// each once, all of them pushed.
#[test]
fn verify_agrees_with_pop_and_peek_and_repair_delivers_what_it_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ring");
    let copy = dir.path().join("copy.ring");
    let mut rng = Lcg(0xd1ff);
    for round in 0..150 {
        let _ = std::fs::remove_file(&path);
        let size = HEADER_LEN + [8192, 8200][(rng.next() % 2) as usize];
        let region = size - HEADER_LEN;
        let policy = [OnFull::Overwrite, OnFull::Reject][(rng.next() % 2) as usize];
        let ring = Options::new()
            .size(size)
            .on_full(policy)
            .abandon_timeout(Duration::from_millis(1))
            .create(&path)
            .unwrap();
        let mut pushed = std::collections::HashSet::new();
        for n in 0..rng.next() % 300 {
            let data = format!("{round} {n} {}", "p".repeat((rng.next() % 200) as usize));
            if ring.push(data.as_bytes()).is_ok() {
                pushed.insert(data.into_bytes());
            }
            if rng.next().is_multiple_of(3) {
                ring.pop().unwrap();
            }
        }
        drop(ring);
        let (read, write) = (
            read_u64(&path, READ_POS_OFFSET),
            read_u64(&path, WRITE_POS_OFFSET),
        );
        let kind = rng.next() % 3;
        for _ in 0..1 + rng.next() % 2 {
            let (offset, bit) = match kind {
                0 if write > read => {
                    let pos = read + (rng.next() % (write - read)) / 8 * 8;
                    (HEADER_LEN + pos % region, rng.next() % 64)
                }
                1 => {
                    let field = [WRITE_POS_OFFSET, READ_POS_OFFSET][(rng.next() % 2) as usize];
                    (field, 3 + rng.next() % 20)
                }
                _ => (HEADER_LEN + (rng.next() % region) / 8 * 8, rng.next() % 64),
            };
            let word = read_u64(&path, offset) ^ 1 << bit;
            patch(&path, offset, &word.to_le_bytes());
        }
        let verified = mmring::verify(&path).unwrap();
        if verified.is_clean() {
            std::fs::copy(&path, &copy).unwrap();
            let ring = Ring::open(&copy).unwrap();
            let peeked: Vec<_> = ring.peek().filter(|entry| entry.is_err()).collect();
            assert!(
                peeked.is_empty(),
                "round {round}: clean, yet peek: {peeked:?}"
            );
            assert_eq!(
                drain_counting_corrupt(&copy).1,
                0,
                "round {round}: clean, yet pop"
            );
        }
        let repaired = mmring::repair(&path).unwrap();
        let again = mmring::verify(&path).unwrap();
        assert!(
            again.is_clean(),
            "round {round}: after repair {:?}",
            again.problems
        );
        let (drained, corrupt) = drain_counting_corrupt(&path);
        assert_eq!(corrupt, 0, "round {round}");
        let unique: std::collections::HashSet<_> = drained.iter().collect();
        assert_eq!(unique.len(), drained.len(), "round {round}: an entry twice");
        assert!(
            drained.iter().all(|entry| pushed.contains(entry)),
            "round {round}"
        );
        assert_eq!(
            drained.len() as u64,
            repaired.entries - repaired.expired,
            "round {round}: {:?}",
            repaired.problems
        );
    }
}
