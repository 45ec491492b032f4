//! Reading a ring without consuming it: named, persistent [`Subscriber`]s whose
//! cursors live in the ring file, and the in-memory [`Follower`].

use std::time::{Duration, Instant, SystemTime};

use crate::entry::{Entry, EntryInfo};
use crate::sub_table::{SlotRef, SubStep};
use crate::{Error, Result, Ring};

/// A named reader with its own cursor, stored in the ring file: it sees every entry
/// in push order without removing it, while [`Ring::pop`] keeps its queue semantics
/// for everyone else. Created by [`Ring::subscribe`].
///
/// - **Persistent**: the cursor survives the handle and the process. After
///   [`commit`](Subscriber::commit), a later `subscribe` with the same name (in any
///   process) resumes after the last committed entry: at-least-once delivery.
/// - **Lapping**: entries that leave the ring before the subscriber reads them
///   (popped, or evicted by an overwriting push) are counted exactly; the next read
///   returns [`Error::Lapped`] with that count, and the read after it continues with
///   the oldest live entry. Expired entries are skipped without counting.
/// - **Never blocks producers**: a subscriber holds no space; in
///   [`OnFull::Reject`](crate::OnFull::Reject) and [`OnFull::Block`](crate::OnFull::Block)
///   rings only pops free it.
/// - **Shared**: handles of the same name (in one process or several) share the cursor,
///   so each entry goes to one of them.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), mmring::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let ring = mmring::Options::new().create(dir.path().join("r"))?;
/// ring.push(b"a")?;
/// let mut audit = ring.subscribe("audit")?;
/// assert_eq!(audit.next()?.unwrap().data(), b"a");
/// audit.commit()?;
/// assert_eq!(ring.len(), 1, "subscribers don't remove entries");
/// assert!(audit.next()?.is_none());
/// # Ok(()) }
/// ```
pub struct Subscriber<'a> {
    ring: &'a Ring,
    name: String,
    slot: SlotRef,
    /// Cursor after the last entry this handle returned, for `commit`.
    read_up_to: Option<u64>,
    /// Cursor at which a damaged record was last reported.
    damaged_at: Option<u64>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Subscriber<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.name)
            .field("slot", &self.slot.slot)
            .finish_non_exhaustive()
    }
}

impl<'a> Subscriber<'a> {
    pub(crate) fn new(ring: &'a Ring, name: &str, slot: SlotRef) -> Subscriber<'a> {
        Subscriber {
            ring,
            name: name.to_owned(),
            slot,
            read_up_to: None,
            damaged_at: None,
            buf: Vec::new(),
        }
    }

    /// The subscriber's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the next entry without removing it; `None` when the subscriber has
    /// read everything ready now.
    ///
    /// # Errors
    /// [`Error::Lapped`] once after entries were removed before this subscriber read
    /// them (the next call continues); [`Error::Corrupt`] once for a damaged record
    /// (the subscriber then waits there until a pop or an overwriting push removes
    /// it); [`Error::NotSubscribed`] if the subscriber was unsubscribed meanwhile.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), mmring::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
    /// let mut sub = ring.subscribe("s")?;
    /// assert!(sub.next()?.is_none());
    /// ring.push(b"x")?;
    /// assert_eq!(sub.next()?.unwrap().data(), b"x");
    /// # Ok(()) }
    /// ```
    // Not `Iterator::next`: "nothing yet" (`Ok(None)`) is not the end of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry>> {
        let raw = &self.ring.raw;
        match raw.sub_next(self.slot, &self.name, &mut self.buf, &mut self.damaged_at)? {
            SubStep::Entry(meta, after) => {
                self.read_up_to = Some(after);
                Ok(Some(Entry::new(
                    EntryInfo::from(meta),
                    std::mem::take(&mut self.buf),
                )))
            }
            SubStep::Lapped(missed) => Err(Error::Lapped { missed }),
            SubStep::Nothing => Ok(None),
        }
    }

    /// Like [`next`](Subscriber::next), but waits up to `timeout` for an entry,
    /// asleep (no CPU) after a brief spin; `None` if none came.
    ///
    /// # Errors
    /// As [`next`](Subscriber::next).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), mmring::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use std::time::Duration;
    /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
    /// let mut sub = ring.subscribe("s")?;
    /// assert!(sub.next_timeout(Duration::from_millis(10))?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Entry>> {
        let deadline = Instant::now().checked_add(timeout);
        let ring = self.ring;
        ring.raw.waiting().until(deadline, || self.next())
    }

    /// Persists the cursor after the last entry this handle returned, so that a
    /// later [`Ring::subscribe`] of this name resumes there. Entries read but not
    /// committed are read again after a restart (at-least-once). Does nothing if this
    /// handle has returned no entry.
    ///
    /// # Errors
    /// [`Error::NotSubscribed`] if the subscriber was unsubscribed meanwhile.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), mmring::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
    /// ring.push(b"1")?;
    /// ring.push(b"2")?;
    /// let mut sub = ring.subscribe("s")?;
    /// sub.next()?;
    /// sub.commit()?;
    /// sub.next()?; // read, not committed
    /// drop(sub);
    /// let mut again = ring.subscribe("s")?;
    /// assert_eq!(again.next()?.unwrap().data(), b"2");
    /// # Ok(()) }
    /// ```
    pub fn commit(&mut self) -> Result<()> {
        match self.read_up_to {
            Some(position) => self.ring.raw.sub_commit(self.slot, &self.name, position),
            None => Ok(()),
        }
    }
}

/// One subscriber of a ring, as [`Ring::subscribers`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberInfo {
    /// Its name.
    pub name: String,
    /// Position (an entry ID, or the position after the newest entry) it reads next.
    pub position: u64,
    /// Position where a restart resumes (its last commit).
    pub committed: u64,
    /// Entries it missed in all (removed before it read them).
    pub missed: u64,
    /// Part of `missed` not yet reported to it by [`Error::Lapped`].
    pub unreported: u64,
    /// When it last read, committed or subscribed.
    pub last_active: SystemTime,
}

impl From<crate::sub_table::SlotInfo> for SubscriberInfo {
    fn from(slot: crate::sub_table::SlotInfo) -> SubscriberInfo {
        SubscriberInfo {
            name: slot.name,
            position: slot.cursor,
            committed: slot.committed,
            missed: slot.missed,
            unreported: slot.missed.saturating_sub(slot.reported),
            last_active: SystemTime::UNIX_EPOCH + Duration::from_millis(slot.active_ms),
        }
    }
}

/// A reader that follows a ring from the oldest live entry without removing
/// anything, with its cursor in memory only (nothing is written to the file).
/// Created by [`Ring::follow`]. Entries removed before it reads them are skipped
/// silently; use a [`Subscriber`] to have them counted, or to persist the cursor.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), mmring::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # use std::time::Duration;
/// let ring = mmring::Options::new().create(dir.path().join("r"))?;
/// ring.push(b"a")?;
/// let mut follower = ring.follow();
/// assert_eq!(follower.next()?.unwrap().data(), b"a");
/// assert!(follower.next_timeout(Duration::from_millis(1))?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Follower<'a> {
    ring: &'a Ring,
    cursor: u64,
}

impl<'a> Follower<'a> {
    pub(crate) fn new(ring: &'a Ring, cursor: u64) -> Follower<'a> {
        Follower { ring, cursor }
    }

    /// The next entry after the last one returned, if one is ready.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged record; the follower then continues after
    /// the newest entry.
    // Not `Iterator::next`: "nothing yet" (`Ok(None)`) is not the end of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry>> {
        let raw = &self.ring.raw;
        let mut data = Vec::new();
        loop {
            let (_, end) = raw.positions()?;
            let start = self.cursor;
            if let Some(meta) = raw.peek_next(&mut self.cursor, end, &mut data)? {
                return Ok(Some(Entry::new(meta.into(), data)));
            }
            // A walk that began from a stale read position may stop at a record of a
            // later lap where the cursor's record was evicted: look again from the
            // read position, which has then passed the cursor.
            if self.cursor != start || raw.positions()?.0 <= start {
                return Ok(None);
            }
        }
    }

    /// Like [`next`](Follower::next), but waits up to `timeout` for an entry, asleep
    /// after a brief spin.
    ///
    /// # Errors
    /// As [`next`](Follower::next).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Entry>> {
        let deadline = Instant::now().checked_add(timeout);
        let ring = self.ring;
        ring.raw.waiting().until(deadline, || self.next())
    }
}
