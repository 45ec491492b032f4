//! The atomics the ring algorithm uses: `std` normally, `loom`'s under `cfg(loom)` so
//! the model checker can explore every interleaving. The ring's shared state is reached
//! only through these names; `std::sync::atomic` appears elsewhere only for state loom
//! need not model (crash-point hit counts, a test clock).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

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
