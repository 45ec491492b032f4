//! `Stats`: the ring's counters, shared by every process using the file.

/// Counters stored in the ring file, so they cover every process that used it.
///
/// They obey `pushed = popped + evicted + expired + corrupt + abandoned + len`, except
/// after a recovery skipped a damaged range (each such skip counts once however many
/// records it covered). Read as one snapshot, not atomically: under concurrent use the
/// figures may be a few operations apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Entries reserved by `push` (including ones later abandoned).
    pub pushed: u64,
    /// Entries returned by `pop`.
    pub popped: u64,
    /// Committed entries removed by an overwriting `push` before anyone popped them.
    pub evicted: u64,
    /// Entries dropped because their TTL had passed.
    pub expired: u64,
    /// Records skipped because a checksum or field was bad.
    pub corrupt: u64,
    /// Reservations skipped because their producer stalled past the abandon timeout
    /// or died before committing.
    pub abandoned: u64,
    /// Entries in the ring now ([`Ring::len`](crate::Ring::len)).
    pub len: u64,
    /// Byte position of the oldest record.
    pub read_pos: u64,
    /// Byte position just past the newest reservation.
    pub write_pos: u64,
}
