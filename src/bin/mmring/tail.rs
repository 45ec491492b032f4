//! `mmring tail`: print entries without removing them, and with `-f` keep printing
//! new ones as they are pushed, asleep on the ring's futex while idle.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mmring::{Entry, Error, Ring};

use crate::cli::Format;
use crate::output::{stdout_failure, write_entry};
use crate::{AtPath, Failure, Outcome, warn};

/// How long one wait lasts before `tail -f` looks again; waits end as soon as an
/// entry is pushed, so this only bounds how long a wait that no push ends takes.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// `mmring tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Keep running, printing entries as they are pushed, until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Read as the persistent subscriber NAME (created if needed): start after its
    /// last commit, and commit after each printed entry.
    #[arg(long, value_name = "NAME")]
    pub subscriber: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Prints the live entries from the subscriber's position (or the oldest), then,
/// with `--follow`, every new entry. Damaged records and missed entries are reported
/// on stderr and printing goes on; without `--follow` the exit status then says so.
pub(crate) fn run(args: &TailArgs) -> Outcome {
    let path = &args.path;
    let ring = Ring::open(path).at(path)?;
    let mut source = match &args.subscriber {
        Some(name) => Source::Subscriber(ring.subscribe(name).at(path)?),
        None => Source::Follower(ring.follow()),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut skipped = 0;
    loop {
        let next = if args.follow {
            source.next_timeout(WAIT_SLICE)
        } else {
            source.next()
        };
        match next {
            Ok(Some(entry)) => {
                write_entry(&mut out, &entry, args.format).map_err(stdout_failure)?;
                out.flush().map_err(stdout_failure)?;
                source.commit().at(path)?;
            }
            Ok(None) if args.follow => {}
            Ok(None) => break,
            Err(error @ (Error::Corrupt { .. } | Error::Lapped { .. })) => {
                skipped += 1;
                warn(&path.display(), &error);
            }
            Err(error) => return Err(error).at(path),
        }
    }
    if skipped > 0 {
        return Err(Failure::Skipped {
            path: path.clone(),
            count: skipped,
        });
    }
    Ok(())
}

/// Where the entries come from.
enum Source<'a> {
    Subscriber(mmring::Subscriber<'a>),
    Follower(mmring::Follower<'a>),
}

impl Source<'_> {
    fn next(&mut self) -> mmring::Result<Option<Entry>> {
        match self {
            Source::Subscriber(sub) => sub.next(),
            Source::Follower(follower) => follower.next(),
        }
    }

    fn next_timeout(&mut self, timeout: Duration) -> mmring::Result<Option<Entry>> {
        match self {
            Source::Subscriber(sub) => sub.next_timeout(timeout),
            Source::Follower(follower) => follower.next_timeout(timeout),
        }
    }

    fn commit(&mut self) -> mmring::Result<()> {
        match self {
            Source::Subscriber(sub) => sub.commit(),
            Source::Follower(_) => Ok(()),
        }
    }
}
