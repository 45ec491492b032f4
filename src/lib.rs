//! mmring: a persistent, lock-free, multi-producer/multi-consumer ring buffer that
//! lives in one memory-mapped file, shared by threads and by separate processes on
//! one Linux machine.
//!
//! The file is the queue. Its header holds the read and write positions as atomics;
//! the rest is a region of variable-length, checksummed records. Any number of
//! processes map the file and [`push`](Ring::push), [`pop`](Ring::pop) and
//! [`peek`](Ring::peek) concurrently without locks or system calls. A full ring
//! overwrites its oldest entries ([`OnFull::Overwrite`], the default) or refuses the
//! push ([`OnFull::Reject`]), or makes it wait for room ([`OnFull::Block`]). Entries
//! may carry a TTL; expired entries are never returned. A process killed at any point
//! leaves a ring that the others recover.
//!
//! Waiting costs no CPU: [`pop_timeout`](Ring::pop_timeout),
//! [`pop_blocking`](Ring::pop_blocking) and block-mode pushes sleep on a futex in the
//! file, woken by the push or pop of any process; while nobody waits, pushes and pops
//! make no system call. Besides `pop`'s queue, a ring serves up to 35 persistent
//! named [`Subscriber`]s, each seeing every entry in order with its own cursor in the
//! file, and in-memory [`Follower`]s.
//!
//! ```
//! # fn main() -> Result<(), mmring::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! use mmring::{OnFull, Options, Ring};
//! use std::time::Duration;
//!
//! let path = dir.path().join("jobs.ring");
//! let ring = Options::new()
//!     .size(1 << 20)
//!     .on_full(OnFull::Reject)
//!     .create(&path)?;
//! let id = ring.push(b"hello")?;
//! ring.push_with_ttl(b"short-lived", Duration::from_secs(30))?;
//!
//! // Another process would do exactly this.
//! let other = Ring::open(&path)?;
//! assert_eq!(other.len(), 2);
//! let first = other.pop()?.expect("an entry");
//! assert_eq!((first.id(), first.data()), (id, &b"hello"[..]));
//! # Ok(()) }
//! ```
//!
//! [`verify`] checks a ring file record by record and [`repair`] makes a damaged one
//! usable again (module [`inspect`]); [`layout`] describes the bytes for tools.
//!
//! The file format is specified byte by byte in `docs/FORMAT.md`; the algorithm, its
//! invariants and memory orderings in `docs/DESIGN.md`; how mmring answers damaged
//! files and crashes in `docs/ROBUSTNESS.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// Under loom only the algorithm is built (no mmap, no public Ring), so the file-level
// code that serves the public API is unused there.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(target_os = "linux"))]
compile_error!("mmring targets Linux (x86_64 and aarch64)");

mod crc;
mod error;
mod format;
#[cfg(test)]
mod format_doc;
mod lap;
mod process;
mod region;
mod ring;
mod sub_table;
mod sync;
mod wait;
#[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
mod wide;

#[cfg(not(loom))]
mod batch;
#[cfg(not(loom))]
mod clock;
#[cfg(feature = "crash-points")]
mod crash;
#[cfg(not(loom))]
mod entry;
#[cfg(not(loom))]
pub mod inspect;
pub mod layout;
#[cfg(not(loom))]
mod map;
#[cfg(not(loom))]
mod options;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
mod subscriber;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_support;

pub use error::{Error, Result};

#[cfg(not(loom))]
pub use self::api::*;

#[cfg(not(loom))]
mod api {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub use crate::batch::{Batch, BatchIter};
    pub use crate::entry::{Entry, EntryInfo};
    pub use crate::inspect::{repair, verify};
    pub use crate::options::{OnFull, Options};
    pub use crate::stats::Stats;
    pub use crate::subscriber::{Follower, Subscriber, SubscriberInfo};

    use crate::format::Policy;
    use crate::format::{Header, REC_HEADER_LEN};
    use crate::map::{self, MmapRegion};
    use crate::ring::{Params, RawRing};
    use crate::wait::SystemFutex;
    use crate::{Error, Result, clock::SystemClock, options::ttl_secs};
    use std::time::Instant;

    /// A handle on a ring file. `Send + Sync`: share one handle between threads (by
    /// reference or `Arc`); each process opens its own. A child created by `fork`
    /// must open the ring again rather than use its parent's handle: a handle names
    /// the process that opened it in the records it writes, and readers that find a
    /// named process gone abandon its unfinished records early (docs/DESIGN.md,
    /// "Stalls and abandonment").
    ///
    /// # Shared memory
    /// The file is mapped shared and read-write. mmring validates the header when it
    /// opens the file and every length and checksum it reads afterwards, so a damaged
    /// or hostile file yields [`Error::Corrupt`] or a recovered ring, never an
    /// out-of-bounds access. One thing no check can catch: if another program
    /// truncates the file while it is mapped, touching the missing pages raises
    /// SIGBUS. Ring files are created with mode 0600 and preallocated; don't let other
    /// programs resize them (docs/OPERATIONS.md says exactly what happens if they do).
    pub struct Ring {
        pub(crate) raw: RawRing<MmapRegion>,
        path: PathBuf,
    }

    impl std::fmt::Debug for Ring {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Ring")
                .field("path", &self.path)
                .field("capacity_bytes", &self.capacity_bytes())
                .field("on_full", &self.on_full())
                .finish_non_exhaustive()
        }
    }

    impl Ring {
        pub(crate) fn from_region(
            region: MmapRegion,
            header: &Header,
            path: &Path,
        ) -> Result<Ring> {
            let params = Params::from_header(header);
            let raw = RawRing::new(
                region,
                params,
                crate::process::own_writer(),
                Box::new(SystemClock),
                Box::new(SystemFutex),
            )?;
            Ok(Ring {
                raw,
                path: path.to_path_buf(),
            })
        }

        /// Opens an existing ring; every parameter comes from its header.
        ///
        /// # Errors
        /// [`Error::Io`] if the file can't be opened read-write (missing, a directory,
        /// no permission), [`Error::NotARing`] if it isn't a ring,
        /// [`Error::UnsupportedVersion`] for another format version, and
        /// [`Error::Corrupt`] naming the offset of a damaged header field.
        ///
        /// # Examples
        /// ```
        /// # let dir = tempfile::tempdir().unwrap();
        /// # let path = dir.path().join("r");
        /// # std::fs::write(&path, b"not a ring").unwrap();
        /// assert!(matches!(mmring::Ring::open(&path), Err(mmring::Error::NotARing { .. })));
        /// ```
        pub fn open(path: impl AsRef<Path>) -> Result<Ring> {
            let path = path.as_ref();
            let (region, header) = map::open(path)?;
            Ring::from_region(region, &header, path)
        }

        /// The file format version of the ring (every ring this build opens has
        /// the version it writes; see docs/FORMAT.md).
        pub fn format_version(&self) -> u32 {
            crate::format::FORMAT_VERSION
        }

        /// Total size of the ring file in bytes (header included).
        pub fn file_size(&self) -> u64 {
            crate::format::HEADER_LEN as u64 + self.raw.params().region_len
        }

        /// The path the ring was opened at.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Appends an entry with the ring's default TTL and returns its unique ID. In
        /// an [`OnFull::Block`] ring, waits (asleep) until there is room.
        ///
        /// # Errors
        /// [`Error::TooLarge`] if `data` exceeds [`max_entry_size`](Ring::max_entry_size);
        /// [`Error::Full`] if the ring is full and its policy is [`OnFull::Reject`];
        /// [`Error::Corrupt`] if the ring's positions were damaged. Nothing is changed
        /// when an error is returned.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// let first = ring.push(b"one")?;
        /// assert!(ring.push(b"two")? > first, "IDs grow in push order");
        /// # Ok(()) }
        /// ```
        pub fn push(&self, data: &[u8]) -> Result<u64> {
            self.push_until(data, self.raw.params().default_ttl_secs, None)
        }

        /// Appends an entry that expires `ttl` after now (`Duration::ZERO`: never),
        /// rounded up to whole seconds.
        ///
        /// # Errors
        /// As [`push`](Ring::push), and [`Error::InvalidArgument`] for a TTL over
        /// `u32::MAX` seconds.
        pub fn push_with_ttl(&self, data: &[u8], ttl: Duration) -> Result<u64> {
            self.push_until(data, ttl_secs(ttl)?, None)
        }

        /// Like [`push`](Ring::push), but an [`OnFull::Block`] ring waits at most
        /// `timeout` for room. Other rings don't wait: the same as `push`.
        ///
        /// # Errors
        /// [`Error::Timeout`] if a block-mode ring had no room within `timeout`
        /// (nothing was pushed); otherwise as [`push`](Ring::push).
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// use mmring::{Error, OnFull, Options};
        /// use std::time::Duration;
        ///
        /// let ring = Options::new().size(8192).on_full(OnFull::Block).create(dir.path().join("r"))?;
        /// let big = vec![0u8; ring.max_entry_size()];
        /// ring.push(&big)?;
        /// ring.push(&big)?;
        /// let full = ring.push_timeout(&big, Duration::from_millis(20));
        /// assert!(matches!(full, Err(Error::Timeout { .. })));
        /// # Ok(()) }
        /// ```
        pub fn push_timeout(&self, data: &[u8], timeout: Duration) -> Result<u64> {
            let deadline = Instant::now().checked_add(timeout);
            match deadline {
                Some(deadline) => {
                    self.push_until(data, self.raw.params().default_ttl_secs, Some(deadline))
                }
                None => self.push(data),
            }
            .map_err(|e| match e {
                Error::Timeout { .. } => Error::Timeout { waited: timeout },
                other => other,
            })
        }

        fn push_until(&self, data: &[u8], ttl: u32, deadline: Option<Instant>) -> Result<u64> {
            if self.raw.params().policy != Policy::Block {
                return self.raw.push(data, ttl);
            }
            let started = Instant::now();
            self.raw
                .push_wait(data, ttl, deadline)?
                .ok_or_else(|| Error::Timeout {
                    waited: started.elapsed(),
                })
        }

        /// Appends `entries` in order, reserving room for as many of them at once as
        /// there is free space for: one atomic operation on the write position for
        /// the lot instead of one per entry, and (in rings this version created) one
        /// claim and one commit for the lot, which readers see all at once. That is
        /// what makes batches faster than as many [`push`](Ring::push)es. Entries get
        /// the default TTL and increasing IDs, like pushes one by one. Returns how
        /// many were pushed, from the front of `entries`.
        ///
        /// A full ring overwrites its oldest entries as for `push`, and an
        /// [`OnFull::Block`] ring waits for room until all are pushed, so both return
        /// `entries.len()` unless an error stops them after some entries were pushed
        /// (pushing the rest then returns that error). An [`OnFull::Reject`] ring
        /// pushes what fits: fewer than all means the ring filled up (pushing the
        /// rest then says [`Error::Full`]).
        ///
        /// # Errors
        /// As [`push`](Ring::push), only when nothing was pushed; in particular
        /// [`Error::TooLarge`] if any entry exceeds
        /// [`max_entry_size`](Ring::max_entry_size), before anything is pushed.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// assert_eq!(ring.push_batch(&[&b"one"[..], b"two", b"three"])?, 3);
        /// assert_eq!(ring.pop()?.unwrap().data(), b"one");
        /// # Ok(()) }
        /// ```
        pub fn push_batch<T: AsRef<[u8]>>(&self, entries: &[T]) -> Result<usize> {
            let ttl = self.raw.params().default_ttl_secs;
            if self.raw.params().policy != Policy::Block {
                return self.raw.push_batch(entries, ttl);
            }
            let mut done = 0;
            while done < entries.len() {
                match self.raw.push_batch_wait(&entries[done..], ttl, None) {
                    Ok(Some(n)) => done += n,
                    Ok(None) => {}
                    Err(_) if done > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(done)
        }

        /// Removes and returns the oldest live entry; `None` when there is none ready.
        ///
        /// `None` is also returned while the oldest entry is still being written by
        /// its producer (FIFO order is by reservation): a later call returns it.
        ///
        /// # Errors
        /// [`Error::Corrupt`] for a record whose checksums fail: it has been skipped
        /// and counted, and the next call continues after it.
        pub fn pop(&self) -> Result<Option<Entry>> {
            let mut data = Vec::new();
            Ok(self.pop_into(&mut data)?.map(|info| Entry::new(info, data)))
        }

        /// Like [`pop`](Ring::pop), but waits up to `timeout` for an entry: it spins
        /// briefly, then sleeps on a futex in the ring file, woken by a push from any
        /// process. `None` if no entry came in time.
        ///
        /// # Errors
        /// As [`pop`](Ring::pop).
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// use std::time::Duration;
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// assert!(ring.pop_timeout(Duration::from_millis(10))?.is_none());
        /// ring.push(b"now")?;
        /// assert_eq!(ring.pop_timeout(Duration::from_secs(1))?.unwrap().data(), b"now");
        /// # Ok(()) }
        /// ```
        pub fn pop_timeout(&self, timeout: Duration) -> Result<Option<Entry>> {
            let mut data = Vec::new();
            let deadline = Instant::now().checked_add(timeout);
            Ok(self
                .raw
                .pop_wait(&mut data, deadline)?
                .map(|meta| Entry::new(meta.into(), data)))
        }

        /// Like [`pop`](Ring::pop), but waits (asleep, after a brief spin) as long as
        /// it takes for an entry.
        ///
        /// # Errors
        /// As [`pop`](Ring::pop).
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// std::thread::scope(|s| {
        ///     s.spawn(|| ring.push(b"later"));
        ///     assert_eq!(ring.pop_blocking().unwrap().data(), b"later");
        /// });
        /// # Ok(()) }
        /// ```
        pub fn pop_blocking(&self) -> Result<Entry> {
            let mut data = Vec::new();
            loop {
                if let Some(meta) = self.raw.pop_wait(&mut data, None)? {
                    return Ok(Entry::new(meta.into(), data));
                }
            }
        }

        /// Attaches to the persistent subscriber `name`, creating it if it does not
        /// exist; a new subscriber starts at the oldest live entry, an existing one
        /// resumes after its last [`commit`](Subscriber::commit). See [`Subscriber`].
        ///
        /// # Errors
        /// [`Error::InvalidArgument`] for a name that is empty or longer than 40
        /// bytes; [`Error::SubscriberTableFull`] when all 35 slots are taken.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.push(b"e")?;
        /// let mut a = ring.subscribe("a")?;
        /// let mut b = ring.subscribe("b")?;
        /// assert_eq!(a.next()?.unwrap().data(), b"e");
        /// assert_eq!(b.next()?.unwrap().data(), b"e", "each subscriber sees every entry");
        /// # Ok(()) }
        /// ```
        pub fn subscribe(&self, name: &str) -> Result<Subscriber<'_>> {
            let slot = self.raw.subscribe(name)?;
            Ok(Subscriber::new(self, name, slot))
        }

        /// The ring's subscribers, in slot order.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.subscribe("audit")?;
        /// assert_eq!(ring.subscribers()[0].name, "audit");
        /// # Ok(()) }
        /// ```
        pub fn subscribers(&self) -> Vec<SubscriberInfo> {
            self.raw
                .subscribers()
                .into_iter()
                .map(SubscriberInfo::from)
                .collect()
        }

        /// Removes the subscriber `name` and frees its slot; `false` if there was
        /// none. Handles of it still in use fail with [`Error::NotSubscribed`].
        ///
        /// # Errors
        /// None today; the `Result` leaves room for checks of the file.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.subscribe("gone")?;
        /// assert!(ring.unsubscribe("gone")?);
        /// assert!(!ring.unsubscribe("gone")?);
        /// # Ok(()) }
        /// ```
        pub fn unsubscribe(&self, name: &str) -> Result<bool> {
            self.raw.unsubscribe(name)
        }

        /// A [`Follower`]: reads entries from the oldest live one on, without
        /// removing them and without writing to the file.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.push(b"seen by all")?;
        /// let (mut a, mut b) = (ring.follow(), ring.follow());
        /// assert_eq!(a.next()?.unwrap().data(), b.next()?.unwrap().data());
        /// assert_eq!(ring.len(), 1);
        /// # Ok(()) }
        /// ```
        pub fn follow(&self) -> Follower<'_> {
            let start = self.raw.positions().map_or(0, |(read, _)| read);
            Follower::new(self, start)
        }

        /// Like [`pop`](Ring::pop), but copies the payload into `buf` (replacing its
        /// contents) and returns only the metadata: no allocation once `buf` is large
        /// enough.
        ///
        /// # Errors
        /// As [`pop`](Ring::pop).
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.push(b"abc")?;
        /// let mut buf = Vec::with_capacity(ring.max_entry_size());
        /// let info = ring.pop_into(&mut buf)?.unwrap();
        /// assert_eq!((info.len(), &buf[..]), (3, &b"abc"[..]));
        /// # Ok(()) }
        /// ```
        pub fn pop_into(&self, buf: &mut Vec<u8>) -> Result<Option<EntryInfo>> {
            Ok(self.raw.pop_into(buf)?.map(EntryInfo::from))
        }

        /// Removes up to `max` of the oldest live entries at once into `batch`
        /// (replacing what it held), and returns how many: 0 when none is ready. One
        /// atomic operation on the read position for the lot, instead of one per
        /// entry; every payload is verified as for [`pop`](Ring::pop). A batch takes
        /// the committed entries that follow each other from the oldest; it stops
        /// early at one still being written or damaged, which the next call handles.
        /// While the ring has [`Subscriber`]s, entries are taken one per operation
        /// (still into one batch).
        ///
        /// # Errors
        /// As [`pop`](Ring::pop), for the oldest entry only: a damaged entry behind
        /// good ones ends the batch before it and is reported by the next call.
        ///
        /// # Examples
        /// ```
        /// # fn main() -> Result<(), mmring::Error> {
        /// # let dir = tempfile::tempdir().unwrap();
        /// let ring = mmring::Options::new().create(dir.path().join("r"))?;
        /// ring.push_batch(&[&b"a"[..], b"b", b"c"])?;
        /// let mut batch = mmring::Batch::new();
        /// assert_eq!(ring.pop_batch(&mut batch, 2)?, 2);
        /// let data: Vec<&[u8]> = batch.iter().map(|(_, data)| data).collect();
        /// assert_eq!(data, [b"a", b"b"]);
        /// assert_eq!(ring.pop_batch(&mut batch, 2)?, 1);
        /// # Ok(()) }
        /// ```
        pub fn pop_batch(&self, batch: &mut Batch, max: usize) -> Result<usize> {
            self.raw.pop_batch(&mut batch.data, &mut batch.metas, max)
        }

        /// Like [`pop_batch`](Ring::pop_batch), but waits up to `timeout` (spinning
        /// briefly, then asleep) for at least one entry. 0 if none came in time.
        ///
        /// # Errors
        /// As [`pop`](Ring::pop).
        pub fn pop_batch_timeout(
            &self,
            batch: &mut Batch,
            max: usize,
            timeout: Duration,
        ) -> Result<usize> {
            if max == 0 {
                return Ok(0);
            }
            let deadline = Instant::now().checked_add(timeout);
            Ok(self
                .raw
                .waiting()
                .until(deadline, || {
                    self.pop_batch(batch, max).map(|n| (n > 0).then_some(n))
                })?
                .unwrap_or(0))
        }

        /// Iterates over the live entries, oldest first, without removing them. The
        /// iteration covers entries pushed before the call; entries removed meanwhile
        /// by other handles are skipped, and it stops at an entry still being
        /// written, or where the marks of a damaged range that a reader is still
        /// skipping end. Its cursor lives in the iterator, not in the file.
        pub fn peek(&self) -> Peek<'_> {
            let (cursor, end) = match self.raw.positions() {
                Ok(positions) => positions,
                Err(e) => {
                    return Peek {
                        ring: self,
                        cursor: 0,
                        end: 0,
                        pending: Some(e),
                    };
                }
            };
            Peek {
                ring: self,
                cursor,
                end,
                pending: None,
            }
        }

        /// Number of entries in the ring now, including ones still being written.
        /// A snapshot: other handles may change it at once.
        pub fn len(&self) -> usize {
            usize::try_from(self.raw.len()).unwrap_or(usize::MAX)
        }

        /// Whether [`len`](Ring::len) is 0.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Most entries the ring can hold at once: `capacity_bytes / 56`, as each entry
        /// takes a 56-byte header plus its payload rounded up to 8 bytes. With
        /// payloads of `n` bytes the ring holds about
        /// `capacity_bytes / (56 + n.next_multiple_of(8))`.
        pub fn capacity(&self) -> usize {
            usize::try_from(self.raw.capacity()).unwrap_or(usize::MAX)
        }

        /// Bytes of the file available for entries (file size minus the 4 KiB header).
        pub fn capacity_bytes(&self) -> u64 {
            self.raw.params().region_len
        }

        /// Largest payload [`push`](Ring::push) accepts: half the region minus the
        /// entry header, so any entry fits even after the padding at the wrap.
        pub fn max_entry_size(&self) -> usize {
            self.raw.max_data_len() as usize
        }

        /// The ring's policy when full.
        pub fn on_full(&self) -> OnFull {
            self.raw.params().policy.into()
        }

        /// The default TTL of entries (`Duration::ZERO`: never expire).
        pub fn default_ttl(&self) -> Duration {
            Duration::from_secs(u64::from(self.raw.params().default_ttl_secs))
        }

        /// How long a record may stay reserved but uncommitted before readers skip
        /// it (see [`Options::abandon_timeout`]).
        pub fn abandon_timeout(&self) -> Duration {
            Duration::from_millis(u64::from(self.raw.params().abandon_ms))
        }

        /// The ring's counters, shared by all processes.
        pub fn stats(&self) -> Stats {
            let c = self.raw.counters();
            Stats {
                pushed: c.pushed,
                popped: c.popped,
                evicted: c.evicted,
                expired: c.expired,
                corrupt: c.corrupt,
                abandoned: c.abandoned,
                len: self.raw.len(),
                read_pos: c.read_pos,
                write_pos: c.write_pos,
            }
        }

        /// Writes the mapping back to the file (msync). Entries are visible to other
        /// processes without it; this is for durability across a machine crash.
        ///
        /// # Errors
        /// [`Error::Io`] if msync fails.
        pub fn flush(&self) -> Result<()> {
            self.raw
                .region()
                .flush()
                .map_err(|e| Error::io(&self.path, "msync", e))
        }

        /// Bytes one entry with an `n`-byte payload occupies in the ring.
        pub fn entry_footprint(n: usize) -> u64 {
            (REC_HEADER_LEN as u64 + n as u64).next_multiple_of(8)
        }
    }

    /// Iterator returned by [`Ring::peek`].
    pub struct Peek<'a> {
        ring: &'a Ring,
        cursor: u64,
        end: u64,
        pending: Option<Error>,
    }

    impl Iterator for Peek<'_> {
        type Item = Result<Entry>;

        fn next(&mut self) -> Option<Result<Entry>> {
            if let Some(e) = self.pending.take() {
                return Some(Err(e));
            }
            let mut data = Vec::new();
            match self
                .ring
                .raw
                .peek_next(&mut self.cursor, self.end, &mut data)
            {
                Ok(Some(meta)) => Some(Ok(Entry::new(meta.into(), data))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        }
    }
}
