//! Creates the smallest possible ring (8192 bytes: the 4096-byte header and a
//! 4096-byte region), pushes two short entries, and prints an `xxd`-style hexdump of
//! every part of the file that is not zero: the static header, the stamp key, the
//! write and read position slots, and the two records.
//!
//! docs/FORMAT.md uses this output as its worked example, annotated field by field.
//!
//! ```text
//! cargo run --example tiny_ring
//! ```

use std::time::Duration;

use mmring::{OnFull, Options};

/// File offset where the region (and so the record at position 0) starts.
const REGION_OFFSET: usize = 4096;

/// The parts of the file worth showing, as `(title, file offset, length)`. Each length
/// is a multiple of 16 so that every line of the dump is a full `xxd` line.
const SECTIONS: [(&str, usize, usize); 5] = [
    ("static header, bytes 0..64", 0, 64),
    ("stamp key, bytes 64..80", 64, 16),
    ("write_pos slot: write_pos, pushed, evicted", 128, 32),
    ("read_pos slot: read_pos, popped", 256, 16),
    ("region: records at positions 0 and 64", REGION_OFFSET, 128),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny.ring");
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .create(&path)?;
    let hello = ring.push(b"hello")?;
    let world = ring.push_with_ttl(b"world!", Duration::from_secs(60))?;
    ring.flush()?;

    println!(
        "# ring: 8192 bytes, on_full=reject, entries \"hello\" (id {hello}) and \"world!\" (id {world}, ttl 60 s)"
    );
    let bytes = std::fs::read(&path)?;
    for (title, start, len) in SECTIONS {
        println!("# {title}");
        for line in bytes[start..start + len].chunks(16).enumerate() {
            let (index, chunk) = line;
            println!("{}", xxd_line(start + index * 16, chunk));
        }
    }
    Ok(())
}

/// One line as `xxd` prints it: the offset, eight groups of two bytes in hex, then the
/// bytes as ASCII with `.` for anything unprintable.
fn xxd_line(offset: usize, chunk: &[u8]) -> String {
    let groups: Vec<String> = chunk
        .chunks(2)
        .map(|pair| pair.iter().map(|byte| format!("{byte:02x}")).collect())
        .collect();
    let ascii: String = chunk
        .iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '.'
            }
        })
        .collect();
    format!("{offset:08x}: {:<39}  {ascii}", groups.join(" "))
}
