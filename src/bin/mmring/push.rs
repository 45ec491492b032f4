//! `mmring push`: append the arguments, or each line of stdin, as entries.

use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;

use mmring::Ring;

use crate::cli::PushArgs;
use crate::output::stdout_failure;
use crate::{AtPath, Failure, Outcome};

/// Pushes every entry in order; stops at the first failure (entries pushed before it
/// stay in the ring).
pub(crate) fn run(args: &PushArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
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
    if args.data.is_empty() {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = input
                .read_until(b'\n', &mut line)
                .map_err(|error| Failure::Io {
                    what: "stdin".to_owned(),
                    error,
                })?;
            if read == 0 {
                break;
            }
            push_one(strip_line_ending(&line))?;
        }
    } else {
        for data in &args.data {
            push_one(data.as_bytes())?;
        }
    }
    out.flush().map_err(stdout_failure)
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
