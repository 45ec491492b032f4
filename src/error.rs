//! The one public error type. Each variant names what was wrong and where, and the
//! message says what to do about it.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong with a ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring has no room for the entry and its policy is [`OnFull::Reject`](crate::OnFull::Reject).
    #[error("the ring is full; pop entries first, or create the ring with OnFull::Overwrite")]
    Full,

    /// The payload is larger than [`Ring::max_entry_size`](crate::Ring::max_entry_size).
    #[error(
        "entry of {len} bytes exceeds this ring's maximum of {max} bytes; create a larger ring"
    )]
    TooLarge {
        /// Length of the refused payload.
        len: usize,
        /// Largest payload the ring accepts.
        max: usize,
    },

    /// A system call on the ring file failed.
    #[error("{}: {op} failed: {source}", path.display())]
    Io {
        /// The ring file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A field or checksum in the file is wrong. `offset` is the file offset of the
    /// record or header field; the record (if any) has been skipped.
    #[error("corrupt ring data at file offset {offset}: {what}")]
    Corrupt {
        /// File offset of the damaged record or field.
        offset: u64,
        /// What was wrong.
        what: String,
    },

    /// The file is not an mmring file at all.
    #[error("{}: not an mmring ring file: {reason}", path.display())]
    NotARing {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The file is a ring of a format version this build cannot read.
    #[error(
        "{}: ring format version {found} is not supported (this build reads version {supported}); \
         use a matching mmring release",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },

    /// [`Options::create`](crate::Options::create) found the path taken.
    #[error("{}: already exists; open it with Ring::open or remove it first", path.display())]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },

    /// An option or argument is out of range.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is out of range, and the range.
        what: String,
    },

    /// A bounded wait ended without success: [`Ring::push_timeout`](crate::Ring::push_timeout)
    /// on an [`OnFull::Block`](crate::OnFull::Block) ring found no room in time.
    #[error("no room in the ring within {waited:?}; pop entries, or wait longer")]
    Timeout {
        /// How long the call waited.
        waited: std::time::Duration,
    },

    /// Entries were removed (popped by a consumer, or evicted by an overwriting push)
    /// before this [`Subscriber`](crate::Subscriber) read them. Reported once, by the
    /// next read after it happened; the read after that continues with the oldest
    /// entry still in the ring.
    #[error(
        "the subscriber missed {missed} entries, removed before it read them; it continues \
         with the oldest live entry (use a larger ring, or read faster)"
    )]
    Lapped {
        /// How many entries were missed since the last report.
        missed: u64,
    },

    /// Every slot of the ring's subscriber table is taken.
    #[error(
        "all {slots} subscriber slots of the ring are taken; unsubscribe one first \
         (Ring::subscribers lists them, Ring::unsubscribe frees one)"
    )]
    SubscriberTableFull {
        /// Number of slots in the table.
        slots: usize,
    },

    /// The subscriber this handle reads for was unsubscribed (by any process).
    #[error("subscriber {name:?} no longer exists (it was unsubscribed); subscribe again")]
    NotSubscribed {
        /// The subscriber's name.
        name: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            offset,
            what: what.into(),
        }
    }
}
