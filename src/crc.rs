//! CRC32C (Castagnoli), the checksum of record metadata and payloads (FORMAT.md).
//!
//! The `crc32c` crate is the reference and does long inputs best (three interleaved
//! streams of the SSE4.2 `crc32` instruction). For the short inputs of the hot path
//! (the 52 checksummed bytes of every record header, small payloads) its per-call
//! setup costs more than the checksum itself: callgrind counted over 1000 of the 1900
//! instructions of a 64-byte push + pop in it. Below `LONG` bytes this module runs a
//! straight loop of the instruction, 8 bytes per step, when the CPU has SSE4.2
//! (checked at run time, cached by std), and defers to the crate otherwise.
//!
//! The one `unsafe` block calls a `#[target_feature]` function after the run-time
//! check that makes it sound.

/// Inputs of at least this many bytes go to the `crc32c` crate's interleaved loop.
const LONG: usize = 256;

/// CRC32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// CRC32C of the bytes whose CRC32C is `crc`, followed by `data`.
pub(crate) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() < LONG && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `short_sse42` only requires SSE4.2, which the CPU was just
        // found to support.
        return unsafe { short_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

/// CRC32C with one `crc32` instruction per 8 bytes, then one per remaining byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut state = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        state = _mm_crc32_u64(state, u64::from_le_bytes(le));
    }
    // The instruction keeps the 32-bit state in the low half.
    let mut state = state as u32;
    for &byte in words.remainder() {
        state = _mm_crc32_u8(state, byte);
    }
    !state
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_for_every_short_length_and_alignment() {
        let bytes: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for len in 0..=LONG + 40 {
                let data = &bytes[start..start + len];
                assert_eq!(
                    crc32c(data),
                    crc32c::crc32c(data),
                    "start {start} len {len}"
                );
                assert_eq!(
                    crc32c_append(0xdead_beef, data),
                    crc32c::crc32c_append(0xdead_beef, data),
                    "append, start {start} len {len}"
                );
            }
        }
    }

    #[test]
    fn known_answer() {
        // The CRC32C check value (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }
}
