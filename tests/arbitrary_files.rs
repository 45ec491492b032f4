//! Arbitrary files and arbitrary header values, on the stable toolchain: the
//! property-test counterpart of the `open_bytes` fuzz target, run on every `.ci/run`.
//!
//! What it proves: for any bytes at all (optionally with the magic, the lengths, the
//! checksum and the positions made valid, so that the region's contents are what is
//! tested), `Ring::open` returns a ring or exactly `NotARing`, `UnsupportedVersion` or
//! `Corrupt`, and peeking and popping everything never panics, never loops without
//! end, never returns an entry over `max_entry_size`, and pops strictly increasing
//! IDs. For a real ring whose static header fields, stamp key and key checksum are
//! replaced by arbitrary values, `open` returns exactly the error an independent
//! reading of docs/FORMAT.md predicts (the first failing check, at the offset of its
//! field), and when every field is valid the ring opens with those parameters, and its
//! entries intact if the key it reads is the one they were stamped with, else none of
//! them returned. For arbitrary read
//! and write positions, `open` refuses exactly the pairs that break alignment, the
//! 2^62 limit or `read_pos <= write_pos <= read_pos + region_len`, at the offset of
//! the position that does.

use std::path::Path;
use std::time::Duration;

use mmring::{Error, OnFull, Options, Ring};
use proptest::prelude::*;
use proptest::test_runner::Config;

// ---------------------------------------------------------------- layout (FORMAT.md)

const MAGIC: &[u8; 8] = b"\x89MMRING\n";
const VERSION_OFFSET: usize = 8;
const HEADER_LEN_OFFSET: usize = 12;
const FILE_LEN_OFFSET: usize = 16;
const REGION_LEN_OFFSET: usize = 24;
const DEFAULT_TTL_OFFSET: usize = 32;
const ON_FULL_OFFSET: usize = 36;
const ABANDON_MS_OFFSET: usize = 40;
const FLAGS_OFFSET: usize = 44;
const RESERVED_OFFSET: usize = 56;
const HEADER_CRC_OFFSET: usize = 60;
const STAMP_KEY_OFFSET: usize = 64;
const STAMP_KEY_CRC_OFFSET: usize = 72;
const FIXED_HEADER_LEN: usize = 76;
const WRITE_POS_OFFSET: usize = 128;
const READ_POS_OFFSET: usize = 256;
const HEADER_LEN: u64 = 4096;
const MIN_REGION_LEN: u64 = 4096;
const MAX_REGION_LEN: u64 = 1 << 46;
const MAX_POS: u64 = 1 << 62;
/// `flags` bit 0: batch runs.
const FLAG_BATCH_RUNS: u32 = 1;
/// `flags` bit 1: stamps are XORed with the stamp key.
const FLAG_STAMP_KEY: u32 = 2;
/// The bits a stamp key may have: 3 to 61.
const STAMP_KEY_MASK: u64 = 0x3FFF_FFFF_FFFF_FFF8;

/// The ring file size the header tests use.
const SIZE: u64 = 8192 + 64;

fn put_u32(bytes: &mut [u8], off: usize, value: u32) {
    bytes[off..off + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], off: usize, value: u64) {
    bytes[off..off + 8].copy_from_slice(&value.to_le_bytes());
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]);
    put_u32(bytes, HEADER_CRC_OFFSET, crc);
}

fn key_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(&bytes[STAMP_KEY_OFFSET..STAMP_KEY_CRC_OFFSET])
}

fn fix_key_crc(bytes: &mut [u8]) {
    let crc = key_crc(bytes);
    put_u32(bytes, STAMP_KEY_CRC_OFFSET, crc);
}

/// The key stamps are read with: the stamp key if `flags` has `FLAG_STAMP_KEY`, else 0.
fn stamp_key(bytes: &[u8]) -> u64 {
    if u32_at(bytes, FLAGS_OFFSET) & FLAG_STAMP_KEY != 0 {
        u64_at(bytes, STAMP_KEY_OFFSET)
    } else {
        0
    }
}

/// Peeks and pops everything in `ring` within fixed bounds and checks what comes out.
fn drain_checked(ring: &Ring, file_len: u64) -> Result<(), TestCaseError> {
    let max = ring.max_entry_size();
    let bound = 2 * ring.capacity() + 64;
    for entry in ring.peek().take(bound).flatten() {
        prop_assert!(entry.data().len() <= max);
    }
    let mut last = None;
    for _ in 0..bound {
        match ring.pop() {
            Ok(Some(entry)) => {
                prop_assert!(entry.data().len() <= max);
                prop_assert!(last < Some(entry.id()), "{last:?} then {}", entry.id());
                last = Some(entry.id());
            }
            Ok(None) => break,
            Err(Error::Corrupt { offset, .. }) => prop_assert!(offset < file_len),
            Err(other) => prop_assert!(false, "pop: unexpected {other:?}"),
        }
    }
    let _ = (ring.len(), ring.stats());
    Ok(())
}

/// Writes `bytes` to `path` and opens it: a ring, or one of the errors a bad file may
/// give. Anything else fails the case.
fn open_bytes(path: &Path, bytes: &[u8]) -> Result<Option<Ring>, TestCaseError> {
    std::fs::write(path, bytes).unwrap();
    match Ring::open(path) {
        Ok(ring) => Ok(Some(ring)),
        Err(Error::NotARing { path: got, .. } | Error::UnsupportedVersion { path: got, .. }) => {
            prop_assert_eq!(got, path);
            Ok(None)
        }
        Err(Error::Corrupt { offset, .. }) => {
            prop_assert!(offset < bytes.len() as u64);
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!("open: unexpected {other:?}"))),
    }
}

/// Arbitrary bytes, with some parts made valid as `repair` asks (bit 0: magic and
/// version, bit 1: lengths, bit 2: checksums, the header's and, where `flags` has
/// `FLAG_STAMP_KEY`, the stamp key's, bit 3: positions in range).
fn repaired(mut bytes: Vec<u8>, repair: u8, extra_words: u8) -> Vec<u8> {
    if repair & 2 != 0 {
        let len = 8192 + 8 * u64::from(extra_words);
        bytes.resize(len as usize, 0);
        put_u32(&mut bytes, HEADER_LEN_OFFSET, HEADER_LEN as u32);
        put_u64(&mut bytes, FILE_LEN_OFFSET, len);
        put_u64(&mut bytes, REGION_LEN_OFFSET, len - HEADER_LEN);
    }
    if repair & 1 != 0 && bytes.len() >= 12 {
        bytes[..8].copy_from_slice(MAGIC);
        put_u32(&mut bytes, VERSION_OFFSET, 1);
    }
    if repair & 4 != 0 && bytes.len() >= 64 {
        fix_crc(&mut bytes);
    }
    if repair & 4 != 0
        && bytes.len() >= FIXED_HEADER_LEN
        && u32_at(&bytes, FLAGS_OFFSET) & FLAG_STAMP_KEY != 0
    {
        fix_key_crc(&mut bytes);
    }
    if repair & 8 != 0 && bytes.len() as u64 > HEADER_LEN {
        let region = bytes.len() as u64 - HEADER_LEN;
        let read = (u64_at(&bytes, READ_POS_OFFSET) % (1 << 40)) / 8 * 8;
        let write = read + (u64_at(&bytes, WRITE_POS_OFFSET) % (region / 8 + 1)) * 8;
        put_u64(&mut bytes, READ_POS_OFFSET, read);
        put_u64(&mut bytes, WRITE_POS_OFFSET, write);
    }
    bytes
}

/// A closed ring of `SIZE` bytes with three entries, one popped; returns its bytes
/// and the two entries left. Keyed, as every new file.
fn template(dir: &Path) -> (Vec<u8>, Vec<(u64, Vec<u8>)>) {
    let path = dir.join("template");
    let ring = Options::new().size(SIZE).create(&path).unwrap();
    ring.push(b"popped").unwrap();
    let left = [b"second".to_vec(), vec![0xa5; 300]];
    let ids: Vec<u64> = left.iter().map(|d| ring.push(d).unwrap()).collect();
    ring.pop().unwrap().unwrap();
    drop(ring);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        u32_at(&bytes, FLAGS_OFFSET),
        FLAG_BATCH_RUNS | FLAG_STAMP_KEY
    );
    let key = stamp_key(&bytes);
    assert!(key != 0 && key & !STAMP_KEY_MASK == 0, "key {key:#x}");
    assert_eq!(u32_at(&bytes, STAMP_KEY_CRC_OFFSET), key_crc(&bytes));
    assert_eq!(
        mmring::layout::stamp_key(&bytes).expect("the first 76 bytes of a ring file"),
        key
    );
    (bytes, ids.into_iter().zip(left).collect())
}

/// One static header field and the value the case puts there (`None`: keep).
#[derive(Clone, Debug)]
struct HeaderValues {
    magic: Option<[u8; 8]>,
    version: Option<u32>,
    header_len: Option<u32>,
    file_len: Option<u64>,
    region_len: Option<u64>,
    ttl: Option<u32>,
    on_full: Option<u32>,
    abandon_ms: Option<u32>,
    flags: Option<u32>,
    reserved: Option<u32>,
    fix_crc: bool,
    /// The stamp key, set to this value...
    stamp_key: Option<u64>,
    /// ...and then this bit of it flipped.
    key_flip: Option<u32>,
    stamp_key_crc: Option<u32>,
    /// Recompute the stamp key checksum (after the changes above).
    fix_key_crc: bool,
}

/// A value for a field: usually a plausible or boundary one, sometimes anything.
fn u32_value(interesting: &'static [u32]) -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        4 => Just(None),
        2 => proptest::sample::select(interesting).prop_map(Some),
        1 => any::<u32>().prop_map(Some),
    ]
}

/// Stamp keys worth trying: none, bits in the state bits, the lowest and highest key
/// bits, bits 62 and 63, the whole mask, and everything.
const KEY_VALUES: [u64; 9] = [
    0,
    1,
    4,
    8,
    1 << 61,
    1 << 62,
    1 << 63,
    STAMP_KEY_MASK,
    u64::MAX,
];

fn u64_value(interesting: &'static [u64]) -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        4 => Just(None),
        2 => proptest::sample::select(interesting).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ]
}

fn header_values() -> impl Strategy<Value = HeaderValues> {
    let magic = prop_oneof![
        8 => Just(None),
        1 => any::<[u8; 8]>().prop_map(Some),
    ];
    (
        (
            magic,
            u32_value(&[0, 1, 2, u32::MAX]),
            u32_value(&[0, 64, 4095, 4096, 4097, 8192]),
            u64_value(&[0, 4096, SIZE - 8, SIZE, SIZE + 8, u64::MAX]),
            u64_value(&[
                0,
                8,
                4095,
                4096,
                SIZE - 4096,
                SIZE - 4096 + 4,
                SIZE,
                1 << 46,
                u64::MAX,
            ]),
        ),
        (
            u32_value(&[0, 1, 3600, u32::MAX]),
            u32_value(&[0, 1, 2, u32::MAX]),
            u32_value(&[0, 1, 2000, u32::MAX]),
            u32_value(&[0, 1, 2, 3, 4, 7, 0x8000_0000, 0x8000_0003]),
            u32_value(&[0, 1]),
            prop_oneof![3 => Just(true), 1 => Just(false)],
        ),
        (
            u64_value(&KEY_VALUES),
            prop_oneof![4 => Just(None), 1 => (0u32..64).prop_map(Some)],
            u32_value(&[0, u32::MAX]),
            prop_oneof![3 => Just(true), 1 => Just(false)],
        ),
    )
        .prop_map(
            |(
                (magic, version, header_len, file_len, region_len),
                (ttl, on_full, abandon_ms, flags, reserved, fix_crc),
                (stamp_key, key_flip, stamp_key_crc, fix_key_crc),
            )| HeaderValues {
                magic,
                version,
                header_len,
                file_len,
                region_len,
                ttl,
                on_full,
                abandon_ms,
                flags,
                reserved,
                fix_crc,
                stamp_key,
                key_flip,
                stamp_key_crc,
                fix_key_crc,
            },
        )
}

/// Every static field kept but `flags`, with its checksum recomputed; the stamp key
/// and its checksum as in `header_values`, changed more often: the cases that reach
/// the key's checks.
fn key_values() -> impl Strategy<Value = HeaderValues> {
    (
        prop_oneof![
            2 => Just(None),
            4 => proptest::sample::select(&[0u32, 1, 2, 3][..]).prop_map(Some),
            1 => proptest::sample::select(&[4u32, 6, 0x8000_0002][..]).prop_map(Some),
            1 => any::<u32>().prop_map(Some),
        ],
        u64_value(&KEY_VALUES),
        prop_oneof![1 => Just(None), 1 => (0u32..64).prop_map(Some)],
        u32_value(&[0, u32::MAX]),
        any::<bool>(),
    )
        .prop_map(
            |(flags, stamp_key, key_flip, stamp_key_crc, fix_key_crc)| HeaderValues {
                magic: None,
                version: None,
                header_len: None,
                file_len: None,
                region_len: None,
                ttl: None,
                on_full: None,
                abandon_ms: None,
                flags,
                reserved: None,
                fix_crc: true,
                stamp_key,
                key_flip,
                stamp_key_crc,
                fix_key_crc,
            },
        )
}

/// What docs/FORMAT.md says `Ring::open` must answer for this header, checked in its
/// order: magic, version, checksum, then each field, then (with `FLAG_STAMP_KEY`) the
/// stamp key's checksum and the key.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    NotARing,
    Version(u32),
    CorruptAt(u64),
    /// Opens, reading stamps with this key.
    Opens(u64),
}

fn expected(bytes: &[u8], crc_ok: bool) -> Expected {
    let u32_at = |off: usize| u32_at(bytes, off);
    if &bytes[..8] != MAGIC {
        return Expected::NotARing;
    }
    if u32_at(VERSION_OFFSET) != 1 {
        return Expected::Version(u32_at(VERSION_OFFSET));
    }
    if !crc_ok {
        return Expected::CorruptAt(HEADER_CRC_OFFSET as u64);
    }
    let file_len = u64_at(bytes, FILE_LEN_OFFSET);
    let region_len = u64_at(bytes, REGION_LEN_OFFSET);
    let checks = [
        (
            HEADER_LEN_OFFSET,
            u32_at(HEADER_LEN_OFFSET) == HEADER_LEN as u32,
        ),
        (FILE_LEN_OFFSET, file_len == bytes.len() as u64),
        (
            REGION_LEN_OFFSET,
            region_len == SIZE - HEADER_LEN
                && region_len.is_multiple_of(8)
                && (MIN_REGION_LEN..=MAX_REGION_LEN).contains(&region_len),
        ),
        (ON_FULL_OFFSET, u32_at(ON_FULL_OFFSET) <= 2),
        (ABANDON_MS_OFFSET, u32_at(ABANDON_MS_OFFSET) != 0),
        (RESERVED_OFFSET, u32_at(RESERVED_OFFSET) == 0),
        // Bit 0: batch runs; bit 1: stamp key; no other flag is defined.
        (
            FLAGS_OFFSET,
            u32_at(FLAGS_OFFSET) & !(FLAG_BATCH_RUNS | FLAG_STAMP_KEY) == 0,
        ),
    ];
    if let Some((offset, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Expected::CorruptAt(*offset as u64);
    }
    // The key and its checksum are read only where the flag says they are there.
    let keyed = u32_at(FLAGS_OFFSET) & FLAG_STAMP_KEY != 0;
    let key = u64_at(bytes, STAMP_KEY_OFFSET);
    if keyed && u32_at(STAMP_KEY_CRC_OFFSET) != key_crc(bytes) {
        return Expected::CorruptAt(STAMP_KEY_CRC_OFFSET as u64);
    }
    if keyed && key & !STAMP_KEY_MASK != 0 {
        return Expected::CorruptAt(STAMP_KEY_OFFSET as u64);
    }
    Expected::Opens(if keyed { key } else { 0 })
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Puts `values` into the template ring's header and checks that `Ring::open` gives
/// exactly what `expected` predicts.
fn header_values_case(values: HeaderValues) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, entries) = template(dir.path());
    let template_key = stamp_key(&bytes);
    if let Some(magic) = values.magic {
        bytes[..8].copy_from_slice(&magic);
    }
    for (off, value) in [
        (VERSION_OFFSET, values.version),
        (HEADER_LEN_OFFSET, values.header_len),
        (DEFAULT_TTL_OFFSET, values.ttl),
        (ON_FULL_OFFSET, values.on_full),
        (ABANDON_MS_OFFSET, values.abandon_ms),
        (FLAGS_OFFSET, values.flags),
        (RESERVED_OFFSET, values.reserved),
    ] {
        if let Some(value) = value {
            put_u32(&mut bytes, off, value);
        }
    }
    for (off, value) in [
        (FILE_LEN_OFFSET, values.file_len),
        (REGION_LEN_OFFSET, values.region_len),
    ] {
        if let Some(value) = value {
            put_u64(&mut bytes, off, value);
        }
    }
    if let Some(key) = values.stamp_key {
        put_u64(&mut bytes, STAMP_KEY_OFFSET, key);
    }
    if let Some(bit) = values.key_flip {
        let key = u64_at(&bytes, STAMP_KEY_OFFSET) ^ 1 << bit;
        put_u64(&mut bytes, STAMP_KEY_OFFSET, key);
    }
    if let Some(crc) = values.stamp_key_crc {
        put_u32(&mut bytes, STAMP_KEY_CRC_OFFSET, crc);
    }
    if values.fix_key_crc {
        fix_key_crc(&mut bytes);
    }
    if values.fix_crc {
        fix_crc(&mut bytes);
    }
    let crc_ok = bytes[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4]
        == crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]).to_le_bytes();
    prop_assert!(crc_ok || !values.fix_crc);
    let want = expected(&bytes, crc_ok);
    let path = dir.path().join("r");
    std::fs::write(&path, &bytes).unwrap();
    match (Ring::open(&path), &want) {
        (Err(Error::NotARing { path: got, .. }), Expected::NotARing) => prop_assert_eq!(got, path),
        (
            Err(Error::UnsupportedVersion {
                path: got,
                found,
                supported,
            }),
            Expected::Version(v),
        ) => {
            prop_assert_eq!(got, path);
            prop_assert_eq!((found, supported), (*v, 1));
        }
        (Err(Error::Corrupt { offset, .. }), Expected::CorruptAt(at)) => {
            prop_assert_eq!(offset, *at)
        }
        (Ok(ring), Expected::Opens(key)) => {
            let u32_at = |off: usize| u32_at(&bytes, off);
            prop_assert_eq!(
                ring.default_ttl(),
                Duration::from_secs(u32_at(DEFAULT_TTL_OFFSET).into())
            );
            prop_assert_eq!(
                ring.abandon_timeout(),
                Duration::from_millis(u32_at(ABANDON_MS_OFFSET).into())
            );
            let policy = match u32_at(ON_FULL_OFFSET) {
                0 => OnFull::Overwrite,
                1 => OnFull::Reject,
                _ => OnFull::Block,
            };
            prop_assert_eq!(ring.on_full(), policy);
            if *key == template_key {
                for (id, data) in &entries {
                    let entry = ring
                        .pop()
                        .unwrap()
                        .expect("entry survives a valid header change");
                    prop_assert_eq!((entry.id(), entry.data()), (*id, data.as_slice()));
                }
            } else {
                // Read with another key, no stamp is the stamp of its record: no
                // entry is returned, whether the records are reported or waited for
                // (up to the file's abandon timeout).
                let bound = 2 * ring.capacity() + 64;
                for entry in ring.peek().take(bound) {
                    prop_assert!(
                        entry.is_err(),
                        "peek returned {:?} under key {key:#x}",
                        entry.map(|e| e.id())
                    );
                }
                for _ in 0..bound {
                    match ring.pop() {
                        Ok(None) => break,
                        Ok(Some(entry)) => {
                            prop_assert!(false, "pop returned {} under key {key:#x}", entry.id())
                        }
                        Err(Error::Corrupt { offset, .. }) => {
                            prop_assert!(offset < bytes.len() as u64)
                        }
                        Err(other) => prop_assert!(false, "pop: unexpected {other:?}"),
                    }
                }
            }
        }
        (got, want) => prop_assert!(false, "open gave {got:?}, expected {want:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_open_as_a_ring_or_a_file_error_and_drain_safely(
        bytes in proptest::collection::vec(any::<u8>(), 0..9000),
        repair in any::<u8>(),
        extra_words in any::<u8>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let bytes = repaired(bytes, repair, extra_words);
        if let Some(ring) = open_bytes(&path, &bytes)? {
            drain_checked(&ring, bytes.len() as u64)?;
        }
    }

    #[test]
    fn arbitrary_header_values_give_exactly_the_predicted_outcome(values in header_values()) {
        header_values_case(values)?;
    }

    #[test]
    fn arbitrary_flags_and_stamp_keys_give_exactly_the_predicted_outcome(values in key_values()) {
        header_values_case(values)?;
    }

    #[test]
    fn arbitrary_positions_are_refused_exactly_when_they_break_the_invariant(
        read in prop_oneof![any::<u64>(), (0u64..1 << 20), Just(MAX_POS - 8), Just(MAX_POS)],
        distance in prop_oneof![any::<u64>(), (0u64..=SIZE), Just(SIZE - HEADER_LEN), Just(SIZE - HEADER_LEN + 8)],
        backwards in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut bytes, _) = template(dir.path());
        let write = if backwards { read.wrapping_sub(distance) } else { read.wrapping_add(distance) };
        put_u64(&mut bytes, READ_POS_OFFSET, read);
        put_u64(&mut bytes, WRITE_POS_OFFSET, write);
        let valid = |pos: u64| pos.is_multiple_of(8) && pos < MAX_POS;
        let region = SIZE - HEADER_LEN;
        let want = if !valid(read) {
            Some(READ_POS_OFFSET as u64)
        } else if !valid(write) {
            Some(WRITE_POS_OFFSET as u64)
        } else if read > write || write > read + region {
            Some(READ_POS_OFFSET as u64)
        } else {
            None
        };
        let path = dir.path().join("r");
        std::fs::write(&path, &bytes).unwrap();
        match (Ring::open(&path), want) {
            (Err(Error::Corrupt { offset, .. }), Some(at)) => prop_assert_eq!(offset, at),
            (Ok(ring), None) => drain_checked(&ring, SIZE)?,
            (got, want) => prop_assert!(false, "read {read} write {write}: {got:?}, expected Corrupt at {want:?}"),
        }
    }
}
