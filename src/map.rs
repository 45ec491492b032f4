//! The ring file on disk: creating it (preallocated, fully initialized before it
//! becomes visible under its name), opening and validating it, and `MmapRegion`, the
//! bounds-checked view of the mapping the ring algorithm works on.
//!
//! This is where the `unsafe` is. The residual risk, stated on `Ring` too: another
//! process may truncate the file while it is mapped, which turns accesses into SIGBUS.
//! The length is checked at open against the header; docs/ROBUSTNESS.md says more.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapRaw;

use crate::format::{self, FIXED_HEADER_LEN, Header, HeaderError};
use crate::region::{self, Region};
use crate::sync::{AtomicU32, AtomicU64};
use crate::{Error, Result};

/// The mapped ring file. Never hands out references to bytes, only atomics (which
/// other processes may change at will) and copies.
pub(crate) struct MmapRegion {
    map: MmapRaw,
    len: usize,
}

// SAFETY: MmapRaw is a pointer and a length to a shared mapping; every access through
// MmapRegion is an atomic or a raw copy validated by the ring (DESIGN: Reading a
// record), so sharing it between threads is as sound as sharing it between processes.
unsafe impl Sync for MmapRegion {}
// SAFETY: the mapping is not tied to the thread that created it.
unsafe impl Send for MmapRegion {}

impl Region for MmapRegion {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn atomic(&self, off: usize) -> &AtomicU64 {
        region::cell(self.words(), off)
    }

    #[inline(always)]
    fn atomics(&self, off: usize, n: usize) -> &[AtomicU64] {
        region::cells(self.words(), off, n)
    }

    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        region::check_word_u32(off, self.len);
        // Only ever accessed atomically (and by the kernel's futex calls, which read it
        // atomically too); no other code copies these header bytes while mapped.
        let word = self.map.as_mut_ptr().wrapping_add(off).cast::<u32>();
        // SAFETY: check_word_u32 proved off is NOTIFY_OFFSET or WAITERS_OFFSET, both
        // 4-aligned and inside the header, so on a page-aligned map `word` is aligned,
        // in bounds, and lives as long as &self.
        unsafe { AtomicU32::from_ptr(word) }
    }

    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        region::read_words(self.words(), off, dst);
    }

    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        region::write_words(self.words(), off, src);
    }

    #[inline(always)]
    fn read_crc(&self, off: usize, dst: &mut [u8]) -> u32 {
        region::read_words_crc(self.words(), off, dst)
    }

    #[inline(always)]
    fn write_payload_crc(&self, off: usize, src: &[u8]) -> u32 {
        region::write_payload_words_crc(self.words(), off, src)
    }

    /// PREFETCHW on each cache line of the range, where the CPU has the instruction.
    /// A producer's claims are locked compare-and-swaps, each of which waits for its
    /// line to be owned by this core; when the consumer's core holds those lines (it
    /// read the previous lap, or its prefetcher ran ahead into this one), asking for
    /// them all first makes those transfers overlap instead of following one another.
    /// Elsewhere (other architectures, miri) the trait's default, which asks nothing.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[inline(always)]
    fn prefetch_for_write(&self, off: usize, len: usize) {
        if has_prefetchw() {
            let base = self.map.as_ptr() as usize;
            let start = base + off.min(self.len);
            let end = base + off.saturating_add(len).min(self.len);
            let mut line = start & !(CACHE_LINE - 1);
            while line < end {
                // `readonly` rather than `nomem` keeps the prefetch in place before
                // the claim's compare-and-swap, which is where it helps.
                // SAFETY: PREFETCHW is a hint. It changes no memory, register or
                // flag and never faults, whatever the address (here one inside the
                // mapping anyway); the CPU has it (checked above).
                unsafe {
                    std::arch::asm!(
                        "prefetchw byte ptr [{line}]",
                        line = in(reg) line,
                        options(nostack, preserves_flags, readonly),
                    );
                }
                line += CACHE_LINE;
            }
        }
    }
}

/// Bytes per cache line on x86_64, the step of [`MmapRegion::prefetch_for_write`].
#[cfg(all(target_arch = "x86_64", not(miri)))]
const CACHE_LINE: usize = 64;

/// Whether this CPU has PREFETCHW (CPUID leaf 0x8000_0001, ECX bit 8), asked once.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        // `__cpuid` is a safe function from Rust 1.94 and unsafe before it; the
        // crate's minimum is 1.89.
        #[allow(unused_unsafe)]
        // SAFETY: every x86_64 CPU has CPUID and its extended leaf 0x8000_0001.
        let leaf = unsafe { std::arch::x86_64::__cpuid(0x8000_0001) };
        leaf.ecx & (1 << 8) != 0
    })
}

impl MmapRegion {
    /// The whole mapping as atomic words: the only way the ring touches it.
    #[inline(always)]
    fn words(&self) -> &[AtomicU64] {
        let first = self.map.as_mut_ptr().cast::<AtomicU64>();
        // The map is page-aligned and `len` bytes long, `len` a multiple of 8
        // (Header::from_bytes checks file_len % 8 == 0 before a ring is mapped). Every
        // access to it, from this process or another mmring process, goes through this
        // slice of atomics. Another program writing the file is the residual risk the
        // module documentation states.
        // SAFETY: `first` is 8-aligned and valid for `len / 8` words, which stay mapped
        // for as long as `&self`, and are never accessed non-atomically (above).
        unsafe { std::slice::from_raw_parts(first, self.len / 8) }
    }

    /// msync of the whole mapping.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }
}

/// How a ring file is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write and shared: what every ring handle uses.
    Shared,
    /// Opened read-only and mapped copy-on-write: the process sees the file as it is,
    /// and whatever it stores stays in its private copy. Used by `verify`, which runs
    /// the repair walk without changing the file.
    Private,
}

fn map_file(file: &File, path: &Path, len: u64, access: Access) -> Result<MmapRegion> {
    let len_usize = usize::try_from(len).map_err(|_| Error::InvalidArgument {
        what: format!("a {len}-byte ring does not fit this address space"),
    })?;
    let mut options = memmap2::MmapOptions::new();
    options.len(len_usize);
    let map = match access {
        Access::Shared => options.map_raw(file),
        // memmap2 makes map_copy unsafe because another process may change or
        // truncate the file underneath the map.
        // SAFETY: MmapRegion reaches the bytes only through atomics, as for the shared
        // map; the truncation risk is the one `Ring` documents.
        Access::Private => unsafe { options.map_copy(file) }.map(MmapRaw::from),
    }
    .map_err(|e| Error::io(path, "mmap", e))?;
    Ok(MmapRegion {
        map,
        len: len_usize,
    })
}

/// Opens the ring file at `path` and validates its header against its real length.
pub(crate) fn open(path: &Path) -> Result<(MmapRegion, Header)> {
    open_as(path, Access::Shared)
}

/// [`open`] with the given access.
pub(crate) fn open_as(path: &Path, access: Access) -> Result<(MmapRegion, Header)> {
    let file = OpenOptions::new()
        .read(true)
        .write(access == Access::Shared)
        .custom_flags(OPEN_NONBLOCK)
        .open(path)
        .map_err(|e| open_error(path, e, access))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !meta.is_file() {
        return Err(Error::NotARing {
            path: path.into(),
            reason: "not a regular file".into(),
        });
    }
    let actual_len = meta.len();
    let mut bytes = [0u8; FIXED_HEADER_LEN];
    let got = read_prefix(&file, &mut bytes).map_err(|e| Error::io(path, "read header", e))?;
    let header = Header::from_bytes(&bytes[..got], actual_len).map_err(|e| match e {
        HeaderError::NotARing(reason) => Error::NotARing {
            path: path.into(),
            reason,
        },
        HeaderError::Version(found) => Error::UnsupportedVersion {
            path: path.into(),
            found,
            supported: format::FORMAT_VERSION,
        },
        HeaderError::Corrupt { offset, what } => Error::Corrupt { offset, what },
    })?;
    let region = map_file(&file, path, header.file_len, access)?;
    Ok((region, header))
}

/// Opening a FIFO read-only waits for a writer to appear; non-blocking, the open
/// returns and the regular-file check refuses it. On a regular file the flag changes
/// nothing. (The bits are a small positive constant, so the cast is exact.)
const OPEN_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn open_error(path: &Path, e: io::Error, access: Access) -> Error {
    let op = match (e.kind(), access) {
        (io::ErrorKind::PermissionDenied, Access::Shared) => {
            "open for reading and writing (a ring needs both)"
        }
        (io::ErrorKind::PermissionDenied, Access::Private) => "open for reading",
        _ => "open",
    };
    Error::io(path, op, e)
}

/// Creates the ring file at `path`: written in full under a temporary name in the same
/// directory, then linked into place, so no process ever sees a half-initialized ring
/// and exactly one of several concurrent creators wins.
pub(crate) fn create(path: &Path, header: &Header, mode: u32) -> Result<MmapRegion> {
    if path.exists() {
        return Err(Error::AlreadyExists { path: path.into() });
    }
    let (file, staging) = create_staging(path, mode)?;
    let result = publish(&file, path, &staging, header);
    // The staging name is ours alone (created with O_EXCL): remove it whatever happened.
    let _ = std::fs::remove_file(&staging);
    result
}

/// Creates a staging file next to `path` under a name no other thread or process
/// uses: the PID and a per-process counter, created with O_EXCL, trying the next
/// number if a file of that name was left behind.
fn create_staging(path: &Path, mode: u32) -> Result<(File, PathBuf)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let staging = path.with_file_name(format!(".{name}.{}.{n}.mmring-tmp", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&staging)
        {
            Ok(file) => return Ok((file, staging)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(path, "create", e)),
        }
    }
}

/// Preallocates and initializes the staging file, then links it to `path`, which
/// fails if `path` exists: the ring appears whole or not at all.
fn publish(file: &File, path: &Path, staging: &Path, header: &Header) -> Result<MmapRegion> {
    preallocate(file, header.file_len).map_err(|e| Error::io(path, "preallocate", e))?;
    let region = map_file(file, path, header.file_len, Access::Shared)?;
    // The file is all zeroes: positions 0, counters 0, every stamp "never written".
    region.write(0, &header.to_bytes());
    region.flush().map_err(|e| Error::io(path, "msync", e))?;
    match std::fs::hard_link(staging, path) {
        Ok(()) => Ok(region),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(Error::AlreadyExists { path: path.into() })
        }
        Err(e) => Err(Error::io(path, "link into place", e)),
    }
}

/// Allocates every block now, so a full disk fails here instead of raising SIGBUS on
/// a later write through the mapping.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // File systems without fallocate: extend sparsely (documented in ROBUSTNESS.md).
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Policy;
    use crate::sync::Ordering;

    #[test]
    fn prefetch_for_write_changes_nothing_and_never_faults_at_any_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let len = 3 * 4096;
        let region = create(&path, &Header::new(len, 0, Policy::Reject, 1000, 0), 0o600).unwrap();
        let words = region.atomics(0, region.len() / 8);
        for (i, word) in words.iter().enumerate().skip(format::HEADER_LEN / 8) {
            word.store(i as u64 * 0x0101_0101, Ordering::Relaxed);
        }
        let before: Vec<u64> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        let n = region.len();
        for (off, len) in [
            (0, n),
            (4096, 120),
            (4097, 63),
            (n - 8, 8),
            (n - 8, 4096),
            (n, 64),
            (n + 4096, 1),
            (usize::MAX, usize::MAX),
            (7, usize::MAX),
            (0, 0),
        ] {
            region.prefetch_for_write(off, len);
        }
        let after: Vec<u64> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert_eq!(before, after);
    }
}
