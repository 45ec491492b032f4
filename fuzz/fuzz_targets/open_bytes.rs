//! Arbitrary bytes opened as a ring file, then everything in it peeked and popped.
//!
//! Input: `[repair flags][size][file bytes...]`. Random bytes rarely get past the
//! magic and the header checksum, so the flags let the fuzzer ask for parts of the
//! header to be made valid and spend its effort on the region:
//! bit 0 magic and version, bit 1 header and file lengths (the file becomes
//! `8192 + 8 * size` bytes), bit 2 the header checksum and, where `flags` has the
//! stamp key bit, the stamp key's bits and checksum, bit 3 read and write positions that
//! satisfy the position invariant.
//!
//! Invariants: `Ring::open` either succeeds or returns `NotARing`,
//! `UnsupportedVersion` or `Corrupt`; nothing panics or hangs (libFuzzer's timeout);
//! popped IDs strictly increase; a payload never exceeds `max_entry_size`; and an entry
//! pushed after the damage was drained, if popped, comes back intact. `mmring::verify`
//! ends on any bytes, and a ring it finds clean never reports corruption to peek or
//! pop; after `mmring::repair`, `verify` finds it clean and pops report no corruption.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmring::{Error, Ring};
use mmring_fuzz::*;
use std::time::Duration;

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

/// Builds the file the input describes.
fn file_bytes(input: &[u8]) -> Option<Vec<u8>> {
    let (&flags, rest) = input.split_first()?;
    let (&size, body) = rest.split_first()?;
    let mut file = body.to_vec();
    if flags & 2 != 0 {
        let len = 8192 + 8 * u64::from(size);
        file.resize(len as usize, 0);
        file[HEADER_LEN_OFFSET..][..4].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        file[FILE_LEN_OFFSET..][..8].copy_from_slice(&len.to_le_bytes());
        file[REGION_LEN_OFFSET..][..8].copy_from_slice(&(len - HEADER_LEN).to_le_bytes());
    }
    if flags & 1 != 0 && file.len() >= 12 {
        file[..8].copy_from_slice(&MAGIC);
        file[VERSION_OFFSET..][..4].copy_from_slice(&1u32.to_le_bytes());
    }
    if flags & 4 != 0 && file.len() >= STATIC_HEADER_LEN {
        let crc = crc32c::crc32c(&file[..HEADER_CRC_OFFSET]);
        file[HEADER_CRC_OFFSET..][..4].copy_from_slice(&crc.to_le_bytes());
    }
    if flags & 4 != 0
        && file.len() >= FIXED_HEADER_LEN
        && u32::from_le_bytes(file[FLAGS_OFFSET..][..4].try_into().unwrap()) & FLAG_STAMP_KEY != 0
    {
        let key = u64_at(&file, STAMP_KEY_OFFSET) & STAMP_KEY_MASK;
        file[STAMP_KEY_OFFSET..][..8].copy_from_slice(&key.to_le_bytes());
        let crc = crc32c::crc32c(&file[STAMP_KEY_OFFSET..STAMP_KEY_CRC_OFFSET]);
        file[STAMP_KEY_CRC_OFFSET..][..4].copy_from_slice(&crc.to_le_bytes());
    }
    if flags & 8 != 0 && file.len() > READ_POS_OFFSET + 8 && file.len() as u64 > HEADER_LEN {
        let region = file.len() as u64 - HEADER_LEN;
        let read = (u64_at(&file, READ_POS_OFFSET) % (1 << 40)) / 8 * 8;
        let write = read + (u64_at(&file, WRITE_POS_OFFSET) % (region / 8 + 1)) * 8;
        file[READ_POS_OFFSET..][..8].copy_from_slice(&read.to_le_bytes());
        file[WRITE_POS_OFFSET..][..8].copy_from_slice(&write.to_le_bytes());
    }
    Some(file)
}

fuzz_target!(|input: &[u8]| {
    let Some(bytes) = file_bytes(input) else {
        return;
    };
    let path = scratch_path("open_bytes");
    std::fs::write(&path, &bytes).unwrap();
    let verified_clean = match mmring::verify(&path) {
        Ok(report) => report.records_checked && report.is_clean(),
        Err(Error::NotARing { .. } | Error::UnsupportedVersion { .. }) => false,
        Err(other) => panic!("unexpected verify error: {other:?}"),
    };
    let ring = match Ring::open(&path) {
        Ok(ring) => ring,
        Err(Error::NotARing { .. } | Error::UnsupportedVersion { .. } | Error::Corrupt { .. }) => {
            let _ = std::fs::remove_file(&path);
            return;
        }
        Err(other) => panic!(
            "unexpected error opening a {}-byte file: {other:?}",
            bytes.len()
        ),
    };

    let max = ring.max_entry_size();
    let bound = 2 * ring.capacity() + 64;
    for entry in ring.peek().take(bound) {
        match entry {
            Ok(entry) => assert!(entry.data().len() <= max),
            Err(e) => assert!(!verified_clean, "verify found the ring clean; peek: {e}"),
        }
    }
    let _ = (ring.len(), ring.stats());
    let mut last_id = None;
    let mut drain = |ring: &Ring| {
        let mut found = Vec::new();
        for _ in 0..bound {
            match ring.pop() {
                Ok(Some(entry)) => {
                    assert!(entry.data().len() <= max);
                    assert!(
                        last_id < Some(entry.id()),
                        "IDs out of order: {last_id:?} then {}",
                        entry.id()
                    );
                    last_id = Some(entry.id());
                    found.push((entry.id(), entry.into_data()));
                }
                Ok(None) => break,
                Err(Error::Corrupt { offset, what }) => {
                    assert!(offset < bytes.len() as u64);
                    assert!(!verified_clean, "verify found the ring clean; pop: {what}");
                }
                Err(other) => panic!("unexpected pop error: {other:?}"),
            }
        }
        found
    };
    drain(&ring);
    // An overwriting push waits up to the file's abandon timeout for a stuck head; a
    // hostile file may say 49 days. Push only when the wait is bounded and short.
    if ring.abandon_timeout() <= Duration::from_millis(5) {
        let data = payload(7, 24);
        match ring.push(&data) {
            Ok(id) => {
                let found = drain(&ring);
                if let Some((_, got)) = found.iter().find(|(got_id, _)| *got_id == id) {
                    assert_eq!(got, &data, "entry {id} came back changed");
                }
            }
            Err(Error::Full | Error::Corrupt { .. }) => {}
            Err(other) => panic!("unexpected push error: {other:?}"),
        }
    }
    drop(ring);

    // Repair the original bytes: afterwards verify finds nothing, and pops report no
    // corruption.
    std::fs::write(&path, &bytes).unwrap();
    if mmring::repair(&path).is_ok() {
        let report = mmring::verify(&path).expect("verify after a successful repair");
        assert!(
            report.is_clean(),
            "problems after repair: {:?}",
            report.problems
        );
        let ring = Ring::open(&path).expect("open after a successful repair");
        for _ in 0..bound {
            match ring.pop() {
                Ok(Some(entry)) => assert!(entry.data().len() <= max),
                Ok(None) => break,
                Err(e) => panic!("pop after a repair: {e}"),
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
