//! Crash consistency (placeholder; see issue on proving the ring correct).
