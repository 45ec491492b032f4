//! `Entry` and `EntryInfo`: what `pop` and `peek` return.

use std::time::{Duration, SystemTime};

use crate::format::RecordMeta;

/// The metadata of an entry, without its payload (see [`Ring::pop_into`](crate::Ring::pop_into)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    id: u64,
    ttl_secs: u32,
    version: u64,
    write_time_ms: u64,
    len: u32,
}

impl From<RecordMeta> for EntryInfo {
    fn from(meta: RecordMeta) -> EntryInfo {
        EntryInfo {
            id: meta.id,
            ttl_secs: meta.ttl_secs,
            version: meta.version,
            write_time_ms: meta.write_time_ms,
            len: meta.data_len,
        }
    }
}

impl EntryInfo {
    /// Unique ID of the entry: its byte position in the ring's stream, so IDs grow in
    /// push order and are never reused by the same ring file.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The entry's TTL; `Duration::ZERO` means it never expires.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl_secs))
    }

    /// Version of the entry's metadata layout.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the entry was pushed (wall clock, millisecond resolution).
    pub fn written_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.write_time_ms)
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An entry taken from a ring: its metadata and a verified copy of its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    info: EntryInfo,
    data: Vec<u8>,
}

impl Entry {
    pub(crate) fn new(info: EntryInfo, data: Vec<u8>) -> Entry {
        Entry { info, data }
    }

    /// Unique ID of the entry (see [`EntryInfo::id`]).
    pub fn id(&self) -> u64 {
        self.info.id
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The entry's TTL; `Duration::ZERO` means it never expires.
    pub fn ttl(&self) -> Duration {
        self.info.ttl()
    }

    /// Version of the entry's metadata layout.
    pub fn version(&self) -> u64 {
        self.info.version
    }

    /// When the entry was pushed.
    pub fn written_at(&self) -> SystemTime {
        self.info.written_at()
    }

    /// The metadata alone.
    pub fn info(&self) -> EntryInfo {
        self.info
    }

    /// The payload, without copying.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}
