//! Several producer and consumer processes on one ring file.
//!
//! The test binary runs copies of itself as children (`child_process_entry`, selected
//! by an environment variable). Producers push self-validating `(producer, seq)`
//! payloads; consumers pop until they take a stop marker, which the parent pushes, one
//! per consumer, after every producer has exited. Proves across processes:
//! - reject mode: every entry is delivered exactly once, intact, under the ID its push
//!   returned, each producer's entries in order as each consumer saw them, and the
//!   shared counters balance;
//! - overwrite mode on a tiny ring: no torn entry, no duplicate, per-producer order per
//!   consumer, and every entry is accounted for as popped or evicted.

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use common::{
    ChildProcess, Deadline, RING_VAR, Received, STOP_PRODUCER, Watch, assert_consumer_order,
    assert_delivered_once_with_push_ids, assert_push_ids_increase, child_num, child_role,
    child_var, decode, payload, push_retrying, stop_marker, wait_all, wait_for,
};
use mmring::{OnFull, Options, Ring};

/// The name of the test children run.
const ENTRY: &str = "child_process_entry";
/// Every run must finish well within this; children are killed past it.
const LIMIT: Duration = Duration::from_secs(60);
/// Abandon timeout of the rings here: no live producer process is ever taken for a
/// dead one, so the counters must balance exactly.
const NO_ABANDON: Duration = Duration::from_secs(30);

const PRODUCER_VAR: &str = "MMRING_TEST_PRODUCER";
const COUNT_VAR: &str = "MMRING_TEST_COUNT";
const CONSUMER_VAR: &str = "MMRING_TEST_CONSUMER";

/// Not a test of its own: the body of the child processes. Without the role variable
/// (a normal test run) it returns at once.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else {
        return;
    };
    let ring = Ring::open(child_var(RING_VAR)).expect("child opens the ring");
    let out = child_var(common::OUT_VAR);
    let watch = Watch::new(LIMIT);
    match role.as_str() {
        "producer" => run_producer(&ring, &out, &watch),
        "consumer" => run_consumer(&ring, &out, &watch),
        other => panic!("unknown role {other}"),
    }
}

/// Pushes `COUNT` payloads of producer `PRODUCER`, retrying while the ring is full,
/// and writes the ID of each, one per line.
fn run_producer(ring: &Ring, out: &str, watch: &Watch) {
    let producer = u32::try_from(child_num(PRODUCER_VAR)).unwrap();
    let count = child_num(COUNT_VAR);
    let full_hits = AtomicU64::new(0);
    let mut ids = String::new();
    for seq in 0..count {
        let id = push_retrying(ring, &payload(producer, seq), None, watch, &full_hits);
        writeln!(ids, "{id}").unwrap();
    }
    std::fs::write(out, ids).unwrap();
}

/// Pops until a stop marker arrives, checking every payload, and writes
/// `E id producer seq` per entry and `S consumer` for the marker.
fn run_consumer(ring: &Ring, out: &str, watch: &Watch) {
    let consumer = child_num(CONSUMER_VAR);
    let mut lines = String::new();
    let mut buf = Vec::new();
    loop {
        let info = match ring.pop_into(&mut buf) {
            Ok(Some(info)) => info,
            Ok(None) => {
                watch.check(|| format!("consumer {consumer}: a stop marker, {:?}", ring.stats()));
                std::thread::yield_now();
                continue;
            }
            Err(e) => panic!("consumer {consumer}: pop failed: {e:?}"),
        };
        let (producer, seq) = decode(&buf)
            .unwrap_or_else(|e| panic!("consumer {consumer}: entry {}: {e}", info.id()));
        if producer == STOP_PRODUCER {
            writeln!(lines, "S {seq}").unwrap();
            break;
        }
        writeln!(lines, "E {} {producer} {seq}", info.id()).unwrap();
    }
    std::fs::write(out, lines).unwrap();
}

/// What one consumer process reported: its entries and the marker it stopped at.
struct ConsumerReport {
    received: Vec<Received>,
    marker: u64,
}

fn parse_consumer(name: &str, text: &str) -> ConsumerReport {
    let mut received = Vec::new();
    let mut marker = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> u64 { fields[i].parse().unwrap() };
        match fields[0] {
            "E" if marker.is_none() => received.push(Received {
                id: num(1),
                producer: u32::try_from(num(2)).unwrap(),
                seq: num(3),
            }),
            "S" if marker.is_none() => marker = Some(num(1)),
            _ => panic!("{name}: unexpected line {line:?}"),
        }
    }
    ConsumerReport {
        received,
        marker: marker.unwrap_or_else(|| panic!("{name}: no stop marker")),
    }
}

/// Runs `producers` producer processes of `per_producer` entries each and `consumers`
/// consumer processes on the ring at `path`, then stops the consumers with markers.
/// Returns the push IDs per producer and the consumers' reports.
fn run_processes(
    dir: &Path,
    ring: &Ring,
    producers: u32,
    per_producer: u64,
    consumers: u64,
) -> (Vec<Vec<u64>>, Vec<ConsumerReport>) {
    let deadline = Deadline::after(LIMIT);
    let ring_path = ring.path().display().to_string();
    let mut children: Vec<ChildProcess> = (0..consumers)
        .map(|consumer| {
            ChildProcess::spawn(
                ENTRY,
                "consumer",
                &format!("consumer-{consumer}"),
                dir,
                &[
                    (RING_VAR, ring_path.clone()),
                    (CONSUMER_VAR, consumer.to_string()),
                ],
            )
        })
        .collect();
    children.extend((0..producers).map(|producer| {
        ChildProcess::spawn(
            ENTRY,
            "producer",
            &format!("producer-{producer}"),
            dir,
            &[
                (RING_VAR, ring_path.clone()),
                (PRODUCER_VAR, producer.to_string()),
                (COUNT_VAR, per_producer.to_string()),
            ],
        )
    }));
    let first_producer = consumers as usize;
    wait_for(&mut children, |i| i >= first_producer, deadline);

    // Every producer has exited, so the markers are reserved after every entry and
    // each consumer meets one only once all entries have been taken.
    let watch = Watch::new(LIMIT);
    let full_hits = AtomicU64::new(0);
    for consumer in 0..consumers {
        push_retrying(ring, &stop_marker(consumer), None, &watch, &full_hits);
    }
    wait_all(&mut children, deadline);

    let push_ids = children[first_producer..]
        .iter()
        .map(|child| {
            let ids: Vec<u64> = child
                .output()
                .lines()
                .map(|line| line.parse().unwrap())
                .collect();
            assert_eq!(ids.len() as u64, per_producer, "{}", child.name);
            ids
        })
        .collect();
    let reports = children[..first_producer]
        .iter()
        .map(|child| parse_consumer(&child.name, &child.output()))
        .collect();
    (push_ids, reports)
}

/// Checks what every consumer can check alone, and that each took one distinct
/// marker. Returns the number of distinct entries delivered.
fn check_reports(reports: &[ConsumerReport], push_ids: &[Vec<u64>]) -> u64 {
    for (consumer, report) in reports.iter().enumerate() {
        assert_consumer_order(&format!("consumer process {consumer}"), &report.received);
    }
    let markers: HashSet<u64> = reports.iter().map(|r| r.marker).collect();
    assert_eq!(
        markers,
        (0..reports.len() as u64).collect(),
        "each consumer took exactly one distinct stop marker"
    );
    assert_push_ids_increase(push_ids);
    assert_delivered_once_with_push_ids(reports.iter().map(|r| r.received.as_slice()), push_ids)
        as u64
}

#[test]
fn reject_mode_processes_deliver_every_entry_exactly_once() {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: u64 = 3;
    const PER_PRODUCER: u64 = 15_000;
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(32 << 10)
        .on_full(OnFull::Reject)
        .abandon_timeout(NO_ABANDON)
        .create(dir.path().join("shared.ring"))
        .unwrap();
    let started = Instant::now();

    let (push_ids, reports) = run_processes(dir.path(), &ring, PRODUCERS, PER_PRODUCER, CONSUMERS);

    let total = u64::from(PRODUCERS) * PER_PRODUCER;
    assert_eq!(
        check_reports(&reports, &push_ids),
        total,
        "every entry delivered"
    );
    // Pops are linearized in ID order, so sorted by ID the entries of every producer
    // must come in push order across all consumers too.
    let mut all: Vec<Received> = reports.iter().flat_map(|r| r.received.clone()).collect();
    all.sort_unstable();
    let mut next_seq = vec![0u64; PRODUCERS as usize];
    for entry in &all {
        assert_eq!(entry.seq, next_seq[entry.producer as usize]);
        next_seq[entry.producer as usize] += 1;
    }
    let stats = ring.stats();
    assert_eq!(stats.pushed, total + CONSUMERS, "{stats:?}");
    assert_eq!(stats.popped, stats.pushed, "{stats:?}");
    assert_eq!(
        (stats.evicted, stats.expired, stats.corrupt, stats.abandoned),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!((stats.len, ring.len()), (0, 0), "{stats:?}");
    assert!(
        stats.write_pos > 10 * ring.capacity_bytes(),
        "the ring wrapped: {stats:?}"
    );
    eprintln!(
        "reject: {total} entries through {PRODUCERS}+{CONSUMERS} processes, {} laps, {:?}",
        stats.write_pos / ring.capacity_bytes(),
        started.elapsed()
    );
}

#[test]
fn overwrite_mode_processes_never_see_torn_or_duplicate_entries() {
    const PRODUCERS: u32 = 2;
    const CONSUMERS: u64 = 2;
    const PER_PRODUCER: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8 << 10)
        .on_full(OnFull::Overwrite)
        .abandon_timeout(NO_ABANDON)
        .create(dir.path().join("shared.ring"))
        .unwrap();
    let started = Instant::now();

    let (push_ids, reports) = run_processes(dir.path(), &ring, PRODUCERS, PER_PRODUCER, CONSUMERS);

    let delivered = check_reports(&reports, &push_ids);
    let total = u64::from(PRODUCERS) * PER_PRODUCER;
    let stats = ring.stats();
    assert_eq!(stats.pushed, total + CONSUMERS, "{stats:?}");
    assert_eq!(stats.popped, delivered + CONSUMERS, "{stats:?}");
    assert_eq!(stats.popped + stats.evicted, stats.pushed, "{stats:?}");
    assert_eq!(
        (stats.expired, stats.corrupt, stats.abandoned),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!((stats.len, ring.len()), (0, 0), "{stats:?}");
    eprintln!(
        "overwrite: {total} pushed by {PRODUCERS} processes, {delivered} delivered to \
         {CONSUMERS}, {} evicted, {:?}",
        stats.evicted,
        started.elapsed()
    );
}
