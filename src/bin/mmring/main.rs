//! `mmring`: create, fill, drain and inspect ring files from the shell, and `mmring
//! demo`, which shows producer and consumer processes sharing one ring.
//!
//! This binary is a thin layer over the library's public API. Each subcommand lives in
//! its own module and returns a [`Failure`]; this file turns a failure into one line on
//! stderr and an exit code, in one place ([`Failure::exit_code`]).

// Under `--cfg loom` only the stub `main` below is built.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(loom))]
mod bench;
#[cfg(not(loom))]
mod cli;
#[cfg(not(loom))]
mod create;
#[cfg(not(loom))]
mod demo;
#[cfg(not(loom))]
mod demo_wire;
#[cfg(not(loom))]
mod demo_worker;
#[cfg(not(loom))]
mod dump;
#[cfg(not(loom))]
mod info;
#[cfg(not(loom))]
mod output;
#[cfg(not(loom))]
mod peek;
#[cfg(not(loom))]
mod pop;
#[cfg(not(loom))]
mod push;
#[cfg(not(loom))]
mod tail;
#[cfg(not(loom))]
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when everything worked.
const EXIT_OK: u8 = 0;
/// The demo found lost, duplicated, corrupt or reordered entries, or a worker failed.
const EXIT_CHECK_FAILED: u8 = 1;
/// Bad command-line arguments (clap uses 2 for its own usage errors too).
const EXIT_USAGE: u8 = 2;
/// A file could not be opened, created, read or written.
const EXIT_IO: u8 = 3;
/// The file is not a ring, has an unsupported version, or holds damaged records.
const EXIT_BAD_RING: u8 = 4;
/// The ring is full and rejects pushes.
const EXIT_FULL: u8 = 5;
/// `create` found the path taken (use `--force`).
const EXIT_EXISTS: u8 = 6;
/// `pop --wait --timeout` ran out of time.
const EXIT_TIMEOUT: u8 = 7;
/// `verify`: problems found.
const EXIT_VERIFY_PROBLEMS: u8 = 1;
/// `verify`: not a ring file, or unreadable.
const EXIT_VERIFY_UNREADABLE: u8 = 2;

/// The exit codes, as `mmring --help` lists them.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  the demo found a lost, duplicated, corrupt or reordered entry, or a worker failed
  2  invalid arguments
  3  a file could not be opened, created, read or written
  4  not a ring file, unsupported format version, or damaged ring data
  5  the ring is full and rejects pushes
  6  the ring file already exists (create --force replaces it)
  7  pop --wait --timeout: the time ran out before enough entries arrived
A closed stdout (as in `mmring pop --all | head -1`) ends a command quietly, status 0
(verify keeps its verdict).
mmring verify: 0 clean, 1 problems found, 2 not a ring file or unreadable";

/// Why a command failed. Every variant knows what it concerns (a path, `stdin`,
/// `demo`, ...) and maps to one exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library refused an operation on the ring at `path`.
    Ring {
        /// The ring file.
        path: PathBuf,
        /// What the library said.
        error: mmring::Error,
    },
    /// Reading or writing something other than the ring failed.
    Io {
        /// What was being read or written: `stdin`, `stdout`, a path.
        what: String,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The reader of stdout closed it (`mmring pop --all | head -1`): not an error of
    /// mmring's, so the command ends quietly with status 0, as a program killed by
    /// `SIGPIPE` would end without a word.
    StdoutClosed,
    /// An argument is out of range in a way clap could not check.
    Usage {
        /// The argument, or the file it concerns.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// Records were skipped as corrupt (each was reported on stderr as it was met).
    Skipped {
        /// The ring file.
        path: PathBuf,
        /// How many records.
        count: u64,
    },
    /// The demo's verification or one of its worker processes failed.
    Check {
        /// What failed.
        message: String,
    },
    /// The benchmark or one of its workers failed.
    Bench {
        /// What failed.
        message: String,
    },
    /// `pop --wait --timeout` ran out of time.
    TimedOut {
        /// The ring file.
        path: PathBuf,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// `verify` could not read the file as a ring.
    Unverifiable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: mmring::Error,
    },
    /// `verify` found problems (each was printed on stdout).
    ProblemsFound {
        /// The ring file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// Whether `--repair` fixed them.
        repaired: bool,
        /// Whether the header is damaged, which no repair fixes.
        header: bool,
    },
}

/// What every subcommand returns.
pub(crate) type Outcome = Result<(), Failure>;

impl Failure {
    /// The one place where failures become exit codes.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Ring { error, .. } => match error {
                mmring::Error::Full => EXIT_FULL,
                mmring::Error::TooLarge { .. } | mmring::Error::InvalidArgument { .. } => {
                    EXIT_USAGE
                }
                mmring::Error::Io { .. } => EXIT_IO,
                mmring::Error::AlreadyExists { .. } => EXIT_EXISTS,
                mmring::Error::Corrupt { .. }
                | mmring::Error::NotARing { .. }
                | mmring::Error::UnsupportedVersion { .. } => EXIT_BAD_RING,
                // A variant added to the library later: a failure all the same.
                _ => EXIT_CHECK_FAILED,
            },
            Failure::Io { .. } => EXIT_IO,
            Failure::StdoutClosed => EXIT_OK,
            Failure::Usage { .. } => EXIT_USAGE,
            Failure::Skipped { .. } => EXIT_BAD_RING,
            Failure::Check { .. } | Failure::Bench { .. } => EXIT_CHECK_FAILED,
            Failure::TimedOut { .. } => EXIT_TIMEOUT,
            Failure::Unverifiable { .. } => EXIT_VERIFY_UNREADABLE,
            Failure::ProblemsFound { .. } => EXIT_VERIFY_PROBLEMS,
        }
    }

    /// What the failure concerns: the first field of the stderr line.
    fn subject(&self) -> String {
        match self {
            Failure::Ring { path, .. }
            | Failure::Skipped { path, .. }
            | Failure::TimedOut { path, .. }
            | Failure::Unverifiable { path, .. }
            | Failure::ProblemsFound { path, .. } => path.display().to_string(),
            Failure::Io { what, .. } | Failure::Usage { what, .. } => what.clone(),
            Failure::StdoutClosed => "stdout".to_owned(),
            Failure::Check { .. } => "demo".to_owned(),
            Failure::Bench { .. } => "bench".to_owned(),
        }
    }
}

impl fmt::Display for Failure {
    /// The message without its subject. Library messages that already name the path
    /// are rebuilt from their fields so the path appears once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Ring { error, .. } => fmt_ring_error(error, f),
            Failure::Io { error, .. } => write!(f, "{error}"),
            Failure::StdoutClosed => f.write_str("closed by its reader"),
            Failure::Usage { message, .. } => f.write_str(message),
            Failure::Skipped { count, .. } => write!(
                f,
                "{count} corrupt record(s) were skipped (each is reported above)"
            ),
            Failure::Check { message } | Failure::Bench { message } => f.write_str(message),
            Failure::TimedOut { waited, .. } => write!(
                f,
                "timed out after {:.3} s waiting for entries",
                waited.as_secs_f64()
            ),
            Failure::Unverifiable { error, .. } => fmt_ring_error(error, f),
            Failure::ProblemsFound { header: true, .. } => f.write_str(
                "the header is damaged (listed on stdout); `--repair` does not guess its \
                 fields: restore the file from a copy, or create the ring anew",
            ),
            Failure::ProblemsFound {
                count,
                repaired: false,
                ..
            } => write!(
                f,
                "{count} problem(s) found (listed on stdout); `mmring verify --repair` makes \
                 the ring usable again"
            ),
            Failure::ProblemsFound {
                count,
                repaired: true,
                ..
            } => write!(
                f,
                "{count} problem(s) found and repaired (listed on stdout); the ring is usable"
            ),
        }
    }
}

/// A library error's message, minus the path the `mmring: <path>:` prefix already gives.
fn fmt_ring_error(error: &mmring::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match error {
        mmring::Error::Io { op, source, .. } => write!(f, "{op} failed: {source}"),
        mmring::Error::NotARing { reason, .. } => {
            write!(f, "not an mmring ring file: {reason}")
        }
        mmring::Error::UnsupportedVersion {
            found, supported, ..
        } => write!(
            f,
            "ring format version {found} is not supported (this build reads version \
             {supported}); use a matching mmring release"
        ),
        mmring::Error::AlreadyExists { .. } => {
            f.write_str("already exists; remove it first or pass --force")
        }
        other => write!(f, "{other}"),
    }
}

/// Attaches the ring's path to a library result.
pub(crate) trait AtPath<T> {
    /// `Err(error)` becomes `Failure::Ring { path, error }`.
    fn at(self, path: &Path) -> Result<T, Failure>;
}

impl<T> AtPath<T> for mmring::Result<T> {
    fn at(self, path: &Path) -> Result<T, Failure> {
        self.map_err(|error| Failure::Ring {
            path: path.to_path_buf(),
            error,
        })
    }
}

/// Prints `mmring: <subject>: <message>` on stderr: the format of every diagnostic.
pub(crate) fn warn(subject: &dyn fmt::Display, message: &dyn fmt::Display) {
    eprintln!("mmring: {subject}: {message}");
}

#[cfg(not(loom))]
fn main() -> ExitCode {
    use clap::Parser;

    // A panic is a bug in mmring; report it on one line like every other failure
    // (exit status 101), not as a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|at| format!(" at {}:{}", at.file(), at.line()))
            .unwrap_or_default();
        warn(
            &"mmring",
            &format!("internal error{location}: {message}; please report it"),
        );
    }));
    let cli = cli::Cli::parse();
    let outcome = match cli.command {
        cli::Command::Create(args) => create::run(&args),
        cli::Command::Push(args) => push::run(&args),
        cli::Command::Pop(args) => pop::run(&args),
        cli::Command::Peek(args) => peek::run(&args),
        cli::Command::Tail(args) => tail::run(&args),
        cli::Command::Info(args) => info::run(&args),
        cli::Command::Dump(args) => dump::run(&args),
        cli::Command::Verify(args) => verify::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
        cli::Command::BenchWorker(args) => bench::worker(&args),
        cli::Command::Completions(args) => cli::completions(args.shell),
        cli::Command::Man => cli::man_page(),
        cli::Command::Demo(args) => demo::run(&args),
        cli::Command::DemoWorker(args) => demo_worker::run(&args),
    };
    match outcome {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::from(EXIT_OK),
        Err(failure) => {
            warn(&failure.subject(), &failure);
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Under `--cfg loom` the library exposes only its model-checking support, so the
/// command-line tool is not built; this stub keeps `cargo test --test loom` compiling.
#[cfg(loom)]
fn main() -> ExitCode {
    warn(
        &"mmring",
        &"the command-line tool is not available under --cfg loom",
    );
    ExitCode::from(EXIT_USAGE)
}
