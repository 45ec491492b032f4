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
//! The `unsafe` here is the SSE4.2 instruction: two `#[target_feature]` functions,
//! called only after the run-time check that makes them sound.

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
        // SAFETY: `short_sse42` only requires SSE4.2, which the CPU was just found to
        // support.
        return unsafe { short_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

/// CRC32C of six little-endian `u64` words followed by a little-endian `u32`: the 52
/// bytes a record's metadata checksum covers (`format::meta_crc`), as straight-line
/// code instead of a loop over a slice.
pub(crate) fn crc32c_meta(words: [u64; 6], tail: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `meta_sse42` only requires SSE4.2, which the CPU was just found to
        // support.
        return unsafe { meta_sse42(words, tail) };
    }
    let mut bytes = [0u8; 52];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes[48..].copy_from_slice(&tail.to_le_bytes());
    crc32c::crc32c(&bytes)
}

/// `crc32c_meta` with the SSE4.2 instruction.
///
/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks are for 1.85.
#[allow(unused_unsafe)]
unsafe fn meta_sse42(words: [u64; 6], tail: u32) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let mut state = u64::from(!0u32);
    for word in words {
        // SAFETY: SSE4.2 is enabled for this function; the caller checked the CPU.
        state = unsafe { _mm_crc32_u64(state, word) };
    }
    // The instruction keeps the 32-bit state in the low half.
    // SAFETY: as above.
    !unsafe { _mm_crc32_u32(state as u32, tail) }
}

/// CRC32C with one `crc32` instruction per 8 bytes, then one per remaining byte.
///
/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks are for 1.85.
#[allow(unused_unsafe)]
unsafe fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};
    let mut state = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        // SAFETY: SSE4.2 is enabled for this function; the caller checked the CPU.
        state = unsafe { _mm_crc32_u64(state, u64::from_le_bytes(word)) };
    }
    // The instruction keeps the 32-bit state in the low half.
    let mut state = state as u32;
    for &byte in words.remainder() {
        // SAFETY: as above.
        state = unsafe { _mm_crc32_u8(state, byte) };
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
    fn meta_matches_the_reference_over_the_same_bytes() {
        let words = [1, u64::MAX, 0x0102_0304_0506_0708, 0, 42, 1 << 63];
        let tail = 0xa5a5_1234;
        let mut bytes = Vec::new();
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&u32::to_le_bytes(tail));
        assert_eq!(crc32c_meta(words, tail), crc32c::crc32c(&bytes));
    }

    #[test]
    fn known_answer() {
        // The CRC32C check value (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }
}
