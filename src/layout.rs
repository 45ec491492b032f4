//! The byte layout of a ring file, as data: one [`Field`] per header and record-header
//! field, for tools that show or check raw ring bytes (`mmring dump`, `mmring verify`).
//!
//! Everything here is derived from the constants the ring itself uses, and a unit test
//! compares these tables with docs/FORMAT.md, so a tool built on them cannot drift from
//! the format. Programs that only push and pop never need this module.
//!
//! ```
//! use mmring::layout;
//!
//! let field = layout::header_field(130).unwrap();
//! assert_eq!((field.name, field.offset, field.size), ("write_pos", 128, 8));
//! assert_eq!(layout::record_field(28).unwrap().name, "data_len");
//! // Stamps are XORed with the file's key (`layout::stamp_key` of its first bytes),
//! // 0 in a file without one (`flags` bit 1 clear).
//! assert_eq!(layout::decode_stamp(4096 | 2, 0), (4096, "committed"));
//! let key = 0x1234_5678;
//! assert_eq!(layout::decode_stamp(key ^ (4096 | 2), key), (4096, "committed"));
//! ```

use crate::format::{
    ABANDON_MS_OFFSET, ABANDONED_OFFSET, CORRUPT_OFFSET, CREATED_OFFSET, DEFAULT_TTL_OFFSET,
    EVICTED_OFFSET, EXPIRED_OFFSET, FILE_LEN_OFFSET, FLAG_STAMP_KEY, FLAGS_OFFSET,
    HEADER_CRC_OFFSET, HEADER_LEN_OFFSET, MAGIC_OFFSET, NOTIFY_OFFSET, ON_FULL_OFFSET,
    POPPED_OFFSET, PUSHED_OFFSET, READ_POS_OFFSET, REC_CLAIM_OFFSET, REC_DATA_CRC_OFFSET,
    REC_DATA_LEN_OFFSET, REC_ID_OFFSET, REC_META_CRC_OFFSET, REC_STAMP_OFFSET, REC_TTL_OFFSET,
    REC_VERSION_OFFSET, REC_WRITE_TIME_OFFSET, REGION_LEN_OFFSET, RESERVED_OFFSET,
    STAMP_KEY_CRC_OFFSET, STAMP_KEY_OFFSET, STATE_ABANDONED, STATE_BATCHED, STATE_CLAIMED,
    STATE_COMMITTED, STATE_MASK, STATE_PADDING, STATE_SKIPPED, SUB_MASK_OFFSET, SUB_SLOT_COUNT,
    SUB_SLOT_LEN, SUB_SLOTS_OFFSET, VERSION_OFFSET, WAITERS_OFFSET, WRITE_POS_OFFSET,
};

/// Length of the file header; the record region starts at this file offset.
pub const HEADER_LEN: usize = crate::format::HEADER_LEN;
/// Length of a record header; the payload follows it.
pub const RECORD_HEADER_LEN: usize = crate::format::REC_HEADER_LEN;
/// Length of the static, checksummed start of the header.
pub const STATIC_HEADER_LEN: usize = crate::format::STATIC_HEADER_LEN;
/// Length of the part of the header written once, at creation: the static header, the
/// stamp key and its checksum.
pub const FIXED_HEADER_LEN: usize = crate::format::FIXED_HEADER_LEN;

/// How a field's bytes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldKind {
    /// A byte string (the magic, the subscriber slots).
    Bytes,
    /// A little-endian `u32`.
    U32,
    /// A little-endian `u64`.
    U64,
}

/// One field of the file header or of a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name, as docs/FORMAT.md spells it.
    pub name: &'static str,
    /// Offset from the start of the file (header fields) or of the record (record
    /// fields).
    pub offset: usize,
    /// Length in bytes.
    pub size: usize,
    /// How to read it.
    pub kind: FieldKind,
}

impl Field {
    const fn new(name: &'static str, offset: usize, kind: FieldKind) -> Field {
        let size = match kind {
            FieldKind::Bytes => 8,
            FieldKind::U32 => 4,
            FieldKind::U64 => 8,
        };
        Field {
            name,
            offset,
            size,
            kind,
        }
    }

    /// A byte string of `size` bytes.
    const fn bytes(name: &'static str, offset: usize, size: usize) -> Field {
        Field {
            name,
            offset,
            size,
            kind: FieldKind::Bytes,
        }
    }

    /// The field's value as an integer, read from `bytes` (which start where the
    /// field's structure starts); `None` for byte strings and when `bytes` is too
    /// short.
    pub fn value(&self, bytes: &[u8]) -> Option<u64> {
        let raw = bytes.get(self.offset..self.offset + self.size)?;
        match self.kind {
            FieldKind::Bytes => None,
            FieldKind::U32 => Some(u64::from(u32::from_le_bytes(raw.try_into().ok()?))),
            FieldKind::U64 => Some(u64::from_le_bytes(raw.try_into().ok()?)),
        }
    }
}

/// The fields of the file header, in offset order. The bytes between them are
/// reserved (zero in version 1).
pub const HEADER_FIELDS: &[Field] = &[
    Field::new("magic", MAGIC_OFFSET, FieldKind::Bytes),
    Field::new("version", VERSION_OFFSET, FieldKind::U32),
    Field::new("header_len", HEADER_LEN_OFFSET, FieldKind::U32),
    Field::new("file_len", FILE_LEN_OFFSET, FieldKind::U64),
    Field::new("region_len", REGION_LEN_OFFSET, FieldKind::U64),
    Field::new("default_ttl_secs", DEFAULT_TTL_OFFSET, FieldKind::U32),
    Field::new("on_full", ON_FULL_OFFSET, FieldKind::U32),
    Field::new("abandon_ms", ABANDON_MS_OFFSET, FieldKind::U32),
    Field::new("flags", FLAGS_OFFSET, FieldKind::U32),
    Field::new("created_ms", CREATED_OFFSET, FieldKind::U64),
    Field::new("reserved", RESERVED_OFFSET, FieldKind::U32),
    Field::new("header_crc", HEADER_CRC_OFFSET, FieldKind::U32),
    Field::new("stamp_key", STAMP_KEY_OFFSET, FieldKind::U64),
    Field::new("stamp_key_crc", STAMP_KEY_CRC_OFFSET, FieldKind::U32),
    Field::new("write_pos", WRITE_POS_OFFSET, FieldKind::U64),
    Field::new("pushed", PUSHED_OFFSET, FieldKind::U64),
    Field::new("evicted", EVICTED_OFFSET, FieldKind::U64),
    Field::new("read_pos", READ_POS_OFFSET, FieldKind::U64),
    Field::new("popped", POPPED_OFFSET, FieldKind::U64),
    Field::new("notify", NOTIFY_OFFSET, FieldKind::U32),
    Field::new("waiters", WAITERS_OFFSET, FieldKind::U32),
    Field::new("expired", EXPIRED_OFFSET, FieldKind::U64),
    Field::new("corrupt", CORRUPT_OFFSET, FieldKind::U64),
    Field::new("abandoned", ABANDONED_OFFSET, FieldKind::U64),
    Field::new("sub_mask", SUB_MASK_OFFSET, FieldKind::U64),
    Field::bytes("sub_slots", SUB_SLOTS_OFFSET, SUB_SLOT_COUNT * SUB_SLOT_LEN),
];

/// The fields of a record header, in offset order; the payload (`data`) follows at
/// [`RECORD_HEADER_LEN`]. A padding record has only its `stamp`.
pub const RECORD_FIELDS: &[Field] = &[
    Field::new("stamp", REC_STAMP_OFFSET, FieldKind::U64),
    Field::new("claim", REC_CLAIM_OFFSET, FieldKind::U64),
    Field::new("meta_crc", REC_META_CRC_OFFSET, FieldKind::U32),
    Field::new("version", REC_VERSION_OFFSET, FieldKind::U64),
    Field::new("data_len", REC_DATA_LEN_OFFSET, FieldKind::U32),
    Field::new("ttl_secs", REC_TTL_OFFSET, FieldKind::U32),
    Field::new("id", REC_ID_OFFSET, FieldKind::U64),
    Field::new("data_crc", REC_DATA_CRC_OFFSET, FieldKind::U32),
    Field::new("write_time_ms", REC_WRITE_TIME_OFFSET, FieldKind::U64),
];

fn containing(fields: &'static [Field], offset: usize) -> Option<&'static Field> {
    fields
        .iter()
        .find(|f| (f.offset..f.offset + f.size).contains(&offset))
}

/// The header field holding file offset `offset`, if any (reserved gaps have none).
pub fn header_field(offset: usize) -> Option<&'static Field> {
    containing(HEADER_FIELDS, offset)
}

/// The record-header field holding record-relative offset `offset`, if any.
pub fn record_field(offset: usize) -> Option<&'static Field> {
    containing(RECORD_FIELDS, offset)
}

/// Whether the file's `flags` (from its first bytes) have bit 1 set: its stamps are
/// XORed with the `stamp_key` field. `None` if `header` is too short to hold `flags`.
/// The header checksum is not checked, so that a damaged file can still be shown.
pub fn has_stamp_key(header: &[u8]) -> Option<bool> {
    let flags = header_field(FLAGS_OFFSET)?.value(header)?;
    Some(flags & u64::from(FLAG_STAMP_KEY) != 0)
}

/// The key a file's stamps are XORed with, from the file's first bytes: the
/// `stamp_key` field if `flags` has bit 1 set ([`has_stamp_key`]), else 0; `None` if
/// `header` is too short to say (the flag unreadable, or set with the key cut off).
/// Neither checksum is checked, so that a damaged file can still be shown; `mmring
/// verify` checks them.
pub fn stamp_key(header: &[u8]) -> Option<u64> {
    if has_stamp_key(header)? {
        header_field(STAMP_KEY_OFFSET)?.value(header)
    } else {
        Some(0)
    }
}

/// The position and state name encoded in a stamp of a file whose stamp key is `key`
/// (see [`stamp_key`]): `stamp` XOR `key` minus its low three bits, and `"claimed"`,
/// `"committed"`, `"padding"`, `"abandoned"`, `"skipped"`, `"batched"`, or `"none"` (0
/// and 6 are not states). A stamp belongs to the record at a position only if the
/// positions are equal; anything else is stale.
pub fn decode_stamp(stamp: u64, key: u64) -> (u64, &'static str) {
    let stamp = stamp ^ key;
    let name = match stamp & STATE_MASK {
        STATE_CLAIMED => "claimed",
        STATE_COMMITTED => "committed",
        STATE_PADDING => "padding",
        STATE_ABANDONED => "abandoned",
        STATE_SKIPPED => "skipped",
        STATE_BATCHED => "batched",
        _ => "none",
    };
    (stamp & !STATE_MASK, name)
}

/// The claimed length (the payload length, or for the first record of a batch run
/// the rest of the run after its header), the writer's process ID and the tag of the
/// writer's PID namespace (0: none) carried by a record's claim word.
pub fn decode_claim(claim: u64) -> (u32, u32, u32) {
    let (pid, tag) = crate::format::split_writer(crate::format::claim_pid(claim));
    (crate::format::claim_data_len(claim), pid, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_disjoint_and_inside_their_structure() {
        for (fields, end) in [
            (HEADER_FIELDS, HEADER_LEN),
            (RECORD_FIELDS, RECORD_HEADER_LEN),
        ] {
            for pair in fields.windows(2) {
                assert!(pair[0].offset + pair[0].size <= pair[1].offset, "{pair:?}");
            }
            let last = fields.last().unwrap();
            assert!(last.offset + last.size <= end);
        }
        // The record header is fully covered: every byte belongs to a field.
        let covered: usize = RECORD_FIELDS.iter().map(|f| f.size).sum();
        assert_eq!(covered, RECORD_HEADER_LEN);
    }

    #[test]
    fn values_are_little_endian() {
        let mut bytes = [0u8; 64];
        bytes[28..32].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        assert_eq!(record_field(30).unwrap().value(&bytes), Some(0x0102_0304));
        assert_eq!(header_field(0).unwrap().value(&bytes), None);
        assert_eq!(record_field(48).unwrap().value(&bytes[..50]), None);
        assert_eq!(decode_claim(7 << 32 | 100), (100, 7, 0));
        assert_eq!(decode_claim((5 << 22 | 7) << 32 | 100), (100, 7, 5));
        assert_eq!(decode_stamp(8 | 6, 0), (8, "none"));
        assert_eq!(decode_stamp(8 | 7, 0), (8, "batched"));
        assert_eq!(decode_stamp(8 | 7, 64), (72, "batched"));
    }

    #[test]
    fn the_stamp_key_is_read_only_where_the_flag_says_so() {
        let mut header = crate::format::Header::new(8192, 0, crate::format::Policy::Reject, 1, 0);
        assert_eq!(stamp_key(&header.to_bytes()), Some(0));
        assert_eq!(stamp_key(&header.to_bytes()[..FLAGS_OFFSET + 4]), Some(0));
        assert_eq!(stamp_key(&header.to_bytes()[..FLAGS_OFFSET]), None);
        assert_eq!(has_stamp_key(&header.to_bytes()), Some(false));
        assert_eq!(has_stamp_key(&header.to_bytes()[..FLAGS_OFFSET]), None);
        header.stamp_key = Some(crate::format::StampKey::from_random(u64::MAX));
        let bytes = header.to_bytes();
        assert_eq!(stamp_key(&bytes), Some(crate::format::STAMP_KEY_MASK));
        assert_eq!(has_stamp_key(&bytes[..STAMP_KEY_OFFSET]), Some(true));
        assert_eq!(
            stamp_key(&bytes[..STAMP_KEY_OFFSET + 7]),
            None,
            "key cut short"
        );
    }
}
