//! `mmring peek`: print entries without removing them.

use mmring::Ring;

use crate::cli::PeekArgs;
use crate::output::print_entries;
use crate::{AtPath, Outcome};

/// Prints up to `-n` live entries, oldest first. Corrupt records are reported on
/// stderr and reflected in the exit status; the ring is not changed.
pub(crate) fn run(args: &PeekArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    let limit = args.count.unwrap_or(u64::MAX);
    if limit == 0 {
        return Ok(());
    }
    print_entries(&args.path, ring.peek(), limit, args.format, false)
}
