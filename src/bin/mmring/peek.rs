//! `mmring peek`: print entries without removing them.

use std::io::{self, BufWriter, Write};

use mmring::{Error, Ring};

use crate::cli::PeekArgs;
use crate::output::{stdout_failure, write_entry};
use crate::{AtPath, Failure, Outcome, warn};

/// Prints up to `-n` live entries, oldest first. Corrupt records are reported on
/// stderr and reflected in the exit status; the ring is not changed.
pub(crate) fn run(args: &PeekArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    let limit = args.count.unwrap_or(u64::MAX);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut shown = 0;
    let mut skipped = 0;
    for item in ring.peek() {
        if shown >= limit {
            break;
        }
        match item {
            Ok(entry) => {
                shown += 1;
                write_entry(&mut out, &entry, args.format).map_err(stdout_failure)?;
            }
            Err(error @ Error::Corrupt { .. }) => {
                skipped += 1;
                warn(
                    &args.path.display(),
                    &Failure::Ring {
                        path: args.path.clone(),
                        error,
                    },
                );
            }
            Err(error) => return Err(error).at(&args.path),
        }
    }
    out.flush().map_err(stdout_failure)?;
    if skipped > 0 {
        return Err(Failure::Skipped {
            path: args.path.clone(),
            count: skipped,
        });
    }
    Ok(())
}
