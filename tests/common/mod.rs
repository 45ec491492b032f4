//! Helpers shared by the stress, multi-process and persistence tests: self-validating
//! payloads, deadlines, pushes that retry while the ring is full, and running this
//! test binary again as a child process.

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mmring::{Error, Ring};

// ---------------------------------------------------------------- payloads

/// Bytes before the filler: the producer (`u32` LE) and its sequence number (`u64` LE).
pub const PAYLOAD_PREFIX_LEN: usize = 12;
/// Longest filler, so payloads are 12..=12 + MAX_FILLER bytes.
pub const MAX_FILLER: usize = 250;
/// The producer number of a stop marker; its sequence number names the consumer.
pub const STOP_PRODUCER: u32 = u32::MAX;

/// A step of a 64-bit LCG (Knuth's MMIX constants): cheap, and every byte of the
/// filler depends on the producer, the sequence number and the byte's index.
fn next(state: u64) -> u64 {
    state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
}

fn seed(producer: u32, seq: u64) -> u64 {
    (u64::from(producer) << 40) ^ seq ^ 0x9e37_79b9_7f4a_7c15
}

/// Filler length for `(producer, seq)`: varies from entry to entry so that records
/// have different sizes and the padding at the end of a lap changes every lap.
pub fn filler_len(producer: u32, seq: u64) -> usize {
    (next(seed(producer, seq)) >> 33) as usize % (MAX_FILLER + 1)
}

/// The payload that producer `producer` pushes as its `seq`-th entry. Its length and
/// every filler byte are derived from the prefix, so [`decode`] detects any torn,
/// mixed or truncated copy.
pub fn payload(producer: u32, seq: u64) -> Vec<u8> {
    let len = filler_len(producer, seq);
    let mut data = Vec::with_capacity(PAYLOAD_PREFIX_LEN + len);
    data.extend_from_slice(&producer.to_le_bytes());
    data.extend_from_slice(&seq.to_le_bytes());
    let mut state = seed(producer, seq);
    for _ in 0..len {
        state = next(state);
        data.push((state >> 56) as u8);
    }
    data
}

/// The `(producer, seq)` of a payload made by [`payload`], or what is wrong with it.
pub fn decode(data: &[u8]) -> Result<(u32, u64), String> {
    if data.len() < PAYLOAD_PREFIX_LEN {
        return Err(format!("payload of {} bytes is too short", data.len()));
    }
    let producer = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let seq = u64::from_le_bytes(data[4..12].try_into().unwrap());
    let expected = payload(producer, seq);
    if data != expected.as_slice() {
        return Err(format!(
            "payload of {} bytes claims producer {producer} seq {seq} but its filler or \
             length ({} expected) does not match",
            data.len(),
            expected.len()
        ));
    }
    Ok((producer, seq))
}

/// The marker telling consumer `consumer` to stop.
pub fn stop_marker(consumer: u64) -> Vec<u8> {
    payload(STOP_PRODUCER, consumer)
}

// ---------------------------------------------------------------- deadlines

/// A time limit for a whole test: every loop that waits checks it, so a wedged ring
/// fails the test instead of hanging it.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: Instant,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + limit,
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Panics, saying what was being waited for, once the deadline has passed.
    pub fn check(&self, waiting_for: impl FnOnce() -> String) {
        if self.passed() {
            panic!("deadline passed while waiting for {}", waiting_for());
        }
    }
}

/// A deadline shared by the threads of one test, plus a flag raised when any of them
/// panics, so that the others stop waiting for work that will never come.
#[derive(Debug)]
pub struct Watch {
    deadline: Deadline,
    failed: AtomicBool,
}

impl Watch {
    pub fn new(limit: Duration) -> Watch {
        Watch {
            deadline: Deadline::after(limit),
            failed: AtomicBool::new(false),
        }
    }

    /// Panics if another thread of the test failed or the deadline passed.
    pub fn check(&self, waiting_for: impl FnOnce() -> String) {
        if self.failed.load(Ordering::Relaxed) {
            panic!("another thread failed while waiting for {}", waiting_for());
        }
        self.deadline.check(waiting_for);
    }

    /// A guard that raises the flag if the thread holding it panics.
    pub fn guard(&self) -> FailGuard<'_> {
        FailGuard(&self.failed)
    }
}

/// See [`Watch::guard`].
pub struct FailGuard<'a>(&'a AtomicBool);

impl Drop for FailGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Pushes `data` (with `ttl` if given), retrying while the ring reports
/// [`Error::Full`]; returns the ID. Each refusal is counted in `full_hits` at once.
pub fn push_retrying(
    ring: &Ring,
    data: &[u8],
    ttl: Option<Duration>,
    watch: &Watch,
    full_hits: &AtomicU64,
) -> u64 {
    loop {
        let result = match ttl {
            Some(ttl) => ring.push_with_ttl(data, ttl),
            None => ring.push(data),
        };
        match result {
            Ok(id) => return id,
            Err(Error::Full) => {
                full_hits.fetch_add(1, Ordering::Relaxed);
                watch.check(|| format!("room in a full ring ({:?})", ring.stats()));
                std::thread::yield_now();
            }
            Err(e) => panic!("push failed: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------- ordering checks

/// One entry as a consumer received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Received {
    pub id: u64,
    pub producer: u32,
    pub seq: u64,
}

/// Asserts what one consumer can observe of FIFO order: the IDs it popped strictly
/// increase, and so do the sequence numbers of each producer.
pub fn assert_consumer_order(consumer: &str, received: &[Received]) {
    for pair in received.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "{consumer}: popped ID {} after ID {}",
            pair[1].id,
            pair[0].id
        );
    }
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    for entry in received {
        if let Some(previous) = last_seq.insert(entry.producer, entry.seq) {
            assert!(
                previous < entry.seq,
                "{consumer}: producer {} seq {} popped after seq {previous}",
                entry.producer,
                entry.seq
            );
        }
    }
}

/// Asserts that no `(producer, seq)` and no ID was delivered twice, and that each
/// delivered entry carries the ID its push returned (`push_ids[producer][seq]`).
/// Returns the number of entries delivered.
pub fn assert_delivered_once_with_push_ids<'a>(
    consumers: impl IntoIterator<Item = &'a [Received]>,
    push_ids: &[Vec<u64>],
) -> usize {
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_entries = std::collections::HashSet::new();
    for received in consumers {
        for entry in received {
            assert!(seen_ids.insert(entry.id), "ID {} delivered twice", entry.id);
            assert!(
                seen_entries.insert((entry.producer, entry.seq)),
                "producer {} seq {} delivered twice",
                entry.producer,
                entry.seq
            );
            let pushed = push_ids
                .get(entry.producer as usize)
                .and_then(|ids| ids.get(entry.seq as usize))
                .unwrap_or_else(|| {
                    panic!(
                        "delivered producer {} seq {} was never pushed",
                        entry.producer, entry.seq
                    )
                });
            assert_eq!(
                entry.id, *pushed,
                "producer {} seq {}: popped with ID {} but push returned {}",
                entry.producer, entry.seq, entry.id, pushed
            );
        }
    }
    seen_entries.len()
}

/// Asserts that each producer's push IDs strictly increase: a producer's entries are
/// reserved in push order, and the ID is the reservation's position.
pub fn assert_push_ids_increase(push_ids: &[Vec<u64>]) {
    for (producer, ids) in push_ids.iter().enumerate() {
        for (seq, pair) in ids.windows(2).enumerate() {
            assert!(
                pair[0] < pair[1],
                "producer {producer}: push {} returned ID {} after ID {}",
                seq + 1,
                pair[1],
                pair[0]
            );
        }
    }
}

// ---------------------------------------------------------------- text records

/// Lowercase hex of `bytes`, for child processes writing entries as text.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        write!(text, "{byte:02x}").unwrap();
    }
    text
}

/// The bytes of a [`to_hex`] string.
pub fn from_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

// ---------------------------------------------------------------- child processes

/// Environment variable naming the role of a child process; absent in the parent.
pub const ROLE_VAR: &str = "MMRING_TEST_ROLE";
/// Environment variable with the ring file's path.
pub const RING_VAR: &str = "MMRING_TEST_RING";
/// Environment variable with the file a child writes its results to.
pub const OUT_VAR: &str = "MMRING_TEST_OUT";

/// The role this process was started with, or `None` in the parent test run.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// A variable the parent set for this child.
pub fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// A numeric variable the parent set for this child.
pub fn child_num(name: &str) -> u64 {
    child_var(name)
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A running copy of this test binary, executing only the test `entry` in `role`.
pub struct ChildProcess {
    pub name: String,
    process: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    pub out: PathBuf,
}

impl ChildProcess {
    /// Starts this test binary again, running only the test named `entry`, with
    /// `ROLE_VAR=role`, `OUT_VAR` pointing at a fresh file in `dir`, and `vars`. The
    /// child's own stdout and stderr go to files in `dir`, shown if it fails.
    pub fn spawn(
        entry: &str,
        role: &str,
        name: &str,
        dir: &Path,
        vars: &[(&str, String)],
    ) -> ChildProcess {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let out = dir.join(format!("{name}.out"));
        // A result file left by an earlier child of the same name must not pass for
        // this one's.
        let _ = std::fs::remove_file(&out);
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut command = Command::new(exe);
        command
            .args(["--exact", entry, "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .env(OUT_VAR, &out)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("child stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("child stderr file"));
        for (key, value) in vars {
            command.env(key, value);
        }
        let process = command.spawn().expect("spawn child test process");
        ChildProcess {
            name: name.to_string(),
            process,
            stdout,
            stderr,
            out,
        }
    }

    /// The child's captured stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            read(&self.stdout),
            self.name,
            read(&self.stderr)
        )
    }

    /// What the child wrote to its result file.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_else(|e| {
            panic!(
                "{}: no result file {}: {e}\n{}",
                self.name,
                self.out.display(),
                self.logs()
            )
        })
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().expect("wait for child")
    }

    fn kill(&mut self) {
        // Kills this child by its own handle; it may have exited meanwhile.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for ChildProcess {
    /// A test that panics while its children run must not leave them behind.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until every child in `children` has exited successfully. If one fails or
/// the deadline passes, kills the others and panics with their logs.
pub fn wait_all(children: &mut [ChildProcess], deadline: Deadline) {
    wait_for(children, |_| true, deadline);
}

/// Waits until the children whose index satisfies `awaited` have exited successfully,
/// while watching the others: any child failing, or the deadline passing, kills them
/// all and panics with their logs.
pub fn wait_for(
    children: &mut [ChildProcess],
    awaited: impl Fn(usize) -> bool,
    deadline: Deadline,
) {
    let mut exited = vec![false; children.len()];
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if exited[i] {
                continue;
            }
            if let Some(status) = child.try_wait() {
                exited[i] = true;
                if !status.success() {
                    let logs = child.logs();
                    let name = child.name.clone();
                    kill_all(children);
                    panic!("child {name} failed with {status}\n{logs}");
                }
            }
        }
        let pending: Vec<String> = (0..children.len())
            .filter(|i| awaited(*i) && !exited[*i])
            .map(|i| children[i].name.clone())
            .collect();
        if pending.is_empty() {
            return;
        }
        if deadline.passed() {
            let logs: String = children.iter().map(ChildProcess::logs).collect();
            kill_all(children);
            panic!("deadline passed with children {pending:?} still running\n{logs}");
        }
        // Polling exit statuses: there is nothing else to wait on.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills every child of `children` that is still running.
pub fn kill_all(children: &mut [ChildProcess]) {
    for child in children {
        child.kill();
    }
}

/// Runs one child to completion (see [`wait_all`]) and returns its result file.
pub fn run_child(
    entry: &str,
    role: &str,
    dir: &Path,
    vars: &[(&str, String)],
    limit: Duration,
) -> String {
    let mut children = [ChildProcess::spawn(entry, role, role, dir, vars)];
    wait_all(&mut children, Deadline::after(limit));
    children[0].output()
}

// ---------------------------------------------------------------- crashes

/// An abort must not leave core files behind (or wait for a crash reporter).
pub fn disable_core_dumps() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Core);
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: current.maximum,
        },
    )
    .expect("setrlimit(RLIMIT_CORE)");
}
