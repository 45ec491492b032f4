//! The subscriber table in the ring header: claiming and releasing named slots, each
//! subscriber's shared cursor, and what every removal does to the cursors it passes.
//!
//! Like `ring.rs`, this is algorithm over a [`Region`], without system calls. The
//! invariant it keeps (DESIGN: Subscribers): an active subscriber's cursor is never
//! behind `read_pos`, because every removal first moves the cursors that sit in the
//! range it removes, counting the entry as missed for them if it was popped or
//! evicted. A subscriber and a removal race for the cursor with CAS: the winner
//! decides whether the entry was delivered or missed, so the count is exact.

use crate::format::{
    self, READ_POS_OFFSET, SUB_ACTIVE_MS_OFFSET, SUB_COMMITTED_OFFSET, SUB_CURSOR_OFFSET,
    SUB_MASK_OFFSET, SUB_MISSED_OFFSET, SUB_NAME_LEN_OFFSET, SUB_NAME_MAX, SUB_NAME_OFFSET,
    SUB_REPORTED_OFFSET, SUB_SLOT_COUNT, SUB_STATE_ACTIVE, SUB_STATE_CLAIMING, SUB_STATE_FREE,
    SUB_STATE_MASK, SUB_STATE_OFFSET, sub_field_off,
};
use crate::region::Region;
use crate::ring::RawRing;
use crate::sync::{self, AtomicU64, Ordering};
use crate::{Error, Result};

/// How long a slot may stay `CLAIMING` before another subscribe call takes it back:
/// a claim takes microseconds, so a slot stuck that long belongs to a process that
/// died inside `subscribe`.
const CLAIM_TIMEOUT_MS: u64 = 1000;

/// Bits of the mask that name real slots; others (damage) are ignored.
const MASK_BITS: u64 = (1 << SUB_SLOT_COUNT) - 1;

/// A handle's attachment to a slot: which slot, and its state word when attached
/// (a different word later means the subscriber was removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotRef {
    pub slot: usize,
    pub state: u64,
}

/// One active subscriber, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotInfo {
    pub name: String,
    pub cursor: u64,
    pub committed: u64,
    pub missed: u64,
    pub reported: u64,
    pub active_ms: u64,
}

/// What one step of a subscriber's walk found.
pub(crate) enum SubStep {
    /// An entry (its payload is in the caller's buffer) and the cursor after it.
    Entry(format::RecordMeta, u64),
    /// Removals passed the cursor: this many unreported entries were missed.
    Lapped(u64),
    /// Nothing to read now.
    Nothing,
}

/// Whether any subscriber exists (one load).
pub(crate) fn any<R: Region>(region: &R) -> bool {
    // SYNC(sub-mask): as in `pass`.
    region.atomic(SUB_MASK_OFFSET).load(Ordering::Acquire) & MASK_BITS != 0
}

/// Moves every subscriber cursor inside `[from, to)` to `to`, before `read_pos`
/// moves there. A cursor exactly at `from` with `entry` set counts one missed entry.
/// Called by every removal; one load when no subscriber exists.
pub(crate) fn pass<R: Region>(region: &R, from: u64, to: u64, entry: bool) {
    // SYNC(sub-mask): Acquire pairs with the Release fetch_or of a new subscriber.
    let mut mask = region.atomic(SUB_MASK_OFFSET).load(Ordering::Acquire) & MASK_BITS;
    while mask != 0 {
        let slot = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        let cursor = region.atomic(sub_field_off(slot, SUB_CURSOR_OFFSET));
        let mut at = cursor.load(Ordering::Acquire);
        while (from..to).contains(&at) {
            // SYNC(sub-cursor): the winner of this CAS and the subscriber's own CAS
            // from `at` decides whether the entry was delivered or missed.
            match cursor.compare_exchange(at, to, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if entry && at == from {
                        region
                            .atomic(sub_field_off(slot, SUB_MISSED_OFFSET))
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(actual) => at = actual,
            }
        }
    }
}

fn state_of(word: u64) -> u64 {
    word & SUB_STATE_MASK
}

impl<R: Region> RawRing<R> {
    fn slot_word(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word(sub_field_off(slot, field))
    }

    /// The name of an active slot whose state word is `word`, if it is still that
    /// word after the copy (the name is written before the slot is published, and
    /// only changes after it is released).
    fn slot_name(&self, slot: usize, word: u64) -> Option<Vec<u8>> {
        let len_word = self
            .slot_word(slot, SUB_NAME_LEN_OFFSET)
            .load(Ordering::Relaxed);
        let len = usize::try_from(len_word & 0xffff_ffff).ok()?;
        if !(1..=SUB_NAME_MAX).contains(&len) {
            return None;
        }
        let mut name = vec![0u8; len];
        self.region()
            .read(sub_field_off(slot, SUB_NAME_OFFSET), &mut name);
        // SYNC(seqlock): the copy is stable iff the state word did not change.
        sync::fence(Ordering::Acquire);
        (self
            .slot_word(slot, SUB_STATE_OFFSET)
            .load(Ordering::Relaxed)
            == word)
            .then_some(name)
    }

    fn read_pos_now(&self) -> u64 {
        self.word(READ_POS_OFFSET).load(Ordering::Acquire)
    }

    /// Attaches to the subscriber called `name`, creating it (with its cursor at the
    /// oldest live entry) if there is none. An existing subscriber's cursor is moved
    /// back to its last commit. DESIGN: Subscribers.
    pub(crate) fn subscribe(&self, name: &str) -> Result<SlotRef> {
        let name = name.as_bytes();
        if !(1..=SUB_NAME_MAX).contains(&name.len()) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "subscriber name of {} bytes; names are 1 to {SUB_NAME_MAX} bytes",
                    name.len()
                ),
            });
        }
        let crc = crc32c::crc32c(name);
        // CLAIMING slots first seen by this call, with the word and when.
        let mut claiming: Vec<(usize, u64, u64)> = Vec::new();
        loop {
            let mut free = None;
            let mut same_name_claiming = false;
            for slot in 0..SUB_SLOT_COUNT {
                // SeqCst here and on the claim CAS below: two calls claiming slots for
                // one name must not both miss the other's claim (DESIGN: Subscribers).
                let word = self
                    .slot_word(slot, SUB_STATE_OFFSET)
                    .load(Ordering::SeqCst);
                match state_of(word) {
                    SUB_STATE_ACTIVE
                        if format::sub_name_crc(word) == crc
                            && self.slot_name(slot, word).as_deref() == Some(name) =>
                    {
                        return Ok(self.attach(slot, word));
                    }
                    SUB_STATE_CLAIMING => {
                        same_name_claiming |= format::sub_name_crc(word) == crc;
                        self.reclaim_if_stuck(slot, word, &mut claiming);
                    }
                    SUB_STATE_FREE => {
                        free.get_or_insert((slot, word));
                    }
                    _ => {}
                }
            }
            if same_name_claiming {
                // Someone is creating a subscriber with this name (or one with the
                // same checksum): wait for it, then look again.
                sync::yield_now();
                continue;
            }
            let Some((slot, word)) = free else {
                if claiming.is_empty() {
                    return Err(Error::SubscriberTableFull {
                        slots: SUB_SLOT_COUNT,
                    });
                }
                // Slots being claimed may be given back, or be stuck (reclaimed above
                // after CLAIM_TIMEOUT_MS).
                sync::yield_now();
                continue;
            };
            if let Some(slot_ref) = self.claim_slot(slot, word, name, crc) {
                return Ok(slot_ref);
            }
        }
    }

    /// Takes a slot back from a subscribe call that has been claiming it for longer
    /// than `CLAIM_TIMEOUT_MS`, as this call measures it.
    fn reclaim_if_stuck(&self, slot: usize, word: u64, seen: &mut Vec<(usize, u64, u64)>) {
        let now = self.mono_ms();
        match seen.iter_mut().find(|(s, ..)| *s == slot) {
            Some(entry) if entry.1 != word => *entry = (slot, word, now),
            Some(entry) => {
                if now.saturating_sub(entry.2) >= CLAIM_TIMEOUT_MS {
                    let free =
                        format::sub_state(SUB_STATE_FREE, format::sub_generation(word) + 1, 0);
                    let _ = self.slot_word(slot, SUB_STATE_OFFSET).compare_exchange(
                        word,
                        free,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    );
                    seen.retain(|(s, ..)| *s != slot);
                }
            }
            None => seen.push((slot, word, now)),
        }
    }

    /// Claims the free slot `slot` (state word `word`) for `name`, fills it and
    /// publishes it; `None` if another call got the slot, or is creating the same
    /// name in a lower slot (the lower slot wins).
    fn claim_slot(&self, slot: usize, word: u64, name: &[u8], crc: u32) -> Option<SlotRef> {
        let state = self.slot_word(slot, SUB_STATE_OFFSET);
        let generation = format::sub_generation(word) + 1;
        let claimed = format::sub_state(SUB_STATE_CLAIMING, generation, crc);
        state
            .compare_exchange(word, claimed, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        if !self.won_claim(slot, name, crc) {
            let free = format::sub_state(SUB_STATE_FREE, generation + 1, 0);
            let _ = state.compare_exchange(claimed, free, Ordering::SeqCst, Ordering::Relaxed);
            return None;
        }
        let mut name_bytes = [0u8; SUB_NAME_MAX];
        name_bytes[..name.len()].copy_from_slice(name);
        self.region()
            .write(sub_field_off(slot, SUB_NAME_OFFSET), &name_bytes);
        self.slot_word(slot, SUB_NAME_LEN_OFFSET)
            .store(name.len() as u64, Ordering::Relaxed);
        let start = self.read_pos_now();
        for (field, value) in [
            (SUB_CURSOR_OFFSET, start),
            (SUB_COMMITTED_OFFSET, start),
            (SUB_MISSED_OFFSET, 0),
            (SUB_REPORTED_OFFSET, 0),
            (SUB_ACTIVE_MS_OFFSET, self.wall_ms()),
        ] {
            self.slot_word(slot, field).store(value, Ordering::Relaxed);
        }
        let active = format::sub_state(SUB_STATE_ACTIVE, generation, crc);
        // SYNC(sub-publish): Release publishes the name and cursors to anyone who
        // Acquires the ACTIVE word. A CAS, because a claim stalled past
        // CLAIM_TIMEOUT_MS may have been taken back.
        state
            .compare_exchange(claimed, active, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        self.set_mask_bit(slot);
        Some(SlotRef {
            slot,
            state: active,
        })
    }

    /// After claiming `slot` for `name`: whether to keep it. Another slot `ACTIVE`
    /// with the same name, or `CLAIMING` with the same checksum at a lower index,
    /// wins; one `CLAIMING` at a higher index is waited for (it either sees us and
    /// gives its slot back, or becomes `ACTIVE`, and then it wins). Of two claims,
    /// at least one sees the other (their CASes and loads are all SeqCst), so two
    /// claims for one name never both win (DESIGN: Subscribers).
    fn won_claim(&self, slot: usize, name: &[u8], crc: u32) -> bool {
        let mut claiming: Vec<(usize, u64, u64)> = Vec::new();
        loop {
            let mut wait = false;
            for other in (0..SUB_SLOT_COUNT).filter(|other| *other != slot) {
                let word = self
                    .slot_word(other, SUB_STATE_OFFSET)
                    .load(Ordering::SeqCst);
                if format::sub_name_crc(word) != crc {
                    continue;
                }
                match state_of(word) {
                    SUB_STATE_ACTIVE if self.slot_name(other, word).as_deref() == Some(name) => {
                        return false;
                    }
                    SUB_STATE_CLAIMING if other < slot => return false,
                    SUB_STATE_CLAIMING => {
                        wait = true;
                        self.reclaim_if_stuck(other, word, &mut claiming);
                    }
                    _ => {}
                }
            }
            if !wait {
                return true;
            }
            sync::yield_now();
        }
    }

    fn set_mask_bit(&self, slot: usize) {
        // SYNC(sub-mask): Release pairs with the Acquire load in `pass`.
        self.word(SUB_MASK_OFFSET)
            .fetch_or(1 << slot, Ordering::AcqRel);
    }

    /// Attaches to an existing subscriber: its cursor goes back to its last commit
    /// (or to the oldest live entry, if that was removed since).
    fn attach(&self, slot: usize, word: u64) -> SlotRef {
        let committed = self
            .slot_word(slot, SUB_COMMITTED_OFFSET)
            .load(Ordering::Acquire);
        let start = committed.max(self.read_pos_now());
        self.slot_word(slot, SUB_CURSOR_OFFSET)
            .store(start, Ordering::Release);
        self.slot_word(slot, SUB_ACTIVE_MS_OFFSET)
            .store(self.wall_ms(), Ordering::Relaxed);
        self.set_mask_bit(slot);
        SlotRef { slot, state: word }
    }

    /// Removes the subscriber called `name`; false if there is none.
    pub(crate) fn unsubscribe(&self, name: &str) -> Result<bool> {
        let crc = crc32c::crc32c(name.as_bytes());
        for slot in 0..SUB_SLOT_COUNT {
            let word = self
                .slot_word(slot, SUB_STATE_OFFSET)
                .load(Ordering::SeqCst);
            if state_of(word) != SUB_STATE_ACTIVE
                || format::sub_name_crc(word) != crc
                || self.slot_name(slot, word).as_deref() != Some(name.as_bytes())
            {
                continue;
            }
            let free = format::sub_state(SUB_STATE_FREE, format::sub_generation(word) + 1, 0);
            if self
                .slot_word(slot, SUB_STATE_OFFSET)
                .compare_exchange(word, free, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.word(SUB_MASK_OFFSET)
                    .fetch_and(!(1 << slot), Ordering::AcqRel);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every active subscriber, in slot order.
    pub(crate) fn subscribers(&self) -> Vec<SlotInfo> {
        (0..SUB_SLOT_COUNT)
            .filter_map(|slot| {
                let word = self
                    .slot_word(slot, SUB_STATE_OFFSET)
                    .load(Ordering::Acquire);
                if state_of(word) != SUB_STATE_ACTIVE {
                    return None;
                }
                let load = |field| self.slot_word(slot, field).load(Ordering::Relaxed);
                let info = SlotInfo {
                    cursor: load(SUB_CURSOR_OFFSET),
                    committed: load(SUB_COMMITTED_OFFSET),
                    missed: load(SUB_MISSED_OFFSET),
                    reported: load(SUB_REPORTED_OFFSET),
                    active_ms: load(SUB_ACTIVE_MS_OFFSET),
                    name: String::new(),
                };
                let name = self.slot_name(slot, word)?;
                Some(SlotInfo {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    ..info
                })
            })
            .collect()
    }

    /// Checks that the handle's subscriber still exists.
    fn check_attached(&self, sub: SlotRef, name: &str) -> Result<()> {
        let word = self
            .slot_word(sub.slot, SUB_STATE_OFFSET)
            .load(Ordering::Acquire);
        if word != sub.state {
            return Err(Error::NotSubscribed { name: name.into() });
        }
        Ok(())
    }

    /// The subscriber's next step: a report of missed entries, the next entry (its
    /// payload copied into `buf`), or nothing. `damaged_at` remembers the cursor at
    /// which a damaged record was reported, so it is reported once.
    pub(crate) fn sub_next(
        &self,
        sub: SlotRef,
        name: &str,
        buf: &mut Vec<u8>,
        damaged_at: &mut Option<u64>,
    ) -> Result<SubStep> {
        self.check_attached(sub, name)?;
        if self.word(SUB_MASK_OFFSET).load(Ordering::Relaxed) & (1 << sub.slot) == 0 {
            // Cleared by an unsubscribe racing a re-subscribe: removals must see us.
            self.set_mask_bit(sub.slot);
        }
        let missed = self.slot_word(sub.slot, SUB_MISSED_OFFSET);
        let reported = self.slot_word(sub.slot, SUB_REPORTED_OFFSET);
        loop {
            let total = missed.load(Ordering::Acquire);
            let done = reported.load(Ordering::Acquire);
            if total > done {
                if reported
                    .compare_exchange(done, total, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(SubStep::Lapped(total - done));
                }
                continue;
            }
            let cursor_word = self.slot_word(sub.slot, SUB_CURSOR_OFFSET);
            let cursor = cursor_word.load(Ordering::Acquire);
            let (read, end) = self.positions()?;
            if !cursor.is_multiple_of(8) || cursor > end {
                // Not a position this ring has reached: damage. Start over at the
                // oldest live entry, and say so.
                let _ =
                    cursor_word.compare_exchange(cursor, read, Ordering::AcqRel, Ordering::Relaxed);
                return Err(Error::corrupt(
                    sub_field_off(sub.slot, SUB_CURSOR_OFFSET) as u64,
                    format!(
                        "subscriber {name:?}: cursor {cursor} is not a record position \
                         up to the write position {end}; moved to the oldest live entry"
                    ),
                ));
            }
            if cursor < read {
                // Only when the subscriber was created or re-attached while a removal
                // was under way: that removal did not see it (DESIGN: Subscribers).
                let _ =
                    cursor_word.compare_exchange(cursor, read, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            let mut walk = cursor;
            match self.peek_next(&mut walk, end, buf) {
                Ok(Some(meta)) => {
                    // SYNC(sub-cursor): delivered iff no removal moved the cursor.
                    if cursor_word
                        .compare_exchange(cursor, walk, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        *damaged_at = None;
                        self.slot_word(sub.slot, SUB_ACTIVE_MS_OFFSET)
                            .store(self.wall_ms(), Ordering::Relaxed);
                        return Ok(SubStep::Entry(meta, walk));
                    }
                }
                Ok(None) => {
                    // The walk may have started from a stale read_pos and met the
                    // stamp of a later lap at the cursor (the record there was evicted
                    // meanwhile): then read_pos has passed the cursor; look again.
                    if walk == cursor && self.read_pos_now() > cursor {
                        continue;
                    }
                    if walk > cursor {
                        // Stepped over padding, abandoned or expired records.
                        let _ = cursor_word.compare_exchange(
                            cursor,
                            walk,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                    return Ok(SubStep::Nothing);
                }
                Err(e) => {
                    // A damaged record: reported once, then the subscriber waits at it
                    // until a removal (a pop, or an overwriting push) moves it on.
                    if *damaged_at == Some(cursor) {
                        return Ok(SubStep::Nothing);
                    }
                    *damaged_at = Some(cursor);
                    return Err(e);
                }
            }
        }
    }

    /// Records `position` (the cursor after an entry the handle returned) as the
    /// subscriber's last commit, where a restart resumes.
    pub(crate) fn sub_commit(&self, sub: SlotRef, name: &str, position: u64) -> Result<()> {
        self.check_attached(sub, name)?;
        self.slot_word(sub.slot, SUB_COMMITTED_OFFSET)
            .fetch_max(position, Ordering::AcqRel);
        self.slot_word(sub.slot, SUB_ACTIVE_MS_OFFSET)
            .store(self.wall_ms(), Ordering::Relaxed);
        Ok(())
    }
}
