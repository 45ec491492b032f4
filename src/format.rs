//! The byte layout of a ring file: every offset, size and state value, and the
//! encoding and validation of the header and record headers.
//!
//! `docs/FORMAT.md` is the specification; this module mirrors it one constant per
//! field, and a unit test compares the two. Nothing here touches memory: callers copy
//! bytes out of the map and hand them in, so this module has no `unsafe`.
//!
//! ```text
//! file:   [ header: HEADER_LEN bytes ][ region: region_len bytes .................. ]
//!
//! header  0       8       16      24      32      40      48      56      64
//!         +-------+---+---+-------+-------+---+---+---+---+-------+---+---+
//!         | magic |ver|hln|file_ln|regn_ln|ttl|pol|abt|flg|created|rsv|crc|  static, checksummed
//!         +=======+===+===+=======+=======+===+===+===+===+=======+===+===+
//!    128  | write_pos | pushed | evicted |            (own 128-byte slot)
//!    256  | read_pos  | popped |                      (own 128-byte slot)
//!    384  | notify word | waiters |                   (own 128-byte slot; reserved)
//!    512  | expired | corrupt | abandoned |           (rarely written counters)
//!
//! record  0       8   12  16  20      28  32  36      44  48      56
//!         +-------+---+---+---+-------+---+---+-------+---+-------+------ - -
//!         | stamp |len|wrt|mcr|version|dln|ttl|  id   |dcr| wtime | data ...
//!         +-------+---+---+---+-------+---+---+-------+---+-------+------ - -
//! ```
//!
//! Positions (`*_pos`) are monotonically increasing 64-bit byte counts; the byte offset
//! of position `p` inside the region is `p % region_len`. Offsets named `*_OFFSET` are
//! relative to the start of the file (header) or of a record (record fields).

/// The format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The version of the record metadata layout written into each record.
pub(crate) const ENTRY_VERSION: u64 = 1;

/// The first eight bytes of every ring file. The high-bit first byte and the trailing
/// newline make text-mode and 7-bit transfers detectable, as in PNG.
pub(crate) const MAGIC: [u8; 8] = *b"\x89MMRING\n";

// ---------------------------------------------------------------- header: static part
/// `[u8; 8]` magic.
pub(crate) const MAGIC_OFFSET: usize = 0;
/// `u32` format version.
pub(crate) const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
/// `u32` length of the header in bytes; the region starts here.
pub(crate) const HEADER_LEN_OFFSET: usize = VERSION_OFFSET + 4;
/// `u64` length of the whole file in bytes.
pub(crate) const FILE_LEN_OFFSET: usize = HEADER_LEN_OFFSET + 4;
/// `u64` length of the record region in bytes (a multiple of 8).
pub(crate) const REGION_LEN_OFFSET: usize = FILE_LEN_OFFSET + 8;
/// `u32` default TTL of entries in seconds; 0 means never expire.
pub(crate) const DEFAULT_TTL_OFFSET: usize = REGION_LEN_OFFSET + 8;
/// `u32` on-full policy (`POLICY_*`).
pub(crate) const ON_FULL_OFFSET: usize = DEFAULT_TTL_OFFSET + 4;
/// `u32` milliseconds after which a stalled reservation is abandoned.
pub(crate) const ABANDON_MS_OFFSET: usize = ON_FULL_OFFSET + 4;
/// `u32` flags (`FLAG_*`); any other bit set makes the file unreadable here.
pub(crate) const FLAGS_OFFSET: usize = ABANDON_MS_OFFSET + 4;
/// `u64` creation time in milliseconds since the Unix epoch.
pub(crate) const CREATED_OFFSET: usize = FLAGS_OFFSET + 4;
/// `u32` reserved, 0.
pub(crate) const RESERVED_OFFSET: usize = CREATED_OFFSET + 8;
/// `u32` CRC32C of bytes `0..HEADER_CRC_OFFSET`.
pub(crate) const HEADER_CRC_OFFSET: usize = RESERVED_OFFSET + 4;
/// Length of the static, checksummed part of the header.
pub(crate) const STATIC_HEADER_LEN: usize = HEADER_CRC_OFFSET + 4;
/// `u64` the key mixed into every stamp (`StampKey`), in files with `FLAG_STAMP_KEY`;
/// unused (0) in others.
pub(crate) const STAMP_KEY_OFFSET: usize = STATIC_HEADER_LEN;
/// `u32` CRC32C of the 8 bytes of `STAMP_KEY_OFFSET`, in files with `FLAG_STAMP_KEY`.
pub(crate) const STAMP_KEY_CRC_OFFSET: usize = STAMP_KEY_OFFSET + 8;
/// Length of the part of the header written once, when the file is created: the
/// static header and the stamp key with its checksum.
pub(crate) const FIXED_HEADER_LEN: usize = STAMP_KEY_CRC_OFFSET + 4;

// ---------------------------------------------------------------- header: atomics
/// Distance between independently written atomics: two 64-byte cache lines, because
/// adjacent-line prefetching on x86_64 and 128-byte lines on some aarch64 parts would
/// otherwise make producers and consumers invalidate each other.
pub(crate) const SLOT_LEN: usize = 128;
/// `u64` atomic: position just past the last reserved byte. Written by producers.
pub(crate) const WRITE_POS_OFFSET: usize = SLOT_LEN;
/// `u64` atomic counter: data records reserved (entries pushed).
pub(crate) const PUSHED_OFFSET: usize = WRITE_POS_OFFSET + 8;
/// `u64` atomic counter: committed entries removed by an overwriting producer.
pub(crate) const EVICTED_OFFSET: usize = PUSHED_OFFSET + 8;
/// `u64` atomic: position of the oldest record not yet removed. Written by consumers
/// and by overwriting producers.
pub(crate) const READ_POS_OFFSET: usize = 2 * SLOT_LEN;
/// `u64` atomic counter: entries returned by `pop`.
pub(crate) const POPPED_OFFSET: usize = READ_POS_OFFSET + 8;
/// `u32` atomic futex word: bumped (wrapping) by every push or removal that finds
/// sleepers (DESIGN: Waiting).
pub(crate) const NOTIFY_OFFSET: usize = 3 * SLOT_LEN;
/// `u32` atomic: threads registered as sleeping, or about to sleep, on `NOTIFY_OFFSET`.
/// A waiter killed while registered leaves it too high (costs wake calls, never a hang).
pub(crate) const WAITERS_OFFSET: usize = NOTIFY_OFFSET + 4;
/// `u64` atomic counter: entries dropped because their TTL had passed.
pub(crate) const EXPIRED_OFFSET: usize = 4 * SLOT_LEN;
/// `u64` atomic counter: records skipped because a checksum or field was bad.
pub(crate) const CORRUPT_OFFSET: usize = EXPIRED_OFFSET + 8;
/// `u64` atomic counter: reservations skipped because their writer stalled or died.
pub(crate) const ABANDONED_OFFSET: usize = CORRUPT_OFFSET + 8;
/// `u64` atomic: bit `i` is set while subscriber slot `i` is active, so that a
/// removal with no subscribers costs one load (DESIGN: Subscribers).
pub(crate) const SUB_MASK_OFFSET: usize = 5 * SLOT_LEN;
/// The first subscriber slot; slots follow each other, `SUB_SLOT_LEN` bytes apart.
pub(crate) const SUB_SLOTS_OFFSET: usize = SUB_MASK_OFFSET + 64;
/// Bytes of one subscriber slot.
pub(crate) const SUB_SLOT_LEN: usize = 96;
/// Number of subscriber slots.
pub(crate) const SUB_SLOT_COUNT: usize = 35;
/// End of the subscriber table; the rest of the header is reserved.
pub(crate) const SUB_TABLE_END: usize = SUB_SLOTS_OFFSET + SUB_SLOT_COUNT * SUB_SLOT_LEN;
/// Length of the header; the region starts at this file offset. One 4 KiB page, so
/// the region is page-aligned and later versions have room for more slots.
pub(crate) const HEADER_LEN: usize = 4096;

// ---------------------------------------------------------------- subscriber slots
/// `u64` atomic slot state: `SUB_STATE_*` in bits 0..2, a generation in bits 2..32
/// (bumped on every claim and release, so a handle notices its slot was freed), and
/// the CRC32C of the name in bits 32..64 (so a claim publishes which name it is for).
pub(crate) const SUB_STATE_OFFSET: usize = 0;
/// `u64` atomic: position of the next record the subscriber reads; moved by the
/// subscriber and by every removal that passes it.
pub(crate) const SUB_CURSOR_OFFSET: usize = SUB_STATE_OFFSET + 8;
/// `u64` atomic: the cursor at the subscriber's last commit (where a restart resumes).
pub(crate) const SUB_COMMITTED_OFFSET: usize = SUB_CURSOR_OFFSET + 8;
/// `u64` atomic: entries removed (popped or evicted) while the cursor was at them.
pub(crate) const SUB_MISSED_OFFSET: usize = SUB_COMMITTED_OFFSET + 8;
/// `u64` atomic: the part of `missed` already reported to the subscriber.
pub(crate) const SUB_REPORTED_OFFSET: usize = SUB_MISSED_OFFSET + 8;
/// `u64` atomic: when the subscriber last read or committed, wall-clock ms.
pub(crate) const SUB_ACTIVE_MS_OFFSET: usize = SUB_REPORTED_OFFSET + 8;
/// `u32` length of the name in bytes, 1 to `SUB_NAME_MAX`.
pub(crate) const SUB_NAME_LEN_OFFSET: usize = SUB_ACTIVE_MS_OFFSET + 8;
/// `u32` reserved, 0.
pub(crate) const SUB_RESERVED_OFFSET: usize = SUB_NAME_LEN_OFFSET + 4;
/// The name, UTF-8, `name_len` bytes, zero-filled after.
pub(crate) const SUB_NAME_OFFSET: usize = SUB_RESERVED_OFFSET + 4;
/// Longest subscriber name in bytes.
pub(crate) const SUB_NAME_MAX: usize = SUB_SLOT_LEN - SUB_NAME_OFFSET;
/// Slot state: unused.
pub(crate) const SUB_STATE_FREE: u64 = 0;
/// Slot state: taken by a subscribe call that is writing the name and cursors.
pub(crate) const SUB_STATE_CLAIMING: u64 = 1;
/// Slot state: a subscriber; name and cursors are valid.
pub(crate) const SUB_STATE_ACTIVE: u64 = 2;
/// Mask of the state bits of a slot state word.
pub(crate) const SUB_STATE_MASK: u64 = 3;

// ---------------------------------------------------------------- records
/// Records start on 8-byte boundaries so that every stamp is an aligned `u64`.
pub(crate) const RECORD_ALIGN: u64 = 8;
/// `u64` atomic stamp: the record's position OR'd with its state (`STATE_*`).
pub(crate) const REC_STAMP_OFFSET: usize = 0;
/// `u64` atomic claim word: the claimed length in the low 32 bits (the bytes after the
/// header that the reservation this record starts covers: `data_len`, or more for the
/// first record of a batch run), the writer field in the high 32. Written before the
/// record is claimed, so a reader can skip an abandoned claim.
pub(crate) const REC_CLAIM_OFFSET: usize = REC_STAMP_OFFSET + 8;
/// `u32` CRC32C of the record position and the rest of the metadata (see `meta_crc`).
pub(crate) const REC_META_CRC_OFFSET: usize = REC_CLAIM_OFFSET + 8;
/// `u64` version of this metadata layout (`ENTRY_VERSION`).
pub(crate) const REC_VERSION_OFFSET: usize = REC_META_CRC_OFFSET + 4;
/// `u32` payload length in bytes.
pub(crate) const REC_DATA_LEN_OFFSET: usize = REC_VERSION_OFFSET + 8;
/// `u32` TTL in seconds; 0 means never expire.
pub(crate) const REC_TTL_OFFSET: usize = REC_DATA_LEN_OFFSET + 4;
/// `u64` unique ID of the entry (its position).
pub(crate) const REC_ID_OFFSET: usize = REC_TTL_OFFSET + 4;
/// `u32` CRC32C of the payload.
pub(crate) const REC_DATA_CRC_OFFSET: usize = REC_ID_OFFSET + 8;
/// `u64` write time in milliseconds since the Unix epoch.
pub(crate) const REC_WRITE_TIME_OFFSET: usize = REC_DATA_CRC_OFFSET + 4;
/// Length of a record header; the payload follows.
pub(crate) const REC_HEADER_LEN: usize = REC_WRITE_TIME_OFFSET + 8;

/// Mask of the state bits in a stamp; the rest is the position.
pub(crate) const STATE_MASK: u64 = RECORD_ALIGN - 1;
/// A producer owns the record and is writing it; `claim` holds its length.
pub(crate) const STATE_CLAIMED: u64 = 1;
/// The record is complete and may be read.
pub(crate) const STATE_COMMITTED: u64 = 2;
/// Filler up to the end of the region; the next record starts at the next lap.
pub(crate) const STATE_PADDING: u64 = 3;
/// A reader gave up on a claimed record whose writer stalled; `claim` holds its length.
pub(crate) const STATE_ABANDONED: u64 = 4;
/// A reader skipping a damaged or unclaimed range marked this word as not a record.
pub(crate) const STATE_SKIPPED: u64 = 5;
/// A record of a batch run after its first: complete, and committed together with
/// the run's first record (only in files with `FLAG_BATCH_RUNS`). 7, not 6: two bits
/// from every other state a complete record can be in (`COMMITTED`, `ABANDONED`), so
/// that no single flipped bit makes an abandoned record readable.
pub(crate) const STATE_BATCHED: u64 = 7;

/// Header flag: records may be batch runs (`STATE_BATCHED`). Set in every file this
/// version creates; a reader that does not know batch runs must refuse the file, as
/// version 1 readers without it do (they require `flags == 0`).
pub(crate) const FLAG_BATCH_RUNS: u32 = 1;
/// Header flag: every stamp is XORed with the file's stamp key (`StampKey`), stored
/// at `STAMP_KEY_OFFSET`. Set in every file this version creates; readers that do not
/// know it refuse the file (they require the other flag bits clear).
pub(crate) const FLAG_STAMP_KEY: u32 = 2;
/// Every flag this version knows.
pub(crate) const KNOWN_FLAGS: u32 = FLAG_BATCH_RUNS | FLAG_STAMP_KEY;
/// The bits a stamp key may have: bits 3 to 61. Not the state bits, so that a stamp's
/// state reads the same keyed or not and a zeroed word (state 0) is never a stamp; not
/// bits 62 and 63, so that a word whose top byte is `0xFF` (the fill after a payload)
/// still decodes to a position of 2^62 or more, which no record has.
pub(crate) const STAMP_KEY_MASK: u64 = (MAX_POS - 1) & !STATE_MASK;

/// `OnFull::Overwrite` in the header.
pub(crate) const POLICY_OVERWRITE: u32 = 0;
/// `OnFull::Reject` in the header.
pub(crate) const POLICY_REJECT: u32 = 1;
/// `OnFull::Block` in the header.
pub(crate) const POLICY_BLOCK: u32 = 2;

/// Smallest region accepted: room for a few records and the 2x rule of
/// `max_entry_size`.
pub(crate) const MIN_REGION_LEN: u64 = 4096;
/// Positions beyond this are treated as corrupt, so `pos + region_len` can't overflow.
/// At 10 GB/s a ring takes over 14 years to reach it.
pub(crate) const MAX_POS: u64 = 1 << 62;
/// Largest region accepted; keeps every position arithmetic far from overflow.
pub(crate) const MAX_REGION_LEN: u64 = 1 << 46;

#[cfg(target_endian = "big")]
compile_error!("mmring stores native-endian atomics in the file and is little-endian only");

const _: () = {
    assert!(STATIC_HEADER_LEN == 64);
    assert!(WRITE_POS_OFFSET.is_multiple_of(SLOT_LEN) && READ_POS_OFFSET.is_multiple_of(SLOT_LEN));
    assert!(WRITE_POS_OFFSET >= FIXED_HEADER_LEN);
    assert!(ABANDONED_OFFSET + 8 <= SUB_MASK_OFFSET);
    assert!(NOTIFY_OFFSET.is_multiple_of(4) && WAITERS_OFFSET.is_multiple_of(4));
    assert!(SUB_MASK_OFFSET.is_multiple_of(SLOT_LEN) && SUB_SLOTS_OFFSET.is_multiple_of(8));
    assert!(SUB_SLOT_LEN.is_multiple_of(8) && SUB_SLOT_COUNT >= 32 && SUB_SLOT_COUNT <= 64);
    assert!(SUB_TABLE_END <= HEADER_LEN);
    assert!(SUB_NAME_OFFSET + SUB_NAME_MAX == SUB_SLOT_LEN);
    assert!(REC_HEADER_LEN == 56);
    assert!(REC_HEADER_LEN.is_multiple_of(RECORD_ALIGN as usize));
    assert!(REC_CLAIM_OFFSET.is_multiple_of(8) && REC_STAMP_OFFSET.is_multiple_of(8));
    assert!(HEADER_LEN.is_multiple_of(4096));
};

/// The key a file's stamps are XORed with (FORMAT: File header: stamp key): random
/// bits 3 to 61 drawn when the file is created, or 0 in files made without
/// `FLAG_STAMP_KEY`. The claim and every reader take the word at `p` for the stamp of
/// the record at `p` when, XORed with the key, it is `p | state`. Without a key, a
/// payload word that an earlier lap left at `p` can be made to equal that (positions
/// are predictable); with it, that takes a guess of 59 unknown bits (DESIGN: The
/// stamp key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StampKey(u64);

/// The key of the rings unit tests build by hand: any value in `STAMP_KEY_MASK` with
/// bits in every byte, so that a test storing an unkeyed stamp fails.
#[cfg(test)]
pub(crate) const TEST_STAMP_KEY: StampKey = StampKey(0x1A2B_3C4D_5E6F_7188 & STAMP_KEY_MASK);

impl StampKey {
    /// The key of files without `FLAG_STAMP_KEY`: stamps are `position | state`.
    pub(crate) const NONE: StampKey = StampKey(0);

    /// A key from its stored value; `None` if it has bits outside `STAMP_KEY_MASK`.
    pub(crate) fn new(bits: u64) -> Option<StampKey> {
        (bits & !STAMP_KEY_MASK == 0).then_some(StampKey(bits))
    }

    /// A key from 64 random bits: those in `STAMP_KEY_MASK`.
    pub(crate) fn from_random(random: u64) -> StampKey {
        StampKey(random & STAMP_KEY_MASK)
    }

    /// The stored value.
    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    /// The stamp of a record at `pos` in `state`.
    #[inline(always)]
    pub(crate) fn stamp(self, pos: u64, state: u64) -> u64 {
        debug_assert!(
            pos.is_multiple_of(RECORD_ALIGN),
            "unaligned record position {pos}"
        );
        debug_assert!(state & !STATE_MASK == 0);
        (pos | state) ^ self.0
    }

    /// The state of `stamp` if it belongs to the record at `pos`; `None` for a stale
    /// stamp from an earlier lap, never-written (zero) bytes, or garbage. State 0 is
    /// never written (and the key leaves the state bits alone), so a zeroed word is
    /// not a stamp even at position 0.
    #[inline(always)]
    pub(crate) fn state(self, stamp: u64, pos: u64) -> Option<u64> {
        let plain = stamp ^ self.0;
        let state = plain & STATE_MASK;
        (plain & !STATE_MASK == pos && state != 0).then_some(state)
    }

    /// The position a word names and its state, read as a stamp of this file: equal
    /// to the record's own position only for a stamp of that record (a scan that
    /// looks for records without knowing where they start).
    pub(crate) fn decode(self, stamp: u64) -> (u64, u64) {
        let plain = stamp ^ self.0;
        (plain & !STATE_MASK, plain & STATE_MASK)
    }

    /// The position a stamp names: `decode`'s first half.
    pub(crate) fn position(self, stamp: u64) -> u64 {
        self.decode(stamp).0
    }
}

/// Whether a stamp marks the start of a record that a scan must stop at. Not
/// `BATCHED`: a later record of a batch run is read only by stepping to it from the
/// record before it; a scan can't tell whether its run was committed, so it passes
/// (and `pop`'s poisons) it (DESIGN: Batch runs).
pub(crate) fn starts_record(state: u64) -> bool {
    matches!(
        state,
        STATE_CLAIMED | STATE_COMMITTED | STATE_PADDING | STATE_ABANDONED
    )
}

/// Whether a stamp in `state` says the record may be read: `COMMITTED`, or in a file
/// with batch runs `BATCHED` (committed with the first record of its run, which a
/// reader has passed to get here). Elsewhere `BATCHED` is no state, as for the
/// versions that wrote such files.
pub(crate) fn readable(state: Option<u64>, batch_runs: bool) -> bool {
    match state {
        Some(STATE_COMMITTED) => true,
        Some(STATE_BATCHED) => batch_runs,
        _ => false,
    }
}

/// The claim word for a record claiming `data_len` bytes after its header (its
/// payload, or for the first record of a batch run the rest of the run) written by
/// `writer`: the writer
/// field, a process ID in the low `WRITER_PID_BITS` bits and a tag of its PID
/// namespace above them (`process::own_writer`).
pub(crate) fn claim(data_len: u32, writer: u32) -> u64 {
    u64::from(writer) << 32 | u64::from(data_len)
}

/// Bits of the writer field that hold the process ID (Linux hands out IDs below
/// 2^22); the 10 bits above hold the PID-namespace tag, 0 for unknown.
pub(crate) const WRITER_PID_BITS: u32 = 22;

/// The claimed length carried by a claim word: the bytes after the header that a
/// reader skips with an abandoned record.
pub(crate) fn claim_data_len(claim: u64) -> u32 {
    (claim & 0xffff_ffff) as u32
}

/// The writer field carried by a claim word (see [`claim`]).
pub(crate) fn claim_pid(claim: u64) -> u32 {
    (claim >> 32) as u32
}

/// The process ID and PID-namespace tag of a writer field.
pub(crate) fn split_writer(writer: u32) -> (u32, u32) {
    (
        writer & ((1 << WRITER_PID_BITS) - 1),
        writer >> WRITER_PID_BITS,
    )
}

/// File offset of field `field` (`SUB_*_OFFSET`) of subscriber slot `slot`.
pub(crate) fn sub_field_off(slot: usize, field: usize) -> usize {
    debug_assert!(slot < SUB_SLOT_COUNT && field < SUB_SLOT_LEN);
    SUB_SLOTS_OFFSET + slot * SUB_SLOT_LEN + field
}

/// A subscriber slot state word.
pub(crate) fn sub_state(state: u64, generation: u64, name_crc: u32) -> u64 {
    debug_assert!(state & !SUB_STATE_MASK == 0);
    (u64::from(name_crc) << 32) | ((generation & 0x3fff_ffff) << 2) | state
}

/// The generation of a slot state word.
pub(crate) fn sub_generation(word: u64) -> u64 {
    (word >> 2) & 0x3fff_ffff
}

/// The name checksum of a slot state word.
pub(crate) fn sub_name_crc(word: u64) -> u32 {
    (word >> 32) as u32
}

/// Bytes a record with `data_len` payload bytes occupies in the region.
pub(crate) fn record_len(data_len: u32) -> u64 {
    (REC_HEADER_LEN as u64 + u64::from(data_len)).next_multiple_of(RECORD_ALIGN)
}

/// Largest payload a region of `region_len` bytes accepts: a record may take at most
/// half the region, which guarantees it fits after any padding in an empty ring.
pub(crate) fn max_data_len(region_len: u64) -> u32 {
    let max_record = (region_len / 2) / RECORD_ALIGN * RECORD_ALIGN;
    let data = max_record.saturating_sub(REC_HEADER_LEN as u64);
    u32::try_from(data).unwrap_or(u32::MAX)
}

/// How the ring behaves when a push does not fit, as stored in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Remove the oldest entries.
    Overwrite,
    /// Fail the push.
    Reject,
    /// Wait for room (the push fails inside the ring as with `Reject`; the caller waits).
    Block,
}

/// The static part of the file header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Length of the header in bytes (`HEADER_LEN`).
    pub header_len: u32,
    /// Length of the whole file.
    pub file_len: u64,
    /// Length of the record region; `file_len - header_len`, a multiple of 8.
    pub region_len: u64,
    /// Default TTL in seconds, 0 for none.
    pub default_ttl_secs: u32,
    /// On-full policy.
    pub policy: Policy,
    /// Abandon timeout in milliseconds, at least 1.
    pub abandon_ms: u32,
    /// `FLAG_BATCH_RUNS`: batches are written as runs (DESIGN: Batches).
    pub batch_runs: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// `FLAG_STAMP_KEY` and the key, or `None` for a file whose stamps are unkeyed.
    pub stamp_key: Option<StampKey>,
}

/// Why a header was refused. Offsets are file offsets of the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The file is shorter than a header or does not start with `MAGIC`.
    NotARing(String),
    /// The format version is not `FORMAT_VERSION`.
    Version(u32),
    /// A field is out of range or the checksum does not match.
    Corrupt { offset: u64, what: String },
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(le)
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[off..off + 8]);
    u64::from_le_bytes(le)
}

impl Header {
    /// The header of a new ring of `file_len` bytes; `file_len` must have been
    /// checked by `region_len_for`.
    pub(crate) fn new(
        file_len: u64,
        default_ttl_secs: u32,
        policy: Policy,
        abandon_ms: u32,
        created_ms: u64,
    ) -> Header {
        Header {
            header_len: HEADER_LEN as u32,
            file_len,
            region_len: file_len - HEADER_LEN as u64,
            default_ttl_secs,
            policy,
            abandon_ms: abandon_ms.max(1),
            batch_runs: true,
            created_ms,
            stamp_key: None,
        }
    }

    /// The key the file's stamps are XORed with.
    pub(crate) fn key(&self) -> StampKey {
        self.stamp_key.unwrap_or(StampKey::NONE)
    }

    /// The bytes written once when the file is created: the static header and, with
    /// `FLAG_STAMP_KEY`, the stamp key; checksums included.
    pub(crate) fn to_bytes(&self) -> [u8; FIXED_HEADER_LEN] {
        let mut b = [0u8; FIXED_HEADER_LEN];
        b[MAGIC_OFFSET..MAGIC_OFFSET + 8].copy_from_slice(&MAGIC);
        b[VERSION_OFFSET..][..4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[HEADER_LEN_OFFSET..][..4].copy_from_slice(&self.header_len.to_le_bytes());
        b[FILE_LEN_OFFSET..][..8].copy_from_slice(&self.file_len.to_le_bytes());
        b[REGION_LEN_OFFSET..][..8].copy_from_slice(&self.region_len.to_le_bytes());
        b[DEFAULT_TTL_OFFSET..][..4].copy_from_slice(&self.default_ttl_secs.to_le_bytes());
        let policy = match self.policy {
            Policy::Overwrite => POLICY_OVERWRITE,
            Policy::Reject => POLICY_REJECT,
            Policy::Block => POLICY_BLOCK,
        };
        b[ON_FULL_OFFSET..][..4].copy_from_slice(&policy.to_le_bytes());
        b[ABANDON_MS_OFFSET..][..4].copy_from_slice(&self.abandon_ms.to_le_bytes());
        let mut flags = if self.batch_runs { FLAG_BATCH_RUNS } else { 0 };
        if let Some(key) = self.stamp_key {
            flags |= FLAG_STAMP_KEY;
            b[STAMP_KEY_OFFSET..][..8].copy_from_slice(&key.bits().to_le_bytes());
            let crc = crate::crc::crc32c(&b[STAMP_KEY_OFFSET..STAMP_KEY_CRC_OFFSET]);
            b[STAMP_KEY_CRC_OFFSET..][..4].copy_from_slice(&crc.to_le_bytes());
        }
        b[FLAGS_OFFSET..][..4].copy_from_slice(&flags.to_le_bytes());
        b[CREATED_OFFSET..][..8].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crate::crc::crc32c(&b[..HEADER_CRC_OFFSET]);
        b[HEADER_CRC_OFFSET..][..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates the first `FIXED_HEADER_LEN` bytes of a file that is
    /// `actual_len` bytes long. Every check names what it prevents.
    pub(crate) fn from_bytes(bytes: &[u8], actual_len: u64) -> Result<Header, HeaderError> {
        // Prevents reading past the end of a short file.
        if bytes.len() < FIXED_HEADER_LEN || actual_len < HEADER_LEN as u64 {
            return Err(HeaderError::NotARing(format!(
                "file is {actual_len} bytes, shorter than the {HEADER_LEN}-byte ring header"
            )));
        }
        if bytes[..8] != MAGIC {
            return Err(HeaderError::NotARing(
                "the file does not start with the mmring magic bytes".into(),
            ));
        }
        let version = u32_at(bytes, VERSION_OFFSET);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let corrupt = |offset: usize, what: String| HeaderError::Corrupt {
            offset: offset as u64,
            what,
        };
        let stored_crc = u32_at(bytes, HEADER_CRC_OFFSET);
        let crc = crate::crc::crc32c(&bytes[..HEADER_CRC_OFFSET]);
        // Prevents trusting any field of a damaged header.
        if stored_crc != crc {
            return Err(corrupt(
                HEADER_CRC_OFFSET,
                format!("header checksum is {stored_crc:#010x}, computed {crc:#010x}"),
            ));
        }
        let header_len = u32_at(bytes, HEADER_LEN_OFFSET);
        // Prevents atomics and records from overlapping.
        if header_len as usize != HEADER_LEN {
            return Err(corrupt(
                HEADER_LEN_OFFSET,
                format!("header_len is {header_len}, expected {HEADER_LEN}"),
            ));
        }
        let file_len = u64_at(bytes, FILE_LEN_OFFSET);
        // Prevents mapping or touching bytes the file does not have (SIGBUS).
        if file_len != actual_len {
            return Err(corrupt(
                FILE_LEN_OFFSET,
                format!(
                    "header says the file is {file_len} bytes but it is {actual_len}: \
                     it was truncated or extended by something other than mmring"
                ),
            ));
        }
        let region_len = u64_at(bytes, REGION_LEN_OFFSET);
        // Prevents records outside the file, misaligned stamps and position overflow.
        if region_len != file_len - HEADER_LEN as u64
            || !region_len.is_multiple_of(RECORD_ALIGN)
            || !(MIN_REGION_LEN..=MAX_REGION_LEN).contains(&region_len)
        {
            return Err(corrupt(
                REGION_LEN_OFFSET,
                format!(
                    "region_len is {region_len}; it must equal file_len - {HEADER_LEN}, \
                     be a multiple of 8 and lie in {MIN_REGION_LEN}..={MAX_REGION_LEN}"
                ),
            ));
        }
        let policy = match u32_at(bytes, ON_FULL_OFFSET) {
            POLICY_OVERWRITE => Policy::Overwrite,
            POLICY_REJECT => Policy::Reject,
            POLICY_BLOCK => Policy::Block,
            other => {
                return Err(corrupt(
                    ON_FULL_OFFSET,
                    format!("on_full is {other}, expected 0 (overwrite), 1 (reject) or 2 (block)"),
                ));
            }
        };
        let abandon_ms = u32_at(bytes, ABANDON_MS_OFFSET);
        if abandon_ms == 0 {
            return Err(corrupt(ABANDON_MS_OFFSET, "abandon timeout is 0 ms".into()));
        }
        let reserved = u32_at(bytes, RESERVED_OFFSET);
        if reserved != 0 {
            return Err(corrupt(
                RESERVED_OFFSET,
                format!("reserved field is {reserved:#x}; version 1 requires 0"),
            ));
        }
        let flags = u32_at(bytes, FLAGS_OFFSET);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(
                FLAGS_OFFSET,
                format!(
                    "flags are {flags:#x}; this version knows only {KNOWN_FLAGS:#x} \
                     (batch runs, stamp key): a newer mmring wrote the file, or it is damaged"
                ),
            ));
        }
        // Prevents reading every stamp with a damaged key: each would look stale, and
        // readers would skip every record as never written.
        let stamp_key = if flags & FLAG_STAMP_KEY != 0 {
            let bits = u64_at(bytes, STAMP_KEY_OFFSET);
            let stored_crc = u32_at(bytes, STAMP_KEY_CRC_OFFSET);
            let crc = crate::crc::crc32c(&bytes[STAMP_KEY_OFFSET..STAMP_KEY_CRC_OFFSET]);
            if stored_crc != crc {
                return Err(corrupt(
                    STAMP_KEY_CRC_OFFSET,
                    format!("stamp key checksum is {stored_crc:#010x}, computed {crc:#010x}"),
                ));
            }
            Some(StampKey::new(bits).ok_or_else(|| {
                corrupt(
                    STAMP_KEY_OFFSET,
                    format!(
                        "stamp key is {bits:#018x}; only bits 3 to 61 may be set \
                         (mask {STAMP_KEY_MASK:#018x})"
                    ),
                )
            })?)
        } else {
            None
        };
        Ok(Header {
            header_len,
            file_len,
            region_len,
            default_ttl_secs: u32_at(bytes, DEFAULT_TTL_OFFSET),
            policy,
            abandon_ms,
            batch_runs: flags & FLAG_BATCH_RUNS != 0,
            created_ms: u64_at(bytes, CREATED_OFFSET),
            stamp_key,
        })
    }
}

/// The length of the region for a requested file size, or why it is refused.
pub(crate) fn region_len_for(file_len: u64) -> Result<u64, String> {
    let min = HEADER_LEN as u64 + MIN_REGION_LEN;
    let max = HEADER_LEN as u64 + MAX_REGION_LEN;
    if !(min..=max).contains(&file_len) {
        return Err(format!(
            "size {file_len} is out of range: a ring file is {min}..={max} bytes"
        ));
    }
    if !file_len.is_multiple_of(RECORD_ALIGN) {
        return Err(format!("size {file_len} is not a multiple of 8"));
    }
    Ok(file_len - HEADER_LEN as u64)
}

/// The part of a record header after the claim word, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    /// Metadata layout version (`ENTRY_VERSION`).
    pub version: u64,
    /// Payload length.
    pub data_len: u32,
    /// TTL in seconds, 0 for none.
    pub ttl_secs: u32,
    /// Unique ID (the record's position).
    pub id: u64,
    /// CRC32C of the payload.
    pub data_crc: u32,
    /// Write time, milliseconds since the Unix epoch.
    pub write_time_ms: u64,
}

/// A record header as bytes, stamp excluded (the stamp is accessed atomically).
#[cfg(test)]
pub(crate) type RecordHeaderBytes = [u8; REC_HEADER_LEN];

/// Words in a record header.
pub(crate) const REC_HEADER_WORDS: usize = REC_HEADER_LEN / 8;

/// A record header as its little-endian words, stamp first: what the ring loads and
/// stores (word-aligned atomics), without going through bytes.
pub(crate) type RecordHeaderWords = [u64; REC_HEADER_WORDS];

/// What is wrong with a record header, with the values found. Kept as numbers until
/// it is reported ([`MetaFault::explain`]): building the message where the header is
/// checked made that check, on every pop, spill most of its registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaFault {
    /// A stamp in the last bytes of the region, where no header fits.
    NoRoom,
    /// The metadata checksum does not match.
    MetaCrc { stored: u32, computed: u32 },
    /// An entry version this build does not know.
    Version(u64),
    /// The data size differs from the length in the claim word (and the record does
    /// not lead a batch run, whose claim covers the run).
    ClaimedLen { data_len: u32, claimed: u32 },
    /// The record would not fit the region at its offset.
    DoesNotFit { data_len: u32, offset: usize },
    /// The ID is not the record's position.
    Id { id: u64, pos: u64 },
}

impl MetaFault {
    /// The record-relative offset of the offending field, and what is wrong with it.
    #[cold]
    pub(crate) fn explain(self) -> (usize, String) {
        match self {
            MetaFault::NoRoom => (
                REC_STAMP_OFFSET,
                "a record stamp where no record header fits (a damaged stamp)".into(),
            ),
            MetaFault::MetaCrc { stored, computed } => (
                REC_META_CRC_OFFSET,
                format!("metadata checksum is {stored:#010x}, computed {computed:#010x}"),
            ),
            MetaFault::Version(version) => (
                REC_VERSION_OFFSET,
                format!("entry version is {version}, expected {ENTRY_VERSION}"),
            ),
            MetaFault::ClaimedLen { data_len, claimed } => (
                REC_DATA_LEN_OFFSET,
                format!("data size {data_len} differs from the claimed {claimed}"),
            ),
            MetaFault::DoesNotFit { data_len, offset } => (
                REC_DATA_LEN_OFFSET,
                format!("data size {data_len} does not fit the region at offset {offset}"),
            ),
            MetaFault::Id { id, pos } => (
                REC_ID_OFFSET,
                format!("id is {id}, expected the position {pos}"),
            ),
        }
    }
}

/// CRC32C over the record position and bytes `8..16` and `20..56` of the header
/// (given as words): everything in the header but the stamp and the checksum itself.
/// Including the position binds the metadata to the place it was written, so a stale
/// header from an earlier lap never validates.
#[inline(always)]
fn meta_crc_words(pos: u64, w: &RecordHeaderWords) -> u32 {
    // Bytes 20..56 are the high half of word 2 and words 3 to 6 whole.
    const _: () = assert!(REC_VERSION_OFFSET == 2 * 8 + 4 && REC_HEADER_WORDS == 7);
    crate::crc::crc32c_meta([pos, w[1]], (w[2] >> 32) as u32, [w[3], w[4], w[5], w[6]])
}

/// The words of a header given as bytes.
#[cfg(test)]
fn words_of(b: &RecordHeaderBytes) -> RecordHeaderWords {
    std::array::from_fn(|i| u64_at(b, 8 * i))
}

impl RecordMeta {
    /// Encodes the record header for position `pos` with claim word `claim`. The stamp
    /// bytes are left zero: the stamp is published separately with an atomic.
    #[cfg(test)]
    pub(crate) fn to_bytes(self, pos: u64, claim: u64) -> RecordHeaderBytes {
        let mut b = [0u8; REC_HEADER_LEN];
        for (chunk, word) in b.chunks_exact_mut(8).zip(self.to_words(pos, claim)) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        b
    }

    /// `to_bytes` as words (the stamp word 0).
    #[inline(always)]
    pub(crate) fn to_words(self, pos: u64, claim: u64) -> RecordHeaderWords {
        // Field offsets (FORMAT.md): meta_crc 16, version 20, data_len 28, ttl 32,
        // id 36, data_crc 44, write_time 48.
        const _: () = assert!(
            REC_META_CRC_OFFSET == 16
                && REC_DATA_LEN_OFFSET == 28
                && REC_TTL_OFFSET == 32
                && REC_ID_OFFSET == 36
                && REC_DATA_CRC_OFFSET == 44
                && REC_WRITE_TIME_OFFSET == 48
        );
        let mut w = [
            0,
            claim,
            self.version << 32,
            (self.version >> 32) | (u64::from(self.data_len) << 32),
            u64::from(self.ttl_secs) | (self.id << 32),
            (self.id >> 32) | (u64::from(self.data_crc) << 32),
            self.write_time_ms,
        ];
        w[2] |= u64::from(meta_crc_words(pos, &w));
        w
    }

    /// Decodes and checks the header of the record at `pos` in a region of
    /// `region_len` bytes. On failure returns the record-relative offset of the
    /// offending field and what is wrong with it.
    #[cfg(test)]
    pub(crate) fn from_bytes(
        pos: u64,
        b: &RecordHeaderBytes,
        region_len: u64,
    ) -> Result<RecordMeta, (usize, String)> {
        let offset = (pos % region_len) as usize;
        RecordMeta::from_words(pos, offset, &words_of(b), region_len, |_, _| false)
            .map_err(MetaFault::explain)
    }

    /// Decodes and checks the header, given as words (the stamp word is not used), of
    /// the record at `pos`, which is at `offset` (`pos % region_len`) in a region of
    /// `region_len` bytes, in the order of FORMAT.md's committed-record rules. A claim
    /// that differs from the data length is accepted only if `leads_run(data_len,
    /// claimed)` says the record is the first of a batch run (rule 4), which takes a
    /// look at the ring. On failure returns what is wrong, which
    /// [`MetaFault::explain`] turns into the offending field and a message.
    #[inline(always)]
    pub(crate) fn from_words(
        pos: u64,
        offset: usize,
        w: &RecordHeaderWords,
        region_len: u64,
        leads_run: impl FnOnce(u32, u32) -> bool,
    ) -> Result<RecordMeta, MetaFault> {
        debug_assert_eq!(offset as u64, pos % region_len);
        let stored = w[2] as u32;
        let computed = meta_crc_words(pos, w);
        if stored != computed {
            return Err(MetaFault::MetaCrc { stored, computed });
        }
        let meta = RecordMeta {
            version: (w[2] >> 32) | (w[3] << 32),
            data_len: (w[3] >> 32) as u32,
            ttl_secs: w[4] as u32,
            id: (w[4] >> 32) | (w[5] << 32),
            data_crc: (w[5] >> 32) as u32,
            write_time_ms: w[6],
        };
        if meta.version != ENTRY_VERSION {
            return Err(MetaFault::Version(meta.version));
        }
        // Different only for the first record of a batch run, whose claim covers the
        // run.
        let claimed = claim_data_len(w[1]);
        if claimed != meta.data_len && !leads_run(meta.data_len, claimed) {
            return Err(MetaFault::ClaimedLen {
                data_len: meta.data_len,
                claimed,
            });
        }
        // Prevents a record from reaching past the end of the region (the payload is
        // copied with this length) and huge allocations.
        if meta.data_len > max_data_len(region_len)
            || offset as u64 + record_len(meta.data_len) > region_len
        {
            return Err(MetaFault::DoesNotFit {
                data_len: meta.data_len,
                offset,
            });
        }
        if meta.id != pos {
            return Err(MetaFault::Id { id: meta.id, pos });
        }
        Ok(meta)
    }

    /// Whether the entry has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.ttl_secs != 0
            && now_ms
                >= self
                    .write_time_ms
                    .saturating_add(u64::from(self.ttl_secs) * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        let mut h = Header::new(1 << 20, 60, Policy::Reject, 2000, 1_700_000_000_000);
        h.stamp_key = Some(StampKey::from_random(0x9E37_79B9_7F4A_7C15));
        h
    }

    #[test]
    fn header_round_trips() {
        let h = header();
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(
            u32_at(&bytes, FLAGS_OFFSET),
            FLAG_BATCH_RUNS | FLAG_STAMP_KEY
        );
        assert_eq!(Header::from_bytes(&bytes, 1 << 20), Ok(h));
        let unkeyed = Header {
            stamp_key: None,
            ..header()
        };
        let bytes = unkeyed.to_bytes();
        assert_eq!(u32_at(&bytes, FLAGS_OFFSET), FLAG_BATCH_RUNS);
        assert_eq!(&bytes[STAMP_KEY_OFFSET..FIXED_HEADER_LEN], &[0; 12]);
        assert_eq!(Header::from_bytes(&bytes, 1 << 20), Ok(unkeyed));
    }

    #[test]
    fn a_stamp_key_with_bits_outside_its_mask_is_refused_by_offset() {
        for bit in [0, 1, 2, 62, 63] {
            let mut bytes = header().to_bytes();
            bytes[STAMP_KEY_OFFSET..][..8].copy_from_slice(&(1u64 << bit).to_le_bytes());
            let crc = crate::crc::crc32c(&bytes[STAMP_KEY_OFFSET..STAMP_KEY_CRC_OFFSET]);
            bytes[STAMP_KEY_CRC_OFFSET..][..4].copy_from_slice(&crc.to_le_bytes());
            match Header::from_bytes(&bytes, 1 << 20) {
                Err(HeaderError::Corrupt { offset, what }) => {
                    assert_eq!(offset, STAMP_KEY_OFFSET as u64, "bit {bit}");
                    assert!(what.contains("stamp key"), "{what}");
                }
                other => panic!("key bit {bit} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn header_rejects_every_single_bit_flip() {
        let bytes = header().to_bytes();
        for bit in 0..FIXED_HEADER_LEN * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Header::from_bytes(&bad, 1 << 20).is_err(),
                "flip of bit {bit} accepted"
            );
        }
    }

    #[test]
    fn header_rejects_wrong_file_length() {
        let bytes = header().to_bytes();
        match Header::from_bytes(&bytes, (1 << 20) - 8) {
            Err(HeaderError::Corrupt { offset, .. }) => assert_eq!(offset, FILE_LEN_OFFSET as u64),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn header_reports_future_version() {
        let mut bytes = header().to_bytes();
        bytes[VERSION_OFFSET..][..4].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            Header::from_bytes(&bytes, 1 << 20),
            Err(HeaderError::Version(2))
        );
    }

    fn meta(data_len: u32, pos: u64) -> RecordMeta {
        RecordMeta {
            version: ENTRY_VERSION,
            data_len,
            ttl_secs: 5,
            id: pos,
            data_crc: 0xdead_beef,
            write_time_ms: 42,
        }
    }

    #[test]
    fn record_header_round_trips() {
        let m = meta(100, 4096);
        let b = m.to_bytes(4096, claim(100, 7));
        assert_eq!(RecordMeta::from_bytes(4096, &b, 1 << 16), Ok(m));
    }

    #[test]
    fn record_header_is_bound_to_its_position() {
        let b = meta(100, 4096).to_bytes(4096, claim(100, 7));
        let err = RecordMeta::from_bytes(4096 + (1 << 16), &b, 1 << 16).unwrap_err();
        assert_eq!(err.0, REC_META_CRC_OFFSET);
    }

    #[test]
    fn record_header_rejects_every_single_bit_flip_outside_the_stamp() {
        let b = meta(100, 4096).to_bytes(4096, claim(100, 7));
        for bit in 64..REC_HEADER_LEN * 8 {
            let mut bad = b;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecordMeta::from_bytes(4096, &bad, 1 << 16).is_err(),
                "flip of bit {bit} accepted"
            );
        }
    }

    #[test]
    fn record_that_would_cross_the_region_end_is_refused() {
        let region = 8192;
        let pos = region - 64;
        let b = meta(100, pos).to_bytes(pos, claim(100, 1));
        let err = RecordMeta::from_bytes(pos, &b, region).unwrap_err();
        assert_eq!(err.0, REC_DATA_LEN_OFFSET);
    }

    #[test]
    fn header_faults_name_their_field_and_values() {
        let cases = [
            (
                MetaFault::NoRoom,
                REC_STAMP_OFFSET,
                "where no record header fits",
            ),
            (
                MetaFault::MetaCrc {
                    stored: 0xdead_beef,
                    computed: 0x1234,
                },
                REC_META_CRC_OFFSET,
                "metadata checksum is 0xdeadbeef, computed 0x00001234",
            ),
            (
                MetaFault::Version(7),
                REC_VERSION_OFFSET,
                "entry version is 7",
            ),
            (
                MetaFault::ClaimedLen {
                    data_len: 9,
                    claimed: 8,
                },
                REC_DATA_LEN_OFFSET,
                "data size 9 differs from the claimed 8",
            ),
            (
                MetaFault::DoesNotFit {
                    data_len: 9,
                    offset: 4096,
                },
                REC_DATA_LEN_OFFSET,
                "data size 9 does not fit the region at offset 4096",
            ),
            (
                MetaFault::Id { id: 3, pos: 64 },
                REC_ID_OFFSET,
                "id is 3, expected the position 64",
            ),
        ];
        for (fault, field, says) in cases {
            let (at, what) = fault.explain();
            assert_eq!(at, field, "{fault:?}");
            assert!(what.contains(says), "{fault:?}: {what}");
        }
    }

    #[test]
    fn stamps_identify_their_position() {
        for key in [
            StampKey::NONE,
            StampKey::from_random(u64::MAX),
            header().key(),
        ] {
            let s = key.stamp(4096, STATE_COMMITTED);
            assert_eq!(key.state(s, 4096), Some(STATE_COMMITTED));
            assert_eq!(key.position(s), 4096);
            assert_eq!(key.state(s, 4096 + 8192), None);
            assert_eq!(key.state(0, 8), None);
            assert_eq!(key.state(0, 0), None, "a zeroed word is not a stamp");
            assert_eq!(key.state(0, key.position(0)), None);
        }
        let key = header().key();
        assert_ne!(key.stamp(4096, STATE_COMMITTED), 4096 | STATE_COMMITTED);
        assert_eq!(
            StampKey::NONE.state(key.stamp(4096, STATE_COMMITTED), 4096),
            None
        );
        assert_eq!(key.state(4096 | STATE_COMMITTED, 4096), None);
    }

    #[test]
    fn a_word_ending_in_the_payload_fill_is_never_a_stamp_whatever_the_key() {
        // The fill after a payload gives the word's top byte 0xFF; the key leaves bits
        // 62 and 63 alone, so the word always names a position of 2^62 or more.
        for random in [0, u64::MAX, 0x9E37_79B9_7F4A_7C15, 0x3FFF_FFFF_FFFF_FFF8] {
            let key = StampKey::from_random(random);
            for low in [0u64, 0x00FF_FFFF_FFFF_FFFF, 0x0012_3456_789A_BCDA] {
                assert!(
                    key.position(0xFF << 56 | low) >= MAX_POS,
                    "{random:#x} {low:#x}"
                );
            }
        }
    }

    #[test]
    fn max_data_len_fits_after_worst_case_padding() {
        for region in [4096u64, 4104, 65536, 1 << 20] {
            let rec = record_len(max_data_len(region));
            // Worst case: the write position sits one byte-aligned slot past a place
            // where the record no longer fits, so padding is region - offset.
            for offset in (0..region).step_by(8) {
                let pad = if offset + rec > region {
                    region - offset
                } else {
                    0
                };
                assert!(pad + rec <= region, "region {region} offset {offset}");
            }
        }
    }

    #[test]
    fn expiry_uses_write_time_plus_ttl() {
        let m = meta(1, 0);
        assert!(!m.expired(42 + 4999));
        assert!(m.expired(42 + 5000));
        let forever = RecordMeta { ttl_secs: 0, ..m };
        assert!(!forever.expired(u64::MAX));
    }
}
