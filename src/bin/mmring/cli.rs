//! The command line: clap definitions for every subcommand, and parsers for human
//! sizes (`64MiB`), durations (`30s`) and file modes (`0600`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::EXIT_CODES_HELP;

/// Default entries per producer in `mmring demo`: a run of a second or two in a
/// release build; a twentieth of that in a debug build, which is many times slower.
pub(crate) const DEMO_DEFAULT_ENTRIES: u64 = if cfg!(debug_assertions) {
    50_000
} else {
    1_000_000
};

/// A persistent, lock-free ring buffer in a memory-mapped file, shared by processes.
#[derive(Debug, Parser)]
#[command(name = "mmring", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new ring file.
    #[command(
        after_help = "Example:\n  mmring create /dev/shm/jobs.ring --size 64MiB --ttl 30s --on-full reject"
    )]
    Create(CreateArgs),
    /// Append entries: the DATA arguments, or else each line of stdin.
    #[command(
        after_help = "Examples:\n  mmring push /dev/shm/jobs.ring hello world      # two entries\n  \
                            printf 'a\\nb\\n' | mmring push -v /dev/shm/jobs.ring   # two entries, print their IDs\n  \
                            mmring push --raw /dev/shm/jobs.ring < photo.jpg  # the whole file as one entry\n  \
                            find . -print0 | mmring push --null /dev/shm/jobs.ring"
    )]
    Push(PushArgs),
    /// Remove and print the oldest entries.
    #[command(
        after_help = "Examples:\n  mmring pop /dev/shm/jobs.ring                    # the oldest entry, as a text line\n  \
                            mmring pop --all --format json /dev/shm/jobs.ring # everything, one JSON object per line\n  \
                            mmring pop --wait --timeout 10s -n 5 /dev/shm/jobs.ring  # wait for five entries\n  \
                            mmring pop --format raw /dev/shm/jobs.ring > entry.bin"
    )]
    Pop(PopArgs),
    /// Print entries without removing them, oldest first.
    #[command(after_help = "Example:\n  mmring peek -n 10 --format hex /dev/shm/jobs.ring")]
    Peek(PeekArgs),
    /// Print entries without removing them; with -f, keep printing new ones.
    #[command(
        after_help = "Examples:\n  mmring tail -f /dev/shm/jobs.ring\n  mmring tail -f --subscriber audit /dev/shm/jobs.ring"
    )]
    Tail(crate::tail::TailArgs),
    /// Describe a ring: format, sizes, capacity, fill, policy and counters.
    #[command(
        after_help = "Examples:\n  mmring info /dev/shm/jobs.ring\n  mmring info --json /dev/shm/jobs.ring"
    )]
    Info(InfoArgs),
    /// Annotated hexdump of a ring file: header fields, and with --records every
    /// record between the read and the write position, field by field.
    #[command(
        after_help = "Examples:\n  mmring dump /dev/shm/jobs.ring                 # the header, field by field\n  \
                            mmring dump --records /dev/shm/jobs.ring       # and every record\n  \
                            mmring dump --offset 4096 -n 256 /dev/shm/jobs.ring"
    )]
    Dump(DumpArgs),
    /// Check a ring file: header, positions, and both checksums of every record.
    /// Exit status 0: clean; 1: problems found (each is listed with its file offset
    /// and field); 2: not a ring file, or unreadable.
    #[command(after_help = "Examples:\n  mmring verify /dev/shm/jobs.ring\n  \
                            mmring verify --repair /dev/shm/jobs.ring   # drop what can't be trusted\n  \
                            mmring verify --json /dev/shm/jobs.ring\n\n\
                            Run --repair while no other process uses the ring.")]
    Verify(VerifyArgs),
    /// Measure throughput and latency on a temporary ring, with threads or processes.
    /// Producers push as fast as they can, so the latency (push to pop) includes the
    /// time entries wait in a full queue.
    #[command(after_help = "Examples:\n  mmring bench\n  \
                            mmring bench --producers 4 --consumers 2 --entry 256 --processes")]
    Bench(BenchArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  mmring completions bash > /etc/bash_completion.d/mmring\n  \
                            mmring completions zsh > \"${fpath[1]}/_mmring\"\n  \
                            mmring completions fish > ~/.config/fish/completions/mmring.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff).
    #[command(after_help = "Example:\n  mmring man > mmring.1 && man ./mmring.1")]
    Man,
    /// Run producer and consumer processes on a temporary ring and verify that every
    /// entry arrives exactly once, intact and in order.
    #[command(
        after_help = "Examples:\n  mmring demo\n  mmring demo --producers 4 --consumers 3 --entries 50000 --entry-size 256"
    )]
    Demo(DemoArgs),
    /// One producer or consumer process of `mmring demo` (started by the demo itself).
    #[command(hide = true)]
    DemoWorker(DemoWorkerArgs),
    /// One producer or consumer process of `mmring bench --processes`.
    #[command(hide = true)]
    BenchWorker(BenchWorkerArgs),
}

/// What a full ring does with a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnFullArg {
    /// Evict the oldest entries.
    Overwrite,
    /// Refuse the push (exit status 5).
    Reject,
    /// Wait until consumers free room.
    Block,
}

impl From<OnFullArg> for mmring::OnFull {
    fn from(arg: OnFullArg) -> mmring::OnFull {
        match arg {
            OnFullArg::Overwrite => mmring::OnFull::Overwrite,
            OnFullArg::Reject => mmring::OnFull::Reject,
            OnFullArg::Block => mmring::OnFull::Block,
        }
    }
}

/// `mmring create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The ring file to create.
    pub path: PathBuf,
    /// Total file size including the 4 KiB header: bytes, or with a unit (64KiB, 16MiB, 1GiB, 1MB).
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Default time to live of entries (e.g. 30s, 5m, 1h); 0 means never expire.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub ttl: Duration,
    /// What a push does when the ring is full.
    #[arg(long, value_enum, default_value_t = OnFullArg::Overwrite)]
    pub on_full: OnFullArg,
    /// Permission bits of the new file, in octal.
    #[arg(long, value_parser = parse_mode, default_value = "0600")]
    pub mode: u32,
    /// How long a producer may hold a reservation before readers skip it (e.g. 2s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub abandon_timeout: Duration,
    /// Replace an existing file at PATH.
    #[arg(long)]
    pub force: bool,
}

/// `mmring push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Entries to push, one per argument. Without any, each line of stdin (without its
    /// line ending) is an entry.
    pub data: Vec<OsString>,
    /// Time to live of these entries (e.g. 30s); default: the ring's default TTL.
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
    /// Print the ID of each pushed entry on stdout, one per line.
    #[arg(short, long)]
    pub verbose: bool,
    /// Read all of stdin as one entry.
    #[arg(long, conflicts_with_all = ["data", "null"])]
    pub raw: bool,
    /// Split stdin on NUL bytes instead of lines (as `find -print0` writes).
    #[arg(long, short = '0', conflicts_with = "data")]
    pub null: bool,
}

/// How entries are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The payload as a line of text (invalid UTF-8 replaced by U+FFFD).
    Text,
    /// The payload as a line of lowercase hex.
    Hex,
    /// One JSON object per line: id, version, ttl_secs, written_at_ms, size, encoding, data.
    Json,
    /// The payloads' bytes exactly, with nothing between them.
    Raw,
}

/// `mmring pop`.
#[derive(Debug, Args)]
pub(crate) struct PopArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Pop at most N entries.
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 1)]
    pub count: u64,
    /// Pop every entry that is ready.
    #[arg(long, conflicts_with = "count")]
    pub all: bool,
    /// Wait for entries when the ring is empty: until N have been popped (with
    /// --all, until the first one arrives, then everything ready).
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 500ms, 10s): exit status 7 if nothing
    /// arrived. Without it, --wait waits forever.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `mmring peek`.
#[derive(Debug, Args)]
pub(crate) struct PeekArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Print at most N entries (default: all).
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `mmring info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `mmring dump`.
#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    /// The ring file (need not be a valid ring: a damaged file can be dumped too).
    pub path: PathBuf,
    /// First file offset to show (e.g. 4096, 4KiB).
    #[arg(long, value_parser = parse_size)]
    pub offset: Option<u64>,
    /// Number of bytes to show (default: the header, or with --records the whole file).
    #[arg(short = 'n', long = "length", value_name = "BYTES", value_parser = parse_size)]
    pub length: Option<u64>,
    /// Also show every record between the read and the write position.
    #[arg(long)]
    pub records: bool,
}

/// `mmring verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The ring file.
    pub path: PathBuf,
    /// Make the ring usable again: reset impossible positions and mark damaged
    /// records so that readers skip them; lists what was dropped.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `mmring bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Producer threads (or processes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
    /// Consumer threads (or processes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub consumers: u32,
    /// Size of the temporary ring file.
    #[arg(long, value_parser = parse_size, default_value = "16MiB")]
    pub size: u64,
    /// Payload bytes per entry (at least 8: the send time).
    #[arg(long, value_parser = parse_size, default_value = "64")]
    pub entry: u64,
    /// Entries each producer pushes.
    #[arg(long, default_value_t = BENCH_DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub entries: u64,
    /// Run producers and consumers as separate processes instead of threads.
    #[arg(long)]
    pub processes: bool,
    /// Entries per push_batch and pop_batch (1: one push or pop_into per entry).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
}

/// Default entries per producer in `mmring bench`.
pub(crate) const BENCH_DEFAULT_ENTRIES: u64 = if cfg!(debug_assertions) {
    20_000
} else {
    500_000
};

/// `mmring bench-worker`.
#[derive(Debug, Args)]
pub(crate) struct BenchWorkerArgs {
    /// The ring file.
    #[arg(long)]
    pub ring: PathBuf,
    /// Push this many entries (a producer); without it, pop until a stop marker.
    #[arg(long)]
    pub produce: Option<u64>,
    /// Payload bytes per entry.
    #[arg(long, default_value_t = 64)]
    pub entry: usize,
    /// Entries per push_batch / pop_batch (1: one at a time).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// Shells `mmring completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `mmring completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `mmring demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of producer processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
    /// Number of consumer processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub consumers: u32,
    /// Entries pushed by each producer.
    #[arg(long, default_value_t = DEMO_DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub entries: u64,
    /// Size of the ring file (e.g. 1MiB, 64KiB).
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    pub size: u64,
    /// Payload bytes per entry (at least 20: producer, sequence number, checksum).
    #[arg(long, value_parser = parse_size, default_value = "64")]
    pub entry_size: u64,
    /// Give up if a worker makes no progress for this long (e.g. 30s).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stall_timeout: Duration,
}

/// `mmring demo-worker`: the role of one demo process.
#[derive(Debug, Args)]
pub(crate) struct DemoWorkerArgs {
    /// The role.
    #[command(subcommand)]
    pub role: WorkerRole,
}

/// The two kinds of demo worker.
#[derive(Debug, Subcommand)]
pub(crate) enum WorkerRole {
    /// Push `entries` payloads numbered 0.. for producer `producer`.
    Produce {
        /// The ring file.
        #[arg(long)]
        ring: PathBuf,
        /// This producer's number.
        #[arg(long)]
        producer: u32,
        /// How many entries to push.
        #[arg(long)]
        entries: u64,
        /// Payload bytes per entry.
        #[arg(long)]
        entry_size: usize,
        /// Give up after this many milliseconds without progress.
        #[arg(long)]
        stall_ms: u64,
    },
    /// Pop until a stop marker and report every entry on stdout.
    Consume {
        /// The ring file.
        #[arg(long)]
        ring: PathBuf,
        /// Give up after this many milliseconds without progress.
        #[arg(long)]
        stall_ms: u64,
    },
}

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: Shell) -> crate::Outcome {
    use clap::CommandFactory;
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "mmring", &mut script);
    write_stdout(&script)
}

/// Writes the manual page (roff) to stdout.
pub(crate) fn man_page() -> crate::Outcome {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(crate::output::stdout_failure)?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> crate::Outcome {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(crate::output::stdout_failure)
}

/// Splits `text` into its leading number and the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// Parses a byte count: `4096`, `64KiB`, `16MiB`, `1GiB`, `1.5MiB`; `K`/`M`/`G` (with
/// or without `iB`) are powers of 1024, `KB`/`MB`/`GB` powers of 1000.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text.trim());
    let not_a_size = || format!("{text:?} is not a size such as 4096, 64KiB or 16MiB");
    if number.is_empty() {
        return Err(not_a_size());
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    let bytes = if let Ok(whole) = number.parse::<u64>() {
        whole.checked_mul(multiplier)
    } else {
        let value: f64 = number.parse().map_err(|_| not_a_size())?;
        let bytes = (value * multiplier as f64).round();
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    };
    bytes.ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration: `0`, `30` (seconds), `30s`, `500ms`, `5m`, `2h`, `1d`, or a sum
/// such as `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let invalid = || format!("{text:?} is not a duration such as 30s, 500ms, 5m, 2h or 1h30m");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3_600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses permission bits in octal: `600`, `0600`, `0o600`.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 0600"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations_accept_units_and_sums() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        // Regression: an empty argument (`--timeout ""`) was read as zero.
        assert!(parse_duration("").is_err());
        assert!(parse_duration(" ").is_err());
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o640"), Ok(0o640));
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
