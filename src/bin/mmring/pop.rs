//! `mmring pop`: remove the oldest entries and print them.

use mmring::Ring;

use crate::cli::PopArgs;
use crate::output::print_entries;
use crate::{AtPath, Outcome};

/// Pops up to `-n` entries (or all with `--all`), printing each as it is taken. A
/// corrupt record is reported on stderr and skipped, and popping goes on; the exit
/// status then says records were skipped.
pub(crate) fn run(args: &PopArgs) -> Outcome {
    let ring = Ring::open(&args.path).at(&args.path)?;
    let limit = if args.all { u64::MAX } else { args.count };
    if limit == 0 {
        return Ok(());
    }
    // pop() yields Ok(None) when nothing is ready: that ends the listing.
    let popped = std::iter::from_fn(|| ring.pop().transpose());
    print_entries(&args.path, popped, limit, args.format)
}
