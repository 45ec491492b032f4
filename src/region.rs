//! `Region`: the bytes a ring lives in, reached only through bounds-checked calls.
//!
//! The algorithm in `ring.rs` is written against this trait, so it runs over the
//! memory-mapped file (`map::MmapRegion`) and over an ordinary heap buffer
//! (`HeapRegion`), which is what loom and the unit tests use.
//!
//! Offsets are file offsets. Callers validate everything read from the file before
//! using it as an offset; the checks here are the last line of defence against a bug
//! in the ring itself, so they panic rather than touch memory out of bounds.

use crate::format::{NOTIFY_OFFSET, WAITERS_OFFSET};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Memory shared with other threads and processes.
pub(crate) trait Region: Send + Sync {
    /// Length in bytes.
    fn len(&self) -> usize;
    /// The 8-byte-aligned word at `off` as an atomic.
    fn atomic(&self, off: usize) -> &AtomicU64;
    /// The 4-byte-aligned word at `off` as an atomic. Only the two 32-bit words of the
    /// format use it: the futex word and the waiter count (DESIGN: Waiting).
    fn atomic_u32(&self, off: usize) -> &AtomicU32;
    /// Copies `dst.len()` bytes starting at `off` into `dst`. The bytes may be
    /// changed concurrently by a writer that lapped the reader; the caller validates
    /// the copy afterwards (see docs/DESIGN.md, "Reading a record").
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` to `off`. The caller owns the bytes (it reserved them).
    fn write(&self, off: usize, src: &[u8]);
}

/// Panics unless `off..off + len` lies inside a region of `region_len` bytes.
pub(crate) fn check_range(off: usize, len: usize, region_len: usize) {
    assert!(
        off.checked_add(len).is_some_and(|end| end <= region_len),
        "mmring bug: access {off}+{len} outside a {region_len}-byte region"
    );
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

/// Panics unless `off` is an aligned word inside a region of `region_len` bytes.
pub(crate) fn check_word(off: usize, region_len: usize) {
    assert!(off % 8 == 0, "mmring bug: unaligned atomic at offset {off}");
    check_range(off, 8, region_len);
}

/// A region on the heap, made of atomic words so that racing copies are well defined
/// (and visible to loom). Used by loom models and unit tests.
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
        check_word(off, self.len());
        &self.words[off / 8]
    }

    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        check_word_u32(off, self.len());
        &self.wait_words[usize::from(off == WAITERS_OFFSET)]
    }

    fn read(&self, off: usize, dst: &mut [u8]) {
        check_range(off, dst.len(), self.len());
        // One load per word (not per byte): fewer operations for loom to interleave.
        let mut at = off;
        let mut done = 0;
        while done < dst.len() {
            let word = self.words[at / 8].load(Ordering::Relaxed).to_le_bytes();
            let from = at % 8;
            let n = (8 - from).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&word[from..from + n]);
            done += n;
            at += n;
        }
    }

    fn write(&self, off: usize, src: &[u8]) {
        check_range(off, src.len(), self.len());
        // Records are 8-aligned, so a partial word here belongs to the writer alone
        // and a load-merge-store loses nothing.
        let mut at = off;
        let mut done = 0;
        while done < src.len() {
            let cell = &self.words[at / 8];
            let from = at % 8;
            let n = (8 - from).min(src.len() - done);
            let mut word = if n == 8 {
                [0u8; 8]
            } else {
                cell.load(Ordering::Relaxed).to_le_bytes()
            };
            word[from..from + n].copy_from_slice(&src[done..done + n]);
            cell.store(u64::from_le_bytes(word), Ordering::Relaxed);
            done += n;
            at += n;
        }
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
}
