//! `Options`: how a ring is created, and `OnFull`, what a full ring does.

use std::path::Path;
use std::time::Duration;

use crate::format::{self, Header, Policy};
use crate::{Error, Result, Ring, map};

/// What `push` does when the entry does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFull {
    /// Remove the oldest entries to make room (counted in [`Stats::evicted`](crate::Stats::evicted)).
    #[default]
    Overwrite,
    /// Fail with [`Error::Full`] and change nothing.
    Reject,
    /// Wait until consumers free room: [`Ring::push`] sleeps (without using CPU) until
    /// the entry fits; [`Ring::push_timeout`] bounds the wait. Subscribers never
    /// hold space: only [`Ring::pop`] (and expiry) frees it.
    Block,
}

impl From<OnFull> for Policy {
    fn from(on_full: OnFull) -> Policy {
        match on_full {
            OnFull::Overwrite => Policy::Overwrite,
            OnFull::Reject => Policy::Reject,
            OnFull::Block => Policy::Block,
        }
    }
}

impl From<Policy> for OnFull {
    fn from(policy: Policy) -> OnFull {
        match policy {
            Policy::Overwrite => OnFull::Overwrite,
            Policy::Reject => OnFull::Reject,
            Policy::Block => OnFull::Block,
        }
    }
}

/// Parameters for creating a ring. Every parameter is stored in the ring's header, so
/// [`Ring::open`] needs none of them.
///
/// ```
/// # fn main() -> Result<(), mmring::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use mmring::{OnFull, Options};
/// use std::time::Duration;
///
/// let ring = Options::new()
///     .size(1 << 20)
///     .ttl(Duration::from_secs(60))
///     .on_full(OnFull::Reject)
///     .create(dir.path().join("events.ring"))?;
/// assert_eq!(ring.on_full(), OnFull::Reject);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    size: u64,
    ttl: Duration,
    on_full: OnFull,
    mode: u32,
    abandon_timeout: Duration,
    batch_runs: bool,
    stamp_key: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

/// `Duration` to whole seconds for the file, rounding a fraction up so that a
/// non-zero TTL never becomes "never expire".
pub(crate) fn ttl_secs(ttl: Duration) -> Result<u32> {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(secs).map_err(|_| Error::InvalidArgument {
        what: format!("TTL of {secs} s exceeds the maximum of {} s", u32::MAX),
    })
}

impl Options {
    /// Defaults: 1 MiB file, no TTL, [`OnFull::Overwrite`], mode 0600, a 2 s abandon
    /// timeout, batch runs, a stamp key.
    pub fn new() -> Options {
        Options {
            size: 1 << 20,
            ttl: Duration::ZERO,
            on_full: OnFull::Overwrite,
            mode: 0o600,
            abandon_timeout: Duration::from_secs(2),
            batch_runs: true,
            stamp_key: true,
        }
    }

    /// Total file size in bytes, header included: a multiple of 8, at least 8 KiB.
    pub fn size(mut self, bytes: u64) -> Options {
        self.size = bytes;
        self
    }

    /// Default TTL of entries; `Duration::ZERO` (the default) means they never expire.
    /// Stored in whole seconds, rounded up.
    pub fn ttl(mut self, ttl: Duration) -> Options {
        self.ttl = ttl;
        self
    }

    /// What `push` does when the ring is full.
    pub fn on_full(mut self, on_full: OnFull) -> Options {
        self.on_full = on_full;
        self
    }

    /// Permission bits of the new file (before the umask); 0600 by default.
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode;
        self
    }

    /// How long a record may stay reserved but uncommitted (its producer stalled or
    /// died) before readers skip it; 2 s by default, at least 1 ms. A producer that
    /// was merely slow and finds its record skipped pushes it again. A record claimed
    /// by a process that no longer exists is skipped after about 10 ms instead.
    pub fn abandon_timeout(mut self, timeout: Duration) -> Options {
        self.abandon_timeout = timeout;
        self
    }

    /// Whether [`Ring::push_batch`] may write a batch as one run (on by default): one
    /// claim and one commit for the lot, which made batches of 64-byte entries about
    /// twice as fast on the benchmark host (docs/BENCHMARKS.md). The file then says so
    /// in its header, and mmring 0.2 and earlier refuse to open it (`Error::Corrupt`
    /// at offset 44). Turn it off only to create a ring that processes running those
    /// versions must share (together with [`Options::stamp_key`]`(false)`, which
    /// they can't read either); batches are then written as records of their own, as
    /// those versions write them. An existing ring keeps what it was created with.
    pub fn batch_runs(mut self, on: bool) -> Options {
        self.batch_runs = on;
        self
    }

    /// Whether the new file's record stamps are mixed with a random key (on by
    /// default). Each record starts with a word that says whose record it is and in
    /// what state; without a key, a payload built from the ring's positions could leave
    /// a word that a later lap takes for such a stamp, and readers then skip entries
    /// (docs/DESIGN.md, "Stale words that read as stamps"). With the key that takes
    /// guessing 59 random bits. mmring 0.3.1 and earlier refuse a keyed file
    /// (`Error::Corrupt` at offset 44); turn the key off only to create a ring that
    /// processes running those versions must share (and for 0.2 and earlier, batch
    /// runs too, see [`Options::batch_runs`]). An existing ring keeps what it was
    /// created with.
    pub fn stamp_key(mut self, on: bool) -> Options {
        self.stamp_key = on;
        self
    }

    fn header(&self, path: &Path) -> Result<Header> {
        format::region_len_for(self.size).map_err(|what| Error::InvalidArgument { what })?;
        let abandon_ms = u32::try_from(self.abandon_timeout.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| Error::InvalidArgument {
                what: format!(
                    "abandon timeout {:?} is outside 1 ms..={} ms",
                    self.abandon_timeout,
                    u32::MAX
                ),
            })?;
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut header = Header::new(
            self.size,
            ttl_secs(self.ttl)?,
            self.on_full.into(),
            abandon_ms,
            created_ms,
        );
        header.batch_runs = self.batch_runs;
        if self.stamp_key {
            let random = getrandom::u64()
                .map_err(|e| Error::io(path, "draw random bits for the stamp key", e.into()))?;
            header.stamp_key = Some(format::StampKey::from_random(random));
        }
        Ok(header)
    }

    /// Creates a new ring file at `path`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if `path` exists, [`Error::InvalidArgument`] for an
    /// out-of-range option, [`Error::Io`] if the file can't be created or
    /// preallocated (a full disk fails here, not later), or if the system's random
    /// source refuses the bits of the stamp key (see [`Options::stamp_key`]).
    pub fn create(&self, path: impl AsRef<Path>) -> Result<Ring> {
        let path = path.as_ref();
        let header = self.header(path)?;
        let region = map::create(path, &header, self.mode)?;
        Ring::from_region(region, &header, path)
    }

    /// Opens the ring at `path`, creating it with these options if there is none.
    /// Of several processes racing to create the same path, one creates it and the
    /// others open it. An existing ring keeps its own parameters.
    ///
    /// # Errors
    /// As [`Ring::open`] and [`Options::create`].
    pub fn open_or_create(&self, path: impl AsRef<Path>) -> Result<Ring> {
        let path = path.as_ref();
        loop {
            match Ring::open(path) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                other => return other,
            }
            match self.create(path) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
    }
}
