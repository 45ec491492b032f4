//! Regressions found by the fuzz targets in fuzz/, one test per finding, each run on
//! the stable toolchain with a deadline so that a return of the bug fails instead of
//! hanging.
//!
//! `pop_hits_no_endless_loop_on_a_damaged_committed_stamp_at_the_write_position`
//! (found by `open_bytes`): an empty ring (`read_pos == write_pos`) whose word at the
//! write position held a COMMITTED stamp for that very position over metadata that
//! fails its checksum made `pop` spin forever. The damaged record was handed to the
//! skip, which (rightly) does nothing at the write position and reported "moved", so
//! `pop` looked again at the same stamp. Fixed in `RawRing::pop_into`: a record whose
//! metadata fails validation is first checked against the write position, as a valid
//! one already was, and a stamp at or past it reads as empty.
//!
//! `verify_reports_a_stamp_in_the_free_space_that_a_push_would_give_up` (found by
//! `open_bytes`): an empty ring whose free space held a PADDING stamp for the write
//! position passed `verify`, yet after one push `pop` reported it as damaged. A push
//! can't claim a word that already holds a stamp for its position (a reader may act on
//! such a stamp without a compare-and-swap), so it gives the space up and the forged
//! stamp enters the ring. Fixed in the check behind `verify` and `repair`: a stamp in
//! the free space for the position a reservation there will have is a problem, and
//! `repair` zeroes it.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use mmring::inspect::Action;
use mmring::{OnFull, Options, Ring};

/// Bytes in a ring file before the region (docs/FORMAT.md).
const HEADER_LEN: u64 = 4096;
/// The COMMITTED state in a record stamp.
const STATE_COMMITTED: u64 = 2;

/// The key the stamps of the ring file at `path` are XORed with (docs/FORMAT.md, "File
/// header: stamp key"); every file these tests create has one.
fn stamp_key(path: &Path) -> u64 {
    let key = mmring::layout::stamp_key(&std::fs::read(path).unwrap())
        .expect("the first 76 bytes of a ring file");
    assert_ne!(key, 0, "new files have a stamp key");
    key
}

/// Runs `f` on another thread; fails if it does not finish within 5 s.
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} did not return within 5 s (or panicked)"))
}

/// Writes a COMMITTED stamp for position `pos` at its place in the region, followed by
/// 48 bytes that are no valid record metadata.
fn forge_damaged_record(path: &Path, region_len: u64, pos: u64) {
    let stamp = (pos | STATE_COMMITTED) ^ stamp_key(path);
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let mut record = vec![0x5a; 56];
    record[..8].copy_from_slice(&stamp.to_le_bytes());
    file.write_all_at(&record, HEADER_LEN + pos % region_len)
        .unwrap();
}

#[test]
fn pop_hits_no_endless_loop_on_a_damaged_committed_stamp_at_the_write_position() {
    let dir = tempfile::tempdir().unwrap();
    for (name, entries) in [("fresh", 0u32), ("used", 5), ("lapped", 100)] {
        let path = dir.path().join(name);
        let ring = Options::new()
            .size(8192)
            .on_full(OnFull::Overwrite)
            .create(&path)
            .unwrap();
        for i in 0..entries {
            ring.push(&[i as u8; 40]).unwrap();
        }
        while ring.pop().unwrap().is_some() {}
        let stats = ring.stats();
        assert_eq!(stats.read_pos, stats.write_pos, "{name}: empty");
        let region_len = ring.capacity_bytes();
        drop(ring);
        forge_damaged_record(&path, region_len, stats.write_pos);

        let ring = Ring::open(&path).unwrap();
        assert_eq!(ring.peek().count(), 0, "{name}: peek sees nothing");
        let (ring, popped) = within_deadline("pop", move || {
            let popped = ring.pop();
            (ring, popped)
        });
        assert!(
            matches!(popped, Ok(None)),
            "{name}: expected empty, got {popped:?}"
        );
        // A push can't claim a word that already holds a stamp for its position, so
        // it reserves again after it; the forged record is then inside the ring and is
        // reported as corrupt once, and the pushed entry comes out intact.
        let (id, outcomes) = within_deadline("push and drain", move || {
            let id = ring.push(b"after").unwrap();
            let mut outcomes = Vec::new();
            for _ in 0..10 {
                match ring.pop() {
                    Ok(Some(entry)) => outcomes.push(Ok((entry.id(), entry.into_data()))),
                    Ok(None) => break,
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            (id, outcomes)
        });
        let entries: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(entries, [&(id, b"after".to_vec())], "{name}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(_) | Err(mmring::Error::Corrupt { .. }))),
            "{name}: {outcomes:?}"
        );
        assert_eq!(
            outcomes.iter().filter(|o| o.is_err()).count(),
            1,
            "{name}: the forged record is reported once: {outcomes:?}"
        );
    }
}

#[test]
fn verify_reports_a_stamp_in_the_free_space_that_a_push_would_give_up() {
    const STATE_PADDING: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Overwrite)
        .create(&path)
        .unwrap();
    for i in 0..7u8 {
        ring.push(&[i; 40]).unwrap();
    }
    while ring.pop().unwrap().is_some() {}
    let stats = ring.stats();
    let region_len = ring.capacity_bytes();
    drop(ring);
    // A PADDING stamp for the write position (the next push's), and one for a position
    // half a lap on, both in the free space.
    let key = stamp_key(&path);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let forged = [stats.write_pos, stats.write_pos + region_len / 2];
    for pos in forged {
        file.write_all_at(
            &((pos | STATE_PADDING) ^ key).to_le_bytes(),
            HEADER_LEN + pos % region_len,
        )
        .unwrap();
    }
    drop(file);

    let report = mmring::verify(&path).unwrap();
    let found: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.offset, p.field, p.position, p.action))
        .collect();
    let expected: Vec<_> = forged
        .iter()
        .map(|&pos| {
            (
                HEADER_LEN + pos % region_len,
                "stamp",
                Some(pos),
                Action::Clear { position: pos },
            )
        })
        .collect();
    assert_eq!(found, expected, "{:?}", report.problems);

    let report = mmring::repair(&path).unwrap();
    assert!(report.repaired);
    assert!(mmring::verify(&path).unwrap().is_clean());
    let ring = Ring::open(&path).unwrap();
    let (ids, popped) = within_deadline("push and drain", move || {
        let ids: Vec<u64> = (0..40u8).map(|i| ring.push(&[i; 40]).unwrap()).collect();
        let mut popped = Vec::new();
        while let Some(entry) = ring.pop().unwrap() {
            popped.push(entry.id());
        }
        (ids, popped)
    });
    // Every push claimed its own space: none given up, nothing reported as damaged,
    // and the newest entries (the ring holds fewer than 40) come out in order.
    assert_eq!(ids[0], stats.write_pos);
    assert_eq!(popped, ids[ids.len() - popped.len()..]);
}
