//! The lock-free multi-producer/multi-consumer algorithm, over any [`Region`].
//!
//! No mmap and no system calls here, so loom and the unit tests run it over a heap
//! region. docs/DESIGN.md is the argument for why it is correct; section names in
//! comments (e.g. "DESIGN: Publishing") refer to it.
//!
//! In one paragraph: `write_pos` and `read_pos` are monotonically increasing 64-bit
//! byte positions with `read_pos <= write_pos <= read_pos + region_len`. A producer
//! reserves `[w, w + len)` with a CAS on `write_pos`, claims the record by CAS-ing its
//! stamp from whatever stale value it holds to `CLAIMED(pos)`, writes the header and
//! payload, and commits with a CAS to `COMMITTED(pos)`. A consumer reads the stamp at
//! `read_pos`, copies the record out, and CASes `read_pos` past it; only the winner of
//! that CAS returns the entry, so a consumer that dies mid-pop changes nothing. An
//! overwriting producer that lacks space advances `read_pos` past the oldest record.
//! A batch is one reservation and, as a batch run, one claim of its first record
//! covering the run and one commit, the other records stamped `BATCHED` before it.
//! A record whose writer stalls longer than the abandon timeout is marked `ABANDONED`
//! and skipped; a range whose length can't be trusted is poisoned word by word with
//! `SKIPPED` stamps up to the next record.

use crate::crc;
use crate::format::{
    self, ABANDONED_OFFSET, CORRUPT_OFFSET, EVICTED_OFFSET, EXPIRED_OFFSET, HEADER_LEN, MetaFault,
    NOTIFY_OFFSET, POPPED_OFFSET, PUSHED_OFFSET, Policy, READ_POS_OFFSET, REC_CLAIM_OFFSET,
    REC_HEADER_LEN, REC_HEADER_WORDS, RECORD_ALIGN, RecordHeaderWords, RecordMeta, STATE_ABANDONED,
    STATE_BATCHED, STATE_CLAIMED, STATE_COMMITTED, STATE_PADDING, STATE_SKIPPED, WAITERS_OFFSET,
    WRITE_POS_OFFSET,
};
use crate::lap::LapCache;
use crate::region::Region;
use crate::sub_table;
use crate::sync::{self, AtomicU64, Ordering, fence};
use crate::wait::{Futex, Waiting};
use crate::{Error, Result};
use crossbeam_utils::CachePadded;

#[cfg(not(loom))]
pub(crate) mod check;

/// How many times a consumer re-reads an uncommitted head before reporting "nothing
/// available": a producer between its reservation and its commit finishes in well
/// under a microsecond.
const HEAD_SPINS: u32 = 64;

/// How long a head claimed by another process must have been stuck, as seen by a
/// handle, before the handle asks whether that process still exists, and how often it
/// asks again while the head stays stuck (the process may die, or be reaped, later).
/// A producer writes a record in microseconds; one stopped for this long is
/// descheduled, stopped or dead.
const PROBE_AFTER_MS: u64 = 10;

/// Bytes per record that a producer asks for (`prefetch_for_write`) before claiming:
/// a push the first this many bytes of its record, a batch this many times its
/// number of records from the start of its run (at most [`PREFETCH_MAX`]). A batch of
/// short records is so asked for whole, and the transfers of its lines from the
/// consumer's core overlap instead of each claim waiting for its own; in a batch of
/// long records only the first records' lines are asked for, and the others' claims
/// wait as before (a few transfers against copies of kilobytes). Asking for all
/// 64 KiB of a long record cost one thread 10 % of its push + pop (the prefetch
/// loop) and did not help two threads.
const PREFETCH_RECORD: usize = 4096;

/// The most a producer asks for at once: a `push_batch` of thousands of short records
/// would otherwise prefetch megabytes before its first claim, and lines asked for
/// that far ahead leave the core's caches before they are written. The batches
/// measured (32 records of up to 1 KiB, 34 KiB) are asked for whole.
const PREFETCH_MAX: usize = 64 << 10;

/// Time as the ring needs it. Injected so loom models and tests control it.
pub(crate) trait Clock: Send + Sync {
    /// Wall-clock milliseconds since the Unix epoch (entry write times, TTL).
    fn wall_ms(&self) -> u64;
    /// Monotonic milliseconds (stall timeouts).
    fn mono_ms(&self) -> u64;
}

/// Parameters of an open ring, from its validated header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub region_len: u64,
    pub policy: Policy,
    pub default_ttl_secs: u32,
    pub abandon_ms: u32,
    /// Batches are written as runs, one claim and one commit each (DESIGN: Batches).
    pub batch_runs: bool,
    /// What every stamp is XORed with (FORMAT: Stamps and states).
    pub key: format::StampKey,
}

impl Params {
    /// The parameters a validated header holds.
    pub(crate) fn from_header(header: &format::Header) -> Params {
        Params {
            region_len: header.region_len,
            policy: header.policy,
            default_ttl_secs: header.default_ttl_secs,
            abandon_ms: header.abandon_ms,
            batch_runs: header.batch_runs,
            key: header.key(),
        }
    }
}

/// Counter values, read from the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub pushed: u64,
    pub popped: u64,
    pub evicted: u64,
    pub expired: u64,
    pub corrupt: u64,
    pub abandoned: u64,
    pub read_pos: u64,
    pub write_pos: u64,
}

/// What the head of the ring holds, as far as removing it goes.
enum Head {
    /// The ring is empty.
    Empty,
    /// Nothing was removed and nothing can be now.
    Stuck,
    /// Something changed (a record was removed by us or someone else): look again.
    Moved,
    /// A damaged record was found and skipped (and counted): report it, then go on.
    Damaged(Error),
}

/// A committed record with a valid header, ready to be copied out.
#[derive(Clone, Copy)]
struct Ready {
    pos: u64,
    /// File offset of the record (`rec_off(pos)`).
    off: usize,
    meta: RecordMeta,
    /// Position just past the record.
    end: u64,
}

/// One handle's view of a ring in `R`. The ring itself is entirely in the region;
/// the fields here are parameters and caches private to this handle.
pub(crate) struct RawRing<R> {
    region: R,
    params: Params,
    max_data: u32,
    pid: u32,
    clock: Box<dyn Clock>,
    /// How waiting handles sleep and are woken (DESIGN: Waiting).
    futex: Box<dyn Futex>,
    /// A recent `read_pos`; stale values are only ever too small (positions grow),
    /// which makes a producer refresh it, never overrun. Release/Acquire so a thread
    /// using another thread's cached value inherits its synchronization with the
    /// consumer that freed the space (DESIGN: Reserving).
    /// Padded: producers write it, consumers sharing the handle must not false-share.
    cached_read: CachePadded<AtomicU64>,
    /// A recent `write_pos`, same reasoning for consumers.
    cached_write: CachePadded<AtomicU64>,
    /// The lap this handle's producer side and consumer side last worked in, so that
    /// the hot paths find a record's offset without a division (`lap.rs`).
    write_lap: LapCache,
    read_lap: LapCache,
    /// The stuck head this handle is timing. Padded: consumers write it while they
    /// wait for a producer, which reads the fields above on every push.
    stall: CachePadded<Stall>,
}

/// A head a handle saw stuck, and since when.
struct Stall {
    /// Position + 1 of a head this handle saw stuck, 0 for none.
    pos: AtomicU64,
    /// When `pos` was first seen stuck (monotonic ms).
    since: AtomicU64,
    /// End + 1 of the last abandoned record this handle removed (0: none), and the
    /// writer field in its claim word: a record claimed by the same process right
    /// behind it is taken for the rest of a stalled batch and abandoned without waiting
    /// another timeout (DESIGN: Batches), if it lies below `chain_limit`.
    chain_pos: AtomicU64,
    chain_pid: AtomicU64,
    /// `write_pos` as this handle read it before it abandoned the first record of the
    /// chain: records at and beyond it were reserved after that abandonment (a
    /// producer's retry among them), so they are not the rest of its batch.
    chain_limit: AtomicU64,
    /// Position + 1 of the stuck head whose writer this handle last asked the system
    /// about (0: none), and how long it had been stuck then (ms): the question is
    /// asked again every `PROBE_AFTER_MS` while the head stays stuck.
    probed_pos: AtomicU64,
    probed_at: AtomicU64,
}

impl<R: Region> RawRing<R> {
    /// A handle on the ring in `region`, whose header has been validated to hold
    /// `params`. Positions are validated here too.
    pub(crate) fn new(
        region: R,
        params: Params,
        pid: u32,
        clock: Box<dyn Clock>,
        futex: Box<dyn Futex>,
    ) -> Result<Self> {
        let ring = RawRing::unvalidated(region, params, pid, clock, futex);
        let (read, write) = ring.positions()?;
        ring.cached_read.store(read, Ordering::Release);
        ring.cached_write.store(write, Ordering::Release);
        Ok(ring)
    }

    /// A handle whose positions have not been validated (`new` does, the offline
    /// checker settles them itself).
    pub(crate) fn unvalidated(
        region: R,
        params: Params,
        pid: u32,
        clock: Box<dyn Clock>,
        futex: Box<dyn Futex>,
    ) -> Self {
        debug_assert_eq!(region.len() as u64, HEADER_LEN as u64 + params.region_len);
        RawRing {
            max_data: format::max_data_len(params.region_len),
            region,
            params,
            pid,
            clock,
            futex,
            cached_read: CachePadded::new(AtomicU64::new(0)),
            cached_write: CachePadded::new(AtomicU64::new(0)),
            write_lap: LapCache::new(),
            read_lap: LapCache::new(),
            stall: CachePadded::new(Stall {
                pos: AtomicU64::new(0),
                since: AtomicU64::new(0),
                chain_pos: AtomicU64::new(0),
                chain_pid: AtomicU64::new(0),
                chain_limit: AtomicU64::new(0),
                probed_pos: AtomicU64::new(0),
                probed_at: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn region(&self) -> &R {
        &self.region
    }

    pub(crate) fn params(&self) -> &Params {
        &self.params
    }

    /// Largest payload `push` accepts.
    pub(crate) fn max_data_len(&self) -> u32 {
        self.max_data
    }

    // ------------------------------------------------------------ addressing

    pub(crate) fn word(&self, off: usize) -> &AtomicU64 {
        self.region.atomic(off)
    }

    /// The wait protocol's words in this ring's header, and this handle's futex.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        Waiting {
            notify: self.region.atomic_u32(NOTIFY_OFFSET),
            waiters: self.region.atomic_u32(WAITERS_OFFSET),
            futex: &*self.futex,
        }
    }

    /// Wall-clock milliseconds, from this handle's clock.
    pub(crate) fn wall_ms(&self) -> u64 {
        self.clock.wall_ms()
    }

    /// Monotonic milliseconds, from this handle's clock.
    pub(crate) fn mono_ms(&self) -> u64 {
        self.clock.mono_ms()
    }

    fn write_pos(&self) -> &AtomicU64 {
        self.word(WRITE_POS_OFFSET)
    }

    fn read_pos(&self) -> &AtomicU64 {
        self.word(READ_POS_OFFSET)
    }

    fn count(&self, counter_off: usize) {
        // Statistics only: no ordering is derived from counters.
        self.word(counter_off).fetch_add(1, Ordering::Relaxed);
    }

    /// File offset of the record at position `pos`.
    fn rec_off(&self, pos: u64) -> usize {
        debug_assert!(pos.is_multiple_of(RECORD_ALIGN));
        // The remainder is below region_len, which the header check bounded by the
        // file length, so it fits in usize.
        HEADER_LEN + (pos % self.params.region_len) as usize
    }

    /// `rec_off` of a position a producer reserved: usually in the lap the last one
    /// was in, which this handle remembers (no division).
    #[inline(always)]
    fn write_off(&self, pos: u64) -> usize {
        HEADER_LEN + self.write_lap.offset(pos, self.params.region_len) as usize
    }

    /// `rec_off` of a head a consumer takes, as `write_off` for producers.
    #[inline(always)]
    fn read_off(&self, pos: u64) -> usize {
        HEADER_LEN + self.read_lap.offset(pos, self.params.region_len) as usize
    }

    /// Whether a stamp in `state` says the record may be read, in this file (whose
    /// flag says whether `BATCHED` is a state at all).
    #[inline(always)]
    fn readable(&self, state: Option<u64>) -> bool {
        format::readable(state, self.params.batch_runs)
    }

    fn stamp_at(&self, pos: u64) -> &AtomicU64 {
        self.word(self.rec_off(pos))
    }

    fn claim_at(&self, pos: u64) -> &AtomicU64 {
        self.word(self.rec_off(pos) + REC_CLAIM_OFFSET)
    }

    /// First position of the lap after the one containing `pos`.
    fn lap_end(&self, pos: u64) -> u64 {
        pos - pos % self.params.region_len + self.params.region_len
    }

    /// Whether a record of `rec_len` bytes at `pos` stays inside its lap.
    fn fits_in_lap(&self, pos: u64, rec_len: u64) -> bool {
        pos % self.params.region_len + rec_len <= self.params.region_len
    }

    /// Checks a position loaded from the file: aligned and far from overflow.
    fn check_pos(&self, pos: u64, field: usize) -> Result<u64> {
        if !pos.is_multiple_of(RECORD_ALIGN) || pos >= format::MAX_POS {
            return Err(Error::corrupt(
                field as u64,
                format!("position {pos} is not a multiple of 8 below 2^62"),
            ));
        }
        Ok(pos)
    }

    /// Recent `(read_pos, write_pos)` with `read_pos <= write_pos`, checked against
    /// the position invariant `read_pos <= write_pos <= read_pos + region_len`
    /// (DESIGN: Invariants).
    ///
    /// Two loads are not a snapshot: between them other threads may move both
    /// positions by more than a region. Both only grow, so the check compares each
    /// bound with a value loaded *later*: `read1 <= write` (read1 was current before
    /// write was loaded) and `write <= read2 + region_len` (write was current before
    /// read2 was loaded). Neither can fail on a healthy ring; a damaged pair of
    /// positions fails one of them.
    pub(crate) fn positions(&self) -> Result<(u64, u64)> {
        let read1 = self.read_pos().load(Ordering::Acquire);
        let write = self.write_pos().load(Ordering::Acquire);
        let read2 = self.read_pos().load(Ordering::Acquire);
        self.check_pos(read1, READ_POS_OFFSET)?;
        self.check_pos(write, WRITE_POS_OFFSET)?;
        self.check_pos(read2, READ_POS_OFFSET)?;
        if read1 > write || write > read2 + self.params.region_len {
            return Err(Error::corrupt(
                READ_POS_OFFSET as u64,
                format!(
                    "read position {} and write position {write} are more than the \
                     region ({} bytes) apart or out of order",
                    if read1 > write { read1 } else { read2 },
                    self.params.region_len
                ),
            ));
        }
        // read2 may have passed this write already; a read position that is not
        // ahead of the write position is what callers need (it only errs low, which
        // for a producer means "less free space": conservative).
        Ok((read2.min(write), write))
    }

    /// Whether `end` is at or below `write_pos`, refreshing the cached value if needed.
    fn within_written(&self, end: u64) -> bool {
        if end <= self.cached_write.load(Ordering::Acquire) {
            return true;
        }
        let write = self.write_pos().load(Ordering::Acquire);
        raise_cache(&self.cached_write, write);
        end <= write
    }

    /// Moves `read_pos` from `from` to `to`; false if someone else moved it first.
    /// `entry`: the range is a committed entry removed unread (popped or evicted, not
    /// expired), which a subscriber whose cursor is at it counts as missed.
    fn advance_read(&self, from: u64, to: u64, entry: bool) -> bool {
        debug_assert!(from < to);
        // Subscribers first, so that no cursor is ever behind read_pos (DESIGN:
        // Subscribers). One load when there are none.
        sub_table::pass(&self.region, from, to, entry);
        // SYNC(free): Release publishes that this consumer has finished reading
        // [from, to), so a producer that Acquires the new read_pos may overwrite it.
        // Acquire: we continue from state other consumers published.
        let moved = self
            .read_pos()
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if moved && self.params.policy == Policy::Block {
            // Producers may be waiting for this space.
            self.waiting().notify();
        }
        moved
    }

    // ------------------------------------------------------------ push

    /// Appends a record with `data` and returns its ID. DESIGN: Push.
    pub(crate) fn push(&self, data: &[u8], ttl_secs: u32) -> Result<u64> {
        let data_len = self.checked_len(data)?;
        let rec_len = format::record_len(data_len);
        let write_time_ms = self.clock.wall_ms();
        loop {
            let (pos, pad) = self.reserve(rec_len)?;
            if pad > 0 && !self.claim(pos - pad, STATE_PADDING, None) {
                continue; // poisoned by a reader that skipped our range: reserve again
            }
            if self.write_record(pos, data, ttl_secs, write_time_ms) {
                // Consumers, subscribers and followers may be waiting for an entry.
                self.waiting().notify();
                return Ok(pos);
            }
        }
    }

    /// Appends `entries` in order, reserving room for as many of them at once as the
    /// free space and the rest of the lap allow (DESIGN: Batches). Returns how many
    /// were pushed, from the front: all of them, unless a rejecting or blocking ring
    /// fills up after the first, or an error follows the first. An error means that
    /// nothing was pushed.
    pub(crate) fn push_batch<T: AsRef<[u8]>>(&self, entries: &[T], ttl_secs: u32) -> Result<usize> {
        crc::with_crc_instructions(
            #[inline(always)]
            || self.push_batch_inner(entries, ttl_secs),
        )
    }

    /// `push_batch`, inlined into a function compiled with the checksum instruction
    /// (`crc::with_crc_instructions`).
    #[inline(always)]
    fn push_batch_inner<T: AsRef<[u8]>>(&self, entries: &[T], ttl_secs: u32) -> Result<usize> {
        for data in entries {
            self.checked_len(data.as_ref())?;
        }
        let write_time_ms = self.clock.wall_ms();
        let rec_len = |i: usize| format::record_len(entries[i].as_ref().len() as u32);
        let mut done = 0;
        while done < entries.len() {
            let (pos, pad, n, end) = match self.reserve_run(rec_len(done), |i| {
                (done + i < entries.len()).then(|| rec_len(done + i))
            }) {
                Ok(run) => run,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            let run = &entries[done..done + n];
            if pad > 0 && !self.claim(pos - pad, STATE_PADDING, None) {
                self.give_back(pos, run);
                continue;
            }
            // Every record is written before the run (or the first record) is
            // committed: a consumer finds the batch complete as soon as it can take
            // its first record, instead of chasing the producer record by record. A
            // batch never wraps, so each record's file offset is the first one's plus
            // the distance.
            let first_off = self.write_off(pos);
            // The lines the claims and the copies below will wait for, asked for
            // first so that their transfers overlap: the whole run when its records
            // average at most PREFETCH_RECORD bytes, else that much per record from
            // its start, and never more than PREFETCH_MAX.
            let ask = ((end - pos) as usize)
                .min(n.saturating_mul(PREFETCH_RECORD))
                .min(PREFETCH_MAX);
            self.region.prefetch_for_write(first_off, ask);
            done += if self.params.batch_runs && n > 1 {
                self.push_run(pos, end, first_off, run, ttl_secs, write_time_ms)
            } else {
                self.push_records(pos, first_off, run, ttl_secs, write_time_ms)
            };
        }
        if done > 0 {
            self.waiting().notify();
        }
        Ok(done)
    }

    /// Writes `run`, reserved at `pos..end` (file offset `first_off`) after any
    /// padding, as a batch run: one claim of its first record whose claim word covers
    /// the whole run, every record written (those after the first stamped `BATCHED`),
    /// one commit of the first record. Returns how many entries were delivered: all,
    /// or none when a reader took the run over after the abandon timeout; the caller
    /// pushes the rest again. DESIGN: Batches.
    #[inline(always)]
    fn push_run<T: AsRef<[u8]>>(
        &self,
        pos: u64,
        end: u64,
        first_off: usize,
        run: &[T],
        ttl_secs: u32,
        write_time_ms: u64,
    ) -> usize {
        #[cfg(test)]
        tests::run_hook("batch-before-claim");
        let first = run[0].as_ref();
        // A reader that abandons the first record steps over this many bytes after its
        // header: the whole run (`reserve_run` keeps it within `max_data`).
        let run_claim = format::claim((end - pos - REC_HEADER_LEN as u64) as u32, self.pid);
        if !self.claim_with_off(pos, first_off, STATE_CLAIMED, Some(run_claim)) {
            // A reader is skipping the unclaimed run after the abandon timeout.
            self.give_back(pos + format::record_len(first.len() as u32), &run[1..]);
            return 0;
        }
        // Claimed: until the commit below, no reader passes the first record except
        // by abandoning it, which steps over the run; so the run's words are ours.
        self.fill_record(
            pos,
            first_off,
            first,
            ttl_secs,
            write_time_ms,
            run_claim,
            false,
        );
        let mut at = pos + format::record_len(first.len() as u32);
        let claimed = self.params.key.stamp(pos, STATE_CLAIMED);
        for data in &run[1..] {
            #[cfg(test)]
            tests::run_hook("run-before-record");
            // A reader that abandoned the run after the timeout has stepped over it,
            // and the rest of it may soon be a later lap's: stop writing (the commit
            // would fail anyway). A plain load of a line this producer just wrote.
            if self.word(first_off).load(Ordering::Relaxed) != claimed {
                return 0;
            }
            let data = data.as_ref();
            let off = first_off + (at - pos) as usize;
            let claim = format::claim(data.len() as u32, self.pid);
            self.fill_record(at, off, data, ttl_secs, write_time_ms, claim, true);
            // SYNC(batched): Release, so that a reader that Acquires this stamp sees
            // the record whichever way it came here (the run's commit below is what
            // makes it deliverable: DESIGN: Batches).
            self.word(off)
                .store(self.params.key.stamp(at, STATE_BATCHED), Ordering::Release);
            at += format::record_len(data.len() as u32);
        }
        debug_assert_eq!(at, end);
        #[cfg(test)]
        tests::run_hook("batch-before-commit");
        if !self.commit(pos, first_off) {
            // A reader abandoned the first record and stepped over the run, counting
            // it as one abandoned record, as the reservation counted it pushed.
            return 0;
        }
        // Statistics: the reservation counted one record; the others count once they
        // are delivered (DESIGN: Counters).
        self.word(PUSHED_OFFSET)
            .fetch_add((run.len() - 1) as u64, Ordering::Relaxed);
        run.len()
    }

    /// Writes `run`, reserved at `pos` (file offset `first_off`) after any padding,
    /// as records of their own: every record claimed, then all written, then each
    /// committed in order; the way of files without `FLAG_BATCH_RUNS`. Returns how
    /// many entries were delivered, from the front; the caller pushes the rest again.
    /// DESIGN: Batches.
    fn push_records<T: AsRef<[u8]>>(
        &self,
        pos: u64,
        first_off: usize,
        run: &[T],
        ttl_secs: u32,
        write_time_ms: u64,
    ) -> usize {
        let n = run.len();
        let off = |at: u64| first_off + (at - pos) as usize;
        let mut claimed = 0;
        let mut at = pos;
        for data in run {
            #[cfg(test)]
            tests::run_hook("batch-before-claim");
            let data_len = data.as_ref().len() as u32;
            let claim_word = format::claim(data_len, self.pid);
            if !self.claim_with_off(at, off(at), STATE_CLAIMED, Some(claim_word)) {
                // A reader is skipping this record after the abandon timeout; the
                // ones after it are given back, and all are pushed again in order.
                self.give_back(at + format::record_len(data_len), &run[claimed + 1..]);
                break;
            }
            claimed += 1;
            at += format::record_len(data_len);
        }
        // Statistics: the reservation counted one record; now every claimed record
        // counts, plus one for the unclaimed rest a reader's skip will count as one
        // (DESIGN: Counters).
        let more = if claimed == n { n - 1 } else { claimed };
        if more > 0 {
            self.word(PUSHED_OFFSET)
                .fetch_add(more as u64, Ordering::Relaxed);
        }
        if claimed < n {
            // A claim fails only once readers have passed every record before it
            // (a skip stops at a claimed record), so those were abandoned: their
            // commits would fail, and writing them could only land in space a
            // later lap reuses. The whole run is pushed again.
            self.abandon_claimed(pos, &run[..claimed]);
            return 0;
        }
        at = pos;
        for data in run {
            let data = data.as_ref();
            let claim_word = format::claim(data.len() as u32, self.pid);
            self.fill_record(
                at,
                off(at),
                data,
                ttl_secs,
                write_time_ms,
                claim_word,
                false,
            );
            at += format::record_len(data.len() as u32);
        }
        #[cfg(test)]
        tests::run_hook("batch-before-commit");
        at = pos;
        for (i, data) in run.iter().enumerate() {
            if !self.commit(at, off(at)) {
                // Abandoned by a reader: this record and the claimed ones after it
                // are pushed again, so that the order holds.
                self.abandon_claimed(at, &run[i..]);
                return i;
            }
            at += format::record_len(data.as_ref().len() as u32);
        }
        n
    }

    /// The length of a payload `push` accepts, or `TooLarge`.
    fn checked_len(&self, data: &[u8]) -> Result<u32> {
        // The error is built only when it is returned: building it eagerly and dropping
        // it cost some 25 instructions per push.
        match u32::try_from(data.len()) {
            Ok(len) if len <= self.max_data => Ok(len),
            _ => Err(Error::TooLarge {
                len: data.len(),
                max: self.max_data as usize,
            }),
        }
    }

    /// Claims the reserved record at `pos`, writes `data` into it and commits it.
    /// False if a reader skipped or abandoned the record first (after the abandon
    /// timeout): then nothing of it is delivered and the caller reserves again.
    #[inline(always)]
    fn write_record(&self, pos: u64, data: &[u8], ttl_secs: u32, write_time_ms: u64) -> bool {
        let off = self.write_off(pos);
        self.region.prefetch_for_write(
            off,
            (format::record_len(data.len() as u32) as usize).min(PREFETCH_RECORD),
        );
        let claim_word = format::claim(data.len() as u32, self.pid);
        if !self.claim_with_off(pos, off, STATE_CLAIMED, Some(claim_word)) {
            return false;
        }
        self.fill_record(pos, off, data, ttl_secs, write_time_ms, claim_word, false);
        self.commit(pos, off)
    }

    /// Writes the header (all but the stamp) and payload of the record at `pos` (file
    /// offset `off`), whose claim word is `claim_word`: stored here too when
    /// `store_claim`, else already stored by the claim.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fill_record(
        &self,
        pos: u64,
        off: usize,
        data: &[u8],
        ttl_secs: u32,
        write_time_ms: u64,
        claim_word: u64,
        store_claim: bool,
    ) {
        #[cfg(feature = "crash-points")]
        crate::crash::point("push-after-claim");
        debug_assert_eq!(off, self.rec_off(pos));
        let data_len = data.len() as u32;
        // The payload first: the copy computes its checksum, which the header holds.
        let data_crc = self.region.write_payload_crc(off + REC_HEADER_LEN, data);
        let meta = RecordMeta {
            version: format::ENTRY_VERSION,
            data_len,
            ttl_secs,
            id: pos,
            data_crc,
            write_time_ms,
        };
        let header = meta.to_words(pos, claim_word);
        // The stamp word is published atomically by `commit` (or for a batch run's
        // later record, by `push_run`); the claim word is stored by the claim, or here.
        let from = if store_claim { 1 } else { 2 };
        let cells = self.region.atomics(off, REC_HEADER_WORDS);
        for (cell, &word) in cells[from..].iter().zip(&header[from..]) {
            cell.store(word, Ordering::Relaxed);
        }
    }

    /// Publishes the claimed and filled record at `pos` (file offset `off`). False if
    /// a reader abandoned it first (after the abandon timeout); then it was skipped.
    #[inline(always)]
    fn commit(&self, pos: u64, off: usize) -> bool {
        #[cfg(feature = "crash-points")]
        crate::crash::point("push-before-commit");
        // SYNC(commit): Release makes the header and payload visible to any reader that
        // Acquires COMMITTED(pos).
        self.word(off)
            .compare_exchange(
                self.params.key.stamp(pos, STATE_CLAIMED),
                self.params.key.stamp(pos, STATE_COMMITTED),
                Ordering::Release,
                // Acquire on failure: a retry reserved after a reader's ABANDONED mark
                // happens after that reader's read of write_pos (`chain_limit`).
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Marks the reserved, unclaimed records of `entries`, from `pos` on, abandoned,
    /// so that readers step over them by their lengths: the rest of a batch whose
    /// earlier record (or padding) a reader skipped after the abandon timeout. A
    /// record that reader's skip has poisoned already is not ours to mark. Nothing is
    /// counted: `pushed` never counted these records, and the reader's skip counted
    /// one abandoned record for the unclaimed run (DESIGN: Counters).
    fn give_back<T: AsRef<[u8]>>(&self, mut pos: u64, entries: &[T]) {
        for data in entries {
            let data_len = data.as_ref().len() as u32;
            self.claim(
                pos,
                STATE_ABANDONED,
                Some(format::claim(data_len, self.pid)),
            );
            pos += format::record_len(data_len);
        }
    }

    /// Marks the claimed records of `entries`, from `pos` on, abandoned (uncommitted):
    /// the rest of a batch one of whose records a reader abandoned. Counted by
    /// whoever marks each, this producer or a reader abandoning it too.
    fn abandon_claimed<T: AsRef<[u8]>>(&self, mut pos: u64, entries: &[T]) {
        for data in entries {
            if self
                .stamp_at(pos)
                .compare_exchange(
                    self.params.key.stamp(pos, STATE_CLAIMED),
                    self.params.key.stamp(pos, STATE_ABANDONED),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                self.count(ABANDONED_OFFSET);
            }
            pos += format::record_len(data.as_ref().len() as u32);
        }
    }

    /// `push`, waiting while the ring is full (block mode) until `deadline`; `None`
    /// when it passed. DESIGN: Waiting.
    pub(crate) fn push_wait(
        &self,
        data: &[u8],
        ttl_secs: u32,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<u64>> {
        self.waiting()
            .until(deadline, || match self.push(data, ttl_secs) {
                Ok(id) => Ok(Some(id)),
                Err(Error::Full) => Ok(None),
                Err(e) => Err(e),
            })
    }

    /// `push_batch`, waiting while the ring is full (block mode) until `deadline`;
    /// `None` when it passed.
    pub(crate) fn push_batch_wait<T: AsRef<[u8]>>(
        &self,
        entries: &[T],
        ttl_secs: u32,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<usize>> {
        self.waiting()
            .until(deadline, || match self.push_batch(entries, ttl_secs) {
                Ok(n) => Ok(Some(n)),
                Err(Error::Full) => Ok(None),
                Err(e) => Err(e),
            })
    }

    /// `pop_into`, waiting while the ring is empty until `deadline`; `None` when it
    /// passed. DESIGN: Waiting.
    pub(crate) fn pop_wait(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<RecordMeta>> {
        self.waiting().until(deadline, || self.pop_into(buf))
    }

    /// CASes the stamp at `pos`, which we reserved, from its stale value to
    /// `state`, first storing `claim_word` (the length readers need to skip us if we
    /// stall). False if a skipping reader poisoned the stamp first, or a word an
    /// earlier lap left there reads as a stamp for `pos`. DESIGN: Claiming.
    fn claim(&self, pos: u64, state: u64, claim_word: Option<u64>) -> bool {
        self.claim_with_off(pos, self.rec_off(pos), state, claim_word)
    }

    /// `claim` for a caller that has computed `off = rec_off(pos)` already.
    #[inline(always)]
    fn claim_with_off(&self, pos: u64, off: usize, state: u64, claim_word: Option<u64>) -> bool {
        debug_assert_eq!(off, self.rec_off(pos));
        let stamp = self.word(off);
        let stale = stamp.load(Ordering::Relaxed);
        if self.params.key.state(stale, pos).is_some() {
            // Only a reader skipping our reservation writes a stamp for `pos` before we
            // do (SKIPPED), or a program forging the file, or a header or payload word
            // of an earlier lap equals one by chance: the range is not ours to use. We
            // must not claim over any of them (DESIGN: Stale words that read as stamps).
            return false;
        }
        // A producer stopped for longer than the abandon timeout since it reserved may
        // find its range skipped and reused by a later lap: then these words belong to
        // someone else, and it must write nothing (DESIGN: Claiming, Stalls and
        // abandonment).
        if self.lapped(pos) {
            return false;
        }
        #[cfg(test)]
        tests::run_hook("claim-after-read-check");
        // SYNC(seqlock): the writer's half. Every store we make into the reservation
        // comes after this fence, and everything we observed before it (the read_pos
        // that freed the space) happens before it; so a reader that copies any of our
        // bytes and then fences with Acquire also sees that read_pos, and its
        // "is read_pos still where I started?" check can't pass on a stale value.
        fence(Ordering::Release);
        if let Some(word) = claim_word {
            // Atomic, because a skipping reader may CAS this very word.
            self.word(off + REC_CLAIM_OFFSET)
                .store(word, Ordering::Relaxed);
        }
        let claimed = self.params.key.stamp(pos, state);
        let mut replaced = stale;
        loop {
            // SYNC(claim): Release publishes the claim word stored just before, for a
            // reader that Acquires CLAIMED(pos) and needs the length to skip us.
            match stamp.compare_exchange(replaced, claimed, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                // The Relaxed load above may have returned an older value than the
                // word holds: only a stamp for `pos` (a reader's poison; a leftover word
                // does not change) means we lost.
                Err(actual) if self.params.key.state(actual, pos).is_some() => return false,
                Err(actual) => replaced = actual,
            }
        }
        // The same, for a stop between the check above and the CAS: the word we just
        // claimed belongs to a later lap. Put it back and reserve again.
        if self.lapped(pos) {
            let _ = stamp.compare_exchange(claimed, replaced, Ordering::AcqRel, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether the words of the record at `pos` may belong to a later lap: a
    /// reservation has passed `pos + region_len`. Only producers move `write_pos`, so
    /// for a producer this load is almost always a cache hit, unlike one of `read_pos`
    /// (DESIGN: Claiming).
    fn lapped(&self, pos: u64) -> bool {
        // Acquire: after a claim CAS that read a later-lap value, this load sees the
        // reservation of whoever wrote it (DESIGN: Claiming).
        self.write_pos().load(Ordering::Acquire) > pos + self.params.region_len
    }

    /// Reserves room for a record of `rec_len` bytes, evicting or failing when full.
    /// Returns the record's position and the padding placed before it.
    fn reserve(&self, rec_len: u64) -> Result<(u64, u64)> {
        let (pos, pad, _, _) = self.reserve_run(rec_len, |_| None)?;
        Ok((pos, pad))
    }

    /// `reserve`, and with the same compare-and-swap as many of the records `more(1)`,
    /// `more(2)`, ... (their lengths) as fit in the free space before the end of the
    /// lap. Returns the first record's position, the padding placed before it, how
    /// many records were reserved, and the end of the last.
    fn reserve_run(
        &self,
        rec_len: u64,
        more: impl Fn(usize) -> Option<u64>,
    ) -> Result<(u64, u64, usize, u64)> {
        let region_len = self.params.region_len;
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let write = self.write_pos().load(Ordering::Relaxed);
            self.check_pos(write, WRITE_POS_OFFSET)?;
            // Where `write` falls in its lap; the record starts the next lap if it
            // does not fit before this one ends.
            let in_lap = self.write_lap.offset(write, region_len);
            let (pad, pos_in_lap) = if in_lap + rec_len <= region_len {
                (0, in_lap)
            } else {
                (region_len - in_lap, 0)
            };
            let pos = write + pad;
            let mut end = pos + rec_len;
            let mut room = self.cached_read.load(Ordering::Acquire) + region_len;
            if end > room {
                // Refresh; positions() also validates the invariant.
                let (read, fresh_write) = self.positions()?;
                raise_cache(&self.cached_read, read);
                if fresh_write != write {
                    continue;
                }
                room = read + region_len;
                if end > room {
                    match self.make_room(read)? {
                        Head::Moved | Head::Damaged(_) => continue,
                        Head::Empty | Head::Stuck => match self.params.policy {
                            // Block mode waits outside (push_wait), retrying the push.
                            Policy::Reject | Policy::Block => return Err(Error::Full),
                            Policy::Overwrite => {
                                // The oldest record is still being written: wait for
                                // its producer (make_room abandons it on timeout).
                                backoff.snooze();
                                if backoff.is_completed() {
                                    sync::yield_now();
                                }
                                continue;
                            }
                        },
                    }
                }
            }
            // A batch never wraps: records after the first end by the end of its lap.
            // A batch run's claim word holds its length after the first header, which
            // readers accept up to `max_data` (DESIGN: Batches).
            let mut limit = room.min(pos - pos_in_lap + region_len);
            if self.params.batch_runs {
                limit = limit.min(pos + REC_HEADER_LEN as u64 + u64::from(self.max_data));
            }
            let mut count = 1;
            while let Some(len) = more(count) {
                if end + len > limit {
                    break;
                }
                end += len;
                count += 1;
            }
            // SYNC(reserve): AcqRel orders this reservation with the other producers'
            // and with the scan bound readers take from write_pos (DESIGN: Reserving).
            match self.write_pos().compare_exchange_weak(
                write,
                end,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Statistics only: no ordering is derived from counters. One for
                    // the reservation: a batch counts its other records as it claims
                    // them (DESIGN: Counters).
                    self.count(PUSHED_OFFSET);
                    #[cfg(feature = "crash-points")]
                    crate::crash::point("push-after-reserve");
                    return Ok((pos, pad, count, end));
                }
                Err(_) => backoff.spin(),
            }
        }
    }

    /// Tries to free the oldest record at `read` to make room for a push: padding,
    /// expired, abandoned and damaged records always; committed ones only when the
    /// policy is to overwrite.
    fn make_room(&self, read: u64) -> Result<Head> {
        let stamp = self.stamp_at(read).load(Ordering::Acquire);
        match self.params.key.state(stamp, read) {
            state if self.readable(state) => {
                match self.read_meta(read) {
                    Ok(meta) => {
                        let end = read + format::record_len(meta.data_len);
                        if !self.within_written(end) {
                            // As in ready_head: a committed record ends by write_pos, so
                            // this one is damage (a stamp at or past write_pos is no
                            // record at all). Returning Moved without moving looped the
                            // push forever (found by fuzzing).
                            if self.write_pos().load(Ordering::Acquire) <= read {
                                return Ok(Head::Empty);
                            }
                            let what = "the record extends past the write position";
                            return self.skip_damaged(
                                read,
                                stamp,
                                format::REC_DATA_LEN_OFFSET,
                                what,
                            );
                        }
                        let expired = meta.expired(self.clock.wall_ms());
                        if !expired && self.params.policy != Policy::Overwrite {
                            return Ok(Head::Stuck);
                        }
                        #[cfg(feature = "crash-points")]
                        crate::crash::point("evict-before-advance");
                        if self.advance_read(read, end, !expired) {
                            self.count(if expired {
                                EXPIRED_OFFSET
                            } else {
                                EVICTED_OFFSET
                            });
                        }
                        Ok(Head::Moved)
                    }
                    // Skipped and counted; a consumer would have been told, a producer
                    // making room just goes on.
                    Err((field, what)) => self.skip_damaged(read, stamp, field, &what),
                }
            }
            _ => self.unblock_head(read, stamp),
        }
    }

    // ------------------------------------------------------------ pop

    /// Removes the oldest live record, copying its payload into `buf`. DESIGN: Pop.
    pub(crate) fn pop_into(&self, buf: &mut Vec<u8>) -> Result<Option<RecordMeta>> {
        let mut spins = 0;
        loop {
            let Some(head) = self.ready_head(&mut spins)? else {
                return Ok(None);
            };
            let meta = head.meta;
            fit(buf, meta.data_len);
            // The checksum of the copy, computed while copying; it only means something
            // once the CAS below says the copy is consistent.
            let data_crc = self.region.read_crc(head.off + REC_HEADER_LEN, buf);
            #[cfg(feature = "crash-points")]
            crate::crash::point("pop-before-advance");
            let expired = meta.ttl_secs != 0 && meta.expired(self.clock.wall_ms());
            // The copy is consistent iff nobody freed the record while we copied, which
            // is exactly when this CAS succeeds (DESIGN: Reading a record).
            if !self.advance_read(head.pos, head.end, !expired) {
                continue;
            }
            if data_crc != meta.data_crc {
                return Err(self.payload_corrupt(&head));
            }
            if expired {
                self.count(EXPIRED_OFFSET);
                continue;
            }
            self.count(POPPED_OFFSET);
            return Ok(Some(meta));
        }
    }

    /// Removes up to `max` of the oldest live records, appending their metadata to
    /// `metas` (cleared first) and their payloads, one after the other, to `data` from
    /// its start. `data` is grown as needed and never shortened; the payloads fill its
    /// first `sum of data_len` bytes. Returns how many were taken; 0 when none is
    /// ready. DESIGN: Batches.
    ///
    /// The records that follow each other from the head are taken with one move of
    /// `read_pos`, or one move per record while subscribers exist. The batch ends
    /// early at a record not yet committed or damaged, which the next call deals
    /// with; errors are those of `pop_into`, for the oldest record only.
    pub(crate) fn pop_batch(
        &self,
        data: &mut Vec<u8>,
        metas: &mut Vec<RecordMeta>,
        max: usize,
    ) -> Result<usize> {
        crc::with_crc_instructions(
            #[inline(always)]
            || self.pop_batch_inner(data, metas, max),
        )
    }

    /// `pop_batch`, inlined into a function compiled with the checksum instruction
    /// (`crc::with_crc_instructions`).
    #[inline(always)]
    fn pop_batch_inner(
        &self,
        data: &mut Vec<u8>,
        metas: &mut Vec<RecordMeta>,
        max: usize,
    ) -> Result<usize> {
        metas.clear();
        let mut used = 0; // payload bytes of the records in `metas`
        let mut spins = 0;
        while metas.len() < max {
            let first_chunk = metas.is_empty();
            let head = if first_chunk {
                match self.ready_head(&mut spins)? {
                    Some(head) => head,
                    None => break,
                }
            } else {
                // After the first move, only a plainly ready head extends the batch;
                // a damaged position ends it, for the next pop to report.
                #[cfg(test)]
                tests::run_hook("pop-batch-next-move");
                let read = self.read_pos().load(Ordering::Acquire);
                if self.check_pos(read, READ_POS_OFFSET).is_err() {
                    break;
                }
                match self.committed_at(read, self.read_off(read)) {
                    Some(head) => head,
                    None => break,
                }
            };
            let (kept, kept_bytes) = (metas.len(), used);
            // While subscribers exist, one record per move of read_pos: each removal
            // moves their cursors past exactly one entry (DESIGN: Subscribers).
            let limit = if sub_table::any(&self.region) {
                kept + 1
            } else {
                max
            };
            let mut record = head;
            let mut damaged = false;
            let end = loop {
                let len = record.meta.data_len as usize;
                if data.len() < used + len {
                    data.resize(used + len, 0);
                }
                let copy = &mut data[used..used + len];
                let data_crc = self.region.read_crc(record.off + REC_HEADER_LEN, copy);
                // Checked before the removal, so that a damaged payload behind good
                // ones stays in the ring for the next call to report in its place.
                if data_crc != record.meta.data_crc {
                    damaged = metas.len() == kept;
                    break if damaged { record.end } else { record.pos };
                }
                used += len;
                metas.push(record.meta);
                if metas.len() == limit {
                    break record.end;
                }
                match self.next_in_batch(&record) {
                    Some(next) => record = next,
                    None => break record.end,
                }
            };
            if damaged && !first_chunk {
                break; // reported by the next call, in its place
            }
            #[cfg(feature = "crash-points")]
            crate::crash::point("pop-before-advance");
            let now = metas[kept..]
                .iter()
                .any(|m| m.ttl_secs != 0)
                .then(|| self.clock.wall_ms());
            let expired = |m: &RecordMeta| now.is_some_and(|now| m.ttl_secs != 0 && m.expired(now));
            let first_expired = metas.get(kept).is_some_and(expired);
            // As in pop_into: every copy is consistent iff this CAS succeeds.
            if !self.advance_read(head.pos, end, !first_expired) {
                metas.truncate(kept);
                used = kept_bytes;
                continue;
            }
            if damaged {
                return Err(self.payload_corrupt(&head));
            }
            if now.is_some() {
                let taken = metas.len();
                used = drop_expired(data, metas, kept, kept_bytes, expired);
                for _ in metas.len()..taken {
                    self.count(EXPIRED_OFFSET);
                }
            }
            // Statistics only: no ordering is derived from counters.
            self.word(POPPED_OFFSET)
                .fetch_add((metas.len() - kept) as u64, Ordering::Relaxed);
            if limit == max && !metas.is_empty() {
                break; // all that was ready in one move
            }
        }
        Ok(metas.len())
    }

    /// The oldest record if it is committed and its header is valid, after dealing
    /// with whatever is in its way as `pop` does: uncommitted heads are waited for
    /// (`spins` times at most, counted across calls) or abandoned, padding and
    /// skipped ranges removed, damaged records skipped and reported. `None`: nothing
    /// is ready. Nothing is removed from the ring for the record returned.
    fn ready_head(&self, spins: &mut u32) -> Result<Option<Ready>> {
        loop {
            let read = self.read_pos().load(Ordering::Acquire);
            self.check_pos(read, READ_POS_OFFSET)?;
            // One offset per attempt, for the stamp, header and payload.
            let off = self.read_off(read);
            // SYNC(commit): Acquire pairs with the producer's Release of COMMITTED.
            let stamp = self.word(off).load(Ordering::Acquire);
            if !self.readable(self.params.key.state(stamp, read)) {
                match self.unblock_head(read, stamp)? {
                    Head::Moved => continue,
                    Head::Damaged(e) => return Err(e),
                    Head::Empty => return Ok(None),
                    Head::Stuck if *spins < HEAD_SPINS => {
                        // Its producer is writing it: watch the stamp alone, because
                        // reloading the positions (and the clock) on every turn would
                        // take the producer's cache lines from it.
                        while *spins < HEAD_SPINS && self.word(off).load(Ordering::Relaxed) == stamp
                        {
                            *spins += 1;
                            sync::spin_hint();
                        }
                        continue;
                    }
                    Head::Stuck => return Ok(None),
                }
            }
            let meta = match self.read_meta_at(read, off) {
                Ok(meta) => meta,
                Err(fault) => {
                    // As below for a valid record: a stamp at or past write_pos is not
                    // a record (stale or forged), and there is nothing to skip there,
                    // so handing it to the skip would bring us back here forever.
                    if self.write_pos().load(Ordering::Acquire) <= read {
                        return Ok(None);
                    }
                    if !self.head_unchanged(read, stamp) {
                        continue; // torn by a concurrent overwrite, not damaged
                    }
                    let (field, what) = fault.explain();
                    match self.skip_damaged(read, stamp, field, &what)? {
                        Head::Damaged(e) => return Err(e),
                        _ => continue, // another reader skipped (and reported) it
                    }
                }
            };
            let end = read + format::record_len(meta.data_len);
            if !self.within_written(end) {
                // A committed stamp beyond write_pos is not something mmring writes.
                if self.write_pos().load(Ordering::Acquire) <= read {
                    return Ok(None); // a stale or forged stamp past the end: empty
                }
                if !self.head_unchanged(read, stamp) {
                    continue;
                }
                let what = "the record extends past the write position";
                match self.skip_damaged(read, stamp, format::REC_DATA_LEN_OFFSET, what)? {
                    Head::Damaged(e) => return Err(e),
                    _ => continue,
                }
            }
            return Ok(Some(Ready {
                pos: read,
                off,
                meta,
                end,
            }));
        }
    }

    /// The record at `pos` (file offset `off`), behind a record a batch takes, if it
    /// is committed, its header is valid and it ends within the written part; else
    /// the batch ends before it and the next pop deals with it.
    #[inline(always)]
    fn committed_at(&self, pos: u64, off: usize) -> Option<Ready> {
        debug_assert_eq!(off, self.rec_off(pos));
        // SYNC(commit): as for the head.
        let stamp = self.word(off).load(Ordering::Acquire);
        if !self.readable(self.params.key.state(stamp, pos)) {
            return None;
        }
        let meta = self.read_meta_at(pos, off).ok()?;
        let end = pos + format::record_len(meta.data_len);
        self.within_written(end).then_some(Ready {
            pos,
            off,
            meta,
            end,
        })
    }

    /// The record a batch takes after `prev`: the one that follows it, or past the
    /// padding at the end of a lap, the first of the next lap.
    #[inline(always)]
    fn next_in_batch(&self, prev: &Ready) -> Option<Ready> {
        let pos = prev.end;
        let mut off = prev.off + (prev.end - prev.pos) as usize;
        if off == self.region.len() {
            off = HEADER_LEN; // the record ended the lap exactly
        }
        if let Some(next) = self.committed_at(pos, off) {
            return Some(next);
        }
        let stamp = self.word(off).load(Ordering::Acquire);
        if self.params.key.state(stamp, pos) == Some(STATE_PADDING)
            && self.padding_plausible(pos) == Some(true)
        {
            return self.committed_at(self.lap_end(pos), HEADER_LEN);
        }
        None
    }

    /// Counts the removed record `head`, whose payload checksum failed, as corrupt and
    /// says so.
    fn payload_corrupt(&self, head: &Ready) -> Error {
        self.count(CORRUPT_OFFSET);
        Error::corrupt(
            (head.off + REC_HEADER_LEN) as u64,
            format!(
                "payload checksum mismatch in entry {} ({} bytes); the entry was skipped",
                head.meta.id, head.meta.data_len
            ),
        )
    }

    /// Copies and validates the header of the record at `pos`. A stamp in the last
    /// bytes of the region, where no header fits, can only come from damage.
    fn read_meta(&self, pos: u64) -> Result<RecordMeta, (usize, String)> {
        self.read_meta_at(pos, self.rec_off(pos))
            .map_err(MetaFault::explain)
    }

    /// `read_meta` for a caller that has computed `off = rec_off(pos)` already.
    #[inline(always)]
    fn read_meta_at(&self, pos: u64, off: usize) -> Result<RecordMeta, MetaFault> {
        debug_assert_eq!(off, self.rec_off(pos));
        // Same as fits_in_lap(pos, REC_HEADER_LEN), without a second division.
        if off - HEADER_LEN + REC_HEADER_LEN > self.params.region_len as usize {
            return Err(MetaFault::NoRoom);
        }
        // Word by word: the header's fields are whole words or halves of words.
        let mut words: RecordHeaderWords = [0; REC_HEADER_WORDS];
        let cells = self.region.atomics(off, REC_HEADER_WORDS);
        for (word, cell) in words[1..].iter_mut().zip(&cells[1..]) {
            *word = cell.load(Ordering::Relaxed);
        }
        RecordMeta::from_words(
            pos,
            off - HEADER_LEN,
            &words,
            self.params.region_len,
            |data_len, claimed| self.leads_run(pos, off, data_len, claimed),
        )
    }

    /// Whether the record at `pos` (file offset `off`), with `data_len` payload bytes
    /// and a claim of `claimed` bytes after its header, is the first record of a batch
    /// run (DESIGN: Batch runs): the file has batch runs; the record is not itself
    /// stamped `BATCHED` (a run's later records claim exactly their data); the
    /// claimed run is a whole number of words, longer than this record, within
    /// `max_data`, the lap and the written part; and the record after this one is
    /// stamped `BATCHED`. A caller that Acquired `COMMITTED(pos)` sees that stamp,
    /// written before the commit.
    #[cold]
    fn leads_run(&self, pos: u64, off: usize, data_len: u32, claimed: u32) -> bool {
        let next = pos + format::record_len(data_len);
        let run_end = pos + REC_HEADER_LEN as u64 + u64::from(claimed);
        self.params.batch_runs
            && run_end.is_multiple_of(RECORD_ALIGN)
            && run_end > next
            && claimed <= self.max_data
            && self.fits_in_lap(pos, run_end - pos)
            && self.within_written(run_end)
            && self.word(off).load(Ordering::Acquire) != self.params.key.stamp(pos, STATE_BATCHED)
            && self
                .word(off + (next - pos) as usize)
                .load(Ordering::Acquire)
                == self.params.key.stamp(next, STATE_BATCHED)
    }

    /// Whether `data_len`, the length in the claim word of the abandoned or claimed
    /// record at `pos`, can be stepped over: within `max_data` and the lap, and not
    /// ending on a `BATCHED` record. A claim covers a whole reservation, so what
    /// follows it is never the middle of a run; landing there means the claim word is
    /// damaged, and stepping on would read records of a run never committed.
    fn claimed_len_plausible(&self, pos: u64, data_len: u32) -> bool {
        let end = pos + format::record_len(data_len);
        data_len <= self.max_data
            && self.fits_in_lap(pos, end - pos)
            && self
                .params
                .key
                .state(self.stamp_at(end).load(Ordering::Acquire), end)
                != Some(STATE_BATCHED)
    }

    /// The claim word (data length and writer field) of the record at `pos`,
    /// if the word is inside the region.
    fn claim_word(&self, pos: u64) -> Option<u64> {
        if !self.fits_in_lap(pos, (REC_CLAIM_OFFSET + 8) as u64) {
            return None;
        }
        // SYNC(claim): callers Acquired a CLAIMED/COMMITTED/ABANDONED stamp, which
        // makes the claim word stored before the claim visible.
        Some(self.claim_at(pos).load(Ordering::Relaxed))
    }

    /// The data length in the claim word of the record at `pos` (see `claim_word`).
    fn claimed_len(&self, pos: u64) -> Option<u32> {
        self.claim_word(pos).map(format::claim_data_len)
    }

    /// After a copy of the record at `read` failed validation: true if the record was
    /// stable during the copy (still the head, same stamp), so the damage is real.
    fn head_unchanged(&self, read: u64, stamp: u64) -> bool {
        // SYNC(seqlock): the fence keeps the copy's loads before the re-checks below,
        // as in a seqlock reader (DESIGN: Reading a record).
        fence(Ordering::Acquire);
        self.read_pos().load(Ordering::Relaxed) == read
            && self.stamp_at(read).load(Ordering::Relaxed) == stamp
    }

    /// Deals with a head at `read` that is not a committed record: padding, abandoned
    /// and skipped records are removed; an uncommitted one is waited for and
    /// abandoned once it has been stuck longer than the abandon timeout.
    fn unblock_head(&self, read: u64, stamp: u64) -> Result<Head> {
        // Whatever the stamp says, a head at write_pos is not a record: the ring is
        // empty (a stamp there is stale, or forged by whoever wrote the file).
        if self.write_pos().load(Ordering::Acquire) <= read {
            return Ok(Head::Empty);
        }
        match self.params.key.state(stamp, read) {
            Some(STATE_PADDING) => match self.padding_plausible(read) {
                Some(true) => {
                    self.advance_read(read, self.lap_end(read), false);
                    Ok(Head::Moved)
                }
                Some(false) => self.skip_damaged(
                    read,
                    stamp,
                    format::REC_STAMP_OFFSET,
                    "padding stamp where no padding can be (a damaged stamp)",
                ),
                // The record after the padding is not claimed yet; its producer is
                // between the two claims, or died there. Past the timeout the padding
                // is removed and that record's slot becomes the stalled head.
                None if self.stalled(read) => {
                    self.advance_read(read, self.lap_end(read), false);
                    Ok(Head::Moved)
                }
                None => Ok(Head::Stuck),
            },
            Some(STATE_ABANDONED) => self.skip_claimed(read, stamp),
            // Someone is skipping this range (or died doing it): help.
            Some(STATE_SKIPPED) => {
                self.skip_unknown(read, stamp, None)?;
                Ok(Head::Moved)
            }
            state if self.readable(state) => Ok(Head::Moved),
            // CLAIMED, or not yet claimed (stale bytes from an earlier lap): a producer
            // is between reserve and commit, or died there.
            _ => {
                let chained = self.follows_abandoned(read, stamp);
                if !chained {
                    let stuck_ms = self.stuck_ms(read);
                    if stuck_ms < u64::from(self.params.abandon_ms)
                        && !self.writer_gone(read, stamp, stuck_ms)
                    {
                        return Ok(Head::Stuck);
                    }
                }
                if self.params.key.state(stamp, read) == Some(STATE_CLAIMED) {
                    // Read before the CAS: the producer reserves its retry only after
                    // its commit fails on our mark (Acquire), so this value is below
                    // the retry's position and the chain can never reach the retry.
                    let limit = if chained {
                        self.stall.chain_limit.load(Ordering::Relaxed)
                    } else {
                        self.write_pos().load(Ordering::Acquire)
                    };
                    // The CAS winner counts; a producer that commits first wins instead.
                    if self
                        .stamp_at(read)
                        .compare_exchange(
                            stamp,
                            self.params.key.stamp(read, STATE_ABANDONED),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        #[cfg(feature = "crash-points")]
                        crate::crash::point("abandon-after-mark");
                        self.count(ABANDONED_OFFSET);
                        self.stall.chain_limit.store(limit, Ordering::Relaxed);
                    }
                    return Ok(Head::Moved);
                }
                // Reserved but never claimed: the length is unknown.
                self.skip_unknown(read, stamp, Some(ABANDONED_OFFSET))?;
                Ok(Head::Moved)
            }
        }
    }

    /// Whether the head at `read`, whose stamp is `stamp`, is a record claimed by the
    /// same process as the abandoned record this handle removed just before it, and
    /// reserved before this handle abandoned the first record of the chain: the rest
    /// of a batch whose producer stalled or died after claiming it all. Such a record
    /// is abandoned at once rather than after a timeout of its own, so that a dead
    /// batch producer holds readers up for one timeout, not one per record. A wrong
    /// guess (another thread of that process, alive and as slow as the timeout) costs
    /// that thread a retry, as a stopped producer's record does (DESIGN: Stalls and
    /// abandonment). The producer's own retry is never taken for the rest of its
    /// batch: it lies at or beyond `chain_limit`.
    fn follows_abandoned(&self, read: u64, stamp: u64) -> bool {
        self.params.key.state(stamp, read) == Some(STATE_CLAIMED)
            && self.stall.chain_pos.load(Ordering::Acquire) == read + 1
            && read < self.stall.chain_limit.load(Ordering::Relaxed)
            && self
                .claim_word(read)
                .map(|word| u64::from(format::claim_pid(word)))
                == Some(self.stall.chain_pid.load(Ordering::Relaxed))
    }

    /// Whether the head at `read` has been stuck for the abandon timeout, as seen by
    /// this handle. The first sighting starts the clock.
    fn stalled(&self, read: u64) -> bool {
        self.stuck_ms(read) >= u64::from(self.params.abandon_ms)
    }

    /// For how many milliseconds this handle has seen the head at `read` stuck; 0 at
    /// the first sighting, which starts the clock.
    fn stuck_ms(&self, read: u64) -> u64 {
        let now = self.clock.mono_ms();
        // Races between this handle's threads only restart the clock. Release/Acquire:
        // a thread that sees the new stall_pos also sees its stall_since.
        if self.stall.pos.load(Ordering::Acquire) != read + 1 {
            self.stall.since.store(now, Ordering::Relaxed);
            self.stall.pos.store(read + 1, Ordering::Release);
            return 0;
        }
        now.saturating_sub(self.stall.since.load(Ordering::Relaxed))
    }

    /// Whether the head at `read`, whose stamp is `stamp` and which this handle has
    /// seen stuck for `stuck_ms`, is claimed by a process of this PID namespace that no
    /// longer exists: a producer killed between claim and commit. Such a record is
    /// abandoned without waiting out the timeout. Asked from `PROBE_AFTER_MS` on, at
    /// most once per `PROBE_AFTER_MS` per handle (a system call, never on the hot
    /// path). See `process::writer_gone` for when the answer is trusted.
    fn writer_gone(&self, read: u64, stamp: u64, stuck_ms: u64) -> bool {
        if stuck_ms < PROBE_AFTER_MS || self.params.key.state(stamp, read) != Some(STATE_CLAIMED) {
            return false;
        }
        // Races between this handle's threads only add or save a question.
        if self.stall.probed_pos.load(Ordering::Relaxed) == read + 1
            && stuck_ms
                < (self.stall.probed_at.load(Ordering::Relaxed)).saturating_add(PROBE_AFTER_MS)
        {
            return false;
        }
        self.stall.probed_at.store(stuck_ms, Ordering::Relaxed);
        self.stall.probed_pos.store(read + 1, Ordering::Relaxed);
        // SYNC(claim): the caller Acquired the CLAIMED stamp, so the claim word is the
        // claimant's.
        self.claim_word(read)
            .map(format::claim_pid)
            .is_some_and(|writer| crate::process::writer_gone(writer, self.pid))
    }

    /// Whether a `PADDING` stamp at `read` can be real. Padding is only written in
    /// front of a record that did not fit before the end of the lap, so it is shorter
    /// than the largest record, and the next lap starts with that record, which is
    /// longer than the padding. This catches a damaged stamp (COMMITTED and PADDING
    /// differ in one bit) that would otherwise drop the rest of the lap. `None`: the
    /// record after the padding is not claimed yet, so it can't be told.
    fn padding_plausible(&self, read: u64) -> Option<bool> {
        let end = self.lap_end(read);
        let pad = end - read;
        if pad >= format::record_len(self.max_data) || !self.within_written(end + RECORD_ALIGN) {
            return Some(false);
        }
        // SYNC(claim): Acquire on the stamp makes the claim word visible.
        let next = self.stamp_at(end).load(Ordering::Acquire);
        match self.params.key.state(next, end) {
            Some(STATE_CLAIMED | STATE_COMMITTED | STATE_ABANDONED) => {
                let data_len = self.claimed_len(end)?;
                Some(format::record_len(data_len) > pad)
            }
            Some(_) => Some(false),
            None => None,
        }
    }

    /// Removes an `ABANDONED` head by the length in its claim word, or by a scan if
    /// that length is not plausible.
    fn skip_claimed(&self, read: u64, stamp: u64) -> Result<Head> {
        let claim = self.claim_word(read);
        let data_len = claim.map_or(u32::MAX, format::claim_data_len);
        let rec_len = format::record_len(data_len);
        if self.claimed_len_plausible(read, data_len) && self.within_written(read + rec_len) {
            // The chain is for the per-record batches of files without batch runs,
            // whose other records stay CLAIMED (DESIGN: Batches).
            if self.advance_read(read, read + rec_len, false)
                && !self.params.batch_runs
                && let Some(claim) = claim
            {
                let writer = format::claim_pid(claim);
                self.stall
                    .chain_pid
                    .store(u64::from(writer), Ordering::Relaxed);
                // Release: a thread that sees the position also sees the writer.
                self.stall
                    .chain_pos
                    .store(read + rec_len + 1, Ordering::Release);
            }
            return Ok(Head::Moved);
        }
        self.skip_damaged(
            read,
            stamp,
            REC_CLAIM_OFFSET,
            &format!("abandoned record claims an impossible length of {data_len} bytes"),
        )
    }

    /// Skips a head whose stamp claims a record but whose contents are damaged. The
    /// reader whose skip moved `read_pos` counts it and gets the error to report;
    /// `field` is the record-relative offset of what was wrong.
    fn skip_damaged(&self, read: u64, stamp: u64, field: usize, what: &str) -> Result<Head> {
        if !self.skip_unknown(read, stamp, Some(CORRUPT_OFFSET))? {
            return Ok(Head::Moved);
        }
        Ok(Head::Damaged(Error::corrupt(
            (self.rec_off(read) + field) as u64,
            format!("record at position {read}: {what}; skipped to the next record"),
        )))
    }

    /// Skips from `read`, whose stamp `stamp` can't be trusted for a length, to the
    /// next record start (or `write_pos`), poisoning every word on the way with a
    /// `SKIPPED` stamp so that a producer still about to claim one of them fails
    /// instead of writing into a range readers have passed. True if this call marked
    /// the head (it then bumps `count_as` and its caller reports the skip); false if
    /// another reader did or the head moved on. DESIGN: Skipping.
    fn skip_unknown(&self, read: u64, stamp: u64, count_as: Option<usize>) -> Result<bool> {
        let (_, write) = self.positions()?;
        if write <= read {
            return Ok(false); // nothing to skip: the ring is empty
        }
        // SYNC(seqlock): the caller's reads of this record happen before this check.
        // While read_pos is still `read`, no position in [read, write) can have been
        // reused (I4), so `stamp` and every word walked below belong to this lap.
        fence(Ordering::Acquire);
        if self.read_pos().load(Ordering::Acquire) != read {
            return Ok(false);
        }
        let head = self.stamp_at(read);
        let skipped = self.params.key.stamp(read, STATE_SKIPPED);
        let marked = stamp != skipped;
        if marked
            && head
                .compare_exchange(stamp, skipped, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(false); // the head changed: the caller looks again
        }
        if marked && let Some(counter) = count_as {
            // Counted by the reader whose CAS marked the head, before the walk, so that
            // a reader killed mid-walk (the next reader finishes it) is still counted.
            self.count(counter);
        }
        // BATCHED words are not record starts here: whether their run was committed
        // can't be told from the middle of it (the head may be a claimed first record
        // whose stamp was damaged), so they are poisoned like any other word, and a
        // skip that starts at a run's first record takes the whole run with it
        // (DESIGN: Batch runs).
        let mut pos = read + RECORD_ALIGN;
        while pos < write {
            let word = self.stamp_at(pos);
            let value = word.load(Ordering::Acquire);
            match self.params.key.state(value, pos) {
                Some(state) if format::starts_record(state) => break,
                Some(STATE_SKIPPED) => pos += RECORD_ALIGN,
                _ => {
                    // Re-checked before every poisoning (skips are rare): a reader
                    // that finished this skip and a lap of pushes since would make this
                    // word someone else's.
                    if self.read_pos().load(Ordering::Acquire) != read {
                        return Ok(marked);
                    }
                    if word
                        .compare_exchange(
                            value,
                            self.params.key.stamp(pos, STATE_SKIPPED),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        #[cfg(feature = "crash-points")]
                        crate::crash::point("skip-mid-scan");
                        pos += RECORD_ALIGN;
                    } // else: claimed meanwhile; look at the same word again
                }
            }
        }
        self.advance_read(read, pos.min(write), false);
        Ok(marked)
    }

    /// Where the `SKIPPED` marks from `pos` end: the record start (or `end`) that
    /// follows an unbroken run of them, or `None` when a word that is neither comes
    /// first (a skip still under way).
    fn end_of_skipped(&self, pos: u64, end: u64) -> Option<u64> {
        let mut at = pos + RECORD_ALIGN;
        while at < end {
            match self
                .params
                .key
                .state(self.stamp_at(at).load(Ordering::Acquire), at)
            {
                Some(STATE_SKIPPED) => at += RECORD_ALIGN,
                Some(state) if format::starts_record(state) => return Some(at),
                _ => return None,
            }
        }
        Some(end)
    }

    /// The first record start (a stamp for its own position in a state that starts a
    /// record) after `pos` and before `end`, or `end`: where a reader resynchronizes.
    fn next_record_start(&self, pos: u64, end: u64) -> u64 {
        self.next_record_start_from(pos + RECORD_ALIGN, end)
    }

    /// The first record start at or after `from` (rounded up to 8) and before `end`,
    /// or `end`.
    fn next_record_start_from(&self, from: u64, end: u64) -> u64 {
        let mut pos = from.next_multiple_of(RECORD_ALIGN);
        while pos < end {
            let stamp = self.stamp_at(pos).load(Ordering::Acquire);
            if self
                .params
                .key
                .state(stamp, pos)
                .is_some_and(format::starts_record)
            {
                return pos;
            }
            pos += RECORD_ALIGN;
        }
        end
    }

    // ------------------------------------------------------------ peek

    /// The next live record at or after `*cursor` and before `end`, copied into
    /// `buf`; advances the cursor past it. Never changes the ring. DESIGN: Peek.
    pub(crate) fn peek_next(
        &self,
        cursor: &mut u64,
        end: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordMeta>> {
        loop {
            let read = self.read_pos().load(Ordering::Acquire);
            self.check_pos(read, READ_POS_OFFSET)?;
            let pos = (*cursor).max(read);
            *cursor = pos;
            if pos >= end {
                return Ok(None);
            }
            // SYNC(commit): Acquire pairs with the producer's Release of COMMITTED.
            let stamp = self.stamp_at(pos).load(Ordering::Acquire);
            match self.params.key.state(stamp, pos) {
                state if self.readable(state) => {}
                Some(STATE_PADDING) => match self.padding_plausible(pos) {
                    Some(true) => {
                        *cursor = self.lap_end(pos);
                        continue;
                    }
                    Some(false) => {
                        if self.read_pos().load(Ordering::Acquire) > pos {
                            continue; // removed meanwhile: what we saw may be a later lap
                        }
                        *cursor = end;
                        return Err(Error::corrupt(
                            self.rec_off(pos) as u64,
                            format!(
                                "record at position {pos}: padding stamp where no padding can be"
                            ),
                        ));
                    }
                    None => return Ok(None),
                },
                Some(STATE_ABANDONED) => {
                    let data_len = self.claimed_len(pos).unwrap_or(u32::MAX);
                    let rec_len = format::record_len(data_len);
                    // As pop's skip_claimed, which also wants the record to end within
                    // the written part (`end` is write_pos when the walk began).
                    if !self.claimed_len_plausible(pos, data_len) || pos + rec_len > end {
                        // SYNC(seqlock): as for a record's copy below.
                        fence(Ordering::Acquire);
                        if self.read_pos().load(Ordering::Relaxed) > pos {
                            continue; // removed meanwhile: the word may be a later lap's
                        }
                        // What pop reports when it skips this record (skip_claimed).
                        *cursor = end;
                        return Err(Error::corrupt(
                            (self.rec_off(pos) + REC_CLAIM_OFFSET) as u64,
                            format!(
                                "record at position {pos}: abandoned record claims an \
                                 impossible length of {data_len} bytes"
                            ),
                        ));
                    }
                    *cursor = pos + rec_len;
                    continue;
                }
                // Marks of a skip (or a repair): step over them to the record start
                // they end at, where the skipping reader will stop. A word that is
                // neither means the skip is unfinished: what lies beyond is not known
                // to be a record start yet (it may be a batch run whose first record
                // a producer has just claimed behind a stale word), so stop here.
                Some(STATE_SKIPPED) => match self.end_of_skipped(pos, end) {
                    Some(next) => {
                        *cursor = next;
                        continue;
                    }
                    None => return Ok(None),
                },
                // Being written, or not a record: the committed prefix ends here.
                _ => return Ok(None),
            }
            let parsed = self.read_meta(pos);
            let mut data_crc = 0;
            if let Ok(meta) = &parsed {
                fit(buf, meta.data_len);
                data_crc = self
                    .region
                    .read_crc(self.rec_off(pos) + REC_HEADER_LEN, buf);
            }
            // SYNC(seqlock): the copy is valid iff the record was not freed (and so not
            // reused) before we finished it (DESIGN: Reading a record).
            fence(Ordering::Acquire);
            if self.read_pos().load(Ordering::Relaxed) > pos {
                continue;
            }
            let meta = match parsed {
                Ok(meta) => meta,
                Err((field, what)) => {
                    *cursor = end; // the length can't be trusted: stop here
                    return Err(Error::corrupt(
                        (self.rec_off(pos) + field) as u64,
                        format!("record at position {pos}: {what}"),
                    ));
                }
            };
            *cursor = pos + format::record_len(meta.data_len);
            if data_crc != meta.data_crc {
                return Err(Error::corrupt(
                    (self.rec_off(pos) + REC_HEADER_LEN) as u64,
                    format!("payload checksum mismatch in entry {}", meta.id),
                ));
            }
            if meta.ttl_secs != 0 && meta.expired(self.clock.wall_ms()) {
                continue;
            }
            return Ok(Some(meta));
        }
    }

    /// Test support: reserves and claims a record like `push`, then stops, as a
    /// producer that died before writing would.
    #[cfg(any(test, loom))]
    pub(crate) fn reserve_and_claim_only(&self, data_len: u32) -> Result<u64> {
        let (pos, pad) = self.reserve(format::record_len(data_len))?;
        if pad > 0 {
            assert!(self.claim(pos - pad, STATE_PADDING, None));
        }
        let claim_word = format::claim(data_len, self.pid);
        assert!(self.claim(pos, STATE_CLAIMED, Some(claim_word)));
        Ok(pos)
    }

    // ------------------------------------------------------------ counters

    /// The counters and positions, as one (not atomic) snapshot.
    pub(crate) fn counters(&self) -> Counters {
        let load = |off| self.word(off).load(Ordering::Relaxed);
        Counters {
            pushed: load(PUSHED_OFFSET),
            popped: load(POPPED_OFFSET),
            evicted: load(EVICTED_OFFSET),
            expired: load(EXPIRED_OFFSET),
            corrupt: load(CORRUPT_OFFSET),
            abandoned: load(ABANDONED_OFFSET),
            read_pos: load(READ_POS_OFFSET),
            write_pos: load(WRITE_POS_OFFSET),
        }
    }

    /// Entries in the ring now: pushed minus everything removed, 0 when the positions
    /// meet, at most `capacity`.
    pub(crate) fn len(&self) -> u64 {
        let c = self.counters();
        if c.read_pos >= c.write_pos {
            return 0;
        }
        let removed = c
            .popped
            .saturating_add(c.evicted)
            .saturating_add(c.expired)
            .saturating_add(c.corrupt)
            .saturating_add(c.abandoned);
        c.pushed.saturating_sub(removed).min(self.capacity())
    }

    /// Most entries the ring can hold: one empty-payload record per header length.
    pub(crate) fn capacity(&self) -> u64 {
        self.params.region_len / REC_HEADER_LEN as u64
    }
}

/// Raises a cached position to `pos`, a value just loaded from the file. A plain store
/// rather than `fetch_max`: the consumer refreshes its cache on almost every pop of a
/// ring it keeps up with, and a locked read-modify-write there cost more than the rare
/// race it avoids. Two threads of a handle racing here may leave the smaller of their
/// values, which is still a position that was current: a cached position may be stale
/// (too small), never ahead, which is all its users assume. Release: a thread that
/// uses the cached value inherits the synchronization of the Acquire load that read it
/// (SYNC(free) for `cached_read`).
fn raise_cache(cache: &AtomicU64, pos: u64) {
    if cache.load(Ordering::Relaxed) < pos {
        cache.store(pos, Ordering::Release);
    }
}

/// Makes `buf` exactly `len` bytes long for a copy that overwrites all of it, without
/// zeroing bytes that are there already (a reused buffer is usually long enough).
fn fit(buf: &mut Vec<u8>, len: u32) {
    let len = len as usize;
    buf.truncate(len);
    buf.resize(len, 0);
}

/// Removes the entries `expired` says are expired from `metas[first..]`, whose
/// payloads follow each other in `data` from byte `from`, keeping the order. Returns
/// where the payloads of the entries kept end.
fn drop_expired(
    data: &mut [u8],
    metas: &mut Vec<RecordMeta>,
    first: usize,
    mut from: usize,
    expired: impl Fn(&RecordMeta) -> bool,
) -> usize {
    let (mut kept, mut to) = (first, from);
    for i in first..metas.len() {
        let meta = metas[i];
        let len = meta.data_len as usize;
        if !expired(&meta) {
            data.copy_within(from..from + len, to);
            metas[kept] = meta;
            kept += 1;
            to += len;
        }
        from += len;
    }
    metas.truncate(kept);
    to
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Header, TEST_STAMP_KEY};
    use crate::region::HeapRegion;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64 as StdU64;

    /// A named point in the ring code and what a test runs there.
    type Hook = (&'static str, Box<dyn FnOnce()>);

    thread_local! {
        /// A closure a test runs when this thread reaches a named point (once).
        static HOOK: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
    }

    /// Runs `f` the next time this thread reaches `point` in the ring code.
    fn at_point(point: &'static str, f: impl FnOnce() + 'static) {
        HOOK.with(|hook| *hook.borrow_mut() = Some((point, Box::new(f))));
    }

    /// Called by the ring at `point`: runs and removes a hook installed for it, so the
    /// hook may itself use the ring without running again.
    pub(super) fn run_hook(point: &'static str) {
        let hook = HOOK.with(|hook| {
            let mut hook = hook.borrow_mut();
            match hook.as_ref() {
                Some((name, _)) if *name == point => hook.take(),
                _ => None,
            }
        });
        if let Some((_, f)) = hook {
            f();
        }
    }

    /// A clock the test moves by hand.
    #[derive(Default)]
    struct TestClock {
        wall: Arc<StdU64>,
        mono: Arc<StdU64>,
    }

    impl Clock for TestClock {
        fn wall_ms(&self) -> u64 {
            self.wall.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn mono_ms(&self) -> u64 {
            self.mono.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    fn ring(region_len: u64, policy: Policy) -> (RawRing<HeapRegion>, Arc<StdU64>, Arc<StdU64>) {
        ring_with_futex(
            region_len,
            policy,
            Box::new(crate::wait::YieldFutex),
            |_| {},
        )
    }

    /// A ring of a file without `FLAG_BATCH_RUNS`: batches are records of their own.
    fn per_record_ring(
        region_len: u64,
        policy: Policy,
    ) -> (RawRing<HeapRegion>, Arc<StdU64>, Arc<StdU64>) {
        ring_with_futex(region_len, policy, Box::new(crate::wait::YieldFutex), |h| {
            h.batch_runs = false;
        })
    }

    /// A ring of a file without `FLAG_STAMP_KEY`: stamps are `position | state`.
    fn unkeyed_ring(
        region_len: u64,
        policy: Policy,
    ) -> (RawRing<HeapRegion>, Arc<StdU64>, Arc<StdU64>) {
        ring_with_futex(region_len, policy, Box::new(crate::wait::YieldFutex), |h| {
            h.stamp_key = None;
        })
    }

    fn ring_with_futex(
        region_len: u64,
        policy: Policy,
        futex: Box<dyn Futex>,
        shape: impl FnOnce(&mut Header),
    ) -> (RawRing<HeapRegion>, Arc<StdU64>, Arc<StdU64>) {
        let file_len = HEADER_LEN as u64 + region_len;
        let mut header = Header::new(file_len, 0, policy, 100, 0);
        header.stamp_key = Some(TEST_STAMP_KEY);
        shape(&mut header);
        let region = HeapRegion::new(file_len as usize);
        region.write(0, &header.to_bytes());
        let clock = TestClock::default();
        let (wall, mono) = (clock.wall.clone(), clock.mono.clone());
        let params = Params::from_header(&header);
        (
            // Process 1 of this PID namespace: alive, and not this test process.
            RawRing::new(
                region,
                params,
                crate::process::writer_here(1),
                Box::new(clock),
                futex,
            )
            .unwrap(),
            wall,
            mono,
        )
    }

    fn pop(ring: &RawRing<HeapRegion>) -> Option<(u64, Vec<u8>)> {
        let mut buf = Vec::new();
        ring.pop_into(&mut buf).unwrap().map(|m| (m.id, buf))
    }

    /// Pops until the ring is empty, at most `max` times: the entries delivered, and
    /// how many pops reported a damaged record. Any other error fails the test.
    fn drain_reporting(ring: &RawRing<HeapRegion>, max: usize) -> (Vec<(u64, Vec<u8>)>, u64) {
        let (mut delivered, mut reported) = (Vec::new(), 0);
        for _ in 0..max {
            let mut buf = Vec::new();
            match ring.pop_into(&mut buf) {
                Ok(Some(meta)) => delivered.push((meta.id, buf)),
                Ok(None) => break,
                Err(Error::Corrupt { .. }) => reported += 1,
                Err(e) => panic!("{e}"),
            }
        }
        (delivered, reported)
    }

    #[test]
    fn pop_batch_ends_at_a_damaged_read_pos_found_between_its_moves() {
        let (ring, ..) = ring(4096, Policy::Reject);
        // With a subscriber, every record is a move of read_pos of its own.
        ring.subscribe("s").unwrap();
        for data in [b"a", b"b", b"c"] {
            ring.push(data, 0).unwrap();
        }
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("pop-batch-next-move", move || {
                // Another program writes a position that is not a multiple of 8.
                let read = ring.read_pos().load(Ordering::Relaxed);
                ring.read_pos().store(read + 3, Ordering::Relaxed);
            });
        }
        let (mut data, mut metas) = (Vec::new(), Vec::new());
        assert_eq!(ring.pop_batch(&mut data, &mut metas, 8).unwrap(), 1);
        assert_eq!(&data[..], b"a");
        match ring.pop_batch(&mut data, &mut metas, 8) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, READ_POS_OFFSET as u64),
            other => panic!("expected the damaged read position reported, got {other:?}"),
        }
    }

    #[test]
    fn pops_in_push_order() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let a = ring.push(b"first", 0).unwrap();
        let b = ring.push(b"second", 0).unwrap();
        assert!(a < b);
        assert_eq!(ring.len(), 2);
        assert_eq!(pop(&ring), Some((a, b"first".to_vec())));
        assert_eq!(pop(&ring), Some((b, b"second".to_vec())));
        assert_eq!(pop(&ring), None);
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn pushes_and_pops_make_no_wake_call_while_nobody_waits() {
        let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let futex = Box::new(crate::wait::CountingFutex(wakes.clone()));
        // Block mode: pops notify too (producers may wait for room).
        let (ring, ..) = ring_with_futex(4096, Policy::Block, futex, |_| {});
        let wake_calls = || wakes.load(std::sync::atomic::Ordering::Relaxed);
        for i in 0..200u32 {
            ring.push(&i.to_le_bytes(), 0).unwrap();
            assert!(pop(&ring).is_some());
        }
        assert_eq!(wake_calls(), 0);
        // A registered waiter (here a stale count): every push and pop wakes.
        ring.waiting().waiters.store(1, Ordering::Relaxed);
        ring.push(b"x", 0).unwrap();
        assert_eq!(wake_calls(), 1);
        assert!(pop(&ring).is_some());
        assert_eq!(wake_calls(), 2);
    }

    #[test]
    fn pads_record_at_wrap() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let payload = [7u8; 1000]; // 1056-byte records: three fit, the fourth wraps
        for _ in 0..3 {
            ring.push(&payload, 0).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(pop(&ring).unwrap().1, payload);
        }
        let id = ring.push(&payload, 0).unwrap();
        assert_eq!(id, 4096, "the record after the padding starts the next lap");
        assert_eq!(pop(&ring), Some((4096, payload.to_vec())));
    }

    #[test]
    fn reject_mode_reports_full_and_keeps_everything() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let mut pushed = 0;
        while ring.push(&[1u8; 100], 0).is_ok() {
            pushed += 1;
        }
        assert!(matches!(ring.push(&[1u8; 100], 0), Err(Error::Full)));
        assert_eq!(ring.len(), pushed);
        let mut popped = 0;
        while pop(&ring).is_some() {
            popped += 1;
        }
        assert_eq!(popped, pushed);
    }

    #[test]
    fn overwrite_mode_evicts_the_oldest() {
        let (ring, ..) = ring(4096, Policy::Overwrite);
        let ids: Vec<u64> = (0..100u32)
            .map(|i| ring.push(&i.to_le_bytes(), 0).unwrap())
            .collect();
        let c = ring.counters();
        let first = pop(&ring).unwrap();
        assert!(c.evicted > 0);
        let survivors = 1 + std::iter::from_fn(|| pop(&ring)).count() as u64;
        assert_eq!(survivors + c.evicted, 100);
        assert_eq!(first.0, ids[c.evicted as usize]);
    }

    #[test]
    fn expired_entries_are_dropped_and_counted() {
        let (ring, wall, _) = ring(4096, Policy::Reject);
        ring.push(b"short", 1).unwrap();
        ring.push(b"forever", 0).unwrap();
        wall.store(1000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring).unwrap().1, b"forever");
        assert_eq!(ring.counters().expired, 1);
    }

    #[test]
    fn abandoned_claim_is_skipped_after_the_timeout() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        // A producer that reserved and claimed, then died.
        ring.reserve_and_claim_only(10).unwrap();
        let after = ring.push(b"after", 0).unwrap();
        assert_eq!(pop(&ring), None, "head is still being written");
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        assert_eq!(ring.counters().abandoned, 1);
        assert_eq!(ring.len(), 0);
    }

    /// The writer field of a process of this namespace that has exited and been
    /// reaped.
    fn dead_writer() -> u32 {
        crate::process::writer_here(crate::process::dead_pid())
    }

    /// A record claimed by process `writer`, which then stopped, and an entry behind
    /// it.
    fn claimed_by(writer: u32) -> (RawRing<HeapRegion>, Arc<StdU64>, u64) {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let pos = ring.reserve_and_claim_only(10).unwrap();
        ring.claim_at(pos)
            .store(format::claim(10, writer), Ordering::Relaxed);
        let after = ring.push(b"after", 0).unwrap();
        (ring, mono, after)
    }

    #[test]
    fn claim_of_a_process_that_is_gone_is_abandoned_without_the_timeout() {
        let (ring, mono, after) = claimed_by(dead_writer());
        assert_eq!(pop(&ring), None, "first sighting: the head just got stuck");
        mono.store(PROBE_AFTER_MS - 1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), None, "too early to ask about the writer");
        mono.store(PROBE_AFTER_MS, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        assert_eq!(ring.counters().abandoned, 1);
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn claim_of_a_live_process_waits_for_the_timeout() {
        // This test process: alive, and not the ring handle's own ID (1).
        let (ring, mono, after) = claimed_by(crate::process::writer_here(std::process::id()));
        assert_eq!(pop(&ring), None);
        for ms in [PROBE_AFTER_MS, 50, 99] {
            mono.store(ms, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(pop(&ring), None, "at {ms} ms the writer may still commit");
        }
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        assert_eq!(ring.counters().abandoned, 1);
    }

    #[test]
    fn writer_that_dies_while_its_head_is_watched_is_noticed_at_the_next_question() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (ring, mono, after) = claimed_by(crate::process::writer_here(child.id()));
        assert_eq!(pop(&ring), None);
        mono.store(PROBE_AFTER_MS, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            pop(&ring),
            None,
            "the writer is alive when first asked about"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        mono.store(2 * PROBE_AFTER_MS - 1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), None, "not asked again this soon");
        mono.store(2 * PROBE_AFTER_MS, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        assert_eq!(ring.counters().abandoned, 1);
    }

    #[test]
    fn stale_head_whose_old_claim_word_names_a_dead_process_waits_for_the_timeout() {
        // Reserved, not claimed yet: the claim word is a dead writer's from an earlier
        // lap, which says nothing about the producer that holds the reservation now.
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let (pos, _) = ring.reserve(format::record_len(10)).unwrap();
        ring.claim_at(pos)
            .store(format::claim(10, dead_writer()), Ordering::Relaxed);
        let after = ring.push(b"after", 0).unwrap();
        assert_eq!(pop(&ring), None);
        for ms in [PROBE_AFTER_MS, 50, 99] {
            mono.store(ms, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(pop(&ring), None, "at {ms} ms");
        }
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
    }

    #[test]
    fn claim_of_a_dead_process_of_another_namespace_waits_for_the_timeout() {
        // The same dead ID, but without this namespace's tag: as written by a producer
        // in another container, whose IDs mean nothing here.
        let (ring, mono, after) = claimed_by(dead_writer() & ((1 << 22) - 1));
        assert_eq!(pop(&ring), None);
        mono.store(50, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), None, "not known to be gone");
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
    }

    #[test]
    fn unclaimed_reservation_is_skipped_after_the_timeout() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        // A producer that died between reserving and claiming: no length anywhere.
        ring.reserve(format::record_len(200)).unwrap();
        let after = ring.push(b"after", 0).unwrap();
        assert_eq!(pop(&ring), None);
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
    }

    #[test]
    fn damaged_payload_is_reported_then_skipped() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let id = ring.push(b"hello", 0).unwrap();
        ring.push(b"world", 0).unwrap();
        let off = ring.rec_off(id) + REC_HEADER_LEN;
        ring.region.write(off, b"j");
        let mut buf = Vec::new();
        match ring.pop_into(&mut buf) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, off as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(pop(&ring).unwrap().1, b"world");
        assert_eq!(ring.counters().corrupt, 1);
    }

    #[test]
    fn damaged_metadata_is_skipped_by_scanning() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let id = ring.push(&[1u8; 300], 0).unwrap();
        let next = ring.push(b"next", 0).unwrap();
        // Flip a bit of the data length: the length must not be trusted.
        let off = ring.rec_off(id) + format::REC_DATA_LEN_OFFSET;
        ring.region.write(off, &[0xff]);
        let mut buf = Vec::new();
        assert!(matches!(
            ring.pop_into(&mut buf),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(pop(&ring), Some((next, b"next".to_vec())));
    }

    #[test]
    fn forged_stamps_at_the_write_position_read_as_empty() {
        // Regression: a stamp at read_pos == write_pos is not a record. Skipping it
        // used to compute an empty skip and loop (or trip a debug assertion).
        let (ring, ..) = ring(4096, Policy::Reject);
        for state in [STATE_PADDING, STATE_ABANDONED, STATE_SKIPPED, STATE_CLAIMED] {
            ring.stamp_at(0)
                .store(TEST_STAMP_KEY.stamp(0, state), Ordering::Relaxed);
            assert_eq!(pop(&ring), None, "state {state}");
        }
        let meta = RecordMeta {
            version: format::ENTRY_VERSION,
            data_len: 1,
            ttl_secs: 0,
            id: 0,
            data_crc: crc32c::crc32c(b"x"),
            write_time_ms: 0,
        };
        let off = ring.rec_off(0);
        ring.region
            .write(off, &meta.to_bytes(0, format::claim(1, 1)));
        ring.region.write(off + REC_HEADER_LEN, b"x");
        ring.stamp_at(0)
            .store(TEST_STAMP_KEY.stamp(0, STATE_COMMITTED), Ordering::Relaxed);
        assert_eq!(pop(&ring), None);
        assert_eq!(
            pop(&ring),
            None,
            "still empty, not an endless stream of errors"
        );
        // The producer can't claim a word that already holds a stamp for its position,
        // so it reserves again after it; the forged record, being well formed, is then
        // inside the ring and is delivered like any entry.
        let id = ring.push(b"ok", 0).unwrap();
        assert_eq!(pop(&ring), Some((0, b"x".to_vec())));
        assert_eq!(pop(&ring), Some((id, b"ok".to_vec())));
        assert_eq!(pop(&ring), None);
    }

    #[test]
    fn positions_never_report_corruption_under_concurrent_use() {
        //! Regression: positions() compared two loads as if they were one snapshot,
        //! so a thread delayed between them reported a healthy ring as corrupt.
        let (ring, ..) = ring(4096, Policy::Overwrite);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        ring.push(&[0u8; 64], 0).unwrap();
                        ring.positions().unwrap();
                    }
                });
            }
            s.spawn(|| {
                let mut buf = Vec::new();
                for _ in 0..20_000 {
                    ring.pop_into(&mut buf).unwrap();
                }
            });
        });
    }

    #[test]
    fn peek_does_not_consume() {
        let (ring, ..) = ring(4096, Policy::Reject);
        ring.push(b"a", 0).unwrap();
        ring.push(b"b", 0).unwrap();
        let (_, end) = ring.positions().unwrap();
        let mut cursor = 0;
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while ring
            .peek_next(&mut cursor, end, &mut buf)
            .unwrap()
            .is_some()
        {
            seen.push(buf.clone());
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn too_large_changes_nothing() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let max = ring.max_data_len() as usize;
        assert!(ring.push(&vec![0; max], 0).is_ok());
        assert!(matches!(
            ring.push(&vec![0; max + 1], 0),
            Err(Error::TooLarge { .. })
        ));
        assert_eq!(ring.counters().pushed, 1);
    }

    // ---------------------------------------------------------------- review regressions

    fn meta_for(pos: u64, data: &[u8]) -> RecordMeta {
        RecordMeta {
            version: format::ENTRY_VERSION,
            data_len: data.len() as u32,
            ttl_secs: 0,
            id: pos,
            data_crc: crc32c::crc32c(data),
            write_time_ms: 0,
        }
    }

    /// Runs `f` on another thread; fails if it does not finish within 5 s (an endless
    /// loop), or propagates its panic.
    fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        });
        match rx.recv_timeout(std::time::Duration::from_secs(5)) {
            Ok(()) => h.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(_) => unreachable!(),
            },
            Err(_) => panic!("did not finish within 5 s: endless loop"),
        }
    }

    /// Found by fuzzing (`mutate_between_ops`): a write position damaged to lie inside
    /// the committed head record, and a push that must make room. The head's record
    /// ends past the write position, which no committed record does; `make_room` said
    /// it had moved the head without moving it, and the push looped forever. It is now
    /// skipped as damage, as pop skips it, and the push goes in.
    #[test]
    fn push_making_room_past_a_head_that_ends_beyond_write_pos_terminates() {
        let (ring, ..) = ring(4096, Policy::Overwrite);
        ring.push(&[0u8; 968], 0).unwrap(); // [0, 1024)
        assert!(pop(&ring).is_some());
        let head = ring.push(&[1u8; 1992], 0).unwrap(); // [1024, 3072)
        assert_eq!(head, 1024);
        ring.write_pos().store(2056, Ordering::Relaxed); // inside the head record
        let ring = Arc::new(ring);
        let pusher = ring.clone();
        // 2056 + 2048 passes the lap's end: padding, then [4096, 6144), beyond
        // read_pos + region_len = 5120, so the head must go.
        let id = within_deadline(move || pusher.push(&[2u8; 1992], 0)).unwrap();
        assert_eq!(id, 4096);
        let c = ring.counters();
        assert_eq!((c.corrupt, c.read_pos), (1, 2056), "{c:?}");
        assert_eq!(pop(&ring), Some((4096, vec![2u8; 1992])));
    }

    /// Regression (a multi-process CI run): a payload's last word kept the bytes of an
    /// earlier lap above the payload's last bytes. Over the stamp of a record two laps
    /// back, two payload bytes made the word read as the stamp of the record the next
    /// lap put there: its producer took the word for a reader's mark and reserved
    /// again, and pop reported the unclaimed range as a damaged record. Built here
    /// byte for byte, with every position fixed: a record at 1000 in lap 0 (stamp
    /// 1002 = 0x3ea, keyed), a short payload in lap 1 ending two bytes into that word
    /// with the two low bytes of the stamp of 9192, and a record at 2 * 4096 + 1000 =
    /// 9192 (stamp 9194 = 0x23ea, keyed): stamps at one offset in different laps share
    /// the key's upper bytes, so the key alone does not stop this; the fill does.
    /// `region::tests` checks the fill of long payloads at every length.
    #[test]
    fn a_payload_end_never_leaves_a_word_that_reads_as_a_later_stamp() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let mut pushes = 0;
        let mut push_pop = |data: &[u8], at: u64| {
            assert_eq!(ring.push(data, 0).unwrap(), at, "{} bytes", data.len());
            assert_eq!(pop(&ring), Some((at, data.to_vec())));
            pushes += 1;
        };
        // Lap 0: records at 0, 1000, 1056 and 3104.
        push_pop(&[1; 944], 0);
        push_pop(b"", 1000);
        push_pop(&[2; 1992], 1056);
        push_pop(&[3; 936], 3104);
        // Lap 1: 66 bytes from 4976 + 56 end at 5098, two bytes into the word at
        // 5096, the one the stamp of 1000 was in.
        push_pop(&[4; 824], 4096);
        let mut tail_over_stamp = vec![4; 66];
        let later = TEST_STAMP_KEY.stamp(9192, STATE_COMMITTED);
        tail_over_stamp[64..].copy_from_slice(&later.to_le_bytes()[..2]);
        push_pop(&tail_over_stamp, 4976);
        push_pop(&[5; 1992], 5104);
        push_pop(&[6; 984], 7152);
        // Lap 2.
        push_pop(&[7; 944], 8192);
        let word = ring.stamp_at(9192).load(Ordering::Relaxed);
        assert_eq!(
            TEST_STAMP_KEY.state(word, 9192),
            None,
            "{word:#x} reads as a stamp"
        );
        push_pop(b"claimed where it was reserved", 9192);
        let c = ring.counters();
        assert_eq!(
            (c.pushed, c.popped, c.corrupt),
            (pushes, pushes, 0),
            "{c:?}"
        );
    }

    proptest::proptest! {
        /// The adversary of `a_payload_end_never_leaves_a_word_that_reads_as_a_later_stamp`
        /// in general: every payload that ends inside a word ends with the low bytes of
        /// the stamp the next lap would give a record starting at that word. With the
        /// old bytes kept above them (often those of an older stamp at that word), the
        /// word would read as that stamp whenever the next lap starts a record there,
        /// and that record's claim would fail. With the `0xFF` fill no claim ever
        /// fails: every push reserves once, and every entry comes out intact.
        #[test]
        fn payload_ends_built_to_forge_later_stamps_never_cost_a_claim(
            lens in proptest::collection::vec(0usize..300, 100..400),
        ) {
            const REGION: u64 = 4096;
            let (ring, ..) = ring(REGION, Policy::Overwrite);
            for (i, &len) in lens.iter().enumerate() {
                // Where the record will be: after padding if it does not fit the lap.
                let write = ring.write_pos().load(Ordering::Relaxed);
                let rec_len = format::record_len(len as u32);
                let pos = if write % REGION + rec_len > REGION {
                    write.next_multiple_of(REGION)
                } else {
                    write
                };
                let mut data: Vec<u8> = (0..len).map(|b| (b as u8) ^ (i as u8)).collect();
                let tail = len % 8;
                if tail != 0 {
                    let word_pos = pos + REC_HEADER_LEN as u64 + (len - tail) as u64;
                    let forged = TEST_STAMP_KEY.stamp(word_pos + REGION, STATE_COMMITTED);
                    data[len - tail..].copy_from_slice(&forged.to_le_bytes()[..tail]);
                }
                proptest::prop_assert_eq!(ring.push(&data, 0).unwrap(), pos);
                // One reservation per push: no claim failed.
                proptest::prop_assert_eq!(ring.counters().pushed, i as u64 + 1);
                if i % 7 == 0 {
                    proptest::prop_assert!(pop(&ring).is_some());
                }
            }
            let mut buf = Vec::new();
            while let Some(meta) = ring.pop_into(&mut buf).unwrap() {
                proptest::prop_assert_eq!(buf.len(), meta.data_len as usize);
            }
            let c = ring.counters();
            proptest::prop_assert_eq!((c.corrupt, c.abandoned), (0, 0));
        }
    }

    /// Pushes entries whose every payload word is the unkeyed stamp (`position |
    /// state`) that the next lap would give a record starting at that word, the
    /// payload a user who knows the layout but not the file's key can build, over
    /// several laps of an overwriting ring, cycling through `states`. Returns the
    /// counters.
    fn push_payloads_forging_unkeyed_stamps(
        ring: &RawRing<HeapRegion>,
        states: &[u64],
    ) -> Counters {
        const REGION: u64 = 4096;
        const PUSHES: u64 = 600;
        for i in 0..PUSHES {
            let len = 8 * (1 + (i * 7 % 23)) as usize;
            let write = ring.write_pos().load(Ordering::Relaxed);
            let rec_len = format::record_len(len as u32);
            let pos = if write % REGION + rec_len > REGION {
                write.next_multiple_of(REGION)
            } else {
                write
            };
            let data: Vec<u8> = (0..len / 8)
                .flat_map(|w| {
                    let word_pos = pos + REC_HEADER_LEN as u64 + 8 * w as u64;
                    let state = states[(i as usize + w) % states.len()];
                    ((word_pos + REGION) | state).to_le_bytes()
                })
                .collect();
            ring.push(&data, 0).unwrap();
            if i % 5 == 0 {
                let _ = drain_reporting(ring, 1);
            }
        }
        drain_reporting(ring, usize::MAX);
        ring.counters()
    }

    /// With the stamp key, a payload built from the ring's positions can't forge a
    /// stamp (DESIGN: Stale words that read as stamps): every push reserves once and
    /// every entry leaves the ring popped or evicted, none reported or skipped.
    /// Without the key (files made before it) the same payloads cost claims and
    /// readers report forged records, which is what the key is for.
    #[test]
    fn payloads_built_from_positions_forge_no_stamp_in_a_keyed_ring() {
        let (ring, ..) = ring(4096, Policy::Overwrite);
        let every_state = [
            STATE_COMMITTED,
            STATE_PADDING,
            STATE_SKIPPED,
            STATE_CLAIMED,
            STATE_BATCHED,
            STATE_ABANDONED,
        ];
        let c = push_payloads_forging_unkeyed_stamps(&ring, &every_state);
        assert_eq!(
            (c.pushed, c.popped + c.evicted, c.corrupt, c.abandoned),
            (600, 600, 0, 0),
            "{c:?}"
        );

        // Only `COMMITTED` here: forged records are reported and skipped, where forged
        // `CLAIMED` or `PADDING` would make readers wait or step over entries.
        let (ring, ..) = unkeyed_ring(4096, Policy::Overwrite);
        let c = push_payloads_forging_unkeyed_stamps(&ring, &[STATE_COMMITTED]);
        assert!(c.pushed > 600, "no claim failed without the key: {c:?}");
        assert!(c.corrupt > 0, "{c:?}");
        assert_eq!(c.popped + c.evicted, 600, "{c:?}");
    }

    /// A word an earlier lap left at a reserved position that reads as a stamp for it
    /// (a payload can hold any 8 bytes) makes the producer give the range up and push
    /// again, never claim over it (DESIGN: Stale words that read as stamps): every
    /// entry is delivered once, and what the word reads as is reported at most once.
    #[test]
    fn a_leftover_word_that_reads_as_a_stamp_costs_its_range_never_an_entry() {
        for state in [STATE_COMMITTED, STATE_BATCHED, STATE_PADDING, STATE_SKIPPED] {
            let (ring, ..) = ring(4096, Policy::Reject);
            assert_eq!(ring.push(b"first", 0).unwrap(), 0);
            let next = ring.write_pos().load(Ordering::Relaxed);
            ring.stamp_at(next)
                .store(TEST_STAMP_KEY.stamp(next, state), Ordering::Relaxed);
            let id = ring.push(b"second", 0).unwrap();
            assert!(id > next, "{state}: pushed again after the word, at {id}");
            let (delivered, reported) = drain_reporting(&ring, 8);
            let want = [(0, b"first".to_vec()), (id, b"second".to_vec())];
            assert_eq!(delivered, want, "{state}");
            // A readable stamp over a header that fails its checksum, or padding that
            // can't be (it would span the rest of the lap), is reported; marks are not.
            assert_eq!(reported, u64::from(state != STATE_SKIPPED), "{state}");
            let c = ring.counters();
            assert_eq!(
                (c.popped, c.corrupt, c.abandoned),
                (2, reported, 0),
                "{state}: {c:?}"
            );
        }
    }

    /// B: a single bit flip turning an 8-byte PADDING stamp at the last word of the
    /// region into COMMITTED makes pop read a 56-byte header past the region end.
    #[test]
    fn flipped_padding_stamp_at_region_end_does_not_panic() {
        let (ring, ..) = ring(4096, Policy::Reject);
        for _ in 0..73 {
            ring.push(b"", 0).unwrap(); // 73 * 56 = 4088
        }
        assert!(pop(&ring).is_some());
        assert!(pop(&ring).is_some());
        let id = ring.push(b"", 0).unwrap();
        assert_eq!(id, 4096, "8 bytes of padding at 4088");
        for _ in 0..71 {
            assert!(pop(&ring).is_some());
        }
        assert_eq!(ring.read_pos().load(Ordering::Relaxed), 4088);
        // One bit: PADDING (3) -> COMMITTED (2).
        ring.stamp_at(4088).fetch_xor(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ring.pop_into(&mut buf)));
        assert!(r.is_ok(), "pop panicked on a damaged stamp");
    }

    /// B': an ABANDONED (or CLAIMED, after the timeout) stamp at the region's last word
    /// in a hostile file: skip_claimed loads the claim word one past the region.
    #[test]
    fn abandoned_stamp_at_region_end_does_not_panic() {
        let (ring, ..) = ring(4096, Policy::Reject);
        ring.read_pos().store(4088, Ordering::Relaxed);
        ring.write_pos().store(4096 + 64, Ordering::Relaxed);
        ring.stamp_at(4088).store(
            TEST_STAMP_KEY.stamp(4088, STATE_ABANDONED),
            Ordering::Relaxed,
        );
        let mut buf = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ring.pop_into(&mut buf)));
        assert!(r.is_ok(), "pop panicked on a hostile stamp");
    }

    /// C: a damaged header whose payload holds a word that looks like a stamp of a
    /// later lap for its own offset: skip_unknown gives up every time, pop loops.
    #[test]
    fn skip_over_payload_that_looks_like_a_later_stamp_terminates() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        // Payload word at absolute position 56 holds the stamp COMMITTED(56 + 4096):
        // any stamp of a position congruent to its offset mod region_len and larger
        // than it (a payload that knows the key).
        let mut payload = vec![0u8; 64];
        let forged = TEST_STAMP_KEY.stamp(56 + 4096, STATE_COMMITTED);
        payload[..8].copy_from_slice(&forged.to_le_bytes());
        let a = ring.push(&payload, 0).unwrap();
        let b = ring.push(b"next", 0).unwrap();
        // Damage A's header (a bit in the TTL field).
        let off = ring.rec_off(a) + format::REC_TTL_OFFSET;
        ring.region.write(off, &[0x80]);
        let r2 = ring.clone();
        let results = within_deadline(move || {
            let mut buf = Vec::new();
            let first = r2.pop_into(&mut buf).map(|m| m.map(|m| m.id));
            let second = r2.pop_into(&mut buf).map(|m| m.map(|m| m.id));
            (first.is_err(), second.ok().flatten())
        });
        assert_eq!(results, (true, Some(b)));
    }

    /// C': the same wedge from stale bytes of an earlier lap in the range of a producer
    /// that died between reserve and claim (no damage at all, just user data).
    #[test]
    fn skip_of_dead_reservation_over_stale_user_data_terminates() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        // Lap 0: a record at 0 whose payload word at position 56 is the stamp
        // COMMITTED(8248) (8248 = 56 + 2 * 4096): user data that knows the key.
        let mut payload = vec![0u8; 1000];
        let forged = TEST_STAMP_KEY.stamp(8248, STATE_COMMITTED);
        payload[..8].copy_from_slice(&forged.to_le_bytes());
        ring.push(&payload, 0).unwrap();
        assert!(pop(&ring).is_some());
        // Move exactly to the start of lap 1 with ordinary traffic.
        for _ in 0..2 {
            ring.push(&[0u8; 1464], 0).unwrap(); // 1520-byte records: 1056 + 2 * 1520 = 4096
            assert!(pop(&ring).is_some());
        }
        let (dead, _) = ring.reserve(format::record_len(200)).unwrap(); // dies: no claim
        assert_eq!(dead, 4096);
        let after = ring.push(b"after", 0).unwrap();
        assert_eq!(pop(&ring), None);
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        let r2 = ring.clone();
        let got = within_deadline(move || {
            let mut buf = Vec::new();
            r2.pop_into(&mut buf).unwrap().map(|m| m.id)
        });
        assert_eq!(got, Some(after));
    }

    /// A: a consumer thread that loaded read_pos = r, then was preempted while r was
    /// abandoned by another thread of the same handle and the ring lapped, acts on the
    /// stamp of a later lap as if it were r's unclaimed stamp and destroys a committed
    /// entry (reject mode: a push that returned Ok is never popped).
    #[test]
    fn stale_head_does_not_destroy_a_later_lap_record() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let r = ring.reserve_and_claim_only(10).unwrap(); // a producer that dies
        assert_eq!(r, 0);
        assert_eq!(pop(&ring), None, "stall clock for 0 starts");
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        // Thread T1 of this handle: loads read_pos = 0 (pop_into line `let read = ...`)
        // and is preempted here. Thread T2 abandons and skips 0, and traffic continues.
        let stale_read = ring.read_pos().load(Ordering::Acquire);
        assert_eq!(pop(&ring), None); // T2: abandons, skips, ring empty
        assert_eq!(ring.counters().abandoned, 1);
        let payload = [7u8; 1000];
        for _ in 0..3 {
            ring.push(&payload, 0).unwrap();
            assert!(pop(&ring).is_some());
        }
        let victim = ring.push(&payload, 0).unwrap();
        assert_eq!(victim, 4096, "a committed record at offset 0 of lap 1");
        // T1 resumes: loads the stamp at offset 0 and, as pop_into does for a stamp that
        // is not COMMITTED(read), hands it to unblock_head.
        let stamp = ring.stamp_at(stale_read).load(Ordering::Acquire);
        assert_ne!(
            TEST_STAMP_KEY.state(stamp, stale_read),
            Some(STATE_COMMITTED)
        );
        let _ = ring.unblock_head(stale_read, stamp);
        // The committed entry must still be delivered.
        let mut got = None;
        for step in 0..10u64 {
            if let Some(e) = pop(&ring) {
                got = Some(e.0);
                break;
            }
            mono.store(200 + step * 100, std::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(
            got,
            Some(victim),
            "committed entry lost; counters {:?}",
            ring.counters()
        );
    }

    /// D: a producer stalled between reserve and claim for longer than the abandon
    /// timeout (SIGSTOP, a long preemption). Readers skip its range and the ring laps.
    /// On resuming, its claim CAS accepts the stamp of the later-lap record at its offset
    /// (claim only rejects stamps for its own position), so the claim and the commit
    /// succeed: push returns Ok for an entry that no pop will see, and the committed
    /// later-lap entry it overwrote is lost too. DESIGN says "its commit fails".
    #[test]
    fn stalled_producer_resuming_after_a_lap() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let data = b"stalled";
        let data_len = data.len() as u32;
        let (pos, pad) = ring.reserve(format::record_len(data_len)).unwrap();
        assert_eq!((pos, pad), (0, 0));
        assert_eq!(pop(&ring), None);
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        let payload = [7u8; 1000];
        ring.push(&payload, 0).unwrap();
        assert!(pop(&ring).is_some()); // P's range skipped
        for _ in 0..2 {
            ring.push(&payload, 0).unwrap();
            assert!(pop(&ring).is_some());
        }
        let victim = ring.push(&payload, 0).unwrap();
        assert_eq!(victim, 4096);
        // P resumes: the rest of push() after reserve.
        let claimed = ring.claim(pos, STATE_CLAIMED, Some(format::claim(data_len, 1)));
        let mut push_ok = false;
        if claimed {
            let meta = meta_for(pos, data);
            let header = meta.to_bytes(pos, format::claim(data_len, 1));
            let off = ring.rec_off(pos);
            ring.region
                .write(off + REC_CLAIM_OFFSET + 8, &header[REC_CLAIM_OFFSET + 8..]);
            ring.region.write(off + REC_HEADER_LEN, data);
            push_ok = ring
                .stamp_at(pos)
                .compare_exchange(
                    TEST_STAMP_KEY.stamp(pos, STATE_CLAIMED),
                    TEST_STAMP_KEY.stamp(pos, STATE_COMMITTED),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok();
        }
        // What readers get from here on.
        let mut got = Vec::new();
        for step in 0..10u64 {
            let mut buf = Vec::new();
            match ring.pop_into(&mut buf) {
                Ok(Some(m)) => got.push(Ok(m.id)),
                Ok(None) => {}
                Err(e) => got.push(Err(format!("{e}"))),
            }
            mono.store(200 + step * 100, std::sync::atomic::Ordering::Relaxed);
        }
        assert!(
            !push_ok && got == vec![Ok(victim)],
            "claimed={claimed} push_ok={push_ok} (P's entry at {pos} would be reported pushed) \
             pops={got:?} counters={:?}",
            ring.counters()
        );
    }

    /// A producer that passed claim's first read_pos check and then stopped while its
    /// range was skipped (abandon timeout) and reused by a later lap must not keep the
    /// claim it then wins on the later lap's stamp word: claim's second check gives
    /// the word back and the push reserves again, so the stopped producer's entry is
    /// never reported pushed and then lost. Its claim word store, made before the
    /// second check, lands on the later lap's record: that record is then reported as
    /// corrupt, never returned damaged and never silently dropped (DESIGN: Stalls and abandonment).
    #[test]
    fn producer_stalled_between_its_check_and_its_claim_gives_the_word_back() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        let data_len = 7;
        let (pos, _) = ring.reserve(format::record_len(data_len)).unwrap();
        let payload = [7u8; 1000];
        let victim = Arc::new(StdU64::new(0));
        {
            let (ring, victim) = (ring.clone(), victim.clone());
            // While the producer is stopped: its range is skipped after the abandon
            // timeout, and a lap of pushes reuses it.
            at_point("claim-after-read-check", move || {
                assert_eq!(pop(&ring), None);
                mono.store(100, std::sync::atomic::Ordering::Relaxed);
                ring.push(&payload, 0).unwrap();
                assert!(pop(&ring).is_some());
                for _ in 0..2 {
                    ring.push(&payload, 0).unwrap();
                    assert!(pop(&ring).is_some());
                }
                let id = ring.push(&payload, 0).unwrap();
                assert_eq!(id, 4096, "the later lap reuses the stopped producer's word");
                victim.store(id, std::sync::atomic::Ordering::Relaxed);
            });
        }
        let claimed = ring.claim(pos, STATE_CLAIMED, Some(format::claim(data_len, 1)));
        assert!(!claimed, "claimed a word that belongs to a later lap");
        let victim = victim.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            TEST_STAMP_KEY.state(ring.stamp_at(victim).load(Ordering::Relaxed), victim),
            Some(STATE_COMMITTED),
            "the later lap's stamp is back"
        );
        // The later lap's entry: delivered intact, or reported as corrupt.
        let (delivered, reported) = drain_reporting(&ring, 8);
        assert!(
            delivered == [(victim, payload.to_vec())] || (delivered.is_empty() && reported > 0),
            "delivered {delivered:?}, reported {reported}"
        );
        assert_eq!(ring.counters().corrupt, reported);
    }

    const BATCH: [&[u8]; 3] = [b"one", b"two", b"three"];

    /// What readers do to a producer stopped at a hook: a pop that starts the stall
    /// clock, then, for each step, the clock past the abandon timeout and another pop
    /// (which abandons or skips what `step` says). None of them finds an entry.
    fn readers_give_up(ring: &RawRing<HeapRegion>, mono: &StdU64, steps: &[&str]) {
        assert_eq!(pop(ring), None, "the stall clock starts");
        for (i, step) in steps.iter().enumerate() {
            mono.store(100 * (i as u64 + 1), std::sync::atomic::Ordering::Relaxed);
            assert_eq!(pop(ring), None, "{step}");
        }
    }

    /// Pushes `BATCH` (readers give up on part of it at a hook the caller set) and
    /// checks that every entry is then delivered once, in order, with the counters
    /// `(pushed, popped, abandoned)` adding up. Returns the entries' IDs.
    fn batch_pushed_again(ring: &RawRing<HeapRegion>, counters: (u64, u64, u64)) -> Vec<u64> {
        assert_eq!(ring.push_batch(&BATCH, 0).unwrap(), 3);
        let got: Vec<(u64, Vec<u8>)> = std::iter::from_fn(|| pop(ring)).collect();
        assert_eq!(
            got.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            BATCH
        );
        let c = ring.counters();
        assert_eq!((c.pushed, c.popped, c.abandoned), counters, "{c:?}");
        assert_eq!(ring.len(), 0);
        got.into_iter().map(|(id, _)| id).collect()
    }

    /// A batch's producer stalled between its claims and its commits for longer than
    /// the abandon timeout: readers abandon its first records, its first commit fails,
    /// and the rest of the claimed batch is abandoned too, so that pushing the batch
    /// again keeps the order. Every entry is delivered once and the counters add up.
    #[test]
    fn batch_abandoned_before_its_commits_is_pushed_again_in_order() {
        let (ring, _, mono) = per_record_ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                // After one timeout, the record and the two claimed by the same
                // process right behind it (DESIGN: Batches).
                readers_give_up(&ring, &mono, &["abandons the three records"]);
                assert_eq!(ring.counters().abandoned, 3);
            });
        }
        batch_pushed_again(&ring, (6, 3, 3));
    }

    /// A producer stalled past the timeout before its commit loses its record to a
    /// reader and pushes the entry again, reserving right where the abandoned record
    /// ended. The reader's abandon chain must not take that retry for the rest of the
    /// abandoned batch: it waits for it like any record being written.
    #[test]
    fn retry_of_an_abandoned_producer_is_not_abandoned_with_its_first_record() {
        let (ring, _, mono) = per_record_ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                readers_give_up(&ring, &mono, &["abandons the record"]);
                assert_eq!(ring.counters().abandoned, 1);
                let reader = ring.clone();
                // At the retry's commit: a reader polls the head, which is the retry,
                // claimed right behind the abandoned record by the same process.
                at_point("batch-before-commit", move || {
                    assert_eq!(pop(&reader), None, "the retry is being written");
                    assert_eq!(reader.counters().abandoned, 1, "the retry was abandoned");
                });
            });
        }
        assert_eq!(ring.push_batch(&[b"entry"], 0).unwrap(), 1);
        assert_eq!(pop(&ring).map(|(_, data)| data), Some(b"entry".to_vec()));
        assert_eq!(ring.counters().abandoned, 1);
    }

    /// A reader abandons a batch's first record while its producer is still claiming
    /// the others (so they are not abandoned with it): the first commit fails, and the
    /// producer must abandon the records it claimed after it rather than commit them,
    /// or they would be delivered ahead of the first entry's retry.
    #[test]
    fn batch_whose_first_record_was_abandoned_during_its_claims_keeps_its_order() {
        let (ring, _, mono) = per_record_ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            // Armed at the first claim, run at the second: record 0 is claimed.
            at_point("batch-before-claim", move || {
                at_point("batch-before-claim", move || {
                    readers_give_up(&ring, &mono, &["abandons record 0 only"]);
                    assert_eq!(ring.counters().abandoned, 1);
                });
            });
        }
        batch_pushed_again(&ring, (6, 3, 3));
    }

    /// A batch's producer stalled before claiming its second record, long enough for
    /// a reader to abandon the first and skip the unclaimed rest: the second claim
    /// fails, the third record (poisoned by that skip) is given back, the first record
    /// (abandoned by the reader) is not written, and the whole batch is pushed again
    /// in order.
    #[test]
    fn batch_whose_unclaimed_records_were_skipped_is_pushed_again_in_order() {
        let (ring, _, mono) = per_record_ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            // The first claim (record 0) arms the hook for the second (record 1).
            at_point("claim-after-read-check", move || {
                at_point("claim-after-read-check", move || {
                    readers_give_up(&ring, &mono, &["abandons record 0", "skips 1 and 2"]);
                    assert_eq!(ring.counters().abandoned, 2);
                });
            });
        }
        // Counted: the first reservation 1 + its claimed record 1, then 3.
        batch_pushed_again(&ring, (5, 3, 2));
    }

    /// The same before the padding a batch needs at the end of a lap: a reader skips
    /// the unclaimed padding and the records behind it, the padding claim fails, every
    /// record is given back, and the batch is pushed again after the skipped range.
    #[test]
    fn batch_whose_padding_was_skipped_is_pushed_again_in_order() {
        batch_whose_padding_was_skipped_is_pushed_again_in_order_in(ring(4096, Policy::Reject));
        batch_whose_padding_was_skipped_is_pushed_again_in_order_in(per_record_ring(
            4096,
            Policy::Reject,
        ));
    }

    fn batch_whose_padding_was_skipped_is_pushed_again_in_order_in(
        (ring, _, mono): (RawRing<HeapRegion>, Arc<StdU64>, Arc<StdU64>),
    ) {
        let ring = Arc::new(ring);
        for len in [1992, 1944] {
            ring.push(&vec![0u8; len], 0).unwrap(); // 2048 + 2000 bytes: 48 are left
            assert!(pop(&ring).is_some());
        }
        {
            let ring = ring.clone();
            at_point("claim-after-read-check", move || {
                readers_give_up(&ring, &mono, &["skips the padding and the records"]);
                assert_eq!(ring.counters().abandoned, 1);
            });
        }
        // Counted: 2 fillers, 1 for the first reservation (the skip's one), then 3.
        let ids = batch_pushed_again(&ring, (6, 5, 1));
        assert!(
            ids[0] > 4096,
            "pushed again after the skipped range: {ids:?}"
        );
    }

    /// A batch's producer stopped between two claims long enough for readers to
    /// abandon its first record, skip the rest, and the ring to lap. Its second claim
    /// fails, which proves the first record was abandoned: it must not write that
    /// record, whose space now holds newer entries, and it pushes the batch again.
    #[test]
    fn batch_whose_claim_failed_writes_nothing_into_reused_space() {
        let (ring, _, mono) = per_record_ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        let big = vec![0xaa_u8; 1000]; // record 0: [0, 1056); record 1: [1056, 1120)
        {
            let ring = ring.clone();
            at_point("batch-before-claim", move || {
                at_point("batch-before-claim", move || {
                    readers_give_up(&ring, &mono, &["abandons record 0", "skips record 1"]);
                    for len in [1432, 1432] {
                        ring.push(&vec![1u8; len], 0).unwrap(); // to the end of the lap
                        assert!(pop(&ring).is_some());
                    }
                    for i in 0..20u8 {
                        ring.push(&[i; 8], 0).unwrap(); // offsets [0, 1280) of the next lap
                    }
                    assert!(ring.lapped(1056));
                });
            });
        }
        assert_eq!(ring.push_batch(&[&big[..], b"x"], 0).unwrap(), 2);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while ring.pop_into(&mut buf).expect("no damaged entry").is_some() {
            got.push(buf.clone());
        }
        let mut want: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 8]).collect();
        want.extend([big, b"x".to_vec()]);
        assert_eq!(got, want);
        let c = ring.counters();
        assert_eq!(c.pushed, c.popped + c.abandoned, "{c:?}");
    }

    /// A batch run is one claim and one commit: while its producer is between them,
    /// readers find nothing (not the records stamped `BATCHED` behind the claimed
    /// first one) and `verify` sees one claimed range; after the commit all of it.
    #[test]
    fn batch_run_is_invisible_until_its_first_record_commits() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                let second = format::record_len(3);
                assert_eq!(
                    TEST_STAMP_KEY.state(ring.stamp_at(second).load(Ordering::Relaxed), second),
                    Some(STATE_BATCHED)
                );
                assert_eq!(pop(&ring), None);
                let (mut data, mut metas) = (Vec::new(), Vec::new());
                assert_eq!(ring.pop_batch(&mut data, &mut metas, 10).unwrap(), 0);
                let mut spans = Vec::new();
                let walk = ring.check(false, &mut |span| spans.push((span.len, span.kind)));
                assert!(walk.problems.is_empty(), "{:?}", walk.problems);
                assert_eq!(walk.entries, 0);
                let run_len: u64 = BATCH
                    .iter()
                    .map(|d| format::record_len(d.len() as u32))
                    .sum();
                assert_eq!(spans, [(run_len, check::SpanKind::Claimed)]);
            });
        }
        assert_eq!(ring.push_batch(&BATCH, 0).unwrap(), 3);
        assert_eq!(ring.check(false, &mut |_| {}).entries, 3);
        let (mut data, mut metas) = (Vec::new(), Vec::new());
        assert_eq!(ring.pop_batch(&mut data, &mut metas, 10).unwrap(), 3);
        assert_eq!(data, b"onetwothree");
        let c = ring.counters();
        assert_eq!((c.pushed, c.popped), (3, 3));
    }

    /// The layout of a batch run, as FORMAT.md's example under "Batch runs" shows it:
    /// the first record claims the run, the others are stamped BATCHED.
    #[test]
    fn batch_run_is_laid_out_as_format_md_shows() {
        let (ring, ..) = ring(4096, Policy::Reject);
        assert_eq!(ring.push_batch(&[&b"a"[..], b"bb", b"ccc"], 0).unwrap(), 3);
        let word = |off: usize| ring.word(HEADER_LEN + off).load(Ordering::Relaxed);
        let words: Vec<(u64, u32)> = [0, 64, 128]
            .iter()
            .map(|&at| {
                let stamp = word(at) ^ TEST_STAMP_KEY.bits();
                (stamp, format::claim_data_len(word(at + 8)))
            })
            .collect();
        assert_eq!(words, [(2, 136), (71, 2), (135, 3)]);
    }

    /// A batch longer than `56 + max_data` bytes is written as several runs, so that
    /// every run's claim is a length readers accept.
    #[test]
    fn batch_longer_than_a_claim_can_say_is_split_into_runs() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let entries = vec![[7u8; 200]; 12]; // 256 bytes each: 3072 in all
        assert_eq!(ring.push_batch(&entries, 0).unwrap(), 12);
        let word = |off: u64| ring.word(HEADER_LEN + off as usize).load(Ordering::Relaxed);
        let records: Vec<(u64, u32)> = (0..12)
            .map(|i| i * 256)
            .map(|at| {
                (
                    word(at) & format::STATE_MASK,
                    format::claim_data_len(word(at + 8)),
                )
            })
            .collect();
        // 56 + max_data = 2048 bytes: eight records, then the other four.
        let mut want = vec![(STATE_COMMITTED, 2048 - 56)];
        want.extend([(STATE_BATCHED, 200); 7]);
        want.push((STATE_COMMITTED, 1024 - 56));
        want.extend([(STATE_BATCHED, 200); 3]);
        assert_eq!(records, want);
        assert_eq!(
            std::iter::from_fn(|| pop(&ring)).count(),
            12,
            "all delivered"
        );
    }

    /// A read-only walk (peek, a subscriber) that meets the marks of a skip still
    /// under way stops at the first word that is not one: the word may be a
    /// reservation that was stale when looked at and is claimed just after (here a
    /// batch run, whose later records are then stamped BATCHED). Scanning on would
    /// step over it to a later record, and a subscriber whose cursor moved there
    /// would never see the reservation's entries, nor count them missed. A finished
    /// skip is stepped over.
    #[test]
    fn peek_stops_at_an_unfinished_skip_in_front_of_a_batch_run() {
        let (ring, ..) = ring(4096, Policy::Reject);
        let (dead, _) = ring.reserve(format::record_len(8)).unwrap(); // never claimed
        assert_eq!(ring.push_batch(&BATCH, 0).unwrap(), 3);
        let after = ring.push(b"after", 0).unwrap();
        let first = dead + format::record_len(8);
        let stamp = |at: u64| ring.stamp_at(at);
        let peeked = |ring: &RawRing<HeapRegion>| {
            let (mut cursor, end) = ring.positions().unwrap();
            let mut buf = Vec::new();
            std::iter::from_fn(|| ring.peek_next(&mut cursor, end, &mut buf).unwrap())
                .map(|meta| meta.id)
                .collect::<Vec<u64>>()
        };
        // What a walk may see: the skip's mark at the head, stale words after it, the
        // run's first stamp not yet claimed, and the run's later records.
        stamp(dead).store(TEST_STAMP_KEY.stamp(dead, STATE_SKIPPED), Ordering::Relaxed);
        stamp(first).store(0, Ordering::Relaxed);
        assert_eq!(peeked(&ring), [0u64; 0], "nothing past an unfinished skip");
        // The skip finished, the run committed: everything.
        for at in (dead..first).step_by(8) {
            stamp(at).store(TEST_STAMP_KEY.stamp(at, STATE_SKIPPED), Ordering::Relaxed);
        }
        stamp(first).store(
            TEST_STAMP_KEY.stamp(first, STATE_COMMITTED),
            Ordering::Relaxed,
        );
        assert_eq!(peeked(&ring), [first, first + 64, first + 128, after]);
    }

    /// A claimed run's first stamp damaged into a stale word while its producer writes
    /// it: readers skip it after the timeout by scanning, and the scan must poison the
    /// run's BATCHED records (never committed) rather than stop at them. The producer's
    /// commit fails and it pushes the batch again: each entry delivered once.
    #[test]
    fn skip_over_a_damaged_claimed_run_does_not_deliver_its_records() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                ring.stamp_at(0).store(0, Ordering::Relaxed); // CLAIMED(0) lost: stale
                readers_give_up(&ring, &mono, &["skips the run, delivering nothing"]);
                let c = ring.counters();
                assert_eq!((c.read_pos, c.abandoned), (c.write_pos, 1), "{c:?}");
            });
        }
        // Counted: the reservation 1 (the skip's one), then 3.
        batch_pushed_again(&ring, (4, 3, 1));
    }

    /// A batch run's producer stopped after its claim for longer than the abandon
    /// timeout: when it resumes, it finds its first record abandoned and writes none
    /// of the rest (that space may be a later lap's by then), and pushes the batch
    /// again.
    #[test]
    fn batch_run_abandoned_while_written_writes_no_more_of_it() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("run-before-record", move || {
                readers_give_up(&ring, &mono, &["abandons the run"]);
            });
        }
        // Counted: the reservation 1 (the reader's abandoned one), then 3.
        let ids = batch_pushed_again(&ring, (4, 3, 1));
        assert_eq!(ids[0], 192, "pushed again after the abandoned run");
        for at in [64, 128] {
            let word = ring.stamp_at(at).load(Ordering::Relaxed);
            assert_eq!(
                TEST_STAMP_KEY.state(word, at),
                None,
                "record at {at} written"
            );
        }
    }

    /// A batch run's producer stalled between its claim and its commit for longer
    /// than the abandon timeout: one reader abandons the first record and steps over
    /// the whole run, none of which is delivered; the commit fails and the producer
    /// pushes the batch again. Every entry is delivered once, in order, and the
    /// counters add up.
    #[test]
    fn batch_run_abandoned_before_its_commit_is_pushed_again_in_order() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                readers_give_up(&ring, &mono, &["abandons the run"]);
                let c = ring.counters();
                assert_eq!(c.abandoned, 1);
                assert_eq!(c.read_pos, c.write_pos, "stepped over the whole run");
            });
        }
        // Counted: the reservation 1 (the reader's abandoned one), then 3.
        batch_pushed_again(&ring, (4, 3, 1));
    }

    /// A batch run's producer stalled before its claim: readers skip the unclaimed
    /// run, the claim fails, the other records are given back, and the batch is pushed
    /// again after the skipped range.
    #[test]
    fn batch_run_whose_claim_failed_is_pushed_again_in_order() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("claim-after-read-check", move || {
                readers_give_up(&ring, &mono, &["skips the unclaimed run"]);
                assert_eq!(ring.counters().abandoned, 1);
            });
        }
        // Counted: 1 for the first reservation (the skip's one), then 3.
        let ids = batch_pushed_again(&ring, (4, 3, 1));
        assert!(ids[0] > 0, "pushed again after the skipped range: {ids:?}");
    }

    /// A damaged header in a batch run's first record costs the whole run, reported
    /// once: the skip over it can't tell the run's later records from those of a run
    /// never committed (its first stamp damaged while it was written), so it takes
    /// them too. The record after the run is delivered.
    #[test]
    fn damaged_first_record_of_a_batch_run_costs_the_run() {
        let (ring, ..) = ring(4096, Policy::Reject);
        assert_eq!(ring.push_batch(&BATCH, 0).unwrap(), 3);
        let after = ring.push(b"after", 0).unwrap();
        // Flip a bit of the first record's TTL, which its meta checksum covers.
        let ttl = ring.word(HEADER_LEN + format::REC_TTL_OFFSET);
        ttl.fetch_xor(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        assert!(matches!(
            ring.pop_into(&mut buf),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        assert_eq!(pop(&ring), None);
        let c = ring.counters();
        assert_eq!((c.pushed, c.popped, c.corrupt), (4, 1, 1));
    }

    /// An abandoned record whose claim word was damaged so that it ends on a
    /// `BATCHED` record is damage: a claim covers a whole reservation, never part of a
    /// run. Stepping by it would deliver records of a run that was never committed.
    #[test]
    fn abandoned_claim_ending_inside_a_run_is_damage() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        let ring = Arc::new(ring);
        {
            let ring = ring.clone();
            at_point("batch-before-commit", move || {
                // The run's claim word now says one record: a flipped bit.
                let claim = ring.word(HEADER_LEN + REC_CLAIM_OFFSET);
                claim.store(format::claim(3, 1), Ordering::Relaxed);
                let mut buf = Vec::new();
                assert_eq!(ring.pop_into(&mut buf).unwrap().map(|m| m.id), None);
                mono.store(100, Ordering::Relaxed);
                match ring.pop_into(&mut buf) {
                    Err(Error::Corrupt { offset, .. }) => {
                        assert_eq!(offset, (HEADER_LEN + REC_CLAIM_OFFSET) as u64)
                    }
                    other => panic!("expected the claim reported, got {other:?}"),
                }
                assert_eq!(ring.pop_into(&mut buf).unwrap().map(|m| m.id), None);
            });
        }
        // Counted: the reservation 1, then 3; the damaged run once abandoned (its
        // mark) and once corrupt (its claim), as any abandoned record whose claim is
        // found damaged.
        let ids = batch_pushed_again(&ring, (4, 3, 1));
        assert!(ids[0] > 0, "{ids:?}");
        assert_eq!(ring.counters().corrupt, 1);
    }

    /// Expired entries inside a batch are removed and counted but not returned, and
    /// the payloads of the others stay in order.
    #[test]
    fn pop_batch_drops_expired_entries_and_keeps_the_rest_in_order() {
        let (ring, wall, _) = ring(4096, Policy::Reject);
        ring.push(b"keep", 0).unwrap();
        ring.push(b"gone", 1).unwrap();
        ring.push(b"kept too", 0).unwrap();
        ring.push(b"gone too", 1).unwrap();
        ring.push(b"last", 5).unwrap();
        wall.store(1000, std::sync::atomic::Ordering::Relaxed);
        let (mut data, mut metas) = (Vec::new(), Vec::new());
        assert_eq!(ring.pop_batch(&mut data, &mut metas, 10).unwrap(), 3);
        let mut at = 0;
        let got: Vec<&[u8]> = metas
            .iter()
            .map(|m| {
                at += m.data_len as usize;
                &data[at - m.data_len as usize..at]
            })
            .collect();
        assert_eq!(got, [&b"keep"[..], b"kept too", b"last"]);
        let c = ring.counters();
        assert_eq!((c.popped, c.expired), (3, 2));
        assert_eq!(ring.len(), 0);
    }

    /// Regression: a reader killed in the middle of a skip left it uncounted, because
    /// the count came after the walk. It is now counted when the head is marked (one
    /// instruction later), and the reader that finishes the walk does not count again.
    #[test]
    fn helped_skip_is_counted_once() {
        let (ring, _, mono) = ring(4096, Policy::Reject);
        ring.reserve(format::record_len(200)).unwrap(); // producer dies before claim
        let after = ring.push(b"after", 0).unwrap();
        assert_eq!(pop(&ring), None);
        mono.store(100, std::sync::atomic::Ordering::Relaxed);
        // Reader A: skip_unknown's head CAS succeeded and counted, then A died in the
        // walk (crash point "skip-mid-scan").
        ring.stamp_at(0)
            .store(TEST_STAMP_KEY.stamp(0, STATE_SKIPPED), Ordering::Relaxed);
        ring.count(ABANDONED_OFFSET);
        assert_eq!(pop(&ring), Some((after, b"after".to_vec())));
        ring.push(b"one", 0).unwrap();
        assert_eq!(
            ring.len(),
            1,
            "one entry in the ring; counters {:?}",
            ring.counters()
        );
        assert_eq!(ring.counters().abandoned, 1);
    }
}
