//! Crash consistency: a process aborted at any of mmring's named crash points
//! (`crash-points` feature, `MMRING_CRASH_AT=name:n`) leaves a ring that a process
//! which never had it open recovers in full.
//!
//! Each scenario runs one or more child processes in turn (this test binary again,
//! running only `child_entry`). Each performs a script of pushes and pops on one ring
//! and aborts at its crash point, logging every push that returned `Ok` and every
//! entry a pop returned, one unbuffered write per line. The parent then opens the
//! ring for the first time and proves:
//! - every child died by SIGABRT, that is at its crash point, not by finishing its
//!   script or by panicking;
//! - every entry logged as pushed and not logged as popped (and, in overwrite mode,
//!   not among the `evicted` oldest) is delivered exactly once, intact, in push
//!   order; an entry whose pop was interrupted before `read_pos` moved is among them,
//!   as it was never removed;
//! - the entry of an interrupted push is delivered at most once, intact (being
//!   uncommitted, it is in fact never delivered);
//! - a new producer and a new consumer handle then complete a push/pop round trip
//!   within the abandon timeout plus a margin, and the ring ends empty;
//! - the counters: `pushed - popped - evicted` equals the number of dead reservations
//!   (the ring being empty), `popped` equals the pops logged plus the parent's, and each
//!   dead reservation is counted as abandoned, except that a reader killed while
//!   skipping one may leave it uncounted (at most one per killed reader).

mod common;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::disable_core_dumps;
use mmring::{OnFull, Options, Ring, Stats};

/// The name of the test the children run.
const ENTRY: &str = "child_entry";
/// The role of a child; absent in the parent test run.
const ROLE_VAR: &str = "MMRING_CRASH_TEST_ROLE";
/// The ring file's path.
const RING_VAR: &str = "MMRING_CRASH_TEST_RING";
/// The file the child appends its log lines to.
const LOG_VAR: &str = "MMRING_CRASH_TEST_LOG";
/// The child's script: space-separated `push:COUNT[:LEN]`, `pop:COUNT`, `drain`.
const SCRIPT_VAR: &str = "MMRING_CRASH_TEST_SCRIPT";
/// The producer number the child puts in its payloads.
const PRODUCER_VAR: &str = "MMRING_CRASH_TEST_PRODUCER";
/// Present (`reject` or `overwrite`) if the child creates the ring.
const CREATE_VAR: &str = "MMRING_CRASH_TEST_CREATE";
/// Read by mmring itself: where the child aborts.
const CRASH_VAR: &str = "MMRING_CRASH_AT";

/// File size of every ring here: a 4096-byte region, so the scripts wrap it.
const RING_SIZE: u64 = 8192;
/// Short, so recovery is quick; no live producer is ever this slow in a script, as a
/// child runs alone.
const ABANDON: Duration = Duration::from_millis(50);
/// How much longer than the abandon timeout the parent may take to recover the ring
/// and complete its round trip.
const RECOVERY_MARGIN: Duration = Duration::from_secs(2);
/// A child must end (abort) within this; it is killed past it.
const CHILD_LIMIT: Duration = Duration::from_secs(30);
/// How long a child's pop waits for an entry before giving up.
const CHILD_WAIT: Duration = Duration::from_secs(10);
/// SIGABRT, what `abort()` dies of.
const SIGABRT: i32 = 6;
/// The producer number of the parent's own round-trip entries.
const PARENT_PRODUCER: u32 = 99;
/// Entries in the parent's round trip.
const ROUND_TRIP: u64 = 5;

// ---------------------------------------------------------------- payloads

/// Bytes before the filler: producer (u32 LE), seq (u64 LE), total length (u32 LE).
const PAYLOAD_PREFIX: usize = 16;
/// Longest payload of a script's default sizes: records of at most 256 bytes, so a
/// script keeping 12 entries in the 4096-byte region never finds it full.
const VARIED_MAX: usize = 200;

/// A 64-bit mix of `(producer, seq)` (SplitMix64's finalizer).
fn mix(producer: u32, seq: u64) -> u64 {
    let mut z = (u64::from(producer) << 48) ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The default payload length of `(producer, seq)`: varies, so records differ in size
/// and the padding at the end of a lap changes.
fn varied_len(producer: u32, seq: u64) -> usize {
    let spread = (VARIED_MAX - PAYLOAD_PREFIX + 1) as u64;
    PAYLOAD_PREFIX + (mix(producer, seq) % spread) as usize
}

/// The payload of `(producer, seq)` with `len` bytes; every filler byte depends on
/// the prefix, so [`decode`] detects a torn, mixed or truncated copy.
fn payload(producer: u32, seq: u64, len: usize) -> Vec<u8> {
    assert!(len >= PAYLOAD_PREFIX);
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&producer.to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    data.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    let mut state = mix(producer, seq) | 1;
    while data.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.push((state >> 32) as u8);
    }
    data
}

/// The `(producer, seq)` of a [`payload`], or what is wrong with it.
fn decode(data: &[u8]) -> Result<(u32, u64), String> {
    if data.len() < PAYLOAD_PREFIX {
        return Err(format!("payload of {} bytes is too short", data.len()));
    }
    let producer = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let seq = u64::from_le_bytes(data[4..12].try_into().unwrap());
    let len = u32::from_le_bytes(data[12..16].try_into().unwrap()) as usize;
    if len != data.len() || data != payload(producer, seq, len) {
        return Err(format!(
            "payload of {} bytes claims producer {producer} seq {seq} length {len} but does \
             not match it",
            data.len()
        ));
    }
    Ok((producer, seq))
}

// ---------------------------------------------------------------- the child

/// Not a test of its own: the body of the child processes. Without the role variable
/// (a normal test run) it returns at once.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    assert_eq!(role, "script", "unknown role");
    disable_core_dumps();
    let path = child_var(RING_VAR);
    let ring = match std::env::var(CREATE_VAR) {
        Ok(policy) => Options::new()
            .size(RING_SIZE)
            .on_full(match policy.as_str() {
                "reject" => OnFull::Reject,
                "overwrite" => OnFull::Overwrite,
                other => panic!("unknown policy {other}"),
            })
            .abandon_timeout(ABANDON)
            .create(&path),
        Err(_) => Ring::open(&path),
    }
    .expect("child opens the ring");
    let mut log = ChildLog(
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(child_var(LOG_VAR))
            .expect("child log file"),
    );
    let producer: u32 = child_var(PRODUCER_VAR).parse().unwrap();
    let mut seq = 0;
    for op in child_var(SCRIPT_VAR).split_whitespace() {
        let fields: Vec<&str> = op.split(':').collect();
        let num = |i: usize| -> u64 { fields[i].parse().expect("script number") };
        match fields[0] {
            "push" => {
                let fixed = (fields.len() > 2).then(|| num(2) as usize);
                for _ in 0..num(1) {
                    let len = fixed.unwrap_or_else(|| varied_len(producer, seq));
                    log.line(&format!("try {producer} {seq} {len}"));
                    let id = ring
                        .push(&payload(producer, seq, len))
                        .unwrap_or_else(|e| panic!("push {seq} failed: {e:?}"));
                    log.line(&format!("ok {producer} {seq} {id}"));
                    seq += 1;
                }
            }
            "pop" => {
                for _ in 0..num(1) {
                    let (id, from, from_seq) = pop_waiting(&ring)
                        .unwrap_or_else(|| panic!("no entry to pop: {:?}", ring.stats()));
                    log.line(&format!("pop {id} {from} {from_seq}"));
                }
            }
            // Pops until the crash point aborts this process; giving up returns
            // normally, which the parent reports as the crash point not reached.
            "drain" => {
                while let Some((id, from, from_seq)) = pop_waiting(&ring) {
                    log.line(&format!("pop {id} {from} {from_seq}"));
                }
            }
            other => panic!("unknown script operation {other}"),
        }
    }
}

fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// The child's log. Each line is one `write` to an unbuffered file: once it returns
/// the line is in the kernel and survives the process aborting (the machine is not
/// crashed here, so no fsync is needed).
struct ChildLog(File);

impl ChildLog {
    fn line(&mut self, text: &str) {
        self.0
            .write_all(format!("{text}\n").as_bytes())
            .expect("write child log");
    }
}

/// Pops one entry, waiting up to [`CHILD_WAIT`] for one; returns its ID and
/// `(producer, seq)` after checking the payload.
fn pop_waiting(ring: &Ring) -> Option<(u64, u32, u64)> {
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        match ring.pop() {
            Ok(Some(entry)) => {
                let (producer, seq) =
                    decode(entry.data()).unwrap_or_else(|e| panic!("entry {}: {e}", entry.id()));
                return Some((entry.id(), producer, seq));
            }
            Ok(None) if Instant::now() >= deadline => return None,
            // Polling: the head is being written or is a dead record waiting out the
            // abandon timeout; nothing to block on.
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("pop failed: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------- scenarios

/// One child process of a scenario.
struct Step {
    /// Producer number in its payloads.
    producer: u32,
    /// `MMRING_CRASH_AT` for it: the point and hit where it must abort.
    crash_at: String,
    /// What it does (see [`SCRIPT_VAR`]).
    script: &'static str,
}

fn step(producer: u32, crash_at: &str, script: &'static str) -> Step {
    Step {
        producer,
        crash_at: crash_at.to_string(),
        script,
    }
}

/// Children run one after the other on a new ring, then the parent recovers it.
struct Scenario {
    name: String,
    policy: OnFull,
    steps: Vec<Step>,
    /// Reservations left uncommitted by killed producers.
    dead: u64,
    /// Readers killed while skipping a dead reservation: each may leave it uncounted.
    killed_skippers: u64,
}

/// Pushes 30 and pops 20, interleaved; at most 12 entries are in the ring at once
/// and the region wraps once.
const STEADY: &str = "push:3 pop:2 push:3 pop:2 push:3 pop:2 push:3 pop:2 push:3 pop:2 \
                      push:3 pop:2 push:3 pop:2 push:3 pop:2 push:3 pop:2 push:3 pop:2";
/// Three 1056-byte records, popped, then two more: the fourth starts with 928 bytes
/// of padding at the end of the lap.
const AT_LAP_END: &str = "push:3:1000 pop:3 push:2:1000";

/// The position of a steady script's push `n` (1-based), for checking that a crash
/// there happened in the region's second lap.
fn steady_push_pos(n: u64) -> u64 {
    let region_len = RING_SIZE - 4096;
    let mut pos = 0;
    for seq in 0..n {
        let rec_len = Ring::entry_footprint(varied_len(0, seq));
        if pos % region_len + rec_len > region_len {
            pos = pos.next_multiple_of(region_len);
        }
        if seq + 1 < n {
            pos += rec_len;
        }
    }
    pos
}

/// The figures a scenario ends with, printed with `--nocapture`.
struct Outcome {
    /// The entries whose push returned `Ok`, in push order.
    pushed: Vec<Delivered>,
    /// The entries the parent popped, other than its own and interrupted pushes.
    delivered: Vec<Delivered>,
    logged_pushes: usize,
    logged_pops: usize,
    interrupted_delivered: usize,
    recovery: Duration,
    stats: Stats,
}

fn run(scenario: &Scenario) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let ring_path = dir.path().join("crash.ring");
    let mut logs = Vec::new();
    for (index, step) in scenario.steps.iter().enumerate() {
        let create = (index == 0).then_some(match scenario.policy {
            OnFull::Reject => "reject",
            _ => "overwrite",
        });
        logs.push(run_child(
            scenario,
            index,
            step,
            dir.path(),
            &ring_path,
            create,
        ));
    }
    let outcome = recover(scenario, &logs, &ring_path);
    println!(
        "crash {}: {} logged pushes, {} logged pops, {} delivered after the crash \
         ({} interrupted), recovered in {} ms; {:?}",
        scenario.name,
        outcome.logged_pushes,
        outcome.logged_pops,
        outcome.delivered.len(),
        outcome.interrupted_delivered,
        outcome.recovery.as_millis(),
        outcome.stats
    );
    outcome
}

/// Runs one child to its crash; returns its log lines.
fn run_child(
    scenario: &Scenario,
    index: usize,
    step: &Step,
    dir: &Path,
    ring_path: &Path,
    create: Option<&str>,
) -> Vec<String> {
    let log_path = dir.join(format!("step{index}.log"));
    let stderr_path = dir.join(format!("step{index}.stderr"));
    let mut command = Command::new(std::env::current_exe().expect("path of the test binary"));
    command
        .args(["--exact", ENTRY, "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, "script")
        .env(RING_VAR, ring_path)
        .env(LOG_VAR, &log_path)
        .env(SCRIPT_VAR, step.script)
        .env(PRODUCER_VAR, step.producer.to_string())
        .env(CRASH_VAR, &step.crash_at)
        .env_remove(CREATE_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap());
    if let Some(policy) = create {
        command.env(CREATE_VAR, policy);
    }
    let mut child = command.spawn().expect("spawn child");
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{}: step {index} ({}) still running after {CHILD_LIMIT:?}",
                scenario.name, step.crash_at
            );
        }
        // Polling the exit status: there is nothing else to wait on.
        std::thread::sleep(Duration::from_millis(2));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{}: step {index} should have aborted at {} but ended with {status}\n\
         --- log ---\n{log}--- stderr ---\n{}",
        scenario.name,
        step.crash_at,
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    log.lines().map(str::to_string).collect()
}

/// One entry as a pop returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Delivered {
    id: u64,
    producer: u32,
    seq: u64,
}

/// Opens the ring the children left (for the first time in this process), recovers
/// it and checks everything the module doc lists.
fn recover(scenario: &Scenario, logs: &[Vec<String>], ring_path: &Path) -> Outcome {
    let name = &scenario.name;
    // What the logs say: pushes that returned Ok (in order), pops, interrupted pushes.
    let mut pushed: Vec<Delivered> = Vec::new();
    let mut popped_ids = HashSet::new();
    let mut interrupted = HashSet::new();
    for log in logs {
        let mut attempt = None;
        for line in log {
            let fields: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> u64 { fields[i].parse().expect("log number") };
            match fields[0] {
                "try" => attempt = Some((num(1) as u32, num(2))),
                "ok" => {
                    assert_eq!(attempt.take(), Some((num(1) as u32, num(2))), "{name}");
                    pushed.push(Delivered {
                        id: num(3),
                        producer: num(1) as u32,
                        seq: num(2),
                    });
                }
                "pop" => assert!(popped_ids.insert(num(1)), "{name}: {line} popped twice"),
                _ => panic!("{name}: bad log line {line:?}"),
            }
        }
        interrupted.extend(attempt);
    }
    for pair in pushed.windows(2) {
        assert!(pair[0].id < pair[1].id, "{name}: push IDs out of order");
    }
    let pushed_ids: HashSet<u64> = pushed.iter().map(|entry| entry.id).collect();
    for id in &popped_ids {
        assert!(
            pushed_ids.contains(id),
            "{name}: popped ID {id} was never pushed"
        );
    }
    let mut expected: Vec<Delivered> = pushed
        .iter()
        .filter(|entry| !popped_ids.contains(&entry.id))
        .copied()
        .collect();

    let started = Instant::now();
    let deadline = started + ABANDON + RECOVERY_MARGIN;
    let consumer = Ring::open(ring_path).expect("the ring opens after the crash");
    let producer = Ring::open(ring_path).expect("a second handle opens");
    let before = consumer.stats();
    if scenario.policy == OnFull::Reject {
        assert_eq!(before.evicted, 0, "{name}: reject mode evicted");
    }
    // Overwrite mode: the evicted entries are the oldest ones.
    let evicted = usize::try_from(before.evicted).unwrap();
    assert!(evicted <= expected.len(), "{name}: {before:?}");
    expected.drain(..evicted);

    // Phase 1: the old entries; phase 2: a round trip through new handles.
    let mut delivered = Vec::new();
    let mut extra = Vec::new();
    let mut fresh = Vec::new();
    let mut order = Vec::new();
    let mut take = |entry: Delivered, fresh: &mut Vec<Delivered>| {
        order.push(entry.id);
        if entry.producer == PARENT_PRODUCER {
            fresh.push(entry);
        } else if interrupted.contains(&(entry.producer, entry.seq)) {
            extra.push(entry);
        } else {
            delivered.push(entry);
        }
    };
    let mut parent_pops = 0;
    for _ in 0..expected.len() {
        take(pop_before(&consumer, deadline, name), &mut fresh);
        parent_pops += 1;
    }
    let new_ids: Vec<u64> = (0..ROUND_TRIP)
        .map(|seq| {
            let len = varied_len(PARENT_PRODUCER, seq);
            producer
                .push(&payload(PARENT_PRODUCER, seq, len))
                .unwrap_or_else(|e| panic!("{name}: push after recovery failed: {e:?}"))
        })
        .collect();
    while fresh.len() < new_ids.len() {
        take(pop_before(&consumer, deadline, name), &mut fresh);
        parent_pops += 1;
    }
    let recovery = started.elapsed();
    assert!(
        consumer.pop().expect("pop").is_none(),
        "{name}: entries after the round trip"
    );

    assert_eq!(
        delivered, expected,
        "{name}: the entries committed before the crash, minus those popped, must be \
         delivered exactly once, in order"
    );
    let fresh_ids: Vec<u64> = fresh.iter().map(|entry| entry.id).collect();
    assert_eq!(fresh_ids, new_ids, "{name}: round trip");
    for (i, entry) in extra.iter().enumerate() {
        assert!(
            !extra[..i].contains(entry),
            "{name}: interrupted entry {entry:?} delivered twice"
        );
    }
    for pair in order.windows(2) {
        assert!(pair[0] < pair[1], "{name}: pop order {order:?}");
    }

    let stats = consumer.stats();
    assert_eq!(
        (stats.corrupt, stats.expired, stats.len),
        (0, 0, 0),
        "{name}: {stats:?}"
    );
    assert_eq!(stats.read_pos, stats.write_pos, "{name}: {stats:?}");
    assert_eq!(stats.evicted, before.evicted, "{name}: {stats:?}");
    assert_eq!(
        stats.popped,
        (popped_ids.len() + parent_pops) as u64,
        "{name}: popped counts the logged pops and the parent's: {stats:?}"
    );
    assert_eq!(
        stats.pushed.checked_sub(stats.popped + stats.evicted),
        Some(scenario.dead),
        "{name}: every reservation is popped, evicted or dead: {stats:?}"
    );
    assert!(
        stats.abandoned <= scenario.dead
            && stats.abandoned + scenario.killed_skippers >= scenario.dead,
        "{name}: {} dead reservations, {} readers killed skipping, but {stats:?}",
        scenario.dead,
        scenario.killed_skippers
    );
    Outcome {
        logged_pushes: pushed.len(),
        pushed,
        delivered,
        logged_pops: popped_ids.len(),
        interrupted_delivered: extra.len(),
        recovery,
        stats,
    }
}

/// Pops one entry, polling until `deadline`, which failing means the ring is wedged.
fn pop_before(ring: &Ring, deadline: Instant, name: &str) -> Delivered {
    loop {
        match ring.pop() {
            Ok(Some(entry)) => {
                let (producer, seq) = decode(entry.data())
                    .unwrap_or_else(|e| panic!("{name}: entry {} is damaged: {e}", entry.id()));
                return Delivered {
                    id: entry.id(),
                    producer,
                    seq,
                };
            }
            Ok(None) => {
                assert!(
                    Instant::now() < deadline,
                    "{name}: the ring did not recover within {:?}: {:?}",
                    ABANDON + RECOVERY_MARGIN,
                    ring.stats()
                );
                // Polling: recovery of a dead head waits out the abandon timeout.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{name}: pop failed after the crash: {e:?}"),
        }
    }
}

/// A scenario whose one child runs `script` and aborts at `point:hit`.
fn single(point: &str, hit: u64, policy: OnFull, script: &'static str, dead: u64) -> Scenario {
    Scenario {
        name: format!("{point}:{hit}"),
        policy,
        steps: vec![step(0, &format!("{point}:{hit}"), script)],
        dead,
        killed_skippers: 0,
    }
}

// ---------------------------------------------------------------- tests

/// A producer aborted at `point` in its push number 1, 2 and 25 (in the second lap)
/// of the steady script, and in a push that starts with padding at the lap end.
fn producer_killed_at(point: &str) {
    assert!(
        steady_push_pos(25) >= RING_SIZE - 4096,
        "push 25 is in lap 2"
    );
    let mut scenarios: Vec<(Scenario, u64)> = [1, 2, 25]
        .into_iter()
        .map(|hit| (single(point, hit, OnFull::Reject, STEADY, 1), hit))
        .collect();
    let mut at_lap_end = single(point, 4, OnFull::Reject, AT_LAP_END, 1);
    at_lap_end.name += " (after padding)";
    scenarios.push((at_lap_end, 4));
    for (scenario, hit) in scenarios {
        let outcome = run(&scenario);
        assert_eq!(outcome.logged_pushes as u64, hit - 1, "{}", scenario.name);
        // Never committed, so never delivered: stronger than "at most once".
        assert_eq!(outcome.interrupted_delivered, 0, "{}", scenario.name);
        assert_eq!(outcome.stats.abandoned, 1, "{}", scenario.name);
    }
}

#[test]
fn producer_killed_after_reserving_loses_only_its_own_entry() {
    producer_killed_at("push-after-reserve");
}

#[test]
fn producer_killed_after_claiming_loses_only_its_own_entry() {
    producer_killed_at("push-after-claim");
}

#[test]
fn producer_killed_before_committing_loses_only_its_own_entry() {
    producer_killed_at("push-before-commit");
}

#[test]
fn consumer_killed_before_advancing_leaves_its_entry_to_the_next_pop() {
    for hit in [1, 2, 15] {
        let outcome = run(&single(
            "pop-before-advance",
            hit,
            OnFull::Reject,
            STEADY,
            0,
        ));
        // The child's pop number `hit` copied the `hit`-th entry pushed and died
        // before removing it: that entry is the first one delivered now.
        assert_eq!(outcome.logged_pops as u64, hit - 1);
        let copied = outcome.pushed[usize::try_from(hit).unwrap() - 1];
        assert_eq!(outcome.delivered.first(), Some(&copied));
        assert_eq!(outcome.stats.abandoned, 0);
    }
}

#[test]
fn producer_killed_while_evicting_leaves_an_intact_overwrite_ring() {
    for hit in [1, 2, 20] {
        let outcome = run(&single(
            "evict-before-advance",
            hit,
            OnFull::Overwrite,
            "push:60",
            0,
        ));
        // Each eviction before the crash completed; the crashed one changed nothing.
        assert_eq!(outcome.stats.evicted, hit - 1, "{:?}", outcome.stats);
        assert_eq!(outcome.stats.abandoned, 0);
    }
}

#[test]
fn reader_killed_after_marking_abandoned_is_finished_by_the_next_reader() {
    // One dead claimed record, found by a reader that pushed entries after it.
    run(&Scenario {
        name: "abandon-after-mark:1".into(),
        policy: OnFull::Reject,
        steps: vec![
            step(0, "push-after-claim:5", "push:6"),
            step(1, "abandon-after-mark:1", "push:3 drain"),
        ],
        dead: 1,
        killed_skippers: 1,
    });
    // Two dead records: the reader abandons the first and dies marking the second.
    run(&Scenario {
        name: "abandon-after-mark:2".into(),
        policy: OnFull::Reject,
        steps: vec![
            step(0, "push-after-claim:3", "push:6"),
            step(1, "push-before-commit:3", "push:6"),
            step(2, "abandon-after-mark:2", "push:2 drain"),
        ],
        dead: 2,
        killed_skippers: 1,
    });
}

#[test]
fn reader_killed_mid_skip_is_finished_by_the_next_reader() {
    // A dead unclaimed reservation of 132 words; the reader dies after poisoning the
    // first, the second, or the hundredth word after the head.
    for hit in [1, 2, 100] {
        run(&Scenario {
            name: format!("skip-mid-scan:{hit}"),
            policy: OnFull::Reject,
            steps: vec![
                step(0, "push-after-reserve:3", "push:2 push:1:1000"),
                step(1, &format!("skip-mid-scan:{hit}"), "push:3 drain"),
            ],
            dead: 1,
            killed_skippers: 1,
        });
    }
}

#[test]
fn skip_survives_two_killed_readers_and_the_lap_end() {
    // The second reader continues the first one's skip and dies in it too.
    run(&Scenario {
        name: "skip-mid-scan:20 twice".into(),
        policy: OnFull::Reject,
        steps: vec![
            step(0, "push-after-reserve:3", "push:2 push:1:1000"),
            step(1, "skip-mid-scan:20", "push:3 drain"),
            step(2, "skip-mid-scan:20", "push:1 drain"),
        ],
        dead: 1,
        killed_skippers: 2,
    });
    // The dead reservation is 928 bytes of padding plus a 1056-byte record across the
    // lap end; the reader dies 150 words in, past the end of the lap.
    run(&Scenario {
        name: "skip-mid-scan:150 (across the lap end)".into(),
        policy: OnFull::Reject,
        steps: vec![
            step(0, "push-after-reserve:4", AT_LAP_END),
            step(1, "skip-mid-scan:150", "push:2 drain"),
        ],
        dead: 1,
        killed_skippers: 1,
    });
}
