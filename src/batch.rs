//! `Batch`: the entries one [`Ring::pop_batch`](crate::Ring::pop_batch) took.

use crate::entry::EntryInfo;
use crate::format::RecordMeta;

/// Entries removed together by [`Ring::pop_batch`](crate::Ring::pop_batch), oldest
/// first, with verified copies of their payloads in one buffer.
///
/// Reuse one `Batch` across calls: each call replaces its contents, and once its
/// buffers have grown to the largest batch, taking entries allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Payloads one after the other from the start; may be longer than they are.
    pub(crate) data: Vec<u8>,
    pub(crate) metas: Vec<RecordMeta>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// An empty batch with room for `entries` entries and `bytes` payload bytes.
    pub fn with_capacity(entries: usize, bytes: usize) -> Batch {
        Batch {
            data: vec![0; bytes],
            metas: Vec::with_capacity(entries),
        }
    }

    /// How many entries the batch holds.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Whether the batch holds no entry.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// The entries, oldest first: each one's metadata and payload.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            batch: self,
            next: 0,
            at: 0,
        }
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = (EntryInfo, &'a [u8]);
    type IntoIter = BatchIter<'a>;

    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Batch`]'s entries, oldest first.
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    batch: &'a Batch,
    next: usize,
    /// Where the next entry's payload starts in `batch.data`.
    at: usize,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = (EntryInfo, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let meta = *self.batch.metas.get(self.next)?;
        let len = meta.data_len as usize;
        let data = &self.batch.data[self.at..self.at + len];
        self.next += 1;
        self.at += len;
        Some((EntryInfo::from(meta), data))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.metas.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BatchIter<'_> {}
