//! `mmring pop`: remove the oldest entries and print them.

use std::io::{self, BufWriter, Write};

use mmring::{Error, Ring};

use crate::cli::PopArgs;
use crate::output::{stdout_failure, write_entry};
use crate::{AtPath, Failure, Outcome, warn};

/// Pops up to `-n` entries (or all with `--all`), printing each as it is taken. A
/// corrupt record is reported on stderr and skipped, and popping goes on; the exit
/// status then says records were skipped.
pub(crate) fn run(args: &PopArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    let limit = if args.all { u64::MAX } else { args.count };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut taken = 0;
    let mut skipped = 0;
    while taken < limit {
        match ring.pop() {
            Ok(Some(entry)) => {
                taken += 1;
                write_entry(&mut out, &entry, args.format).map_err(stdout_failure)?;
            }
            Ok(None) => break,
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
