//! The ring algorithm over a heap region, for the loom models in `tests/loom.rs`.
//! Compiled only under `--cfg loom`; not part of the public API.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;
use crate::format::{HEADER_LEN, Header, Policy};
use crate::region::{HeapRegion, Region};
use crate::ring::{Clock, Params, RawRing};
use crate::sub_table::{SlotRef, SubStep};

/// A clock whose monotonic time advances 1 ms per reading, so a stalled head is
/// abandoned after `abandon_ms` readings: loom explores both sides of the timeout.
/// Its state is outside loom's model (time is not shared memory).
struct TickingClock(AtomicU64);

impl Clock for TickingClock {
    fn wall_ms(&self) -> u64 {
        0
    }
    fn mono_ms(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// A ring over a heap region of `region_len` bytes.
pub struct LoomRing(RawRing<HeapRegion>);

impl LoomRing {
    pub fn new(region_len: u64, overwrite: bool, abandon_ms: u32) -> LoomRing {
        let policy = if overwrite {
            Policy::Overwrite
        } else {
            Policy::Reject
        };
        LoomRing::with_policy(region_len, policy, abandon_ms)
    }

    /// A ring in block mode (`OnFull::Block`): a push waits for room.
    pub fn blocking(region_len: u64, abandon_ms: u32) -> LoomRing {
        LoomRing::with_policy(region_len, Policy::Block, abandon_ms)
    }

    /// A ring of a file without batch runs (`FLAG_BATCH_RUNS` clear), as older
    /// versions made: a batch is written as records of their own.
    pub fn per_record(region_len: u64, abandon_ms: u32) -> LoomRing {
        LoomRing::build(region_len, Policy::Reject, abandon_ms, false)
    }

    fn with_policy(region_len: u64, policy: Policy, abandon_ms: u32) -> LoomRing {
        LoomRing::build(region_len, policy, abandon_ms, true)
    }

    fn build(region_len: u64, policy: Policy, abandon_ms: u32, batch_runs: bool) -> LoomRing {
        let file_len = HEADER_LEN as u64 + region_len;
        let mut header = Header::new(file_len, 0, policy, abandon_ms, 0);
        header.batch_runs = batch_runs;
        // Keyed, as every file mmring creates: any key with bits in every byte.
        header.stamp_key = Some(crate::format::StampKey::from_random(0x6C0B_9E37_79B9_7F4A));
        let region = HeapRegion::new(file_len as usize);
        region.write(0, &header.to_bytes());
        let params = Params::from_header(&header);
        let clock = Box::new(TickingClock(AtomicU64::new(0)));
        let futex = Box::new(crate::wait::LoomFutex::new());
        LoomRing(RawRing::new(region, params, 1, clock, futex).expect("fresh ring"))
    }

    pub fn push(&self, data: &[u8]) -> Result<u64> {
        self.0.push(data, 0)
    }

    /// Pushes, waiting on the futex model while a block-mode ring is full.
    pub fn push_blocking(&self, data: &[u8]) -> Result<u64> {
        loop {
            if let Some(id) = self.0.push_wait(data, 0, None)? {
                return Ok(id);
            }
        }
    }

    /// Pops, waiting on the futex model while the ring is empty.
    pub fn pop_blocking(&self) -> Result<(u64, Vec<u8>)> {
        let mut buf = Vec::new();
        loop {
            if let Some(meta) = self.0.pop_wait(&mut buf, None)? {
                return Ok((meta.id, buf));
            }
        }
    }

    /// The number of registered waiters (0 once every wait has returned).
    pub fn waiters(&self) -> u32 {
        self.0.waiting().waiters.load(crate::sync::Ordering::SeqCst)
    }

    pub fn pop(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut buf = Vec::new();
        Ok(self.0.pop_into(&mut buf)?.map(|m| (m.id, buf)))
    }

    /// Pushes `entries` with one reservation where they fit; how many were pushed.
    pub fn push_batch(&self, entries: &[&[u8]]) -> Result<usize> {
        self.0.push_batch(entries, 0)
    }

    /// Pops up to `max` entries with one move of the read position.
    pub fn pop_batch(&self, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let (mut data, mut metas) = (Vec::new(), Vec::new());
        self.0.pop_batch(&mut data, &mut metas, max)?;
        let mut at = 0;
        Ok(metas
            .iter()
            .map(|meta| {
                let len = meta.data_len as usize;
                at += len;
                (meta.id, data[at - len..at].to_vec())
            })
            .collect())
    }

    /// Every entry a peek from the current read position sees.
    pub fn peek_all(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let (mut cursor, end) = self.0.positions()?;
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(meta) = self.0.peek_next(&mut cursor, end, &mut buf)? {
            out.push((meta.id, buf.clone()));
        }
        Ok(out)
    }

    /// Reserves and claims a record as a producer would, then "dies" before writing it.
    pub fn push_and_die_after_claim(&self, data_len: u32) -> Result<u64> {
        self.0.reserve_and_claim_only(data_len)
    }

    /// Creates (or attaches to) the subscriber `name`.
    pub fn subscribe(&self, name: &str) -> Result<LoomSubscriber> {
        Ok(LoomSubscriber {
            slot: self.0.subscribe(name)?,
            name: name.to_owned(),
        })
    }

    /// One read of a subscriber: an entry, a lap report, or nothing.
    pub fn sub_next(&self, sub: &LoomSubscriber) -> Result<SubRead> {
        let mut buf = Vec::new();
        let mut damaged_at = None;
        Ok(
            match self
                .0
                .sub_next(sub.slot, &sub.name, &mut buf, &mut damaged_at)?
            {
                SubStep::Entry(meta, _) => SubRead::Entry(meta.id, buf),
                SubStep::Lapped(missed) => SubRead::Lapped(missed),
                SubStep::Nothing => SubRead::Nothing,
            },
        )
    }

    pub fn evicted(&self) -> u64 {
        self.0.counters().evicted
    }

    pub fn abandoned(&self) -> u64 {
        self.0.counters().abandoned
    }
}

/// A subscriber of a [`LoomRing`].
pub struct LoomSubscriber {
    slot: SlotRef,
    name: String,
}

/// What one subscriber read returned.
#[derive(Debug, PartialEq, Eq)]
pub enum SubRead {
    Entry(u64, Vec<u8>),
    Lapped(u64),
    Nothing,
}
