//! `Region`: the bytes a ring lives in, reached only through bounds-checked calls.
//!
//! The algorithm in `ring.rs` is written against this trait, so it runs over the
//! memory-mapped file (`map::MmapRegion`) and over an ordinary heap buffer
//! (`HeapRegion`), which is what loom and the unit tests use.
//!
//! Offsets are file offsets. Callers validate everything read from the file before
//! using it as an offset; the checks here are the last line of defence against a bug
//! in the ring itself, so they panic rather than touch memory out of bounds.

use std::iter::Zip;
use std::slice::{self, ChunksExact, ChunksExactMut};

use crate::crc::CopyWords;
use crate::format::{NOTIFY_OFFSET, WAITERS_OFFSET};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Memory shared with other threads and processes.
pub(crate) trait Region: Send + Sync {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// The 8-byte-aligned word at `off` as an atomic.
    fn atomic(&self, off: usize) -> &AtomicU64;
    /// The `n` 8-byte-aligned words from `off` as atomics.
    fn atomics(&self, off: usize, n: usize) -> &[AtomicU64];
    /// The 4-byte-aligned word at `off` as an atomic. Only the two 32-bit words of the
    /// format use it: the futex word and the waiter count (DESIGN: Waiting).
    fn atomic_u32(&self, off: usize) -> &AtomicU32;
    /// Copies `dst.len()` bytes starting at `off` into `dst`. The bytes may be
    /// changed concurrently by a writer that lapped the reader; the caller validates
    /// the copy afterwards (see docs/DESIGN.md, "Reading a record").
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` to `off`. The caller owns the bytes (it reserved them).
    fn write(&self, off: usize, src: &[u8]);
    /// [`read`](Region::read), returning the CRC32C of the copy in `dst`, computed in
    /// the same pass.
    fn read_crc(&self, off: usize, dst: &mut [u8]) -> u32;
    /// Writes a record's payload: [`write`](Region::write), then, unless `src` is
    /// empty, the bytes after it up to the next multiple of 8 as `0xFF` (the unused end
    /// of the record). Returns the CRC32C of `src`, computed in the same pass. The fill
    /// keeps bytes of an earlier lap out of the payload's last word, where together
    /// with the payload's last bytes they could read as the stamp of a record a later
    /// lap puts there (DESIGN: Stale words that read as stamps).
    fn write_payload_crc(&self, off: usize, src: &[u8]) -> u32;
    /// Asks the CPU to bring the cache lines of the `len` bytes from `off` into this
    /// core's cache ready for writing, before a producer claims and writes the records
    /// there: a hint, which accesses no memory. The default asks nothing.
    #[inline(always)]
    fn prefetch_for_write(&self, off: usize, len: usize) {
        let _ = (off, len);
    }
}

/// Panics unless `off..off + len` lies inside a region of `region_len` bytes.
#[inline]
pub(crate) fn check_range(off: usize, len: usize, region_len: usize) {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= region_len),
        "mmring bug: access {off}+{len} outside a {region_len}-byte region"
    );
}

/// The words holding the `len` bytes from the word-aligned byte offset `off`; panics,
/// as [`check_range`] does, unless they lie inside `words`.
#[inline]
fn aligned_cells(words: &[AtomicU64], off: usize, len: usize) -> &[AtomicU64] {
    match words.get(off / 8..(off / 8).saturating_add(len.div_ceil(8))) {
        Some(cells) => cells,
        None => out_of_range(off, len, words.len() * 8),
    }
}

/// The panic of [`check_range`], out of line.
#[cold]
#[inline(never)]
fn out_of_range(off: usize, len: usize, region_len: usize) -> ! {
    panic!("mmring bug: access {off}+{len} outside a {region_len}-byte region")
}

/// Panics unless `off` is one of the format's two 32-bit atomics (inside the header,
/// 4-aligned).
pub(crate) fn check_word_u32(off: usize, region_len: usize) {
    assert!(
        off == NOTIFY_OFFSET || off == WAITERS_OFFSET,
        "mmring bug: 32-bit atomic at offset {off}"
    );
    check_range(off, 4, region_len);
}

/// The word at byte `off` of `words`; panics, as [`check_range`] does, unless `off`
/// is word-aligned and the word lies inside `words`. One comparison and one test,
/// with the panic out of line: the ring makes a dozen of these accesses per entry.
#[inline(always)]
pub(crate) fn cell(words: &[AtomicU64], off: usize) -> &AtomicU64 {
    match words.get(off / 8) {
        Some(cell) if off.is_multiple_of(8) => cell,
        _ => bad_atomic(off, 1, words.len() * 8),
    }
}

/// The `n` words from byte `off` of `words`; panics as [`cell`] does.
#[inline(always)]
pub(crate) fn cells(words: &[AtomicU64], off: usize, n: usize) -> &[AtomicU64] {
    match words.get(off / 8..(off / 8).saturating_add(n)) {
        Some(cells) if off.is_multiple_of(8) => cells,
        _ => bad_atomic(off, n, words.len() * 8),
    }
}

/// The panic of [`cell`] and [`cells`], out of line.
#[cold]
#[inline(never)]
fn bad_atomic(off: usize, n: usize, region_len: usize) -> ! {
    if off.is_multiple_of(8) {
        out_of_range(off, n.saturating_mul(8), region_len)
    }
    panic!("mmring bug: unaligned atomic at offset {off}")
}

/// Copies `dst.len()` bytes starting at byte `off` of `words` into `dst`, one relaxed
/// atomic load per word.
///
/// Word-wise atomic copies, not `memcpy`, because a lapped reader's copy may race
/// with a writer's (the seqlock in docs/DESIGN.md, "Reading a record"): atomic
/// accesses make that race well defined, where a plain copy would be a data race. On
/// x86_64 and aarch64 a relaxed load or store is an ordinary `mov`/`ldr`.
pub(crate) fn read_words(words: &[AtomicU64], off: usize, dst: &mut [u8]) {
    // Every payload and header starts on a word: then there is no head word.
    let (off, rest) = if off.is_multiple_of(8) {
        (off, dst)
    } else {
        let head = read_head(words, off, dst);
        (off + head, &mut dst[head..])
    };
    let cells = aligned_cells(words, off, rest.len());
    let (middle, tail) = rest.split_at_mut(rest.len() / 8 * 8);
    for (bytes, cell) in middle.chunks_exact_mut(8).zip(cells) {
        bytes.copy_from_slice(&cell.load(Ordering::Relaxed).to_le_bytes());
    }
    if !tail.is_empty() {
        load_part(&cells[cells.len() - 1], 0, tail);
    }
}

/// Copies `src` to byte `off` of `words`, one relaxed atomic store per word (see
/// [`read_words`] for why). A word only partly covered is loaded, merged and stored:
/// records are 8-byte aligned, so its other bytes belong to the same writer's record
/// and nobody else stores to them meanwhile.
pub(crate) fn write_words(words: &[AtomicU64], off: usize, src: &[u8]) {
    // As in `read_words`.
    let (off, rest) = if off.is_multiple_of(8) {
        (off, src)
    } else {
        let head = write_head(words, off, src);
        (off + head, &src[head..])
    };
    let cells = aligned_cells(words, off, rest.len());
    let (middle, tail) = rest.split_at(rest.len() / 8 * 8);
    for (bytes, cell) in middle.chunks_exact(8).zip(cells) {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        cell.store(u64::from_le_bytes(le), Ordering::Relaxed);
    }
    if !tail.is_empty() {
        merge_part(&cells[cells.len() - 1], 0, tail);
    }
}

/// The part of [`read_words`] before the first word boundary, for an unaligned `off`
/// (never a record's header or payload, so out of line): checks the whole range,
/// copies the bytes of the word `off` is in, and returns how many.
#[cold]
fn read_head(words: &[AtomicU64], off: usize, dst: &mut [u8]) -> usize {
    check_range(off, dst.len(), words.len() * 8);
    let head = split(off, dst.len()).0;
    load_part(&words[off / 8], off % 8, &mut dst[..head]);
    head
}

/// [`read_head`] for [`write_words`].
#[cold]
fn write_head(words: &[AtomicU64], off: usize, src: &[u8]) -> usize {
    check_range(off, src.len(), words.len() * 8);
    let head = split(off, src.len()).0;
    merge_part(&words[off / 8], off % 8, &src[..head]);
    head
}

/// How a copy of `len` bytes at byte `off` falls on words: `head` bytes in the word
/// `off` is in, when `off` is not aligned, then `whole` full words, then the rest at
/// the start of the next word.
fn split(off: usize, len: usize) -> (usize, usize) {
    let head = if off.is_multiple_of(8) {
        0
    } else {
        (8 - off % 8).min(len)
    };
    (head, (len - head) / 8)
}

/// Copies the `dst.len()` bytes starting at byte `from` of the word `cell` (at most
/// 8 - `from`) into `dst`.
fn load_part(cell: &AtomicU64, from: usize, dst: &mut [u8]) {
    debug_assert!(from + dst.len() <= 8);
    // Byte by byte from the word rather than a slice copy of a variable length, which
    // would be a call to `memcpy` for at most seven bytes.
    let word = cell.load(Ordering::Relaxed) >> (8 * from);
    for (i, byte) in dst.iter_mut().enumerate() {
        *byte = (word >> (8 * i)) as u8;
    }
}

/// Stores `bytes` at byte `from` of the word `cell`, where a payload ends: the bytes
/// before `from` are kept (as in [`merge_part`]), the ones after `bytes` set to `0xFF`.
/// The word's top byte is then `0xFF` unless `bytes` reaches it, so the word, with
/// the stamp key taken off (which leaves bits 62 and 63 alone), names a position of
/// 2^62 or more, above every position, and can't read as a stamp.
fn store_end(cell: &AtomicU64, from: usize, bytes: &[u8]) {
    debug_assert!(from + bytes.len() <= 8);
    let mut word = if from == 0 {
        u64::MAX // nothing to keep: no load
    } else {
        cell.load(Ordering::Relaxed) | u64::MAX << (8 * from)
    };
    for (i, &byte) in bytes.iter().enumerate() {
        let shift = 8 * (from + i);
        word = (word & !(0xff << shift)) | u64::from(byte) << shift;
    }
    cell.store(word, Ordering::Relaxed);
}

/// Stores `bytes` at byte `from` of the word `cell`, keeping its other bytes (see
/// [`write_words`] for why that is not a race).
fn merge_part(cell: &AtomicU64, from: usize, bytes: &[u8]) {
    debug_assert!(from + bytes.len() <= 8);
    // Byte by byte, as in `load_part`.
    let mut word = cell.load(Ordering::Relaxed);
    for (i, &byte) in bytes.iter().enumerate() {
        let shift = 8 * (from + i);
        word = (word & !(0xff << shift)) | u64::from(byte) << shift;
    }
    cell.store(word, Ordering::Relaxed);
}

/// Payloads shorter than this, at a word-aligned offset (every record's payload), take
/// the short path: one CRC stream fed each word as it is copied
/// ([`crc32c_append_copy_short`](crate::crc::crc32c_append_copy_short)), in a function
/// small enough to inline into the ring's loops. Longer ones (split into three streams
/// by `crc.rs`, moved by vectors from 3 KiB by `wide.rs`) and unaligned ones take the
/// general path, out of line: its head-word and vector checks, the second feature
/// check of `crc.rs` and the stack frame all that needs cost more than they save on a
/// few words. Measured with callgrind on 64-byte entries through push_batch +
/// pop_batch: about 45 instructions per entry fewer than a copy followed by a separate
/// checksum pass, and about 110 fewer than the general path.
const LONG_MIN: usize = 256;

// The short path is one stream; `crc.rs` would not split these runs either.
const _: () = assert!(LONG_MIN <= crate::crc::MIN_SPLIT_WORDS * 8);

/// [`read_words`], returning the CRC32C of the copy: each word is fed to the checksum
/// as it is loaded, so the payload is passed over once. The CRC is of the bytes as
/// copied into `dst`, which a racing writer may have torn; the caller compares it with
/// the record's checksum and validates the copy as after `read_words`.
#[inline(always)]
pub(crate) fn read_words_crc(words: &[AtomicU64], off: usize, dst: &mut [u8]) -> u32 {
    if dst.len() >= LONG_MIN || !off.is_multiple_of(8) {
        return read_words_crc_long(words, off, dst);
    }
    let cells = aligned_cells(words, off, dst.len());
    let (middle, tail) = dst.split_at_mut(dst.len() / 8 * 8);
    let (whole, last) = cells.split_at(middle.len() / 8);
    let mut crc = crate::crc::crc32c_append_copy_short(
        0,
        Load {
            src: whole,
            dst: middle,
        },
    );
    if let Some(last) = last.first() {
        load_part(last, 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);
    }
    crc
}

/// [`read_words_crc`] from `LONG_MIN` bytes on, or at an unaligned offset: kept out of
/// line, so that short aligned payloads, the common case, make a small function.
#[inline(never)]
fn read_words_crc_long(words: &[AtomicU64], off: usize, dst: &mut [u8]) -> u32 {
    check_range(off, dst.len(), words.len() * 8);
    let (head, whole) = split(off, dst.len());
    let (head_bytes, rest) = dst.split_at_mut(head);
    let (middle, tail) = rest.split_at_mut(whole * 8);
    let mut crc = 0;
    if !head_bytes.is_empty() {
        load_part(&words[off / 8], off % 8, head_bytes);
        crc = crate::crc::crc32c_append(crc, head_bytes);
    }
    let first = (off + head) / 8;
    // Mutated only by the vector path, which x86_64 alone has.
    #[cfg_attr(
        not(all(target_arch = "x86_64", not(loom), not(miri))),
        allow(unused_mut)
    )]
    let mut run = Load {
        src: &words[first..first + whole],
        dst: middle,
    };
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    if whole * 8 >= crate::wide::MIN_BYTES
        && let Some((wide_crc, done)) = crate::wide::load_crc(crc, run.src, run.dst)
    {
        crc = wide_crc;
        run = run.split_at(done).1;
    }
    crc = crate::crc::crc32c_append_copy(crc, run);
    if !tail.is_empty() {
        load_part(&words[first + whole], 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);
    }
    crc
}

/// [`write_words`], but the bytes after `src` up to the next multiple of 8 are set
/// to `0xFF` ([`Region::write_payload_crc`]); returns the CRC32C of `src`: each word is
/// fed to the checksum as it is stored, so the payload is passed over once.
#[inline(always)]
pub(crate) fn write_payload_words_crc(words: &[AtomicU64], off: usize, src: &[u8]) -> u32 {
    if src.len() >= LONG_MIN || !off.is_multiple_of(8) {
        return write_payload_words_crc_long(words, off, src);
    }
    let cells = aligned_cells(words, off, src.len());
    let (middle, tail) = src.split_at(src.len() / 8 * 8);
    let (whole, last) = cells.split_at(middle.len() / 8);
    let mut crc = crate::crc::crc32c_append_copy_short(
        0,
        Store {
            src: middle,
            dst: whole,
        },
    );
    if let Some(last) = last.first() {
        store_end(last, 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);
    }
    crc
}

/// [`write_payload_words_crc`] from `LONG_MIN` bytes on, or at an unaligned offset
/// (see [`read_words_crc_long`]).
#[inline(never)]
fn write_payload_words_crc_long(words: &[AtomicU64], off: usize, src: &[u8]) -> u32 {
    check_range(off, src.len(), words.len() * 8);
    let (head, whole) = split(off, src.len());
    let (head_bytes, rest) = src.split_at(head);
    let (middle, tail) = rest.split_at(whole * 8);
    let mut crc = 0;
    if !head_bytes.is_empty() {
        if rest.is_empty() {
            store_end(&words[off / 8], off % 8, head_bytes); // it ends in this word
        } else {
            merge_part(&words[off / 8], off % 8, head_bytes);
        }
        crc = crate::crc::crc32c_append(crc, head_bytes);
    }
    let first = (off + head) / 8;
    // Mutated only by the vector path, which x86_64 alone has.
    #[cfg_attr(
        not(all(target_arch = "x86_64", not(loom), not(miri))),
        allow(unused_mut)
    )]
    let mut run = Store {
        src: middle,
        dst: &words[first..first + whole],
    };
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    if whole * 8 >= crate::wide::MIN_BYTES
        && let Some((wide_crc, done)) = crate::wide::store_crc(crc, run.src, run.dst)
    {
        crc = wide_crc;
        run = run.split_at(done).1;
    }
    crc = crate::crc::crc32c_append_copy(crc, run);
    if !tail.is_empty() {
        store_end(&words[first + whole], 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);
    }
    crc
}

/// Whole words loaded from the mapping into bytes, for [`read_words_crc`].
struct Load<'a> {
    src: &'a [AtomicU64],
    /// `8 * src.len()` bytes.
    dst: &'a mut [u8],
}

impl<'a> CopyWords for Load<'a> {
    type Word = (&'a AtomicU64, &'a mut [u8]);
    type Words = Zip<slice::Iter<'a, AtomicU64>, ChunksExactMut<'a, u8>>;

    #[inline]
    fn words(&self) -> usize {
        self.src.len()
    }

    #[inline]
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (src, more_src) = self.src.split_at(mid);
        let (dst, more_dst) = self.dst.split_at_mut(mid * 8);
        let rest = Load {
            src: more_src,
            dst: more_dst,
        };
        (Load { src, dst }, rest)
    }

    #[inline]
    fn into_words(self) -> Self::Words {
        self.src.iter().zip(self.dst.chunks_exact_mut(8))
    }

    #[inline]
    fn copy((cell, bytes): Self::Word) -> u64 {
        let word = cell.load(Ordering::Relaxed);
        bytes.copy_from_slice(&word.to_le_bytes());
        word
    }
}

/// Bytes stored into the mapping as whole words, for [`write_payload_words_crc`].
struct Store<'a> {
    /// `8 * dst.len()` bytes.
    src: &'a [u8],
    dst: &'a [AtomicU64],
}

impl<'a> CopyWords for Store<'a> {
    type Word = (&'a [u8], &'a AtomicU64);
    type Words = Zip<ChunksExact<'a, u8>, slice::Iter<'a, AtomicU64>>;

    #[inline]
    fn words(&self) -> usize {
        self.dst.len()
    }

    #[inline]
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (src, more_src) = self.src.split_at(mid * 8);
        let (dst, more_dst) = self.dst.split_at(mid);
        let rest = Store {
            src: more_src,
            dst: more_dst,
        };
        (Store { src, dst }, rest)
    }

    #[inline]
    fn into_words(self) -> Self::Words {
        self.src.chunks_exact(8).zip(self.dst)
    }

    #[inline]
    fn copy((bytes, cell): Self::Word) -> u64 {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        let word = u64::from_le_bytes(le);
        cell.store(word, Ordering::Relaxed);
        word
    }
}

/// A region on the heap, made of atomic words like the mapping. Used by loom models
/// and unit tests.
#[cfg_attr(not(any(test, loom)), allow(dead_code))]
pub(crate) struct HeapRegion {
    words: Box<[AtomicU64]>,
    /// The futex word and the waiter count. Kept apart from `words` because loom has
    /// no mixed-size atomics; `read` and `write` don't see them (nothing copies the
    /// header bytes they occupy).
    wait_words: [AtomicU32; 2],
}

#[cfg_attr(not(any(test, loom)), allow(dead_code))]
impl HeapRegion {
    /// A zeroed region of `len` bytes (rounded up to whole words).
    pub(crate) fn new(len: usize) -> HeapRegion {
        HeapRegion {
            words: (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            wait_words: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }
}

impl Region for HeapRegion {
    fn len(&self) -> usize {
        self.words.len() * 8
    }

    fn atomic(&self, off: usize) -> &AtomicU64 {
        cell(&self.words, off)
    }

    fn atomics(&self, off: usize, n: usize) -> &[AtomicU64] {
        cells(&self.words, off, n)
    }

    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        check_word_u32(off, self.len());
        &self.wait_words[usize::from(off == WAITERS_OFFSET)]
    }

    fn read(&self, off: usize, dst: &mut [u8]) {
        read_words(&self.words, off, dst);
    }

    fn write(&self, off: usize, src: &[u8]) {
        write_words(&self.words, off, src);
    }

    fn read_crc(&self, off: usize, dst: &mut [u8]) -> u32 {
        read_words_crc(&self.words, off, dst)
    }

    fn write_payload_crc(&self, off: usize, src: &[u8]) -> u32 {
        write_payload_words_crc(&self.words, off, src)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn heap_region_copies_unaligned_ranges() {
        let region = HeapRegion::new(64);
        let src: Vec<u8> = (1..=21).collect();
        region.write(3, &src);
        let mut back = vec![0u8; 21];
        region.read(3, &mut back);
        assert_eq!(back, src);
        let mut around = [0u8; 2];
        region.read(1, &mut around);
        assert_eq!(around, [0, 0], "bytes before the write are untouched");
        region.read(24, &mut around);
        assert_eq!(around, [0, 0], "bytes after the write are untouched");
    }

    /// Bytes that differ from their neighbours and from another `seed`'s.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8 ^ seed)
            .collect()
    }

    fn words_of(bytes: &[u8]) -> Vec<AtomicU64> {
        let words: Vec<AtomicU64> = (0..bytes.len().div_ceil(8))
            .map(|_| AtomicU64::new(0))
            .collect();
        write_words(&words, 0, bytes);
        words
    }

    fn bytes_of(words: &[AtomicU64]) -> Vec<u8> {
        let mut bytes = vec![0; words.len() * 8];
        read_words(words, 0, &mut bytes);
        bytes
    }

    /// The lengths and offsets the fused copies are checked at: every offset in 0..64
    /// for every length up to 600 bytes (head and tail words, one CRC stream, three
    /// streams with zero to two words left over), every offset modulo 8 around whole
    /// chunks of the longest blocks, and the largest payloads.
    fn cases() -> impl Iterator<Item = (usize, usize)> {
        let chunk = 3 * crate::crc::MAX_BLOCK_WORDS * 8;
        let short = (0..64).flat_map(|off| (0..=600).map(move |len| (off, len)));
        let long = (0..16).flat_map(move |off| {
            let lens = [
                4095,
                chunk - 9,
                chunk,
                chunk + 9,
                chunk + 200,
                65536,
                MAX_LEN,
            ];
            lens.into_iter().map(move |len| (off, len))
        });
        short.chain(long)
    }

    /// The longest length of [`cases`].
    const MAX_LEN: usize = 65543;

    #[test]
    fn payload_write_matches_write_then_fill_and_checksum_at_every_offset_and_length() {
        let fill = pattern(64 + MAX_LEN + 16, 0xa5);
        let source = pattern(MAX_LEN, 0x3c);
        for (off, len) in cases() {
            // `src` over the old bytes, nothing else.
            let fill = &fill[..(off + len + 16).next_multiple_of(8)];
            let src = &source[..len];
            let mut expected = fill.to_vec();
            expected[off..off + len].copy_from_slice(src);
            let plain = words_of(fill);
            write_words(&plain, off, src);
            assert!(
                bytes_of(&plain) == expected,
                "plain write of {len} bytes at {off}"
            );
            // The payload write also fills the rest of the word it ends in, if any.
            if len > 0 {
                expected[off + len..(off + len).next_multiple_of(8)].fill(0xff);
            }
            let fused = words_of(fill);
            let crc = write_payload_words_crc(&fused, off, src);
            assert_eq!(crc, crc32c::crc32c(src), "crc of {len} bytes at {off}");
            assert!(
                bytes_of(&fused) == expected,
                "write of {len} bytes at {off}"
            );
        }
    }

    #[test]
    fn fused_read_matches_read_and_checksum_at_every_offset_and_length() {
        let fill = pattern(64 + MAX_LEN + 8, 0x96);
        let words = words_of(&fill);
        for (off, len) in cases() {
            let mut fused = vec![0xee; len];
            let crc = read_words_crc(&words, off, &mut fused);
            assert!(
                fused == fill[off..off + len],
                "read of {len} bytes at {off}"
            );
            assert_eq!(crc, crc32c::crc32c(&fused), "crc of {len} bytes at {off}");
            let mut plain = vec![0x11; len];
            read_words(&words, off, &mut plain);
            assert!(plain == fused, "plain read of {len} bytes at {off}");
        }
    }

    #[test]
    #[should_panic(expected = "mmring bug: access 56+16 outside a 64-byte region")]
    fn aligned_read_past_the_end_is_a_clear_panic() {
        let words = words_of(&[0u8; 64]);
        read_words(&words, 56, &mut [0u8; 16]);
    }

    #[test]
    #[should_panic(expected = "mmring bug: access 64+1 outside a 64-byte region")]
    fn aligned_write_past_the_end_is_a_clear_panic() {
        let words = words_of(&[0u8; 64]);
        write_words(&words, 64, &[1]);
    }

    #[test]
    fn atomics_reach_every_word_and_nothing_past_the_end() {
        let words = words_of(&(0..64).collect::<Vec<u8>>());
        for off in (0..64).step_by(8) {
            let want = u64::from_le_bytes(std::array::from_fn(|i| (off + i) as u8));
            assert_eq!(
                cell(&words, off).load(Ordering::Relaxed),
                want,
                "word at {off}"
            );
            assert_eq!(cells(&words, off, (64 - off) / 8).len(), (64 - off) / 8);
        }
        assert!(cells(&words, 64, 0).is_empty());
        for bad in [
            std::panic::catch_unwind(|| cell(&words, 64).load(Ordering::Relaxed)).err(),
            std::panic::catch_unwind(|| cell(&words, usize::MAX - 7).load(Ordering::Relaxed)).err(),
            std::panic::catch_unwind(|| cells(&words, 56, 2).len()).err(),
            std::panic::catch_unwind(|| cells(&words, 8, usize::MAX).len()).err(),
        ] {
            let message = bad.expect("an access past the end panics");
            let text = message
                .downcast_ref::<String>()
                .expect("a formatted message");
            assert!(text.contains("outside a 64-byte region"), "{text}");
        }
        for off in [1, 7, 12] {
            let message = std::panic::catch_unwind(|| cell(&words, off).load(Ordering::Relaxed))
                .expect_err("an unaligned access panics");
            let text = message
                .downcast_ref::<String>()
                .expect("a formatted message");
            assert_eq!(
                text,
                &format!("mmring bug: unaligned atomic at offset {off}")
            );
            assert!(std::panic::catch_unwind(|| cells(&words, off, 1).len()).is_err());
        }
    }

    #[test]
    fn heap_region_fused_copies_round_trip() {
        let region = HeapRegion::new(256);
        let src = pattern(77, 1);
        assert_eq!(region.write_payload_crc(13, &src), crc32c::crc32c(&src));
        let mut back = vec![0u8; 77];
        assert_eq!(region.read_crc(13, &mut back), crc32c::crc32c(&src));
        assert_eq!(back, src);
    }

    #[test]
    fn word_copies_match_byte_copies_at_every_offset_and_length() {
        let len = 48;
        for off in 0..len {
            for n in 0..=len - off {
                let region = HeapRegion::new(len);
                let fill: Vec<u8> = (0..len as u8).map(|b| b ^ 0xa5).collect();
                region.write(0, &fill);
                let src: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(7) | 1).collect();
                region.write(off, &src);
                let mut expected = fill.clone();
                expected[off..off + n].copy_from_slice(&src);
                let mut all = vec![0u8; len];
                region.read(0, &mut all);
                assert_eq!(all, expected, "write of {n} bytes at {off}");
                let mut back = vec![0u8; n];
                region.read(off, &mut back);
                assert_eq!(back, src, "read of {n} bytes at {off}");
            }
        }
    }
}
