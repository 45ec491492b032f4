//! Shared pieces of the mmring fuzz targets: the file layout constants they patch
//! (as docs/FORMAT.md specifies them), scratch files, and self-describing payloads.

use std::path::PathBuf;

/// Length of the file header; the record region starts here.
pub const HEADER_LEN: u64 = 4096;
/// Length of the checksummed static header.
pub const STATIC_HEADER_LEN: usize = 64;
/// `[u8; 8]` magic.
pub const MAGIC: [u8; 8] = *b"\x89MMRING\n";
/// `u32` format version.
pub const VERSION_OFFSET: usize = 8;
/// `u32` header length.
pub const HEADER_LEN_OFFSET: usize = 12;
/// `u64` file length.
pub const FILE_LEN_OFFSET: usize = 16;
/// `u64` region length.
pub const REGION_LEN_OFFSET: usize = 24;
/// `u32` abandon timeout in milliseconds.
pub const ABANDON_MS_OFFSET: usize = 40;
/// `u32` flags: bit 0 batch runs, bit 1 stamp key.
pub const FLAGS_OFFSET: usize = 44;
/// `flags` bit: the stamps are XORed with the stamp key.
pub const FLAG_STAMP_KEY: u32 = 2;
/// `u32` CRC32C of bytes 0..60.
pub const HEADER_CRC_OFFSET: usize = 60;
/// `u64` stamp key (with `FLAG_STAMP_KEY`).
pub const STAMP_KEY_OFFSET: usize = 64;
/// The bits a stamp key may have: 3 to 61.
pub const STAMP_KEY_MASK: u64 = 0x3FFF_FFFF_FFFF_FFF8;
/// `u32` CRC32C of the stamp key's 8 bytes (with `FLAG_STAMP_KEY`).
pub const STAMP_KEY_CRC_OFFSET: usize = 72;
/// Length of the header written once at creation: the static header, the stamp key
/// and its checksum.
pub const FIXED_HEADER_LEN: usize = 76;
/// `u64` write position.
pub const WRITE_POS_OFFSET: usize = 128;
/// `u64` read position.
pub const READ_POS_OFFSET: usize = 256;
/// Length of a record header.
pub const REC_HEADER_LEN: u64 = 56;

/// Bytes a record with a `len`-byte payload occupies in the region.
pub fn record_len(len: usize) -> u64 {
    (REC_HEADER_LEN + len as u64).next_multiple_of(8)
}

/// A file path private to this process and `name`, on tmpfs when there is one (the
/// targets create and map a file per input, which must be cheap). The file is removed
/// first, so each input starts from nothing.
pub fn scratch_path(name: &str) -> PathBuf {
    let dir = ["/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("mmring-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The payload of the `seq`-th push: every byte depends on `seq`, so a payload from
/// another entry, a torn copy or a shifted one never equals it.
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}
