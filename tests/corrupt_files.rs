//! Damaged and hostile ring files. The file is untrusted input: these tests create
//! rings, close them, change bytes at the offsets docs/FORMAT.md specifies, reopen
//! them and assert the exact outcome.
//!
//! What it proves: a damaged static header yields `NotARing`, `UnsupportedVersion` or
//! `Corrupt` naming the offset of the checksum or of the bad field; a damaged stamp key
//! or key checksum yields `Corrupt` at the key's checksum (or at the key, for bits its
//! mask forbids), never a ring whose records all read as stale, and a file without the
//! stamp key flag ignores those bytes; truncated, garbage,
//! missing and directory paths yield an error, never a panic; damaged positions are
//! refused at open and by operations on an open ring; a damaged record payload or
//! header is reported once as `Corrupt` at the record's offset and the next entry is
//! still delivered intact; a damaged stamp makes the record skipped, never returned;
//! an abandoned record with an impossible length is reported by peek as by pop; and,
//! over thousands of random bit flips and byte overwrites anywhere in the file,
//! opening and draining never panics or hangs and never returns an entry that was not
//! pushed, or the same entry twice.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mmring::{Error, OnFull, Options, Ring};

// ---------------------------------------------------------------- layout (FORMAT.md)

const MAGIC_OFFSET: u64 = 0;
const VERSION_OFFSET: u64 = 8;
const HEADER_LEN_OFFSET: u64 = 12;
const FILE_LEN_OFFSET: u64 = 16;
const REGION_LEN_OFFSET: u64 = 24;
const DEFAULT_TTL_OFFSET: u64 = 32;
const ON_FULL_OFFSET: u64 = 36;
const ABANDON_MS_OFFSET: u64 = 40;
const FLAGS_OFFSET: u64 = 44;
const HEADER_CRC_OFFSET: u64 = 60;
const STATIC_HEADER_LEN: u64 = 64;
const STAMP_KEY_OFFSET: u64 = 64;
const STAMP_KEY_CRC_OFFSET: u64 = 72;
const FIXED_HEADER_LEN: u64 = 76;
const WRITE_POS_OFFSET: u64 = 128;
const PUSHED_OFFSET: u64 = 136;
const READ_POS_OFFSET: u64 = 256;
const POPPED_OFFSET: u64 = 264;
const HEADER_LEN: u64 = 4096;

const REC_STAMP_OFFSET: u64 = 0;
const REC_CLAIM_OFFSET: u64 = 8;
const REC_META_CRC_OFFSET: u64 = 16;
const REC_VERSION_OFFSET: u64 = 20;
const REC_DATA_LEN_OFFSET: u64 = 28;
const REC_TTL_OFFSET: u64 = 32;
const REC_ID_OFFSET: u64 = 36;
const REC_DATA_CRC_OFFSET: u64 = 44;
const REC_WRITE_TIME_OFFSET: u64 = 48;
const REC_HEADER_LEN: u64 = 56;

const STATE_CLAIMED: u64 = 1;
const STATE_COMMITTED: u64 = 2;
const STATE_PADDING: u64 = 3;
const STATE_ABANDONED: u64 = 4;
const STATE_SKIPPED: u64 = 5;
const STATE_BATCHED: u64 = 7;

const FLAG_BATCH_RUNS: u32 = 1;
const FLAG_STAMP_KEY: u32 = 2;
/// The bits a stamp key may have: 3 to 61.
const STAMP_KEY_MASK: u64 = 0x3FFF_FFFF_FFFF_FFF8;

/// Short, so that stalled (damaged) records are skipped quickly.
const ABANDON: Duration = Duration::from_millis(20);
/// Longest any single drain may take before the test calls it a hang.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- file helpers

fn file(path: &Path) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open ring file for patching")
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    file(path).write_all_at(bytes, offset).expect("patch");
}

fn read(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    file(path).read_exact_at(&mut buf, offset).expect("read");
    buf
}

fn read_u64(path: &Path, offset: u64) -> u64 {
    u64::from_le_bytes(read(path, offset, 8).try_into().unwrap())
}

fn read_u32(path: &Path, offset: u64) -> u32 {
    u32::from_le_bytes(read(path, offset, 4).try_into().unwrap())
}

fn write_u64(path: &Path, offset: u64, value: u64) {
    patch(path, offset, &value.to_le_bytes());
}

fn write_u32(path: &Path, offset: u64, value: u32) {
    patch(path, offset, &value.to_le_bytes());
}

fn flip_bit(path: &Path, offset: u64, bit: u32) {
    let byte = read(path, offset, 1)[0] ^ (1 << bit);
    patch(path, offset, &[byte]);
}

/// Rewrites the header checksum so that a changed field is judged on its own merits.
fn fix_header_crc(path: &Path) {
    let crc = crc32c::crc32c(&read(path, 0, HEADER_CRC_OFFSET as usize));
    write_u32(path, HEADER_CRC_OFFSET, crc);
}

/// Rewrites the stamp key checksum (CRC32C of the key's 8 bytes), so that a changed
/// key is judged on its own merits.
fn fix_stamp_key_crc(path: &Path) {
    let crc = crc32c::crc32c(&read(path, STAMP_KEY_OFFSET, 8));
    write_u32(path, STAMP_KEY_CRC_OFFSET, crc);
}

/// The key the file's stamps are XORed with: `stamp_key` if `flags` has
/// `FLAG_STAMP_KEY`, else 0. Read as FORMAT.md says, and checked against the library's
/// reading of the same bytes.
fn stamp_key(path: &Path) -> u64 {
    let key = if read_u32(path, FLAGS_OFFSET) & FLAG_STAMP_KEY != 0 {
        read_u64(path, STAMP_KEY_OFFSET)
    } else {
        0
    };
    assert_eq!(
        mmring::layout::stamp_key(&read(path, 0, FIXED_HEADER_LEN as usize))
            .expect("the first 76 bytes of a ring file"),
        key
    );
    key
}

/// The stamp of the record at `pos` in `state`, in the file at `path`.
fn stamp(path: &Path, pos: u64, state: u64) -> u64 {
    (pos | state) ^ stamp_key(path)
}

/// Rewrites the metadata checksum of the record at `pos` (file offset `rec_off`):
/// CRC32C of the position, the claim word and bytes 20..56.
fn fix_record_crc(path: &Path, rec_off: u64, pos: u64) {
    let header = read(path, rec_off, REC_HEADER_LEN as usize);
    let crc = crc32c::crc32c(&pos.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &header[8..16]);
    let crc = crc32c::crc32c_append(crc, &header[20..56]);
    write_u32(path, rec_off + REC_META_CRC_OFFSET, crc);
}

fn options(size: u64, policy: OnFull) -> Options {
    Options::new()
        .size(size)
        .on_full(policy)
        .abandon_timeout(ABANDON)
}

/// A payload unique to `seq`.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[track_caller]
fn assert_corrupt_at<T: std::fmt::Debug>(result: mmring::Result<T>, offset: u64) {
    match result {
        Err(Error::Corrupt { offset: got, what }) => {
            assert_eq!(got, offset, "Corrupt at the wrong offset ({what})");
        }
        other => panic!("expected Corrupt at offset {offset}, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_a_ring<T: std::fmt::Debug>(result: mmring::Result<T>, path: &Path) {
    match result {
        Err(Error::NotARing { path: got, .. }) => assert_eq!(got, path),
        other => panic!("expected NotARing, got {other:?}"),
    }
}

/// A closed ring of `size` bytes at a fresh path, holding nothing.
fn closed_ring(dir: &Path, name: &str, size: u64, policy: OnFull) -> PathBuf {
    let path = dir.join(name);
    drop(options(size, policy).create(&path).expect("create"));
    path
}

// ---------------------------------------------------------------- static header

#[test]
fn flipped_magic_bit_is_not_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_ring(dir.path(), "r", 8192, OnFull::Reject);
    for bit in 0..64 {
        let offset = MAGIC_OFFSET + bit / 8;
        flip_bit(&path, offset, (bit % 8) as u32);
        assert_not_a_ring(Ring::open(&path), &path);
        flip_bit(&path, offset, (bit % 8) as u32);
    }
    Ring::open(&path).expect("the restored file opens again");
}

#[test]
fn flipped_version_bit_is_an_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_ring(dir.path(), "r", 8192, OnFull::Reject);
    for bit in 0..32u32 {
        let offset = VERSION_OFFSET + u64::from(bit / 8);
        flip_bit(&path, offset, bit % 8);
        match Ring::open(&path) {
            Err(Error::UnsupportedVersion {
                path: got,
                found,
                supported,
            }) => {
                assert_eq!(got, path);
                assert_eq!((found, supported), (1 ^ (1 << bit), 1), "bit {bit}");
            }
            other => panic!("bit {bit}: expected UnsupportedVersion, got {other:?}"),
        }
        flip_bit(&path, offset, bit % 8);
    }
}

#[test]
fn any_other_flipped_header_bit_fails_the_header_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_ring(dir.path(), "r", 8192, OnFull::Reject);
    for bit in HEADER_LEN_OFFSET * 8..STATIC_HEADER_LEN * 8 {
        let (offset, bit_in_byte) = (bit / 8, (bit % 8) as u32);
        flip_bit(&path, offset, bit_in_byte);
        assert_corrupt_at(Ring::open(&path), HEADER_CRC_OFFSET);
        flip_bit(&path, offset, bit_in_byte);
    }
    Ring::open(&path).expect("the restored file opens again");
}

/// Each case sets one field to a wrong value, recomputes the checksum, and expects
/// `Corrupt` at that field's offset.
#[test]
fn invalid_header_field_with_a_valid_checksum_is_reported_at_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8192u64;
    // (what, field offset, new value, field width in bytes)
    let cases = [
        ("header_len 4095", HEADER_LEN_OFFSET, 4095, 4),
        ("header_len 8192", HEADER_LEN_OFFSET, 8192, 4),
        ("file_len too large", FILE_LEN_OFFSET, size + 8, 8),
        ("file_len too small", FILE_LEN_OFFSET, size - 8, 8),
        ("region_len short", REGION_LEN_OFFSET, 4088, 8),
        ("region_len huge", REGION_LEN_OFFSET, u64::MAX, 8),
        ("on_full 7", ON_FULL_OFFSET, 7, 4),
        ("on_full 3", ON_FULL_OFFSET, 3, 4),
        ("abandon_ms 0", ABANDON_MS_OFFSET, 0, 4),
        ("flags 4 (undefined)", FLAGS_OFFSET, 4, 4),
        ("flags 7 (bit 2 undefined)", FLAGS_OFFSET, 7, 4),
        ("flags 0x80000001", FLAGS_OFFSET, 0x8000_0001, 4),
        ("flags 0x80000003", FLAGS_OFFSET, 0x8000_0003, 4),
    ];
    for (i, (name, offset, value, width)) in cases.into_iter().enumerate() {
        let path = closed_ring(dir.path(), &format!("r{i}"), size, OnFull::Reject);
        patch(&path, offset, &value.to_le_bytes()[..width]);
        fix_header_crc(&path);
        match Ring::open(&path) {
            Err(Error::Corrupt { offset: got, .. }) => assert_eq!(got, offset, "{name}"),
            other => panic!("{name}: expected Corrupt at {offset}, got {other:?}"),
        }
    }
    // The checksum fix-up itself is sound: a valid change with a recomputed checksum
    // opens, and the new value is in force.
    let path = closed_ring(dir.path(), "valid", size, OnFull::Reject);
    write_u32(&path, DEFAULT_TTL_OFFSET, 7);
    write_u32(&path, ON_FULL_OFFSET, 0);
    fix_header_crc(&path);
    let ring = Ring::open(&path).expect("a consistent header opens");
    assert_eq!(ring.default_ttl(), Duration::from_secs(7));
    assert_eq!(ring.on_full(), OnFull::Overwrite);
}

/// The stamp key (bytes 64..72) and its checksum (72..76) lie outside the header
/// checksum, which covers bytes 0..60. A ring opened with a damaged key would read
/// every stamp as stale and hold nothing; instead the key's own checksum refuses any
/// flipped bit in either field, and a key with bits its mask forbids (the state bits,
/// bits 62 and 63) is refused at the key even with a matching checksum.
#[test]
fn flipped_stamp_key_bit_is_refused_never_read_as_an_empty_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_ring(dir.path(), "r", 8192, OnFull::Reject);
    let ids = {
        let ring = Ring::open(&path).unwrap();
        [ring.push(b"first").unwrap(), ring.push(b"second").unwrap()]
    };
    // A new file is keyed, and its stamps carry the key.
    assert_eq!(
        read_u32(&path, FLAGS_OFFSET),
        FLAG_BATCH_RUNS | FLAG_STAMP_KEY
    );
    let key = stamp_key(&path);
    assert_ne!(key, 0, "a random key");
    assert_eq!(key & !STAMP_KEY_MASK, 0, "key {key:#x} outside its mask");
    assert_eq!(
        read_u64(&path, HEADER_LEN + ids[1]),
        (ids[1] | STATE_COMMITTED) ^ key
    );

    for bit in STAMP_KEY_OFFSET * 8..FIXED_HEADER_LEN * 8 {
        let (offset, bit_in_byte) = (bit / 8, (bit % 8) as u32);
        flip_bit(&path, offset, bit_in_byte);
        assert_corrupt_at(Ring::open(&path), STAMP_KEY_CRC_OFFSET);
        let report = mmring::verify(&path).unwrap();
        assert!(!report.records_checked, "bit {bit}");
        assert_eq!(
            report
                .problems
                .iter()
                .map(|p| (p.offset, p.field))
                .collect::<Vec<_>>(),
            [(STAMP_KEY_CRC_OFFSET, "stamp_key_crc")],
            "bit {bit}"
        );
        flip_bit(&path, offset, bit_in_byte);
    }

    for bit in [0, 1, 2, 62, 63] {
        write_u64(&path, STAMP_KEY_OFFSET, key ^ 1 << bit);
        fix_stamp_key_crc(&path);
        assert_corrupt_at(Ring::open(&path), STAMP_KEY_OFFSET);
    }
    write_u64(&path, STAMP_KEY_OFFSET, key);
    fix_stamp_key_crc(&path);

    let ring = Ring::open(&path).expect("the restored file opens again");
    assert_eq!(
        drain(&ring),
        vec![
            Outcome::Entry(ids[0], b"first".to_vec()),
            Outcome::Entry(ids[1], b"second".to_vec())
        ]
    );
}

/// Keys that pass every header check but are not the one the stamps were written
/// with, as a forger who recomputes the checksums can make them: another key in the
/// mask, key 0, or the flag cleared (the key then counts as 0). The ring opens, and
/// no record written under the real key is returned; it is reported or skipped, and
/// the ring takes new entries.
#[test]
fn records_stamped_under_another_key_are_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    type Forge = fn(&Path, u64);
    let cases: [(&str, Forge); 3] = [
        ("another key", |p, key| {
            write_u64(p, STAMP_KEY_OFFSET, key ^ 1 << 40);
            fix_stamp_key_crc(p);
        }),
        ("key 0", |p, _| {
            write_u64(p, STAMP_KEY_OFFSET, 0);
            fix_stamp_key_crc(p);
        }),
        ("flag cleared", |p, _| {
            write_u32(p, FLAGS_OFFSET, FLAG_BATCH_RUNS);
            fix_header_crc(p);
        }),
    ];
    for (i, (name, forge)) in cases.into_iter().enumerate() {
        let path = closed_ring(dir.path(), &format!("r{i}"), 8192, OnFull::Reject);
        {
            let ring = Ring::open(&path).unwrap();
            ring.push(b"first").unwrap();
            ring.push_batch(&[&b"second"[..], b"third"]).unwrap();
        }
        let key = stamp_key(&path);
        forge(&path, key);
        assert_ne!(stamp_key(&path), key, "{name}");
        let ring = Ring::open(&path).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let peeked: Vec<_> = ring.peek().filter_map(|e| e.ok().map(|e| e.id())).collect();
        assert_eq!(peeked, [], "{name}: peek");
        let outcome = drain(&ring);
        assert!(
            outcome.iter().all(|o| matches!(o, Outcome::Corrupt(_))),
            "{name}: {outcome:?}"
        );
        let stats = ring.stats();
        assert_eq!((stats.popped, stats.len), (0, 0), "{name}: {stats:?}");
        let id = ring.push(b"after").unwrap();
        assert_eq!(
            drain(&ring),
            vec![Outcome::Entry(id, b"after".to_vec())],
            "{name}"
        );
    }
}

/// A file made without a stamp key (`Options::stamp_key(false)`, as mmring 0.3.1 and
/// earlier write it) has `flags` bit 1 clear, zeroes at 64..76 and unkeyed stamps;
/// without the flag those bytes are not read, so anything there leaves the ring
/// intact.
#[test]
fn file_without_the_stamp_key_flag_ignores_the_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ids = {
        let ring = options(8192, OnFull::Reject)
            .stamp_key(false)
            .create(&path)
            .unwrap();
        [ring.push(b"first").unwrap(), ring.push(b"second").unwrap()]
    };
    assert_eq!(read_u32(&path, FLAGS_OFFSET), FLAG_BATCH_RUNS);
    assert_eq!(
        read(&path, STAMP_KEY_OFFSET, 12),
        [0; 12],
        "no key, no checksum"
    );
    assert_eq!(stamp_key(&path), 0);
    assert_eq!(
        read_u64(&path, HEADER_LEN + ids[1]),
        ids[1] | STATE_COMMITTED
    );
    patch(&path, STAMP_KEY_OFFSET, &[0xA5; 12]);
    let ring = Ring::open(&path).expect("bytes 64..76 are not read without the flag");
    assert_eq!(
        drain(&ring),
        vec![
            Outcome::Entry(ids[0], b"first".to_vec()),
            Outcome::Entry(ids[1], b"second".to_vec())
        ]
    );
}

#[test]
fn file_resized_behind_the_rings_back_is_reported_at_file_len() {
    let dir = tempfile::tempdir().unwrap();
    for new_len in [8192 - 8, 8192 + 8, 8192 + 4096, 1 << 20] {
        let path = closed_ring(dir.path(), &format!("r{new_len}"), 8192, OnFull::Reject);
        file(&path).set_len(new_len).unwrap();
        assert_corrupt_at(Ring::open(&path), FILE_LEN_OFFSET);
    }
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let size = 16384;
    let source = closed_ring(dir.path(), "source", size, OnFull::Reject);
    let full = std::fs::read(&source).unwrap();
    // Shorter than a header: not a ring at all.
    for len in [0usize, 1, 8, 63, 64, 100, 4095] {
        let path = dir.path().join(format!("short{len}"));
        std::fs::write(&path, &full[..len]).unwrap();
        assert_not_a_ring(Ring::open(&path), &path);
    }
    // A whole header whose region is missing or cut: the length check catches it.
    for len in [
        4096usize,
        4096 + 8,
        4096 + (size as usize - 4096) / 2,
        size as usize - 8,
    ] {
        let path = dir.path().join(format!("cut{len}"));
        std::fs::write(&path, &full[..len]).unwrap();
        assert_corrupt_at(Ring::open(&path), FILE_LEN_OFFSET);
    }
}

/// xorshift64*: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_files_are_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage");
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for len in [
        1usize, 7, 8, 63, 64, 65, 100, 4095, 4096, 4097, 8192, 12288, 65536,
    ] {
        for _ in 0..4 {
            // Random bytes: the magic is wrong.
            std::fs::write(&path, rng.bytes(len)).unwrap();
            assert_not_a_ring(Ring::open(&path), &path);

            // The right magic and version, random everything else: a short file is not
            // a ring; a long one fails the header checksum.
            let mut forged = rng.bytes(len);
            let prefix = [&b"\x89MMRING\n"[..], &1u32.to_le_bytes()].concat();
            let n = prefix.len().min(len);
            forged[..n].copy_from_slice(&prefix[..n]);
            std::fs::write(&path, &forged).unwrap();
            let result = Ring::open(&path);
            if len < 4096 {
                assert_not_a_ring(result, &path);
            } else {
                assert_corrupt_at(result, HEADER_CRC_OFFSET);
            }
        }
    }
}

#[test]
fn valid_header_over_random_bytes_is_refused_or_yields_no_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0xfeed_f00d_dead_beef);
    let size = 16384u64;
    let source = closed_ring(dir.path(), "source", size, OnFull::Overwrite);
    // The static header and the stamp key with its checksum.
    let header = read(&source, 0, FIXED_HEADER_LEN as usize);
    let path = dir.path().join("r");
    for round in 0..40 {
        let mut bytes = rng.bytes(size as usize);
        bytes[..FIXED_HEADER_LEN as usize].copy_from_slice(&header);
        std::fs::write(&path, &bytes).unwrap();
        // Random positions break the position invariant.
        match Ring::open(&path) {
            Err(Error::Corrupt { offset, .. }) => {
                assert!(
                    offset == WRITE_POS_OFFSET || offset == READ_POS_OFFSET,
                    "round {round}: offset {offset}"
                );
            }
            other => panic!("round {round}: random positions gave {other:?}"),
        }
        // Plausible positions over a random region: it opens, and nothing in it passes
        // for an entry.
        let read_pos = rng.below(1 << 30) * 8;
        let write_pos = read_pos + rng.below((size - HEADER_LEN) / 8 + 1) * 8;
        write_u64(&path, READ_POS_OFFSET, read_pos);
        write_u64(&path, WRITE_POS_OFFSET, write_pos);
        let ring = Ring::open(&path).expect("consistent header and positions open");
        for entry in ring.peek().take(10_000) {
            assert!(
                entry.is_err(),
                "round {round}: peek found an entry in random bytes"
            );
        }
        let outcome = drain(&ring);
        assert!(
            outcome.iter().all(|o| matches!(o, Outcome::Corrupt(_))),
            "round {round}: random bytes yielded {outcome:?}"
        );
        // And the ring is usable afterwards.
        let id = ring
            .push(b"after the garbage")
            .expect("push after recovery");
        assert_eq!(
            drain(&ring),
            vec![Outcome::Entry(id, b"after the garbage".to_vec())]
        );
    }
}

#[test]
fn missing_file_is_an_io_error_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    match Ring::open(&path) {
        Err(Error::Io {
            path: got, source, ..
        }) => {
            assert_eq!(got, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io NotFound, got {other:?}"),
    }
}

#[test]
fn directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    match Ring::open(dir.path()) {
        Err(Error::Io { path, source, .. }) => {
            assert_eq!(path, dir.path());
            assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

// ---------------------------------------------------------------- positions

/// A closed ring with two entries and one popped, so both positions are non-zero.
fn ring_with_positions(dir: &Path, name: &str) -> (PathBuf, u64, u64) {
    let path = dir.join(name);
    let ring = options(8192, OnFull::Reject).create(&path).unwrap();
    ring.push(&payload(1, 40)).unwrap();
    ring.push(&payload(2, 40)).unwrap();
    ring.pop().unwrap().unwrap();
    let stats = ring.stats();
    drop(ring);
    (path, stats.read_pos, stats.write_pos)
}

#[test]
fn damaged_positions_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let region = 8192 - HEADER_LEN;
    type Damage = fn(&Path, u64, u64, u64);
    let cases: [(&str, u64, Damage); 7] = [
        ("read past write", READ_POS_OFFSET, |p, _, w, _| {
            write_u64(p, READ_POS_OFFSET, w + 8)
        }),
        ("unaligned write", WRITE_POS_OFFSET, |p, _, w, _| {
            write_u64(p, WRITE_POS_OFFSET, w + 1)
        }),
        ("unaligned read", READ_POS_OFFSET, |p, r, _, _| {
            write_u64(p, READ_POS_OFFSET, r + 4)
        }),
        (
            "write a region ahead",
            READ_POS_OFFSET,
            |p, r, _, region| write_u64(p, WRITE_POS_OFFSET, r + region + 8),
        ),
        ("write beyond 2^62", WRITE_POS_OFFSET, |p, _, _, _| {
            write_u64(p, WRITE_POS_OFFSET, 1 << 62)
        }),
        ("read beyond 2^62", READ_POS_OFFSET, |p, _, _, _| {
            write_u64(p, READ_POS_OFFSET, u64::MAX - 7)
        }),
        ("write behind read", READ_POS_OFFSET, |p, r, _, _| {
            write_u64(p, WRITE_POS_OFFSET, r - 8)
        }),
    ];
    for (i, (name, offset, damage)) in cases.iter().enumerate() {
        let (path, read_pos, write_pos) = ring_with_positions(dir.path(), &format!("r{i}"));
        assert!(read_pos > 0 && write_pos > read_pos);
        damage(&path, read_pos, write_pos, region);
        match Ring::open(&path) {
            Err(Error::Corrupt { offset: got, .. }) => assert_eq!(got, *offset, "{name}"),
            other => panic!("{name}: expected Corrupt at {offset}, got {other:?}"),
        }
    }
}

#[test]
fn positions_damaged_while_open_fail_the_operations_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (path, read_pos, write_pos) = ring_with_positions(dir.path(), "r");
    let ring = Ring::open(&path).unwrap();
    // The mapping is shared with the page cache, so these writes reach the open ring.
    write_u64(&path, WRITE_POS_OFFSET, write_pos + 3);
    assert_corrupt_at(ring.push(b"x"), WRITE_POS_OFFSET);
    assert_corrupt_at(
        ring.peek().next().expect("an item").map(|e| e.id()),
        WRITE_POS_OFFSET,
    );
    write_u64(&path, WRITE_POS_OFFSET, write_pos);
    write_u64(&path, READ_POS_OFFSET, read_pos + 5);
    assert_corrupt_at(ring.pop(), READ_POS_OFFSET);
    assert_corrupt_at(
        ring.peek().next().expect("an item").map(|e| e.id()),
        READ_POS_OFFSET,
    );
    // Repaired, the ring works again.
    write_u64(&path, READ_POS_OFFSET, read_pos);
    assert_eq!(
        ring.pop().unwrap().map(|e| e.into_data()),
        Some(payload(2, 40))
    );
}

#[test]
fn damaged_counters_do_not_break_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ..) = ring_with_positions(dir.path(), "r");
    write_u64(&path, PUSHED_OFFSET, u64::MAX);
    write_u64(&path, POPPED_OFFSET, u64::MAX - 1);
    let ring = Ring::open(&path).unwrap();
    assert!(ring.len() <= ring.capacity());
    assert_eq!(
        ring.pop().unwrap().map(|e| e.into_data()),
        Some(payload(2, 40))
    );
    assert!(ring.pop().unwrap().is_none());
    assert_eq!(
        ring.len(),
        0,
        "positions meet: empty whatever the counters say"
    );
}

// ---------------------------------------------------------------- records

/// What a drain saw, in order (`None` results while waiting are left out).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Entry(u64, Vec<u8>),
    Corrupt(u64),
}

/// Pops until the ring is empty (its positions meet), waiting out stalled records.
/// Panics on any other error, or if the ring does not drain within `DRAIN_LIMIT`.
fn drain(ring: &Ring) -> Vec<Outcome> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut outcomes = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "ring did not drain within {DRAIN_LIMIT:?}: {:?}, so far {outcomes:?}",
            ring.stats()
        );
        match ring.pop() {
            Ok(Some(entry)) => outcomes.push(Outcome::Entry(entry.id(), entry.into_data())),
            Err(Error::Corrupt { offset, .. }) => outcomes.push(Outcome::Corrupt(offset)),
            Err(e) => panic!("pop failed: {e:?}"),
            Ok(None) => {
                let stats = ring.stats();
                if stats.read_pos >= stats.write_pos {
                    return outcomes;
                }
                // A stalled record: readers skip it once the abandon timeout passes.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A closed Reject-mode ring holding three entries, all in the first lap.
struct Three {
    _dir: tempfile::TempDir,
    path: PathBuf,
    ids: [u64; 3],
    data: [Vec<u8>; 3],
}

impl Three {
    fn new() -> Three {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.ring");
        let ring = options(16384, OnFull::Reject).create(&path).unwrap();
        let data = [payload(1, 100), payload(2, 203), payload(3, 50)];
        let ids = [0, 1, 2].map(|i| ring.push(&data[i]).unwrap());
        drop(ring);
        Three {
            _dir: dir,
            path,
            ids,
            data,
        }
    }

    /// File offset of entry `i`'s record (first lap: position + header).
    fn rec_off(&self, i: usize) -> u64 {
        HEADER_LEN + self.ids[i]
    }

    fn entry(&self, i: usize) -> Outcome {
        Outcome::Entry(self.ids[i], self.data[i].clone())
    }

    fn open(&self) -> Ring {
        Ring::open(&self.path).expect("open the damaged ring")
    }
}

#[track_caller]
fn assert_identity(ring: &Ring) {
    let s = ring.stats();
    assert_eq!(
        s.pushed,
        s.popped + s.evicted + s.expired + s.corrupt + s.abandoned + s.len,
        "{s:?}"
    );
}

#[test]
fn flipped_payload_bit_is_reported_once_at_the_payload_then_skipped() {
    for (byte, bit) in [(0u64, 0u32), (17, 3), (202, 7)] {
        let three = Three::new();
        flip_bit(&three.path, three.rec_off(1) + REC_HEADER_LEN + byte, bit);
        let ring = three.open();
        let payload_off = three.rec_off(1) + REC_HEADER_LEN;

        // Peek reports it too, and goes on to the next entry.
        let peeked: Vec<Outcome> = ring
            .peek()
            .map(|r| match r {
                Ok(e) => Outcome::Entry(e.id(), e.into_data()),
                Err(Error::Corrupt { offset, .. }) => Outcome::Corrupt(offset),
                Err(e) => panic!("peek: {e:?}"),
            })
            .collect();
        assert_eq!(
            peeked,
            vec![
                three.entry(0),
                Outcome::Corrupt(payload_off),
                three.entry(2)
            ]
        );

        assert_eq!(
            drain(&ring),
            vec![
                three.entry(0),
                Outcome::Corrupt(payload_off),
                three.entry(2)
            ],
            "byte {byte} bit {bit}"
        );
        assert_eq!(ring.stats().corrupt, 1);
        assert_identity(&ring);
    }
}

#[test]
fn flipped_metadata_bit_is_reported_at_the_checksum_and_the_next_entry_delivered() {
    let fields = [
        ("claim word (length)", REC_CLAIM_OFFSET),
        ("claim word (pid)", REC_CLAIM_OFFSET + 4),
        ("meta crc", REC_META_CRC_OFFSET),
        ("version", REC_VERSION_OFFSET),
        ("data_len", REC_DATA_LEN_OFFSET),
        ("data_len high byte", REC_DATA_LEN_OFFSET + 3),
        ("ttl", REC_TTL_OFFSET),
        ("id", REC_ID_OFFSET),
        ("data crc", REC_DATA_CRC_OFFSET),
        ("write time", REC_WRITE_TIME_OFFSET),
    ];
    for (name, field) in fields {
        for bit in [0u32, 5, 7] {
            let three = Three::new();
            flip_bit(&three.path, three.rec_off(1) + field, bit);
            let ring = three.open();
            assert_eq!(
                drain(&ring),
                vec![
                    three.entry(0),
                    Outcome::Corrupt(three.rec_off(1) + REC_META_CRC_OFFSET),
                    three.entry(2)
                ],
                "{name} bit {bit}"
            );
            assert_eq!(ring.stats().corrupt, 1, "{name} bit {bit}");
            assert_identity(&ring);
        }
    }
}

/// Fields set to wrong values with a recomputed metadata checksum: each is reported
/// at its own offset, and the next entry is delivered.
#[test]
fn invalid_record_field_with_a_valid_checksum_is_reported_at_the_field() {
    type Damage = fn(&Path, u64);
    let cases: [(&str, u64, Damage); 7] = [
        ("version 2", REC_VERSION_OFFSET, |p, off| {
            write_u64(p, off + REC_VERSION_OFFSET, 2)
        }),
        (
            "data_len beyond the claim",
            REC_DATA_LEN_OFFSET,
            |p, off| {
                let claimed = read_u64(p, off + REC_CLAIM_OFFSET) as u32;
                write_u32(p, off + REC_DATA_LEN_OFFSET, claimed + 8);
            },
        ),
        (
            // A claim covers more than its record only for the first record of a
            // batch run, which this is not: the next record is not stamped BATCHED.
            // The claim is made a whole number of words ending at the record's end,
            // so that only that check tells.
            "data_len below the claim",
            REC_DATA_LEN_OFFSET,
            |p, off| {
                let data_len = read_u64(p, off + REC_DATA_LEN_OFFSET - 4) >> 32;
                let claim = (56 + data_len).next_multiple_of(8) - 56;
                write_u32(p, off + REC_CLAIM_OFFSET, claim as u32);
                write_u32(p, off + REC_DATA_LEN_OFFSET, 20);
            },
        ),
        (
            "data_len beyond the maximum",
            REC_DATA_LEN_OFFSET,
            |p, off| {
                write_u32(p, off + REC_CLAIM_OFFSET, 1 << 30);
                write_u32(p, off + REC_DATA_LEN_OFFSET, 1 << 30);
            },
        ),
        (
            "data_len past the write position",
            REC_DATA_LEN_OFFSET,
            |p, off| {
                // Plausible (below max_entry_size, inside the region), but the record
                // would end beyond write_pos: reported at the data length.
                let len = 6000;
                write_u32(p, off + REC_CLAIM_OFFSET, len);
                write_u32(p, off + REC_DATA_LEN_OFFSET, len);
            },
        ),
        ("id is not the position", REC_ID_OFFSET, |p, off| {
            write_u64(p, off + REC_ID_OFFSET, 8)
        }),
        ("data crc wrong", REC_HEADER_LEN, |p, off| {
            write_u32(p, off + REC_DATA_CRC_OFFSET, 1)
        }),
    ];
    for (name, field, damage) in cases {
        let three = Three::new();
        let off = three.rec_off(2);
        damage(&three.path, off);
        fix_record_crc(&three.path, off, three.ids[2]);
        let ring = three.open();
        // The third entry is the last, so a skip by scanning ends at write_pos.
        assert_eq!(
            drain(&ring),
            vec![
                three.entry(0),
                three.entry(1),
                Outcome::Corrupt(off + field)
            ],
            "{name}"
        );
        assert_eq!(ring.stats().corrupt, 1, "{name}");
        assert_identity(&ring);
        // The ring goes on working after the skip.
        let id = ring.push(b"next").unwrap();
        assert_eq!(
            drain(&ring),
            vec![Outcome::Entry(id, b"next".to_vec())],
            "{name}"
        );
    }
}

#[test]
fn record_reaching_past_the_region_end_is_reported_at_data_len() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = options(8192, OnFull::Reject).create(&path).unwrap();
    ring.push(&payload(1, 1900)).unwrap();
    ring.push(&payload(2, 1900)).unwrap();
    let last = ring.push(&payload(3, 8)).unwrap();
    drop(ring);
    // 4096-byte region: the last record sits 176 bytes before its end.
    assert_eq!(last, 3920);
    let off = HEADER_LEN + last;
    // Below max_entry_size (1992), but 3920 + 56 + 1000 crosses the region end.
    write_u32(&path, off + REC_CLAIM_OFFSET, 1000);
    write_u32(&path, off + REC_DATA_LEN_OFFSET, 1000);
    fix_record_crc(&path, off, last);
    let ring = Ring::open(&path).unwrap();
    let outcome = drain(&ring);
    assert_eq!(outcome.len(), 3, "{outcome:?}");
    assert_eq!(outcome[2], Outcome::Corrupt(off + REC_DATA_LEN_OFFSET));
}

#[test]
fn record_with_a_forged_short_ttl_expires_instead_of_being_returned() {
    let three = Three::new();
    let off = three.rec_off(1);
    write_u32(&three.path, off + REC_TTL_OFFSET, 1);
    write_u64(&three.path, off + REC_WRITE_TIME_OFFSET, 1_000); // 1970
    fix_record_crc(&three.path, off, three.ids[1]);
    let ring = three.open();
    assert_eq!(drain(&ring), vec![three.entry(0), three.entry(2)]);
    assert_eq!(ring.stats().expired, 1);
    assert_identity(&ring);
}

/// A record on its own whose stamp says `BATCHED` (7) rather than `COMMITTED` (2):
/// both say the record is complete, so the record, whose header and payload
/// checksums still hold, is delivered once, in its place.
#[test]
fn committed_stamp_flipped_to_batched_still_delivers_the_record_once() {
    let three = Three::new();
    let stamp_off = three.rec_off(1) + REC_STAMP_OFFSET;
    write_u64(
        &three.path,
        stamp_off,
        stamp(&three.path, three.ids[1], STATE_BATCHED),
    );
    let ring = three.open();
    assert_eq!(
        drain(&ring),
        vec![three.entry(0), three.entry(1), three.entry(2)]
    );
}

/// The stamp's state bits (or position bits) damaged: the record is skipped, either
/// at once or after the abandon timeout, and never returned. So is a stamp written
/// without the file's key.
#[test]
fn damaged_stamp_makes_the_record_skipped_never_returned() {
    // (what, new stamp for position p in a file with key k, expected (corrupt,
    // abandoned) counts)
    type Stamp = fn(u64, u64) -> u64;
    let cases: [(&str, Stamp, (u64, u64)); 8] = [
        ("state 0 (never written)", |p, k| p ^ k, (0, 1)),
        (
            "CLAIMED: a stalled producer",
            |p, k| (p | STATE_CLAIMED) ^ k,
            (0, 1),
        ),
        (
            "PADDING inside a lap",
            |p, k| (p | STATE_PADDING) ^ k,
            (1, 0),
        ),
        ("ABANDONED", |p, k| (p | STATE_ABANDONED) ^ k, (0, 0)),
        ("SKIPPED", |p, k| (p | STATE_SKIPPED) ^ k, (0, 0)),
        ("undefined state 6", |p, k| (p | 6) ^ k, (0, 1)),
        (
            "position bit flipped",
            |p, k| ((p ^ 8) | STATE_COMMITTED) ^ k,
            (0, 1),
        ),
        (
            "COMMITTED without the key",
            |p, _| p | STATE_COMMITTED,
            (0, 1),
        ),
    ];
    for (name, forge, (corrupt, abandoned)) in cases {
        let three = Three::new();
        let stamp_off = three.rec_off(1) + REC_STAMP_OFFSET;
        // Damage found by a check (not a timeout) is also reported, once.
        let expected = if corrupt == 1 {
            vec![three.entry(0), Outcome::Corrupt(stamp_off), three.entry(2)]
        } else {
            vec![three.entry(0), three.entry(2)]
        };
        let key = stamp_key(&three.path);
        assert_ne!(key, 0, "a keyed file");
        assert_eq!(
            read_u64(&three.path, stamp_off),
            (three.ids[1] | STATE_COMMITTED) ^ key
        );
        write_u64(&three.path, stamp_off, forge(three.ids[1], key));
        let ring = three.open();
        let peeked: Vec<u64> = ring.peek().filter_map(|e| e.ok().map(|e| e.id())).collect();
        assert!(!peeked.contains(&three.ids[1]), "{name}: peek returned it");
        assert_eq!(drain(&ring), expected, "{name}");
        let stats = ring.stats();
        assert_eq!(
            (stats.corrupt, stats.abandoned),
            (corrupt, abandoned),
            "{name}: {stats:?}"
        );
    }
}

/// A single bit flip turns a COMMITTED stamp (state 2) into PADDING (state 3). When the
/// ring has already wrapped, the end of that lap lies below `write_pos`, so a reader
/// trusting the padding jumps to the lap end and loses every intact entry between the
/// damaged record and the lap end, without an error or a counter. A real padding
/// record is only ever placed in front of a record that did not fit in the rest of
/// the lap, which the reader can check before trusting it.
#[test]
fn forged_padding_stamp_loses_no_intact_entry_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = options(8192, OnFull::Reject).create(&path).unwrap();
    // 560-byte records at 0, 560, ... 3360; the eighth wraps to 4096 after padding.
    let mut entries = Vec::new();
    let mut push = |seq| {
        let data = payload(seq, 500);
        entries.push((ring.push(&data).unwrap(), data));
    };
    (0..7).for_each(&mut push);
    for _ in 0..3 {
        ring.pop().unwrap().unwrap();
    }
    push(7);
    assert_eq!(entries[7].0, 4096, "the last entry starts the second lap");
    let damaged = entries[4].0;
    drop(ring);
    flip_bit(&path, HEADER_LEN + damaged, 0);
    assert_eq!(
        read_u64(&path, HEADER_LEN + damaged),
        stamp(&path, damaged, STATE_PADDING)
    );

    let ring = Ring::open(&path).unwrap();
    let delivered: Vec<u64> = drain(&ring)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Entry(id, data) => {
                let (_, expected) = entries.iter().find(|(e, _)| *e == id).unwrap();
                assert_eq!(&data, expected);
                Some(id)
            }
            Outcome::Corrupt(_) => None,
        })
        .collect();
    assert!(!delivered.contains(&damaged));
    let intact: Vec<u64> = [3, 5, 6, 7].iter().map(|&i| entries[i].0).collect();
    assert_eq!(
        delivered,
        intact,
        "entries after the forged padding were lost (stats {:?})",
        ring.stats()
    );
}

#[test]
fn zeroed_record_is_skipped_after_the_abandon_timeout() {
    let three = Three::new();
    let len = (REC_HEADER_LEN + 203).next_multiple_of(8) as usize;
    patch(&three.path, three.rec_off(1), &vec![0; len]);
    let ring = three.open();
    let started = Instant::now();
    assert_eq!(drain(&ring), vec![three.entry(0), three.entry(2)]);
    // The stall clock is the coarse monotonic clock (one kernel tick, 1-10 ms), so the
    // skip may come up to a tick early; it must not come at once.
    let waited = started.elapsed();
    assert!(
        waited >= ABANDON / 2,
        "skipped after {waited:?}, before the abandon timeout"
    );
    assert_eq!(ring.stats().abandoned, 1);
    assert_identity(&ring);
}

#[test]
fn overwriting_push_skips_a_damaged_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = options(8192, OnFull::Overwrite).create(&path).unwrap();
    let max = ring.max_entry_size();
    let first = ring.push(&payload(1, max)).unwrap();
    let second = ring.push(&payload(2, 100)).unwrap();
    drop(ring);
    flip_bit(&path, HEADER_LEN + first + REC_DATA_LEN_OFFSET, 2);
    let ring = Ring::open(&path).unwrap();
    // Needs the space of the damaged first record: the push skips it by scanning.
    let third = ring.push(&payload(3, max)).unwrap();
    let outcome = drain(&ring);
    assert!(
        outcome == vec![Outcome::Entry(third, payload(3, max))]
            || outcome
                == vec![
                    Outcome::Entry(second, payload(2, 100)),
                    Outcome::Entry(third, payload(3, max))
                ],
        "{outcome:?}"
    );
    assert_eq!(ring.stats().corrupt, 1);
}

// ---------------------------------------------------------------- randomized damage

/// How one iteration damaged the file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    FlipBit { offset: u64, bit: u32 },
    Overwrite { offset: u64, len: u64, seed: u64 },
}

impl Damage {
    fn range(&self) -> (u64, u64) {
        match *self {
            Damage::FlipBit { offset, .. } => (offset, offset + 1),
            Damage::Overwrite { offset, len, .. } => (offset, offset + len),
        }
    }

    fn touches(&self, start: u64, end: u64) -> bool {
        let (from, to) = self.range();
        from < end && start < to
    }

    fn apply(&self, bytes: &mut [u8]) {
        match *self {
            Damage::FlipBit { offset, bit } => bytes[offset as usize] ^= 1 << bit,
            Damage::Overwrite { offset, len, seed } => {
                let mut rng = Rng(seed | 1);
                for byte in &mut bytes[offset as usize..(offset + len) as usize] {
                    *byte = rng.next() as u8;
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    refused: u64,
    opened: u64,
    entries: u64,
    corrupt_errors: u64,
    all_delivered: u64,
}

/// Builds a ring whose live entries straddle a lap end with a padding record, and
/// some entries popped before (whose bytes may still be in the file).
fn brute_force_fixture(
    path: &Path,
    policy: OnFull,
) -> (HashMap<u64, Vec<u8>>, HashSet<u64>, Vec<u64>) {
    let ring = options(8192, policy).create(path).unwrap();
    let mut pushed = HashMap::new();
    let mut popped_before = HashSet::new();
    let mut seq = 0;
    let mut push = |ring: &Ring, len: usize| {
        seq += 1;
        let data = payload(seq, len);
        let id = ring.push(&data).unwrap();
        pushed.insert(id, data);
        id
    };
    let mut live: Vec<u64> = (0..3).map(|_| push(&ring, 1000)).collect();
    for _ in 0..2 {
        let id = ring.pop().unwrap().unwrap().id();
        live.retain(|live_id| *live_id != id);
        popped_before.insert(id);
    }
    for len in [1000, 100, 0, 300, 7, 64] {
        live.push(push(&ring, len));
    }
    let stats = ring.stats();
    assert!(
        stats.write_pos > 4096 && stats.read_pos < 4096,
        "fixture must straddle a lap: {stats:?}"
    );
    assert_eq!(ring.len(), live.len());
    drop(ring);
    live.sort_unstable();
    (pushed, popped_before, live)
}

fn brute_force(
    policy: OnFull,
    seed: u64,
    iterations: u32,
    progress: &mpsc::Sender<String>,
) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.ring");
    let (pushed, popped_before, live) = brute_force_fixture(&source, policy);
    let pristine = std::fs::read(&source).unwrap();
    let file_len = pristine.len() as u64;
    let path = dir.path().join("damaged.ring");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for iteration in 0..iterations {
        // A quarter anywhere, a quarter in the header's fields and atomics, half in the
        // region, where the records are.
        let (lo, hi) = match rng.below(4) {
            0 => (0, file_len),
            1 => (0, 640),
            _ => (HEADER_LEN, file_len),
        };
        let damage = if rng.below(2) == 0 {
            Damage::FlipBit {
                offset: lo + rng.below(hi - lo),
                bit: rng.below(8) as u32,
            }
        } else {
            let len = 1 + rng.below(8);
            Damage::Overwrite {
                offset: lo + rng.below(hi - lo - len),
                len,
                seed: rng.next(),
            }
        };
        let what = format!("{policy:?} seed {seed:#x} iteration {iteration}: {damage:?}");
        progress.send(what.clone()).expect("watchdog alive");
        let mut bytes = pristine.clone();
        damage.apply(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();

        let ring = match Ring::open(&path) {
            Ok(ring) => ring,
            Err(
                Error::NotARing { .. } | Error::UnsupportedVersion { .. } | Error::Corrupt { .. },
            ) => {
                tally.refused += 1;
                continue;
            }
            Err(e) => panic!("{what}: open failed with {e:?}"),
        };
        tally.opened += 1;
        // Rewinding read_pos can't be told from a real position, and may bring back
        // entries popped before the damage; anything else must not.
        let may_resurrect = damage.touches(READ_POS_OFFSET, READ_POS_OFFSET + 8);
        let check = |id: u64, data: &[u8], source: &str| {
            let expected = pushed
                .get(&id)
                .unwrap_or_else(|| panic!("{what}: {source} returned ID {id}, never pushed"));
            assert_eq!(
                data,
                &expected[..],
                "{what}: {source} returned ID {id} with other bytes"
            );
            assert!(
                may_resurrect || !popped_before.contains(&id),
                "{what}: {source} returned ID {id}, popped before the damage"
            );
        };

        let mut peeked = 0;
        for item in ring.peek() {
            peeked += 1;
            assert!(peeked <= ring.capacity() + 1, "{what}: peek does not end");
            if let Ok(entry) = item {
                assert_eq!(entry.version(), 1, "{what}");
                check(entry.id(), entry.data(), "peek");
            }
        }

        let mut seen = HashSet::new();
        for outcome in drain(&ring) {
            match outcome {
                Outcome::Entry(id, data) => {
                    check(id, &data, "pop");
                    assert!(seen.insert(id), "{what}: entry {id} popped twice");
                    tally.entries += 1;
                }
                Outcome::Corrupt(offset) => {
                    assert!(
                        offset < file_len,
                        "{what}: Corrupt offset {offset} outside the file"
                    );
                    tally.corrupt_errors += 1;
                }
            }
        }
        if live.iter().all(|id| seen.contains(id)) {
            tally.all_delivered += 1;
        }

        // Recovered: the ring takes and returns a new entry.
        let fresh = payload(1_000_000 + u64::from(iteration), 24);
        let id = ring
            .push(&fresh)
            .unwrap_or_else(|e| panic!("{what}: push after draining failed: {e:?}"));
        let after = drain(&ring);
        assert_eq!(
            after,
            vec![Outcome::Entry(id, fresh)],
            "{what}: ring after recovery"
        );
    }
    tally
}

/// Runs `brute_force` on a worker thread; the test fails if one iteration takes
/// longer than the watchdog allows (a hang inside the library), naming it.
fn brute_force_watched(policy: OnFull, seed: u64, iterations: u32) -> Tally {
    let (progress, updates) = mpsc::channel();
    let worker = std::thread::spawn(move || brute_force(policy, seed, iterations, &progress));
    let mut last = String::from("(start)");
    loop {
        match updates.recv_timeout(Duration::from_secs(20)) {
            Ok(what) => last = what,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang: no progress in 20 s at {last}"),
        }
    }
    match worker.join() {
        Ok(tally) => tally,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `MMRING_DAMAGE_ITERATIONS` and `MMRING_DAMAGE_SEED` turn this into a longer soak
/// with other damage; the defaults keep it to a few seconds.
#[test]
fn random_damage_never_panics_hangs_or_returns_a_wrong_entry() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let iterations = env("MMRING_DAMAGE_ITERATIONS").unwrap_or(2000) as u32;
    let seed = env("MMRING_DAMAGE_SEED").unwrap_or(0x5eed_0000);
    let started = Instant::now();
    for (policy, seed) in [(OnFull::Reject, seed + 1), (OnFull::Overwrite, seed + 2)] {
        let tally = brute_force_watched(policy, seed, iterations);
        println!("{policy:?}: {tally:?} in {:?}", started.elapsed());
        // The damage reached every kind of outcome, so the assertions above were
        // exercised, not vacuous.
        assert!(tally.refused > 0 && tally.opened > 0, "{tally:?}");
        assert!(tally.corrupt_errors > 0 && tally.entries > 0, "{tally:?}");
        assert!(tally.all_delivered > 0, "{tally:?}");
    }
}

/// Regression: at an abandoned record whose claim word gives an impossible length, peek
/// ended its listing without a word, while verify reports the claim word and pop
/// reports `Corrupt` there and goes on. Peek now reports it, at the same offset.
#[test]
fn abandoned_record_with_an_impossible_length_is_reported_by_peek_as_by_pop() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_ring(dir.path(), "r", 65536, OnFull::Reject);
    let (first, second) = {
        let ring = Ring::open(&path).unwrap();
        (ring.push(b"first").unwrap(), ring.push(b"second").unwrap())
    };
    let rec = HEADER_LEN + first;
    write_u64(
        &path,
        rec + REC_STAMP_OFFSET,
        stamp(&path, first, STATE_ABANDONED),
    );
    write_u64(&path, rec + REC_CLAIM_OFFSET, u64::from(u32::MAX));

    let report = mmring::verify(&path).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].offset, rec + REC_CLAIM_OFFSET);
    let ring = Ring::open(&path).unwrap();
    let peeked: Vec<_> = ring.peek().map(|e| e.map(|e| e.id())).collect();
    assert_eq!(peeked.len(), 1, "{peeked:?}");
    assert_corrupt_at(peeked.into_iter().next().unwrap(), rec + REC_CLAIM_OFFSET);
    assert_corrupt_at(
        ring.pop().map(|e| e.map(|e| e.id())),
        rec + REC_CLAIM_OFFSET,
    );
    assert_eq!(ring.pop().unwrap().map(|e| e.id()), Some(second));
}
