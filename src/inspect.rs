//! Checking ring files: [`verify`] reports every problem with its file offset,
//! [`repair`] makes a damaged ring usable again and says exactly what it dropped, and
//! [`walk`] lists what lies between the read and the write position.
//!
//! All three follow docs/FORMAT.md ("Validation rules", "Listing the live entries")
//! over every record from `read_pos` to `write_pos`, checking both checksums of each,
//! with the decoding `pop` uses. They expect a ring no process is pushing to or
//! popping from at the time: on a live ring a record being overwritten may read as
//! damaged, and a repair could race with readers.
//!
//! ```
//! # fn main() -> Result<(), mmring::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("r");
//! let ring = mmring::Options::new().size(1 << 16).create(&path)?;
//! ring.push(b"hello")?;
//! let report = mmring::verify(&path)?;
//! assert!(report.is_clean());
//! assert_eq!(report.entries, 1);
//! # Ok(()) }
//! ```

use std::path::Path;

use crate::format::Header;
use crate::map::{self, Access, MmapRegion};
use crate::ring::check::Walk;
use crate::ring::{Params, RawRing};
use crate::{Error, Result, clock::SystemClock};

pub use crate::ring::check::{Action, Finding, Span, SpanKind};

/// What [`verify`], [`repair`] or [`walk`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Length of the file.
    pub file_len: u64,
    /// Length of the record region (0 if the header could not be trusted).
    pub region_len: u64,
    /// Whether the header was valid, so that the records could be checked.
    pub records_checked: bool,
    /// The read position the walk started from (after a reset, the new value).
    pub read_pos: u64,
    /// The write position the walk ended at (after a reset, the new value).
    pub write_pos: u64,
    /// Intact entries found, expired ones included.
    pub entries: u64,
    /// How many of those have expired (readers drop them).
    pub expired: u64,
    /// Payload bytes of the intact entries.
    pub entry_bytes: u64,
    /// Damage, in file order of discovery: each with its offset, field and what a
    /// repair does (or, from [`repair`], did) about it.
    pub problems: Vec<Finding>,
    /// Things that are not damage but worth knowing: records whose producer is still
    /// writing or died mid-push (the ring skips those by itself after its abandon
    /// timeout).
    pub notes: Vec<Finding>,
    /// Whether the file was changed ([`repair`] with problems to fix).
    pub repaired: bool,
}

impl Report {
    /// No problems found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn from_walk(header: &Header, walk: Walk, repaired: bool) -> Report {
        Report {
            file_len: header.file_len,
            region_len: header.region_len,
            records_checked: true,
            read_pos: walk.read_pos,
            write_pos: walk.write_pos,
            entries: walk.entries,
            expired: walk.expired,
            entry_bytes: walk.entry_bytes,
            repaired: repaired && !walk.problems.is_empty(),
            problems: walk.problems,
            notes: walk.notes,
        }
    }
}

fn checker(region: MmapRegion, header: &Header) -> RawRing<MmapRegion> {
    let params = Params::from_header(header);
    RawRing::unvalidated(
        region,
        params,
        crate::process::own_writer(),
        Box::new(SystemClock),
        Box::new(crate::wait::SystemFutex),
    )
}

/// Checks the ring file at `path` without changing it: the header's fields and
/// checksum, the positions, every record between them (both checksums, every field,
/// padding and skip marks), and that the free space holds no stamp for a position not
/// yet reserved. Never writes the file (it is opened read-only and
/// mapped copy-on-write), and ends on any bytes.
///
/// A damaged header is reported as a problem (at the offset of the field at fault),
/// and then the records are not checked.
///
/// # Errors
/// [`Error::Io`] if the file can't be opened or mapped, [`Error::NotARing`] and
/// [`Error::UnsupportedVersion`] for files that are not rings this build reads.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), mmring::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("r");
/// let ring = mmring::Options::new().size(1 << 16).create(&path)?;
/// let id = ring.push(b"payload")?;
/// // Damage one byte of the payload (file offset 4096 + id + 56 for this first record).
/// let mut bytes = std::fs::read(&path).unwrap();
/// bytes[4096 + id as usize + 56] ^= 1;
/// std::fs::write(&path, &bytes).unwrap();
///
/// let report = mmring::verify(&path)?;
/// assert_eq!(report.problems.len(), 1);
/// assert_eq!((report.problems[0].offset, report.problems[0].field), (4096 + 56, "data"));
/// # Ok(()) }
/// ```
pub fn verify(path: impl AsRef<Path>) -> Result<Report> {
    walk(path, |_| {})
}

/// [`verify`], calling `visit` for every stretch of the ring (entry, padding,
/// damaged range, ...) in position order.
///
/// # Errors
/// As [`verify`].
pub fn walk(path: impl AsRef<Path>, mut visit: impl FnMut(&Span)) -> Result<Report> {
    let path = path.as_ref();
    let (region, header) = match map::open_as(path, Access::Private) {
        Ok(opened) => opened,
        Err(Error::Corrupt { offset, what }) => return Ok(header_report(path, offset, what)),
        Err(e) => return Err(e),
    };
    // The repair walk on a private copy: it shows what a repair would do, and the
    // file is never written.
    let walk = checker(region, &header).check(true, &mut visit);
    Ok(Report::from_walk(&header, walk, false))
}

/// Makes the ring at `path` usable again: resets impossible positions, marks every
/// record that can't be trusted so that readers skip it (first splitting a batch run
/// that holds it into records of their own, so that the run's other records stay),
/// counting each dropped range once in [`Stats::corrupt`](crate::Stats::corrupt),
/// and zeroes stamps in the free space that no producer wrote. Every intact entry stays and is
/// delivered in order. The report lists exactly what was dropped or reset (the
/// [`Action`] of each problem). Run it while no other process uses the ring.
///
/// # Errors
/// As [`Ring::open`](crate::Ring::open) for a header it can't trust: a damaged header
/// is [`Error::Corrupt`] naming the field, and is not repaired (its fields say how
/// large the ring is; a guess could make things worse).
pub fn repair(path: impl AsRef<Path>) -> Result<Report> {
    let path = path.as_ref();
    let (region, header) = map::open(path)?;
    let ring = checker(region, &header);
    let walk = ring.check(true, &mut |_| {});
    if !walk.problems.is_empty() {
        ring.region()
            .flush()
            .map_err(|e| Error::io(path, "msync", e))?;
    }
    Ok(Report::from_walk(&header, walk, true))
}

/// The report for a file whose header failed validation at `offset`.
fn header_report(path: &Path, offset: u64, what: String) -> Report {
    let file_len = std::fs::metadata(path).map_or(0, |meta| meta.len());
    let field = usize::try_from(offset)
        .ok()
        .and_then(crate::layout::header_field)
        .map_or("header", |f| f.name);
    Report {
        file_len,
        region_len: 0,
        records_checked: false,
        read_pos: 0,
        write_pos: 0,
        entries: 0,
        expired: 0,
        entry_bytes: 0,
        problems: vec![Finding {
            offset,
            field,
            position: None,
            message: what,
            action: Action::None,
        }],
        notes: Vec::new(),
        repaired: false,
    }
}
