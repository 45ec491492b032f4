//! A ring outlives every handle and process: what one process leaves in the file,
//! another process opening it later finds.
//!
//! The test binary runs a copy of itself (`child_process_entry`, selected by an
//! environment variable) that opens the ring, performs a list of actions and writes
//! what it saw. Proves that after every handle is dropped:
//! - a new process gets exactly the same entries back (IDs, payloads, TTLs, write
//!   times, order), from `peek` and from `pop`, and new IDs continue past the old ones;
//! - entries popped before the reopen are gone and only they are, also after the ring
//!   has wrapped;
//! - entries whose TTL ran out while no process had the ring open are not returned and
//!   are counted as expired, while entries without a TTL survive;
//! - the counters survive the reopen unchanged;
//! - `Ring::open` takes every parameter (policy, default TTL, sizes) from the header,
//!   and `open_or_create` keeps an existing ring's parameters.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{RING_VAR, child_role, child_var, from_hex, run_child, to_hex};
use mmring::{Entry, OnFull, Options, Ring};

/// The name of the test the child runs.
const ENTRY: &str = "child_process_entry";
/// Every child must finish well within this; it is killed past it.
const LIMIT: Duration = Duration::from_secs(30);
/// Comma-separated actions for the child: `params`, `stats`, `peek`, `drain`, `push`.
const ACTIONS_VAR: &str = "MMRING_TEST_ACTIONS";

/// Not a test of its own: the body of the child process. Without the role variable
/// (a normal test run) it returns at once.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else {
        return;
    };
    assert_eq!(role, "reopen", "unknown role");
    let ring = Ring::open(child_var(RING_VAR)).expect("child opens the ring");
    let mut out = String::new();
    for action in child_var(ACTIONS_VAR).split(',') {
        match action {
            "params" => writeln!(
                out,
                "params {:?} {} {} {} {}",
                ring.on_full(),
                ring.default_ttl().as_secs(),
                ring.capacity_bytes(),
                ring.max_entry_size(),
                ring.capacity()
            )
            .unwrap(),
            "stats" => writeln!(out, "stats {:?}", ring.stats()).unwrap(),
            "peek" => {
                for entry in ring.peek() {
                    writeln!(out, "peek {}", row(&entry.expect("peek"))).unwrap();
                }
            }
            "drain" => {
                while let Some(entry) = ring.pop().expect("pop") {
                    writeln!(out, "pop {}", row(&entry)).unwrap();
                }
            }
            "push" => {
                let id = ring.push(b"pushed after the reopen").expect("push");
                writeln!(out, "pushed {id}").unwrap();
            }
            other => panic!("unknown action {other}"),
        }
    }
    std::fs::write(child_var(common::OUT_VAR), out).unwrap();
}

/// An entry as text: `id ttl_secs written_at_ms hex_payload`.
fn row(entry: &Entry) -> String {
    let written_ms = entry
        .written_at()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{} {} {} {}",
        entry.id(),
        entry.ttl().as_secs(),
        written_ms,
        to_hex(entry.data())
    )
}

/// What the child process reported, line by line, kind first.
struct Report {
    lines: Vec<(String, String)>,
}

impl Report {
    fn of(text: &str) -> Report {
        Report {
            lines: text
                .lines()
                .map(|line| {
                    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
                    (kind.to_string(), rest.to_string())
                })
                .collect(),
        }
    }

    /// The values of every line of `kind`, in order.
    fn all(&self, kind: &str) -> Vec<String> {
        self.lines
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value of the only line of `kind`.
    fn one(&self, kind: &str) -> String {
        let values = self.all(kind);
        assert_eq!(values.len(), 1, "one {kind} line in {:?}", self.lines);
        values.into_iter().next().unwrap()
    }
}

/// Runs the child on the ring at `path` with `actions`, after the caller has dropped
/// every handle it had.
fn reopen_in_child(dir: &Path, path: &Path, actions: &str) -> Report {
    let vars = [
        (RING_VAR, path.display().to_string()),
        (ACTIONS_VAR, actions.to_string()),
    ];
    Report::of(&run_child(ENTRY, "reopen", dir, &vars, LIMIT))
}

/// The rows the parent expects for `entries`, as the child prints them.
fn rows(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(row).collect()
}

#[test]
fn reopened_ring_returns_the_same_entries_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.ring");
    let ring = Options::new()
        .size(64 << 10)
        .on_full(OnFull::Reject)
        .create(&path)
        .unwrap();
    let max = ring.max_entry_size();
    let payloads: Vec<(Vec<u8>, Option<Duration>)> = vec![
        (b"first".to_vec(), None),
        (Vec::new(), None),
        (vec![0xa5; 1000], Some(Duration::from_secs(3600))),
        (
            (0..=255u8).collect(),
            Some(Duration::from_millis(86_399_500)),
        ),
        (vec![7; max], None),
        (b"last".to_vec(), Some(Duration::from_secs(1 << 30))),
    ];
    let ids: Vec<u64> = payloads
        .iter()
        .map(|(data, ttl)| match ttl {
            Some(ttl) => ring.push_with_ttl(data, *ttl).unwrap(),
            None => ring.push(data).unwrap(),
        })
        .collect();
    let entries: Vec<Entry> = ring.peek().map(Result::unwrap).collect();
    let ttls: Vec<u64> = entries.iter().map(|e| e.ttl().as_secs()).collect();
    assert_eq!(ttls, [0, 0, 3600, 86_400, 0, 1 << 30], "TTLs round up");
    assert_eq!(entries.iter().map(Entry::id).collect::<Vec<_>>(), ids);
    let stats_before = format!("{:?}", ring.stats());
    drop(ring);

    let report = reopen_in_child(dir.path(), &path, "stats,peek,drain,push,stats");
    let stats = report.all("stats");
    assert_eq!(stats[0], stats_before, "counters survive the reopen");
    assert_eq!(report.all("peek"), rows(&entries), "peek after the reopen");
    assert_eq!(report.all("pop"), rows(&entries), "pop after the reopen");
    for (line, (data, _)) in report.all("pop").iter().zip(&payloads) {
        assert_eq!(&from_hex(line.rsplit(' ').next().unwrap()), data);
    }
    let new_id: u64 = report.one("pushed").parse().unwrap();
    assert!(
        new_id > *ids.last().unwrap(),
        "IDs continue after the reopen: {new_id} after {ids:?}"
    );

    // And the child's changes are in the file for the next opener.
    let ring = Ring::open(&path).unwrap();
    assert_eq!(format!("{:?}", ring.stats()), stats[1]);
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.popped, stats.len),
        (ids.len() as u64 + 1, ids.len() as u64, 1)
    );
    let entry = ring.pop().unwrap().unwrap();
    assert_eq!(
        (entry.id(), entry.data()),
        (new_id, &b"pushed after the reopen"[..])
    );
}

#[test]
fn entries_popped_before_the_reopen_are_gone_and_only_they() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.ring");
    let ring = Options::new()
        .size(8 << 10)
        .on_full(OnFull::Reject)
        .create(&path)
        .unwrap();
    // Run the positions through two laps first, so the reopened ring starts mid-lap
    // after padding records.
    let mut seq = 0u32;
    while ring.stats().write_pos < 2 * ring.capacity_bytes() + 1000 {
        ring.push(&common::payload(0, u64::from(seq))).unwrap();
        common::decode(ring.pop().unwrap().unwrap().data()).unwrap();
        seq += 1;
    }
    let mut pushed = 0;
    while ring.push(&common::payload(1, pushed)).is_ok() {
        pushed += 1;
    }
    assert!(pushed > 8, "the ring holds several entries");
    let all: Vec<Entry> = ring.peek().map(Result::unwrap).collect();
    assert_eq!(all.len() as u64, pushed);
    const POPPED: usize = 3;
    for expected in &all[..POPPED] {
        assert_eq!(&ring.pop().unwrap().unwrap(), expected);
    }
    let stats_before = format!("{:?}", ring.stats());
    drop(ring);

    let report = reopen_in_child(dir.path(), &path, "stats,peek,drain");
    assert_eq!(report.one("stats"), stats_before);
    assert_eq!(report.all("peek"), rows(&all[POPPED..]));
    assert_eq!(report.all("pop"), rows(&all[POPPED..]));
}

#[test]
fn ttl_runs_out_while_the_ring_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.ring");
    let ring = Options::new()
        .size(64 << 10)
        .on_full(OnFull::Reject)
        .create(&path)
        .unwrap();
    let short = Duration::from_secs(1);
    ring.push_with_ttl(b"expires 1", short).unwrap();
    ring.push(b"stays 1").unwrap();
    ring.push_with_ttl(b"expires 2", short).unwrap();
    ring.push_with_ttl(b"stays 2", Duration::from_secs(3600))
        .unwrap();
    ring.push_with_ttl(b"expires 3", short).unwrap();
    let pushed_at = Instant::now();
    let survivors: Vec<Entry> = ring
        .peek()
        .map(Result::unwrap)
        .filter(|e| e.data().starts_with(b"stays"))
        .collect();
    assert_eq!(survivors.len(), 2);
    drop(ring);
    // Waiting for wall-clock time itself: the TTL has to run out. The margin covers
    // the coarse clock the ring reads.
    std::thread::sleep((short + Duration::from_millis(100)).saturating_sub(pushed_at.elapsed()));

    let report = reopen_in_child(dir.path(), &path, "peek,drain,stats");
    assert_eq!(report.all("peek"), rows(&survivors), "peek skips expired");
    assert_eq!(report.all("pop"), rows(&survivors), "pop skips expired");
    let ring = Ring::open(&path).unwrap();
    assert_eq!(
        format!("{:?}", ring.stats()),
        report.one("stats"),
        "the expiry counts persist"
    );
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.popped, stats.expired, stats.len),
        (5, 2, 3, 0),
        "{stats:?}"
    );
}

#[test]
fn counters_survive_the_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persist.ring");
    let ring = Options::new()
        .size(8 << 10)
        .on_full(OnFull::Overwrite)
        .create(&path)
        .unwrap();
    for seq in 0..100 {
        ring.push(&common::payload(0, seq)).unwrap();
    }
    for _ in 0..5 {
        common::decode(ring.pop().unwrap().unwrap().data()).unwrap();
    }
    let stats = ring.stats();
    assert!(
        stats.evicted > 0 && stats.popped == 5 && stats.len > 0,
        "{stats:?}"
    );
    assert_eq!(
        stats.pushed,
        stats.popped + stats.evicted + stats.len,
        "{stats:?}"
    );
    drop(ring);

    let report = reopen_in_child(dir.path(), &path, "stats,drain,stats");
    let reported = report.all("stats");
    assert_eq!(reported[0], format!("{stats:?}"), "as left by the parent");
    assert_eq!(report.all("pop").len() as u64, stats.len);
    let ring = Ring::open(&path).unwrap();
    assert_eq!(
        format!("{:?}", ring.stats()),
        reported[1],
        "as left by the child"
    );
    assert_eq!(ring.stats().popped, 5 + stats.len);
}

#[test]
fn open_reads_every_parameter_from_the_header() {
    struct Case {
        size: u64,
        ttl: Duration,
        on_full: OnFull,
        stored_ttl_secs: u64,
    }
    let cases = [
        Case {
            size: 40_960,
            ttl: Duration::from_millis(6_500),
            on_full: OnFull::Reject,
            stored_ttl_secs: 7,
        },
        Case {
            size: 16_384,
            ttl: Duration::ZERO,
            on_full: OnFull::Overwrite,
            stored_ttl_secs: 0,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("params-{i}.ring"));
        let created = Options::new()
            .size(case.size)
            .ttl(case.ttl)
            .on_full(case.on_full)
            .abandon_timeout(Duration::from_millis(250))
            .create(&path)
            .unwrap();
        let capacity_bytes = case.size - 4096;
        let max_entry_size = (capacity_bytes / 2 / 8 * 8 - 56) as usize;
        let expected = format!(
            "{:?} {} {capacity_bytes} {max_entry_size} {}",
            case.on_full,
            case.stored_ttl_secs,
            capacity_bytes / 56
        );
        assert_eq!(
            format!(
                "{:?} {} {} {} {}",
                created.on_full(),
                created.default_ttl().as_secs(),
                created.capacity_bytes(),
                created.max_entry_size(),
                created.capacity()
            ),
            expected,
            "as created"
        );
        drop(created);

        let report = reopen_in_child(dir.path(), &path, "params,push,peek");
        assert_eq!(report.one("params"), expected, "case {i}: as reopened");
        // The default TTL read from the header applies to a plain push.
        let peeked = report.one("peek");
        let ttl: u64 = peeked.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(ttl, case.stored_ttl_secs, "case {i}: {peeked}");

        // Options given to open_or_create don't override an existing ring's.
        let reopened = Options::new()
            .size(1 << 20)
            .ttl(Duration::from_secs(99))
            .on_full(if case.on_full == OnFull::Reject {
                OnFull::Overwrite
            } else {
                OnFull::Reject
            })
            .open_or_create(&path)
            .unwrap();
        assert_eq!(
            (
                reopened.on_full(),
                reopened.default_ttl().as_secs(),
                reopened.capacity_bytes(),
                reopened.max_entry_size()
            ),
            (
                case.on_full,
                case.stored_ttl_secs,
                capacity_bytes,
                max_entry_size
            ),
            "case {i}: open_or_create keeps the header's parameters"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), case.size);
    }
}
