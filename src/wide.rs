//! Long payloads copied into or out of the mapping and checksummed in one pass, with
//! AVX2, VPCLMULQDQ and SSE4.2 (x86_64, checked at run time).
//!
//! A word at a time ([`crate::crc::crc32c_append_copy`]) the checksum is bound by the
//! `crc32` instruction, 8 bytes at about one per cycle. Here a chunk of the run is cut
//! into four parts handled in lockstep, so that two kinds of execution unit share the
//! checksum:
//!
//! - part A, the first 256·k bytes, moves through eight 32-byte registers per step
//!   and is checksummed by folding: the 256 bits of each register are carried one
//!   step (2048 bits) along the message by two carry-less multiplications
//!   (VPCLMULQDQ) and added to the register loaded there. At the end the registers are
//!   folded into one, halving their number each round, its two 16-byte lanes into
//!   one, and that lane is reduced with the `crc32` instruction;
//! - parts B1, B2, B3, the next three runs of 8·W·k bytes, move a register at a time
//!   and are checksummed a word at a time, one `crc32` stream each (as in `crc.rs`);
//!
//! and the four checksums are joined with the shifts of `crc.rs`. Measured on the
//! benchmark machine (AMD EPYC, 64 KiB in cache): CRC32C alone 22.8 GB/s with the
//! `crc32c` crate, 25.5 GB/s folding alone, 38.5 GB/s folding beside three streams;
//! copied and checksummed, 64 KiB into the mapping 29.4 GB/s here, 18.3 GB/s word by
//! word, and out of it 26.7 and 18.2 GB/s.
//!
//! # Why the mapping's side is inline assembly
//! A lapped reader's copy may race with a writer's (docs/DESIGN.md, "Reading a
//! record"), so every access to the mapping must be atomic: a plain or SIMD load
//! racing with a store is a data race. The 32-byte moves to and from the mapping are
//! `vmovdqu` in `asm!` blocks. An `asm!` block behaves as some sequence of operations
//! of the abstract machine would; a 32-byte move from or to four aligned `AtomicU64`
//! cells behaves as four relaxed atomic loads or stores of them, the same accesses,
//! cell for cell, as the word-wise copy makes, provided the CPU performs each aligned
//! 8-byte part of a vector access as one access. That is an assumption about the
//! hardware, not a documented promise: x86 CPUs behave so, but the manuals promise it
//! in writing only for aligned 16-byte moves on CPUs with AVX, and say that wider
//! accesses "may be implemented using multiple memory accesses". If a part did tear,
//! only a copy that races a writer could see it, and such a copy is rejected anyway
//! (the seqlock re-check, or the checksum). The blocks are not
//! marked `readonly`, `nomem` or `pure`, so the compiler keeps them in place with
//! respect to the fences and atomics around the copy. Everything else here works on
//! registers or on the caller's private bytes.

use std::arch::asm;
use std::arch::x86_64::{
    __m256i, _mm_clmulepi64_si128, _mm_crc32_u64, _mm_cvtsi128_si64, _mm_extract_epi64,
    _mm_set_epi64x, _mm_xor_si128, _mm256_castsi256_si128, _mm256_clmulepi64_epi128,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_set_epi64x, _mm256_setzero_si256,
    _mm256_storeu_si256, _mm256_xor_si256,
};
use std::sync::atomic::AtomicU64;

use crate::crc::{SHIFT_WORDS, SHIFTS, shift};

/// Registers of 32 bytes per step in part A (a power of two).
const A_REGS: usize = 8;
const _: () = assert!(A_REGS.is_power_of_two());
/// Words per step in each of the parts B (moved as whole registers).
const W: usize = 4;
const _: () = assert!(W.is_multiple_of(4));
/// Bytes per step: 256 of part A and 32 of each part B. Measured over A_REGS 2 to 10
/// and W 4 to 12, 64 KiB in cache: from 23 to 29 GB/s; this was the fastest both
/// ways.
const STEP: usize = 32 * A_REGS + 24 * W;
/// The most steps in one chunk: the join shifts part A by 3·W·k words, and [`SHIFTS`]
/// holds shifts up to [`SHIFT_WORDS`].
const MAX_STEPS: usize = SHIFT_WORDS / (3 * W);
/// The fewest steps in a chunk; a shorter rest is left to the caller.
const MIN_STEPS: usize = 2;
/// Runs shorter than this are better left to the word-wise copy: measured on the
/// benchmark machine, in cache, 3 KiB took as long either way into the mapping
/// (136 ns) and 16 % less out of it; 2 KiB 12 % longer into it, 5 % less out of it;
/// 64 KiB 37 % and 29 % less.
pub(crate) const MIN_BYTES: usize = 3072;

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

/// Part A's step in bits.
const A_BITS: u32 = 256 * A_REGS as u32;
/// A 16-byte lane one step of part A along: its first 64 bits are x^(A_BITS + 64)
/// further from the end, its last 64 bits x^A_BITS.
const FOLD_A: [i64; 2] = [fold_constant(A_BITS + 64), fold_constant(A_BITS)];
/// `FOLD_REGS[i]`: a 16-byte lane 2^i registers along (256·2^i bits), for folding
/// part A's registers into one.
const FOLD_REGS: [[i64; 2]; A_REGS.trailing_zeros() as usize] = {
    let mut constants = [[0; 2]; A_REGS.trailing_zeros() as usize];
    let mut i = 0;
    while i < constants.len() {
        let bits = 256 << i;
        constants[i] = [fold_constant(bits + 64), fold_constant(bits)];
        i += 1;
    }
    constants
};
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
/// chunk has at least [`MIN_STEPS`] steps, and returns the CRC32C of the bytes whose CRC32C
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
        copy_crc::<false>(
            crc,
            src.as_ptr(),
            dst.as_ptr().cast::<u8>().cast_mut(),
            src.len(),
        )
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
    Some(unsafe { copy_crc::<true>(crc, src.as_ptr().cast::<u8>(), dst.as_mut_ptr(), dst.len()) })
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
        if steps < MIN_STEPS {
            break;
        }
        // SAFETY: the chunk, `steps * STEP <= len - done` bytes from `done`, is in
        // both ranges; the rest as this function's contract.
        state = unsafe { chunk::<FROM_CELLS>(state, src.add(done), dst.add(done), steps) };
        done += steps * STEP;
    }
    (!state, done / 8)
}

/// Copies and checksums one chunk of `steps` steps (`MIN_STEPS <= steps <= MAX_STEPS`),
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
    let a_len = 32 * A_REGS * steps;
    // The bytes of the chunk outside the mapping, whichever side they are on.
    let private = if FROM_CELLS { dst.cast_const() } else { src };
    let fold_a = _mm256_set_epi64x(FOLD_A[1], FOLD_A[0], FOLD_A[1], FOLD_A[0]);
    // The moves and reads below are at offsets inside the chunk that are multiples of
    // 8 and, with the registers or words they cover, end inside it.
    // SAFETY: as just said; the cells side is 8-byte aligned (the contract).
    let mut a: [__m256i; A_REGS] = unsafe { move_regs::<FROM_CELLS, A_REGS>(src, dst, 0) };
    // The register so far is added to the first 32 bits of the message.
    a[0] = _mm256_xor_si256(a[0], _mm256_set_epi64x(0, 0, 0, i64::from(state)));
    let mut b = [0u64; 3];
    let b_at = [a_len, a_len + 8 * b_words, a_len + 16 * b_words];
    for step in 0..steps {
        if step > 0 {
            let at = 32 * A_REGS * step;
            // SAFETY: as above.
            let next: [__m256i; A_REGS] = unsafe { move_regs::<FROM_CELLS, A_REGS>(src, dst, at) };
            for (acc, next) in a.iter_mut().zip(next) {
                *acc = fold(*acc, fold_a, next);
            }
        }
        for start in b_at {
            // SAFETY: as above.
            unsafe { move_regs::<FROM_CELLS, { W / 4 }>(src, dst, start + 8 * W * step) };
        }
        // Parts B are checksummed a step behind their copy, so that on the way out of
        // the mapping the words are read back from the cache, not the store buffer.
        if step > 0 {
            // SAFETY: as above; the private side is plain memory.
            unsafe { crc_b(&mut b, private, b_at, step - 1) };
        }
    }
    // SAFETY: as above.
    unsafe { crc_b(&mut b, private, b_at, steps - 1) };
    // Part A's registers folded into the last, halving their number each time so that
    // the folds of one round are independent: the first half carried half of them
    // along and added to the second half, then the last register's two lanes.
    let mut live = A_REGS;
    while live > 1 {
        let half = live / 2;
        let constants = FOLD_REGS[half.trailing_zeros() as usize];
        let constants = _mm256_set_epi64x(constants[1], constants[0], constants[1], constants[0]);
        let (first, second) = a[A_REGS - live..].split_at_mut(half);
        for (from, into) in first.iter().zip(second) {
            *into = fold(*from, constants, *into);
        }
        live = half;
    }
    let last = a[A_REGS - 1];
    let fold_lane = _mm_set_epi64x(FOLD_128[1], FOLD_128[0]);
    let lane = _mm256_castsi256_si128(last);
    let low = _mm_clmulepi64_si128::<0x00>(lane, fold_lane);
    let high = _mm_clmulepi64_si128::<0x11>(lane, fold_lane);
    let lane = _mm_xor_si128(
        _mm_xor_si128(low, high),
        _mm256_extracti128_si256::<1>(last),
    );
    // The lane is congruent to part A (with the register added), so its CRC from a
    // zero register is part A's.
    let a = _mm_crc32_u64(0, _mm_cvtsi128_si64(lane) as u64);
    let a = _mm_crc32_u64(a, _mm_extract_epi64::<1>(lane) as u64) as u32;
    // The instruction keeps the 32-bit register in the low half. `3 * b_words <=
    // 3 * W * MAX_STEPS <= SHIFT_WORDS`.
    // SAFETY: PCLMULQDQ and SSE4.2 are enabled here, as `shift` requires.
    unsafe {
        shift(a, SHIFTS[3 * b_words])
            ^ shift(b[0] as u32, SHIFTS[2 * b_words])
            ^ shift(b[1] as u32, SHIFTS[b_words])
            ^ b[2] as u32
    }
}

/// The words of step `step` of the parts B starting at `b_at`, each added to its
/// stream in `b`.
///
/// # Safety
/// `private` is valid for reading the words.
#[target_feature(enable = "sse4.2")]
#[inline]
unsafe fn crc_b(b: &mut [u64; 3], private: *const u8, b_at: [usize; 3], step: usize) {
    // Three named streams, each instruction in turn: written as a loop over `b`, the
    // compiler ran each stream's words back to back, at the instruction's latency.
    let [mut x, mut y, mut z] = *b;
    let word = |start: usize, i: usize| -> u64 {
        // SAFETY: the contract.
        let word = unsafe {
            private
                .add(start + 8 * (W * step + i))
                .cast::<u64>()
                .read_unaligned()
        };
        u64::from_le(word)
    };
    for i in 0..W {
        x = _mm_crc32_u64(x, word(b_at[0], i));
        y = _mm_crc32_u64(y, word(b_at[1], i));
        z = _mm_crc32_u64(z, word(b_at[2], i));
    }
    *b = [x, y, z];
}

/// `N` registers moved from `src + at` to `dst + at`, and returned.
///
/// # Safety
/// Both are valid for the `32 * N` bytes from `at`; the cells side (`src` if
/// `FROM_CELLS`, else `dst`) is 8-byte aligned and accessed by others only atomically.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn move_regs<const FROM_CELLS: bool, const N: usize>(
    src: *const u8,
    dst: *mut u8,
    at: usize,
) -> [__m256i; N] {
    // SAFETY: the contract; each `i` stays inside the `32 * N` bytes.
    unsafe {
        let mut regs = [_mm256_setzero_si256(); N];
        for (i, reg) in regs.iter_mut().enumerate() {
            let p = src.add(at + 32 * i);
            *reg = if FROM_CELLS {
                load_cells(p)
            } else {
                _mm256_loadu_si256(p.cast())
            };
        }
        for (i, reg) in regs.iter().enumerate() {
            let p = dst.add(at + 32 * i);
            if FROM_CELLS {
                _mm256_storeu_si256(p.cast(), *reg)
            } else {
                store_cells(p, *reg)
            }
        }
        regs
    }
}

/// `acc` carried one step of part A along (by `constants`) and added to `next`.
#[target_feature(enable = "avx2,vpclmulqdq")]
#[inline]
fn fold(acc: __m256i, constants: __m256i, next: __m256i) -> __m256i {
    let low = _mm256_clmulepi64_epi128::<0x00>(acc, constants);
    let high = _mm256_clmulepi64_epi128::<0x11>(acc, constants);
    _mm256_xor_si256(_mm256_xor_si256(low, high), next)
}

/// 32 bytes loaded from the cells at `p`.
///
/// # Safety
/// `p` is 8-byte aligned and the four `AtomicU64` cells from it are valid.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_cells(p: *const u8) -> __m256i {
    let v: __m256i;
    // SAFETY: the 32 bytes are valid cells (the contract); the move acts as four
    // relaxed atomic loads of them (module docs).
    unsafe {
        asm!(
            "vmovdqu {v}, ymmword ptr [{p}]",
            p = in(reg) p,
            v = out(ymm_reg) v,
            options(nostack, preserves_flags),
        );
    }
    v
}

/// `v` stored into the cells at `p`.
///
/// # Safety
/// As [`load_cells`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_cells(p: *mut u8, v: __m256i) {
    // SAFETY: the 32 bytes are valid cells (the contract); the move acts as four
    // relaxed atomic stores to them (module docs).
    unsafe {
        asm!(
            "vmovdqu ymmword ptr [{p}], {v}",
            p = in(reg) p,
            v = in(ymm_reg) v,
            options(nostack, preserves_flags),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

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
        let least = MIN_STEPS * STEP / 8;
        for words in [0, 1, least - 1, least, least + 1, MIN_BYTES / 8, 512]
            .into_iter()
            .chain([8192, MAX_STEPS * STEP / 8, MAX_STEPS * STEP / 8 + STEP / 4])
            .chain([longest / 8])
        {
            let bytes = pattern(words * 8, words as u32);
            let cells: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(!0)).collect();
            let prior = 0x1234_5678;
            let stored = store_crc(prior, &bytes, &cells);
            let (crc, done) = stored.expect("supported");
            assert!(done <= words);
            assert_eq!(done == 0, words < least, "{words} words");
            // Chunks go on while a whole one fits: less than one is left over.
            assert!(words - done < least, "{words} words: {done} done");
            assert_eq!(
                crc,
                crc32c::crc32c_append(prior, &bytes[..done * 8]),
                "{words} words"
            );
            for (i, cell) in cells.iter().enumerate() {
                let expected = if i < done {
                    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap())
                } else {
                    !0
                };
                assert_eq!(
                    cell.load(Ordering::Relaxed),
                    expected,
                    "word {i} of {words}"
                );
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
