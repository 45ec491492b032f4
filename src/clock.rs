//! The system clocks the ring reads: coarse clocks, because TTLs are whole seconds
//! and stall timeouts are milliseconds, and a coarse read costs a few nanoseconds
//! from the vDSO instead of tens.

use crate::ring::Clock;
use rustix::time::{ClockId, clock_gettime};

/// `CLOCK_REALTIME_COARSE` for write times, `CLOCK_MONOTONIC_COARSE` for stalls.
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
        millis(ClockId::MonotonicCoarse)
    }
}
