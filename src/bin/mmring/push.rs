//! `mmring push`: append the arguments, or each line (or NUL-separated item, or all)
//! of stdin, as entries.

use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;

use mmring::Ring;

use crate::cli::PushArgs;
use crate::output::stdout_failure;
use crate::{AtPath, Failure, Outcome};

/// Pushes every entry in order; stops at the first failure (entries pushed before it
/// stay in the ring).
pub(crate) fn run(args: &PushArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    // Reads from stdin stop just past the largest entry the ring takes: a longer one
    // is refused without holding all of it (or an endless stream) in memory.
    let max = ring.max_entry_size() as u64;
    let too_long = || Failure::Usage {
        what: "stdin".to_owned(),
        message: format!(
            "an entry is longer than this ring's maximum of {max} bytes; create a larger ring"
        ),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut push_one = |data: &[u8]| -> Outcome {
        let id = match args.ttl {
            Some(ttl) => ring.push_with_ttl(data, ttl),
            None => ring.push(data),
        }
        .at(&args.path)?;
        if args.verbose {
            writeln!(out, "{id}").map_err(stdout_failure)?;
        }
        Ok(())
    };
    if !args.data.is_empty() {
        for data in &args.data {
            push_one(data.as_bytes())?;
        }
    } else if args.raw {
        let mut all = Vec::new();
        io::stdin()
            .lock()
            .take(max + 1)
            .read_to_end(&mut all)
            .map_err(stdin_failure)?;
        if all.len() as u64 > max {
            return Err(too_long());
        }
        push_one(&all)?;
    } else {
        let separator = if args.null { b'\0' } else { b'\n' };
        let stdin = io::stdin();
        let mut input = stdin.lock();
        let mut item = Vec::new();
        loop {
            item.clear();
            // Two bytes past the largest entry: room for a line's `\r\n`.
            let limit = max + 2;
            let read = input
                .by_ref()
                .take(limit)
                .read_until(separator, &mut item)
                .map_err(stdin_failure)?;
            if read == 0 {
                break;
            }
            if read as u64 == limit && item.last() != Some(&separator) {
                return Err(too_long());
            }
            if args.null {
                push_one(item.strip_suffix(b"\0").unwrap_or(&item))?;
            } else {
                push_one(strip_line_ending(&item))?;
            }
        }
    }
    out.flush().map_err(stdout_failure)
}

fn stdin_failure(error: io::Error) -> Failure {
    Failure::Io {
        what: "stdin".to_owned(),
        error,
    }
}

/// `line` without its trailing `\n` or `\r\n`.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::strip_line_ending;

    #[test]
    fn line_endings_are_stripped_but_inner_bytes_kept() {
        assert_eq!(strip_line_ending(b"abc\n"), b"abc");
        assert_eq!(strip_line_ending(b"abc\r\n"), b"abc");
        assert_eq!(strip_line_ending(b"abc"), b"abc");
        assert_eq!(strip_line_ending(b"a\rb\n"), b"a\rb");
        assert_eq!(strip_line_ending(b"\n"), b"");
    }
}
