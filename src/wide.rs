//! Long payloads copied into or out of the mapping and checksummed in one pass, with
//! AVX2, VPCLMULQDQ and SSE4.2 (x86_64, checked at run time).
//!
//! A word at a time ([`crate::crc::crc32c_append_copy`]) both halves of the work are
//! bound by the instruction each uses once per 8 bytes: the `crc32` instruction (one
//! per cycle) and the scalar store. Here a chunk of the run is cut into four parts
//! handled in lockstep, each on its own execution units:
//!
//! - part A, the first 128·k bytes, moves through four 32-byte registers per step and
//!   is checksummed by folding: the 256 bits of each register are carried 1024 bits
//!   further along the message by two carry-less multiplications (VPCLMULQDQ) and
//!   added to the next 32 bytes. At the end the eight 16-byte lanes are folded into
//!   one and that one is reduced with the `crc32` instruction;
//! - parts B1, B2, B3, the next three runs of 8·W·k bytes, move a word at a time, one
//!   `crc32` stream each (as in `crc.rs`);
//!
//! and the four checksums are joined with the shifts of `crc.rs`. Measured on the
//! benchmark machine (AMD EPYC, 64 KiB in cache): CRC32C alone 22.8 GB/s with the
//! `crc32c` crate, 25.5 GB/s folding alone, 38.5 GB/s folding and three streams.
//!
//! # Why the mapping's side is inline assembly
//! A lapped reader's copy may race with a writer's (docs/DESIGN.md, "Reading a
//! record"), so every access to the mapping must be atomic: a plain or SIMD load
//! racing with a store is a data race. The 32-byte moves of part A are `vmovdqu` in
//! `asm!` blocks. An `asm!` block behaves as some sequence of operations of the
//! abstract machine would; a 32-byte move from or to four aligned `AtomicU64` cells
//! behaves as four relaxed atomic loads or stores of them, the same accesses, cell
//! for cell, as the word-wise copy makes, and x86 performs each aligned 8-byte part
//! of a vector access as one access (a racing reader still sees whole words, as it
//! would word by word; the seqlock rejects the copy either way). The blocks are not
//! marked `readonly` or `nomem`, so the compiler orders them like atomic accesses
//! with respect to the fences and atomics around the copy. The words of parts B go
//! through `AtomicU64` as elsewhere.

use std::arch::asm;
use std::arch::x86_64::{
    __m128i, __m256i, _mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi128_si64,
    _mm_extract_epi64, _mm_set_epi64x, _mm_xor_si128, _mm256_castsi256_si128,
    _mm256_clmulepi64_epi128, _mm256_extracti128_si256, _mm256_loadu_si256,
    _mm256_set_epi64x, _mm256_storeu_si256, _mm256_xor_si256,
};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crc::{SHIFT_WORDS, SHIFTS, shift};

/// Words per step in each of the parts B: with part A's 16 words (128 bytes), 34
/// words (272 bytes) per step. Measured: W = 3 34.9 GB/s, 6 38.5, 8 36.5.
const W: usize = 6;
/// Bytes per step: part A's 128 and three times W words.
const STEP: usize = 128 + 24 * W;
/// The most steps in one chunk: the join shifts part A by 3·W·k words, and [`SHIFTS`]
/// holds shifts up to its length.
const MAX_STEPS: usize = SHIFT_WORDS / (3 * W);
/// Runs shorter than this (two steps) are left to the word-wise copy.
pub(crate) const MIN_BYTES: usize = 2 * STEP;

/// The CRC polynomial (x^32 + 0x1EDC6F41), its lower terms in the usual bit order.
const POLY: u64 = 0x1EDC_6F41;

/// x^e mod P, bit d the coefficient of x^d.
const fn x_pow(e: u32) -> u64 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < e {
        r <<= 1;
        if r & (1 << 32) != 0 {
            r ^= (1 << 32) | POLY;
        }
        i += 1;
    }
    r
}

/// The folding constant that carries 64 bits e bits along the message: x^(e−1) mod P
/// with its bits reversed over 64. (A 16-byte lane loaded little-endian holds the
/// coefficient of x^(127−n) in bit n; the carry-less product of two such 64-bit halves
/// holds that of x^(126−n), one place short, which the −1 makes up.)
const fn fold_constant(e: u32) -> i64 {
    x_pow(e - 1).reverse_bits() as i64
}

/// A 16-byte lane 1024 bits along (four registers of 32 bytes): its first 64 bits
/// are x^(1024+64) further from the end, its last 64 bits x^1024.
const FOLD_1024: [i64; 2] = [fold_constant(1024 + 64), fold_constant(1024)];
/// A 16-byte lane into the next.
const FOLD_128: [i64; 2] = [fold_constant(128 + 64), fold_constant(128)];

/// True when this CPU has what [`store_crc`] and [`load_crc`] use.
#[inline]
fn supported() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.2")
}

/// Stores `src` into `dst` (`src.len() == 8 * dst.len()`) in chunks, as long as a
/// chunk is at least [`MIN_BYTES`], and returns the CRC32C of the bytes whose CRC32C
/// is `crc` followed by the bytes stored, and the number of words stored: the caller
/// copies the rest. `None` if this CPU lacks an instruction used.
pub(crate) fn store_crc(crc: u32, src: &[u8], dst: &[AtomicU64]) -> Option<(u32, usize)> {
    assert_eq!(src.len(), dst.len() * 8, "mmring bug: store_crc lengths");
    if !supported() {
        return None;
    }
    // SAFETY: the CPU has every feature `copy_crc` enables (just checked); `src` is
    // valid for reading `src.len()` bytes and `dst` for atomic stores to as many
    // (checked above); a private slice and shared cells do not overlap.
    Some(unsafe {
        copy_crc::<false>(crc, src.as_ptr(), dst.as_ptr().cast::<u8>().cast_mut(), src.len())
    })
}

/// Loads `src` into `dst` (`dst.len() == 8 * src.len()`), as [`store_crc`] stores.
pub(crate) fn load_crc(crc: u32, src: &[AtomicU64], dst: &mut [u8]) -> Option<(u32, usize)> {
    assert_eq!(dst.len(), src.len() * 8, "mmring bug: load_crc lengths");
    if !supported() {
        return None;
    }
    // SAFETY: as in `store_crc`, with `src` the cells (atomic loads) and `dst` the
    // private bytes (valid for writing, and not aliased: `&mut`).
    Some(unsafe {
        copy_crc::<true>(crc, src.as_ptr().cast::<u8>(), dst.as_mut_ptr(), dst.len())
    })
}

/// The chunk loop of [`store_crc`] (`FROM_CELLS` false: `dst` is the cells) and
/// [`load_crc`] (true: `src` is).
///
/// # Safety
/// The CPU supports AVX2, VPCLMULQDQ, PCLMULQDQ and SSE4.2. `src` and `dst` are valid
/// for `len` bytes, a multiple of 8, and do not overlap; the side that is the cells is
/// 8-byte aligned, only accessed atomically by others, and accessed here only through
/// `AtomicU64` and [`load4`]/[`store4`].
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
unsafe fn copy_crc<const FROM_CELLS: bool>(
    crc: u32,
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> (u32, usize) {
    let mut state = !crc;
    let mut done = 0;
    loop {
        let steps = ((len - done) / STEP).min(MAX_STEPS);
        if steps < 2 {
            break;
        }
        // SAFETY: the chunk, `steps * STEP <= len - done` bytes from `done`, is in
        // both ranges; the rest as this function's contract.
        state = unsafe { chunk::<FROM_CELLS>(state, src.add(done), dst.add(done), steps) };
        done += steps * STEP;
    }
    (!state, done / 8)
}

/// Copies and checksums one chunk of `steps` steps (`2 <= steps <= MAX_STEPS`),
/// returning the CRC register `state` followed by the chunk.
///
/// # Safety
/// As [`copy_crc`], for `steps * STEP` bytes.
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
#[inline]
unsafe fn chunk<const FROM_CELLS: bool>(
    state: u32,
    src: *const u8,
    dst: *mut u8,
    steps: usize,
) -> u32 {
    let b_words = W * steps;
    let a_len = 128 * steps;
    // One step of part A: 128 bytes at `at` moved and returned.
    let move_a = |at: usize| -> [__m256i; 4] {
        // SAFETY: `at + 128 <= a_len`, inside the chunk; the cells side is 8-byte
        // aligned (the contract), and `at` is a multiple of 128.
        unsafe {
            if FROM_CELLS {
                let v = load4(src.add(at));
                store4_private(dst.add(at), v);
                v
            } else {
                let v = load4_private(src.add(at));
                store4(dst.add(at), v);
                v
            }
        }
    };
    // One word of part B at byte `at`, moved and returned.
    let move_word = |at: usize| -> u64 {
        // SAFETY: `at + 8 <= steps * STEP`, inside the chunk, and a multiple of 8:
        // on the cells side an aligned `AtomicU64`, on the private side 8 bytes.
        unsafe {
            if FROM_CELLS {
                let word = (*src.add(at).cast::<AtomicU64>()).load(Ordering::Relaxed);
                dst.add(at).cast::<u64>().write_unaligned(word.to_le());
                word
            } else {
                let word = u64::from_le(src.add(at).cast::<u64>().read_unaligned());
                (*dst.add(at).cast::<AtomicU64>()).store(word, Ordering::Relaxed);
                word
            }
        }
    };
    let fold_a = _mm256_set_epi64x(FOLD_1024[1], FOLD_1024[0], FOLD_1024[1], FOLD_1024[0]);
    let [mut a0, mut a1, mut a2, mut a3] = move_a(0);
    // The register so far is added to the first 32 bits of the message.
    a0 = _mm256_xor_si256(a0, _mm256_set_epi64x(0, 0, 0, i64::from(state)));
    let (mut b1, mut b2, mut b3) = (0u64, 0u64, 0u64);
    let b = [a_len, a_len + 8 * b_words, a_len + 16 * b_words];
    for step in 0..steps {
        if step > 0 {
            let [d0, d1, d2, d3] = move_a(128 * step);
            a0 = fold(a0, fold_a, d0);
            a1 = fold(a1, fold_a, d1);
            a2 = fold(a2, fold_a, d2);
            a3 = fold(a3, fold_a, d3);
        }
        for i in 0..W {
            let at = 8 * (W * step + i);
            b1 = _mm_crc32_u64(b1, move_word(b[0] + at));
            b2 = _mm_crc32_u64(b2, move_word(b[1] + at));
            b3 = _mm_crc32_u64(b3, move_word(b[2] + at));
        }
    }
    // Part A's eight lanes, in message order, folded into the last.
    let fold_lane = _mm_set_epi64x(FOLD_128[1], FOLD_128[0]);
    let lanes: [__m128i; 8] = [
        _mm256_castsi256_si128(a0),
        _mm256_extracti128_si256::<1>(a0),
        _mm256_castsi256_si128(a1),
        _mm256_extracti128_si256::<1>(a1),
        _mm256_castsi256_si128(a2),
        _mm256_extracti128_si256::<1>(a2),
        _mm256_castsi256_si128(a3),
        _mm256_extracti128_si256::<1>(a3),
    ];
    let mut lane = lanes[0];
    for &next in &lanes[1..] {
        let low = _mm_clmulepi64_si128::<0x00>(lane, fold_lane);
        let high = _mm_clmulepi64_si128::<0x11>(lane, fold_lane);
        lane = _mm_xor_si128(_mm_xor_si128(low, high), next);
    }
    // The lane is congruent to part A (with the register added), so its CRC from a
    // zero register is part A's.
    let a = _mm_crc32_u64(0, _mm_cvtsi128_si64(lane) as u64);
    let a = _mm_crc32_u64(a, _mm_extract_epi64::<1>(lane) as u64) as u32;
    // The instruction keeps the 32-bit register in the low half. `3 * b_words <=
    // 3 * W * MAX_STEPS <= SHIFT_WORDS`.
    // SAFETY: PCLMULQDQ and SSE4.2 are enabled here, as `shift` requires.
    unsafe {
        shift(a, SHIFTS[3 * b_words])
            ^ shift(b1 as u32, SHIFTS[2 * b_words])
            ^ shift(b2 as u32, SHIFTS[b_words])
            ^ b3 as u32
    }
}

/// `acc` carried 1024 bits along (by `constants`) and added to `next`.
#[target_feature(enable = "avx2,vpclmulqdq")]
#[inline]
fn fold(acc: __m256i, constants: __m256i, next: __m256i) -> __m256i {
    let low = _mm256_clmulepi64_epi128::<0x00>(acc, constants);
    let high = _mm256_clmulepi64_epi128::<0x11>(acc, constants);
    _mm256_xor_si256(_mm256_xor_si256(low, high), next)
}

/// 128 bytes loaded from cells at `p`.
///
/// # Safety
/// `p` is 8-byte aligned and the 16 `AtomicU64` cells from it are valid.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load4(p: *const u8) -> [__m256i; 4] {
    let (a, b, c, d): (__m256i, __m256i, __m256i, __m256i);
    // SAFETY: the 128 bytes are valid cells (the contract); the moves act as 16
    // relaxed atomic loads of them (module docs).
    unsafe {
        asm!(
            "vmovdqu {a}, ymmword ptr [{p}]",
            "vmovdqu {b}, ymmword ptr [{p} + 32]",
            "vmovdqu {c}, ymmword ptr [{p} + 64]",
            "vmovdqu {d}, ymmword ptr [{p} + 96]",
            p = in(reg) p,
            a = out(ymm_reg) a,
            b = out(ymm_reg) b,
            c = out(ymm_reg) c,
            d = out(ymm_reg) d,
            options(nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}

/// `v` stored into the cells at `p`.
///
/// # Safety
/// As [`load4`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store4(p: *mut u8, v: [__m256i; 4]) {
    // SAFETY: the 128 bytes are valid cells (the contract); the moves act as 16
    // relaxed atomic stores to them (module docs).
    unsafe {
        asm!(
            "vmovdqu ymmword ptr [{p}], {a}",
            "vmovdqu ymmword ptr [{p} + 32], {b}",
            "vmovdqu ymmword ptr [{p} + 64], {c}",
            "vmovdqu ymmword ptr [{p} + 96], {d}",
            p = in(reg) p,
            a = in(ymm_reg) v[0],
            b = in(ymm_reg) v[1],
            c = in(ymm_reg) v[2],
            d = in(ymm_reg) v[3],
            options(nostack, preserves_flags),
        );
    }
}

/// 128 private bytes loaded from `p`.
///
/// # Safety
/// `p` is valid for reading 128 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load4_private(p: *const u8) -> [__m256i; 4] {
    // SAFETY: the contract.
    unsafe { [0, 32, 64, 96].map(|at| _mm256_loadu_si256(p.add(at).cast::<__m256i>())) }
}

/// `v` stored into 128 private bytes at `p`.
///
/// # Safety
/// `p` is valid for writing 128 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store4_private(p: *mut u8, v: [__m256i; 4]) {
    for (at, v) in [0, 32, 64, 96].into_iter().zip(v) {
        // SAFETY: the contract.
        unsafe { _mm256_storeu_si256(p.add(at).cast::<__m256i>(), v) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn copies_and_checksums_like_the_reference_at_every_chunking() {
        if !supported() {
            eprintln!("skipped: this CPU lacks AVX2 or VPCLMULQDQ");
            return;
        }
        let longest = MAX_STEPS * STEP * 2 + 3 * STEP + 40;
        for words in [0, 1, MIN_BYTES / 8 - 1, MIN_BYTES / 8, MIN_BYTES / 8 + 1, 100, 512]
            .into_iter()
            .chain([8192, MAX_STEPS * STEP / 8, MAX_STEPS * STEP / 8 + STEP / 4])
            .chain([longest / 8])
        {
            let bytes = pattern(words * 8, words as u32);
            let cells: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(!0)).collect();
            let prior = 0x1234_5678;
            let stored = store_crc(prior, &bytes, &cells);
            let (crc, done) = stored.expect("supported");
            assert_eq!(done <= words, true);
            assert_eq!(done == 0, words * 8 < MIN_BYTES, "{words} words");
            assert_eq!(crc, crc32c::crc32c_append(prior, &bytes[..done * 8]), "{words} words");
            for (i, cell) in cells.iter().enumerate() {
                let expected = if i < done {
                    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap())
                } else {
                    !0
                };
                assert_eq!(cell.load(Ordering::Relaxed), expected, "word {i} of {words}");
            }
            let mut back = vec![0xA5u8; words * 8];
            let (crc, done_back) = load_crc(prior, &cells, &mut back).expect("supported");
            assert_eq!(done_back, done);
            assert_eq!(crc, crc32c::crc32c_append(prior, &bytes[..done * 8]));
            assert_eq!(back[..done * 8], bytes[..done * 8]);
            assert!(back[done * 8..].iter().all(|&b| b == 0xA5), "{words} words");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_changes_the_checksum() {
        if !supported() {
            return;
        }
        let words = 2 * STEP / 8 + 5;
        let bytes = pattern(words * 8, 7);
        let cells: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
        let (good, done) = store_crc(0, &bytes, &cells).expect("supported");
        for bit in (0..done * 64).step_by(61) {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let (crc, _) = store_crc(0, &flipped, &cells).expect("supported");
            assert_ne!(crc, good, "bit {bit}");
            assert_eq!(crc, crc32c::crc32c(&flipped[..done * 8]));
        }
    }
}
