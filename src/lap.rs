//! Where a position falls in its lap (`pos % region_len`), without a division on
//! every push and pop.
//!
//! Positions grow without wrapping and records live at `pos % region_len` in the
//! region. A 64-bit division waits a dozen cycles or more for its result; one at a
//! time, a push made two and a pop one, about 4 % of their time on one thread
//! (docs/BENCHMARKS.md, History). A handle remembers the start of the lap it last
//! worked in, one cache for its producer side and one for its consumer side, and
//! divides only when a position falls outside that lap: once per lap and side.

use crossbeam_utils::CachePadded;
// Not the `sync` atomics: the value is a private hint of this handle, every value it
// can hold gives exact results (below), so loom need not explore its interleavings.
use std::sync::atomic::{AtomicU64, Ordering};

/// The start of a lap (a multiple of the region length) a handle worked in recently.
///
/// Exact whatever value a racing thread stored. The cache only ever holds 0 or
/// `pos - pos % region_len` for some position: a multiple `start` of `region_len`,
/// and for `start <= pos < start + region_len`, `pos % region_len == pos - start`.
/// The test is `pos.wrapping_sub(start) < region_len`, which for `pos` below `start`
/// wraps to `pos + 2^64 - start`, at least `2^64 - start`. So the cache keeps only
/// lap starts below 2^63 (positions are below 2^62, FORMAT.md, but a damaged one may
/// be anything): for those the wrapped value exceeds any region length (a file
/// length, below 2^63 too). Any other `start` fails the test and the division is
/// made.
///
/// Padded: the producer and the consumer side of one handle may run on two threads.
pub(crate) struct LapCache(CachePadded<AtomicU64>);

impl LapCache {
    pub(crate) fn new() -> LapCache {
        LapCache(CachePadded::new(AtomicU64::new(0)))
    }

    /// `pos % region_len`.
    #[inline(always)]
    pub(crate) fn offset(&self, pos: u64, region_len: u64) -> u64 {
        let start = self.0.load(Ordering::Relaxed);
        // Wraps to at least 2^63 when `pos` lies before `start` (see above).
        let in_lap = pos.wrapping_sub(start);
        if in_lap < region_len {
            return in_lap;
        }
        self.moved(pos, region_len)
    }

    /// `offset` for a position outside the cached lap: divides and remembers the lap.
    #[cold]
    #[inline(never)]
    fn moved(&self, pos: u64, region_len: u64) -> u64 {
        let in_lap = pos % region_len;
        let start = pos - in_lap;
        if start < 1 << 63 {
            self.0.store(start, Ordering::Relaxed);
        }
        in_lap
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any walk of positions gives the remainder: steps of any size, of whole
        /// laps (onto the first position of the next lap, where an off-by-one would
        /// show), and across the whole range of `u64`.
        #[test]
        fn offset_is_the_remainder(
            region_len in 1u64..1 << 40,
            steps in proptest::collection::vec((0u8..4, any::<bool>(), any::<u64>()), 1..64),
        ) {
            let cache = LapCache::new();
            let mut pos = 0u64;
            for (kind, back, n) in steps {
                let by = match kind {
                    0 => n % (1 << 42),
                    1 => n,
                    2 => n % 4 * region_len,
                    _ => (n % 4 * region_len).saturating_sub(1),
                };
                pos = if back { pos.saturating_sub(by) } else { pos.saturating_add(by) };
                prop_assert_eq!(cache.offset(pos, region_len), pos % region_len);
            }
        }
    }

    #[test]
    fn threads_racing_on_one_cache_get_exact_offsets() {
        let region_len = 4096 - 64;
        let cache = LapCache::new();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let cache = &cache;
                s.spawn(move || {
                    // Each thread walks its own laps, so the threads keep replacing
                    // each other's lap start.
                    let mut pos = t * 10 * region_len;
                    for _ in 0..200_000 {
                        assert_eq!(cache.offset(pos, region_len), pos % region_len);
                        pos += 8 + t * 64;
                    }
                });
            }
        });
    }

    #[test]
    fn positions_at_lap_boundaries() {
        let cache = LapCache::new();
        let region_len = 1000;
        for pos in [
            0,
            999,
            1000,
            1001,
            1999,
            2000,
            999,
            0,
            u64::MAX - 1,
            5000,
            u64::MAX,
            100,
            0,
        ] {
            assert_eq!(cache.offset(pos, region_len), pos % region_len, "{pos}");
        }
    }
}
