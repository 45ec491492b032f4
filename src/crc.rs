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
//! Payloads are also checksummed while they are copied into or out of the mapping
//! ([`crc32c_append_copy`]), so that each side passes over them once. The copy is the
//! caller's (one atomic access per word, `region.rs`); this module feeds each copied
//! word to the instruction. The instruction has 3 cycles of latency and a throughput of
//! one per cycle, so a run of more than a few words is cut into three equal blocks
//! copied in lockstep, one CRC stream each, and the streams are joined with a
//! carry-less multiplication (PCLMULQDQ) by a constant that depends only on the block
//! length ([`SHIFTS`]).
//!
//! The paths with the instructions are `#[target_feature]` functions, which the
//! compiler cannot inline into code compiled without the features.
//! [`with_crc_instructions`] runs a whole batch operation in a function compiled with
//! SSE4.2, so that inside it the short paths inline like any other code.
//!
//! The `unsafe` here is the SSE4.2 and PCLMULQDQ instructions: `#[target_feature]`
//! functions, called only after the run-time check that makes them sound.

/// Inputs of at least this many bytes go to the `crc32c` crate's interleaved loop.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const LONG: usize = 256;

/// The longest block of [`crc32c_append_copy`], in words: longer runs go in chunks of
/// three blocks of this length (3 × 4 KiB), the rest in three equal blocks.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const MAX_BLOCK_WORDS: usize = 512;
/// Runs of fewer words than this go through one CRC stream: for them the join costs
/// more than the latency it hides (measured: a split was slower up to 24 words, faster
/// from 40).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const MIN_SPLIT_WORDS: usize = 32;

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

/// A run of words being copied, checksummed as they are copied: `region.rs` implements
/// it for copies into and out of the mapping, where the copy is one atomic access per
/// word.
pub(crate) trait CopyWords: Sized {
    /// Where one word comes from and goes to.
    type Word;
    /// The words of the run, in order. An iterator rather than an index, because the
    /// standard iterators over slices of equal length zip (three blocks in lockstep)
    /// without bounds checks.
    type Words: Iterator<Item = Self::Word>;
    /// The number of words in the run.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn words(&self) -> usize;
    /// The first `mid` words of the run and the rest; `mid <= self.words()`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn split_at(self, mid: usize) -> (Self, Self);
    /// The words of the run, to be copied one by one with [`copy`](CopyWords::copy).
    fn into_words(self) -> Self::Words;
    /// Copies one word and returns it (its bytes in little-endian order are the bytes
    /// copied).
    fn copy(word: Self::Word) -> u64;
}

/// Copies `run` and returns the CRC32C of the bytes whose CRC32C is `crc` followed by
/// the bytes copied. Each word is copied once; blocks of the run may be copied in
/// lockstep rather than in order.
#[inline]
pub(crate) fn crc32c_append_copy(crc: u32, run: impl CopyWords) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        // SAFETY: `copy_x86` only requires SSE4.2 and PCLMULQDQ, which the CPU was just
        // found to support.
        return unsafe { copy_x86(crc, run) };
    }
    copy_portable(crc, run)
}

/// [`crc32c_append_copy`] for a run of fewer than [`MIN_SPLIT_WORDS`] words, which that
/// function too would checksum in one stream: the same loop, without the checks of a
/// second CPU feature and of the split into streams, in a function small enough not to
/// need a stack frame.
#[inline(always)]
pub(crate) fn crc32c_append_copy_short(crc: u32, run: impl CopyWords) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `copy_short_sse42` only requires SSE4.2, which the CPU was just found
        // to support.
        return unsafe { copy_short_sse42(crc, run) };
    }
    copy_portable(crc, run)
}

/// `crc32c_append_copy_short` with the SSE4.2 `crc32` instruction.
///
/// # Safety
/// Calling it where SSE4.2 is not enabled needs `unsafe`: the CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn copy_short_sse42<W: CopyWords>(crc: u32, run: W) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let mut state = u64::from(!crc);
    for word in run.into_words() {
        state = _mm_crc32_u64(state, W::copy(word));
    }
    // The instruction keeps the 32-bit state in the low half.
    !(state as u32)
}

/// `crc32c_append_copy` without the instruction: the words in batches through the
/// `crc32c` crate. Kept out of line, so that the dispatch inlines into its callers.
#[inline(never)]
fn copy_portable<W: CopyWords>(mut crc: u32, run: W) -> u32 {
    let mut batch = [0u8; 256];
    let mut filled = 0;
    for word in run.into_words() {
        batch[filled..filled + 8].copy_from_slice(&W::copy(word).to_le_bytes());
        filled += 8;
        if filled == batch.len() {
            crc = crc32c::crc32c_append(crc, &batch);
            filled = 0;
        }
    }
    crc32c::crc32c_append(crc, &batch[..filled])
}

/// The CRC32C polynomial, bit-reflected.
#[cfg(target_arch = "x86_64")]
const POLY: u32 = 0x82f6_3b78;

/// `SHIFTS[m]` is x^(64·m − 33) mod P, bit-reflected, for `1 <= m <= 2 ·
/// MAX_BLOCK_WORDS` (`SHIFTS[0]` is unused): the constant that makes [`shift`] append
/// `m` zero words to a CRC register.
///
/// Why: the register is a polynomial of degree < 32 over GF(2), and appending n zero
/// bits multiplies it by x^n mod P. The carry-less product of two bit-reflected 32-bit
/// values, read as the 64 bits the `crc32` instruction consumes, is their product
/// times x; the instruction from a zero register multiplies that by x^32 and reduces
/// mod P. So a product with x^(n − 33) comes out as the register times x^n mod P.
///
/// (`crc32c::crc32c_combine` joins CRCs of any length too, but builds its operator
/// from scratch on every call: about 14 µs for one join, five times the whole copy of
/// 64 KiB.)
#[cfg(target_arch = "x86_64")]
pub(crate) static SHIFTS: [u32; SHIFT_WORDS + 1] = shift_constants();

/// The longest shift in [`SHIFTS`], in words.
#[cfg(target_arch = "x86_64")]
pub(crate) const SHIFT_WORDS: usize = 2 * MAX_BLOCK_WORDS;

/// Computes [`SHIFTS`].
#[cfg(target_arch = "x86_64")]
const fn shift_constants() -> [u32; SHIFT_WORDS + 1] {
    let mut shifts = [0u32; SHIFT_WORDS + 1];
    // x^31: bit 0 of a bit-reflected value.
    let mut power = 1u32;
    let mut m = 1;
    while m < shifts.len() {
        shifts[m] = power;
        // Times x^64, one bit at a time: a shift right multiplies a bit-reflected
        // value by x; a bit shifted out is x^32, which is P's lower terms.
        let mut bit = 0;
        while bit < 64 {
            power = (power >> 1) ^ if power & 1 == 1 { POLY } else { 0 };
            bit += 1;
        }
        m += 1;
    }
    shifts
}

/// `crc32c_append_copy` with the SSE4.2 `crc32` instruction: chunks of three blocks of
/// `MAX_BLOCK_WORDS`, then three equal blocks of what is left, each chunk in three
/// streams, then one stream over the last one or two words (or over a run too short
/// to split).
///
/// # Safety
/// The CPU must support SSE4.2 and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks predate that.
#[allow(unused_unsafe)]
unsafe fn copy_x86<W: CopyWords>(crc: u32, mut run: W) -> u32 {
    let mut state = !crc;
    while run.words() >= 3 * MAX_BLOCK_WORDS {
        let (chunk, rest) = run.split_at(3 * MAX_BLOCK_WORDS);
        // SAFETY: SSE4.2 and PCLMULQDQ are enabled for this function; the caller
        // checked the CPU.
        state = unsafe { three_streams(state, chunk, MAX_BLOCK_WORDS) };
        run = rest;
    }
    if run.words() >= MIN_SPLIT_WORDS {
        let block = run.words() / 3;
        let (chunk, rest) = run.split_at(3 * block);
        // SAFETY: as above.
        state = unsafe { three_streams(state, chunk, block) };
        run = rest;
    }
    // The rest, fewer than MIN_SPLIT_WORDS words, in one stream. (`copy_short_sse42`
    // takes a CRC, the complement of the register, and returns one.)
    copy_short_sse42(!state, run)
}

/// Copies `chunk`, three blocks of `block` words (`1 <= block <= MAX_BLOCK_WORDS`), in
/// lockstep, one CRC stream per block, and returns the register `state` followed by
/// the chunk.
///
/// # Safety
/// The CPU must support SSE4.2 and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
#[inline]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks predate that.
#[allow(unused_unsafe)]
unsafe fn three_streams<W: CopyWords>(state: u32, chunk: W, block: usize) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let (first, others) = chunk.split_at(block);
    let (second, third) = others.split_at(block);
    // The first stream goes on from `state`; the other two start from 0 and are
    // shifted into place after the first.
    let (mut a, mut b, mut c) = (u64::from(state), 0, 0);
    let words = first.into_words().zip(second.into_words());
    for ((x, y), z) in words.zip(third.into_words()) {
        let (x, y, z) = (W::copy(x), W::copy(y), W::copy(z));
        // SAFETY: SSE4.2 is enabled for this function; the caller checked the CPU.
        unsafe {
            a = _mm_crc32_u64(a, x);
            b = _mm_crc32_u64(b, y);
            c = _mm_crc32_u64(c, z);
        }
    }
    // The instruction keeps the 32-bit state in the low half. `block <=
    // MAX_BLOCK_WORDS`, so both constants are in `SHIFTS`.
    // SAFETY: SSE4.2 and PCLMULQDQ are enabled for this function; the caller checked
    // the CPU.
    unsafe { shift(a as u32, SHIFTS[2 * block]) ^ shift(b as u32, SHIFTS[block]) ^ c as u32 }
}

/// The CRC register `state` followed by the number of zero words `constant` stands
/// for (an entry of [`SHIFTS`]).
///
/// # Safety
/// The CPU must support SSE4.2 and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2,pclmulqdq")]
#[inline]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks predate that.
#[allow(unused_unsafe)]
pub(crate) unsafe fn shift(state: u32, constant: u32) -> u32 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi32_si128, _mm_cvtsi128_si64,
    };
    // SAFETY: SSE4.2 and PCLMULQDQ are enabled for this function; the caller checked
    // the CPU. (The moves are SSE2, which x86_64 always has.)
    unsafe {
        let product = _mm_clmulepi64_si128(
            _mm_cvtsi32_si128(state as i32),
            _mm_cvtsi32_si128(constant as i32),
            0,
        );
        _mm_crc32_u64(0, _mm_cvtsi128_si64(product) as u64) as u32
    }
}

/// Runs `f` inside a function compiled with SSE4.2 enabled, where the CPU has it;
/// elsewhere, simply runs it.
///
/// The checksum helpers here are `#[target_feature]` functions, which the compiler
/// cannot inline into code compiled without the feature: called from the batch loops,
/// each record paid a call for its metadata checksum and one for its payload copy.
/// Inside `f`, and in everything `f` reaches through `#[inline(always)]` functions, the
/// helpers inline like any other code; each keeps its own feature check (a load of
/// std's cached result and a branch). `f` must be an `#[inline(always)]` closure, as in
/// `RawRing::push_batch`: otherwise it stays a function of its own, compiled without
/// the feature, and nothing changes. The batch operations run through this
/// (`RawRing::push_batch`, `RawRing::pop_batch`); the code is the same either way, only
/// how it is compiled differs. PCLMULQDQ is not needed here: the only users of it, the
/// long copies, stay out of line and check for it themselves.
#[inline(always)]
pub(crate) fn with_crc_instructions<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `call_sse42` only requires SSE4.2, which the CPU was just found to
        // support.
        return unsafe { call_sse42(f) };
    }
    f()
}

/// Calls `f`; once `f` is inlined here (see [`with_crc_instructions`]), its code is
/// compiled with SSE4.2.
///
/// # Safety
/// Calling it where SSE4.2 is not enabled needs `unsafe`: the CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn call_sse42<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// CRC32C of two little-endian `u64` words, a little-endian `u32` and four more `u64`
/// words: the 52 bytes a record's metadata checksum covers
/// (`format::meta_crc_words`), split where the header's words split them, so that no
/// word has to be reassembled from two halves; as straight-line code instead of a
/// loop over a slice.
#[inline(always)]
pub(crate) fn crc32c_meta(head: [u64; 2], half: u32, rest: [u64; 4]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `meta_sse42` only requires SSE4.2, which the CPU was just found to
        // support.
        return unsafe { meta_sse42(head, half, rest) };
    }
    meta_portable(head, half, rest)
}

/// `crc32c_meta` without the instruction, through the `crc32c` crate.
fn meta_portable(head: [u64; 2], half: u32, rest: [u64; 4]) -> u32 {
    let mut bytes = [0u8; 52];
    bytes[..8].copy_from_slice(&head[0].to_le_bytes());
    bytes[8..16].copy_from_slice(&head[1].to_le_bytes());
    bytes[16..20].copy_from_slice(&half.to_le_bytes());
    for (chunk, word) in bytes[20..].chunks_exact_mut(8).zip(rest) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    crc32c::crc32c(&bytes)
}

/// `crc32c_meta` with the SSE4.2 instruction.
///
/// # Safety
/// Calling it where SSE4.2 is not enabled needs `unsafe`: the CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn meta_sse42(head: [u64; 2], half: u32, rest: [u64; 4]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    let mut state = u64::from(!0u32);
    for word in head {
        state = _mm_crc32_u64(state, word);
    }
    // The instruction keeps the 32-bit state in the low half.
    let mut state = u64::from(_mm_crc32_u32(state as u32, half));
    for word in rest {
        state = _mm_crc32_u64(state, word);
    }
    !(state as u32)
}

/// CRC32C with one `crc32` instruction per 8 bytes, then at most three for the rest.
///
/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
// From Rust 1.87 the intrinsics are safe inside this function; the blocks predate that.
#[allow(unused_unsafe)]
unsafe fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    let mut state = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        // SAFETY: SSE4.2 is enabled for this function; the caller checked the CPU.
        state = unsafe { _mm_crc32_u64(state, u64::from_le_bytes(word)) };
    }
    // The instruction keeps the 32-bit state in the low half. The last 0 to 7 bytes
    // as at most one 4-byte, one 2-byte and one 1-byte step.
    let mut state = state as u32;
    let mut rest = words.remainder();
    if let Some((four, more)) = rest.split_first_chunk::<4>() {
        // SAFETY: as above.
        state = unsafe { _mm_crc32_u32(state, u32::from_le_bytes(*four)) };
        rest = more;
    }
    if let Some((two, more)) = rest.split_first_chunk::<2>() {
        // SAFETY: as above.
        state = unsafe { _mm_crc32_u16(state, u16::from_le_bytes(*two)) };
        rest = more;
    }
    if let Some(&byte) = rest.first() {
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

    /// Word counts around every boundary of `crc32c_append_copy`: one stream, every
    /// split into three blocks with zero to two words left over, whole chunks of the
    /// longest blocks alone and followed by each kind of rest.
    fn word_counts() -> Vec<usize> {
        let chunk = 3 * MAX_BLOCK_WORDS;
        let mut counts: Vec<usize> = (0..=3 * MIN_SPLIT_WORDS + 64).collect();
        for base in [chunk, 2 * chunk] {
            counts.extend(base - 3..=base + MIN_SPLIT_WORDS + 3);
            counts.extend(base + chunk - 3..base + chunk);
        }
        counts
    }

    /// Copies `words` into `out`, word by word.
    struct Probe<'a> {
        words: &'a [u64],
        out: &'a mut [u64],
    }

    impl<'a> CopyWords for Probe<'a> {
        type Word = (&'a u64, &'a mut u64);
        type Words = std::iter::Zip<std::slice::Iter<'a, u64>, std::slice::IterMut<'a, u64>>;
        fn words(&self) -> usize {
            self.words.len()
        }
        fn split_at(self, mid: usize) -> (Self, Self) {
            let (words, more_words) = self.words.split_at(mid);
            let (out, more_out) = self.out.split_at_mut(mid);
            let rest = Probe {
                words: more_words,
                out: more_out,
            };
            (Probe { words, out }, rest)
        }
        fn into_words(self) -> Self::Words {
            self.words.iter().zip(self.out.iter_mut())
        }
        fn copy((word, out): Self::Word) -> u64 {
            // Counts copies in the high byte, so a word copied twice shows.
            *out = out.wrapping_add(1 << 56) | (word & 0x00ff_ffff_ffff_ffff);
            *word
        }
    }

    #[test]
    fn copies_match_the_reference_across_every_block_boundary() {
        let bytes: Vec<u8> = (0..(8 * (9 * MAX_BLOCK_WORDS + MIN_SPLIT_WORDS + 3)))
            .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|le| le.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)))
            .collect();
        let expected_copy: Vec<u64> = words
            .iter()
            .map(|w| (1 << 56) | (w & 0x00ff_ffff_ffff_ffff))
            .collect();
        for n in word_counts() {
            let expected = crc32c::crc32c_append(0x1234_5678, &bytes[..n * 8]);
            type Copier = for<'a> fn(u32, Probe<'a>) -> u32;
            let ways: [(&str, Copier); 3] = [
                ("dispatched", |crc, run| crc32c_append_copy(crc, run)),
                ("portable", |crc, run| copy_portable(crc, run)),
                ("short", |crc, run| crc32c_append_copy_short(crc, run)),
            ];
            for (way, copier) in ways {
                let mut out = vec![0; n];
                let run = Probe {
                    words: &words[..n],
                    out: &mut out,
                };
                assert_eq!(copier(0x1234_5678, run), expected, "{way}, {n} words");
                assert!(
                    out == expected_copy[..n],
                    "{way}, {n} words: each copied once"
                );
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn shift_appends_zero_words() {
        if !(std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("pclmulqdq"))
        {
            return;
        }
        for words in [1, 2, 3, 7, 100, MAX_BLOCK_WORDS, 2 * MAX_BLOCK_WORDS] {
            for crc in [0, 1, 0x8000_0000, 0xdead_beef, u32::MAX] {
                // SAFETY: the CPU was just found to support both instructions.
                let shifted = unsafe { shift(!crc, SHIFTS[words]) };
                assert_eq!(
                    !shifted,
                    crc32c::crc32c_append(crc, &vec![0u8; words * 8]),
                    "{words} zero words after {crc:#x}"
                );
            }
        }
    }

    #[test]
    fn meta_matches_the_reference_over_the_same_bytes() {
        let head: [u64; 2] = [1, u64::MAX];
        let half = 0xa5a5_1234;
        let rest: [u64; 4] = [0x0102_0304_0506_0708, 0, 42, 1 << 63];
        let mut bytes = Vec::new();
        for word in head {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&u32::to_le_bytes(half));
        for word in rest {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        assert_eq!(crc32c_meta(head, half, rest), crc32c::crc32c(&bytes));
        assert_eq!(meta_portable(head, half, rest), crc32c::crc32c(&bytes));
    }

    #[test]
    fn known_answer() {
        // The CRC32C check value (RFC 3720, B.4).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }
}
