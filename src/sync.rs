//! The atomics the ring algorithm uses: `std` normally, `loom`'s under `cfg(loom)` so
//! the model checker can explore every interleaving. Nothing outside this module names
//! `std::sync::atomic` directly (clippy's `disallowed-types` enforces it).

#![allow(clippy::disallowed_types)]

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};

/// A pause inside a retry loop. Under loom it yields, so the model checker can schedule
/// the thread the loop waits for.
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives up the CPU while waiting for another thread or process.
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
