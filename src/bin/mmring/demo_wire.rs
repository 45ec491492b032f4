//! What the demo's processes exchange: the payloads producers push through the ring,
//! the stop marker, and the reports consumers write to their stdout for the parent.
//!
//! A payload of `len >= MIN_PAYLOAD` bytes is
//! ```text
//! 0..4          producer number, u32 LE
//! 4..12         sequence number, u64 LE (0, 1, 2, ... per producer)
//! 12..len-8     filler, derived from (producer, seq)
//! len-8..len    checksum of bytes 0..len-8, u64 LE
//! ```
//! The checksum is the demo's own, end to end, independent of the ring's CRC32C.

use std::io::{self, Write};

/// Bytes of a payload that are not filler.
pub(crate) const MIN_PAYLOAD: usize = 20;
/// What the parent pushes once per consumer, after every producer has finished. It is
/// shorter than any data payload, so the two can't be confused.
pub(crate) const STOP_MARKER: &[u8] = b"mmring-demo-stop";

const _: () = assert!(STOP_MARKER.len() < MIN_PAYLOAD);

/// The demo's checksum: FNV-1a's constants applied a 64-bit word at a time (bytes at
/// the end zero-padded, the length mixed in). Each step `(hash ^ word) * odd` is a
/// bijection of the word and of the state, so any change confined to one word always
/// changes the result.
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut words = bytes.chunks_exact(8);
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(le)).wrapping_mul(PRIME);
        hash ^= hash >> 29;
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(PRIME);
    hash ^ (hash >> 32)
}

/// Fills `buf` (of the payload length, at least `MIN_PAYLOAD`) with the payload of
/// `(producer, seq)`.
pub(crate) fn encode(buf: &mut [u8], producer: u32, seq: u64) {
    debug_assert!(buf.len() >= MIN_PAYLOAD);
    let body_len = buf.len() - 8;
    buf[0..4].copy_from_slice(&producer.to_le_bytes());
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    let seed = seq ^ u64::from(producer).rotate_left(40);
    for (index, chunk) in buf[12..body_len].chunks_mut(8).enumerate() {
        let word = seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    let sum = checksum(&buf[..body_len]);
    buf[body_len..].copy_from_slice(&sum.to_le_bytes());
}

/// The `(producer, seq)` of a payload whose checksum holds; `None` if it doesn't.
pub(crate) fn decode(payload: &[u8]) -> Option<(u32, u64)> {
    let body_len = payload.len().checked_sub(8).filter(|len| *len >= 12)?;
    let (body, sum) = payload.split_at(body_len);
    if checksum(body).to_le_bytes() != sum {
        return None;
    }
    let producer = u32::from_le_bytes(body[0..4].try_into().ok()?);
    let seq = u64::from_le_bytes(body[4..12].try_into().ok()?);
    Some((producer, seq))
}

/// One line of a consumer's report, in the order it popped entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// An intact payload.
    Entry {
        /// Its producer.
        producer: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// A payload whose checksum or length is wrong.
    BadPayload,
    /// The ring reported a corrupt record and skipped it.
    RingCorrupt,
    /// The stop marker: the report's last record.
    Stop,
}

/// Bytes per report record: kind u32 LE, producer u32 LE, seq u64 LE.
pub(crate) const RECORD_LEN: usize = 16;

const KIND_ENTRY: u32 = 0;
const KIND_BAD_PAYLOAD: u32 = 1;
const KIND_RING_CORRUPT: u32 = 2;
const KIND_STOP: u32 = 3;

impl Received {
    /// Appends the record to a consumer's report.
    pub(crate) fn write_to(self, out: &mut impl Write) -> io::Result<()> {
        let (kind, producer, seq) = match self {
            Received::Entry { producer, seq } => (KIND_ENTRY, producer, seq),
            Received::BadPayload => (KIND_BAD_PAYLOAD, 0, 0),
            Received::RingCorrupt => (KIND_RING_CORRUPT, 0, 0),
            Received::Stop => (KIND_STOP, 0, 0),
        };
        let mut record = [0u8; RECORD_LEN];
        record[0..4].copy_from_slice(&kind.to_le_bytes());
        record[4..8].copy_from_slice(&producer.to_le_bytes());
        record[8..16].copy_from_slice(&seq.to_le_bytes());
        out.write_all(&record)
    }

    /// Reads one record; `None` for an unknown kind.
    pub(crate) fn from_bytes(record: &[u8; RECORD_LEN]) -> Option<Received> {
        let word = |range: std::ops::Range<usize>| -> [u8; 4] {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&record[range]);
            bytes
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&record[8..16]);
        Some(match u32::from_le_bytes(word(0..4)) {
            KIND_ENTRY => Received::Entry {
                producer: u32::from_le_bytes(word(4..8)),
                seq: u64::from_le_bytes(seq),
            },
            KIND_BAD_PAYLOAD => Received::BadPayload,
            KIND_RING_CORRUPT => Received::RingCorrupt,
            KIND_STOP => Received::Stop,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_any_flipped_bit_is_detected() {
        for len in [MIN_PAYLOAD, 21, 64, 1000] {
            let mut payload = vec![0u8; len];
            encode(&mut payload, 7, 123_456_789);
            assert_eq!(decode(&payload), Some((7, 123_456_789)));
            for bit in 0..len * 8 {
                let mut damaged = payload.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(decode(&damaged), None, "len {len}, bit {bit}");
            }
            assert_eq!(decode(&payload[..len - 1]), None);
        }
        assert_eq!(decode(STOP_MARKER), None);
    }

    #[test]
    fn report_records_round_trip() {
        let records = [
            Received::Entry {
                producer: 3,
                seq: u64::MAX,
            },
            Received::BadPayload,
            Received::RingCorrupt,
            Received::Stop,
        ];
        let mut bytes = Vec::new();
        for record in records {
            record.write_to(&mut bytes).unwrap();
        }
        let decoded: Vec<_> = bytes
            .chunks_exact(RECORD_LEN)
            .map(|chunk| Received::from_bytes(chunk.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, records.map(Some));
        assert_eq!(Received::from_bytes(&[9; RECORD_LEN]), None);
    }
}
