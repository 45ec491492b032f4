//! The system clocks the ring reads: the coarse wall clock for write times (TTLs are
//! whole seconds, and a coarse read on every push costs a few nanoseconds instead of
//! tens) and the precise monotonic clock for stall timeouts (read only while a head is
//! stuck; a coarse tick would fire a timeout up to a few milliseconds early).

use crate::ring::Clock;
use rustix::time::{ClockId, clock_gettime};

/// `CLOCK_REALTIME_COARSE` for write times, `CLOCK_MONOTONIC` for stalls.
pub(crate) struct SystemClock;

fn millis(id: ClockId) -> u64 {
    let ts = clock_gettime(id);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        millis(ClockId::RealtimeCoarse)
    }

    fn mono_ms(&self) -> u64 {
        millis(ClockId::Monotonic)
    }
}
