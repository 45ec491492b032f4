//! Printing entries in the shared output formats (`--format text|hex|json|raw`), and
//! the small JSON and base64 encoders that needs.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use mmring::{Entry, Error};

use crate::cli::Format;
use crate::{AtPath, Failure, Outcome, warn};

/// Prints up to `limit` entries from `entries` to stdout. A corrupt record is reported
/// on stderr and the listing goes on; the outcome then says records were skipped.
/// Shared by `pop` (entries it removes) and `peek` (entries it only reads).
///
/// With `flush_each`, every entry is written out before the next is asked for: for
/// `pop --wait`, whose next entry may take long to come, so that an entry already
/// removed from the ring is never held back in the buffer (and lost if the command
/// is then interrupted).
pub(crate) fn print_entries(
    path: &Path,
    entries: impl Iterator<Item = mmring::Result<Entry>>,
    limit: u64,
    format: Format,
    flush_each: bool,
) -> Outcome {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut printed = 0;
    let mut skipped = 0;
    for item in entries {
        match item {
            Ok(entry) => {
                printed += 1;
                write_entry(&mut out, &entry, format).map_err(stdout_failure)?;
                if flush_each {
                    out.flush().map_err(stdout_failure)?;
                }
            }
            Err(error @ Error::Corrupt { .. }) => {
                skipped += 1;
                warn(
                    &path.display(),
                    &Failure::Ring {
                        path: path.to_path_buf(),
                        error,
                    },
                );
            }
            Err(error) => return Err(error).at(path),
        }
        if printed >= limit {
            break;
        }
    }
    out.flush().map_err(stdout_failure)?;
    if skipped > 0 {
        return Err(Failure::Skipped {
            path: path.to_path_buf(),
            count: skipped,
        });
    }
    Ok(())
}

/// Writes `entry` to `out` in `format`.
pub(crate) fn write_entry(out: &mut impl Write, entry: &Entry, format: Format) -> io::Result<()> {
    let data = entry.data();
    match format {
        Format::Text => {
            out.write_all(String::from_utf8_lossy(data).as_bytes())?;
            out.write_all(b"\n")
        }
        Format::Hex => {
            let mut line = String::with_capacity(data.len() * 2 + 1);
            for byte in data {
                line.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                line.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
            }
            line.push('\n');
            out.write_all(line.as_bytes())
        }
        Format::Json => {
            let written_at_ms = entry
                .written_at()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis());
            let (encoding, text) = match std::str::from_utf8(data) {
                Ok(text) => ("utf-8", json_string(text)),
                Err(_) => ("base64", json_string(&base64(data))),
            };
            writeln!(
                out,
                "{{\"id\":{},\"version\":{},\"ttl_secs\":{},\"written_at_ms\":{},\"size\":{},\
                 \"encoding\":\"{encoding}\",\"data\":{text}}}",
                entry.id(),
                entry.version(),
                entry.ttl().as_secs(),
                written_at_ms,
                data.len(),
            )
        }
        Format::Raw => out.write_all(data),
    }
}

/// A write to stdout failed; its reader closing it is not an error of ours.
pub(crate) fn stdout_failure(error: io::Error) -> Failure {
    if error.kind() == io::ErrorKind::BrokenPipe {
        return Failure::StdoutClosed;
    }
    Failure::Io {
        what: "stdout".to_owned(),
        error,
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `text` as a quoted JSON string.
pub(crate) fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                quoted.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let bits = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        // A chunk of n bytes yields n + 1 significant characters.
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (bits >> (18 - 6 * index)) & 0x3f;
                encoded.push(char::from(ALPHABET[sextet as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "base64({plain:?})");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("plain"), "\"plain\"");
        assert_eq!(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(json_string("l1\nl2\t\u{1}"), "\"l1\\nl2\\t\\u0001\"");
        assert_eq!(json_string("żółw"), "\"żółw\"");
    }
}
