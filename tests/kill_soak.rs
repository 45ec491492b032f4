//! Randomized kill soak: producer and consumer processes on one reject-mode ring are
//! killed with SIGKILL at random moments and restarted, and nothing is lost or
//! duplicated beyond what the kills themselves explain.
//!
//! The test binary runs copies of itself (`child_entry`, selected by an environment
//! variable): 2 producers and 2 consumers. A producer pushes self-validating
//! `(producer, incarnation, seq)` payloads and logs each one after its push returns
//! `Ok`; a restarted producer is a new incarnation, so its entries are new. A consumer
//! logs each entry right after its pop returns it. For a number of rounds the parent
//! waits a random time and kills a random child, then starts it again. Then it stops
//! killing, tells the producers to finish, pushes one stop marker per consumer and
//! waits for the consumers to drain the ring. Proves:
//! - no entry is delivered twice, and none is damaged;
//! - every entry logged as pushed is delivered, under the ID its push returned,
//!   except at most one per killed consumer (popped, then killed before logging);
//! - an entry delivered but never logged as pushed is the one its producer was
//!   pushing when killed: at most one per killed producer incarnation;
//! - each consumer incarnation sees IDs, and each producer incarnation's entries, in
//!   increasing order;
//! - the ring is never wedged: the drain finishes within its deadline and leaves the
//!   ring empty, and the counters balance up to what the kills explain.
//!
//! `MMRING_SOAK_ROUNDS` sets the number of kills (default 60, about 10 s in debug) and
//! `MMRING_SOAK_SEED` the seed of the kill schedule; both are printed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mmring::{Error, OnFull, Options, Ring};

/// The name of the test the children run.
const ENTRY: &str = "child_entry";
const ROLE_VAR: &str = "MMRING_SOAK_ROLE";
const RING_VAR: &str = "MMRING_SOAK_RING";
const LOG_VAR: &str = "MMRING_SOAK_LOG";
const STOP_VAR: &str = "MMRING_SOAK_STOP";
const NUM_VAR: &str = "MMRING_SOAK_NUM";
const INCARNATION_VAR: &str = "MMRING_SOAK_INCARNATION";

const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
const DEFAULT_ROUNDS: u64 = 60;
const DEFAULT_SEED: u64 = 0x6d6d_7269_6e67_0001;
/// A 60 KiB region: it wraps often and fills when the consumers are down.
const RING_SIZE: u64 = 64 << 10;
/// Short, so that a killed producer's reservation blocks consumers only briefly. A
/// live producer descheduled for longer is abandoned too; it then pushes again,
/// which must not cost an entry either.
const ABANDON: Duration = Duration::from_millis(100);
/// Longest random wait before a kill.
const MAX_KILL_DELAY_MS: u64 = 200;
/// Limits after the killing stops: a wedged ring fails the test here.
const PRODUCERS_FINISH: Duration = Duration::from_secs(30);
const CONSUMERS_DRAIN: Duration = Duration::from_secs(30);
/// A child gives up (and fails the test) if it waits this long for room.
const CHILD_LIMIT: Duration = Duration::from_secs(120);
/// The producer number of a stop marker.
const STOP_PRODUCER: u32 = u32::MAX;
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------- payloads

/// Bytes before the filler: producer, incarnation (u32 LE each), seq (u64 LE),
/// total length (u32 LE).
const PAYLOAD_PREFIX: usize = 20;
const MAX_PAYLOAD: usize = 300;

/// The identity of an entry: who pushed it, in which life, as which push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    producer: u32,
    incarnation: u32,
    seq: u64,
}

/// SplitMix64's finalizer over the key.
fn mix(key: Key) -> u64 {
    let mut z = (u64::from(key.producer) << 56)
        ^ (u64::from(key.incarnation) << 40)
        ^ key.seq
        ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The payload of `key`: its length and every filler byte derive from the key, so
/// [`decode`] detects a torn, mixed or truncated copy.
fn payload(key: Key) -> Vec<u8> {
    let len = PAYLOAD_PREFIX + (mix(key) % (MAX_PAYLOAD - PAYLOAD_PREFIX + 1) as u64) as usize;
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&key.producer.to_le_bytes());
    data.extend_from_slice(&key.incarnation.to_le_bytes());
    data.extend_from_slice(&key.seq.to_le_bytes());
    data.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    let mut state = mix(key) | 1;
    while data.len() < len {
        state = xorshift(state);
        data.push((state >> 32) as u8);
    }
    data
}

/// The key of a [`payload`], or what is wrong with it.
fn decode(data: &[u8]) -> Result<Key, String> {
    if data.len() < PAYLOAD_PREFIX {
        return Err(format!("payload of {} bytes is too short", data.len()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let key = Key {
        producer: u32_at(0),
        incarnation: u32_at(4),
        seq: u64::from_le_bytes(data[8..16].try_into().unwrap()),
    };
    if data != payload(key) {
        return Err(format!(
            "payload of {} bytes claims {key:?} but does not match it",
            data.len()
        ));
    }
    Ok(key)
}

/// One step of xorshift64 (nonzero state).
fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

/// The parent's kill schedule: a deterministic sequence from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = xorshift(self.0);
        self.0 % bound
    }
}

// ---------------------------------------------------------------- the children

/// Not a test of its own: the body of the child processes. Without the role variable
/// (a normal test run) it returns at once.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let ring = Ring::open(child_var(RING_VAR)).expect("child opens the ring");
    let num: u32 = child_var(NUM_VAR).parse().unwrap();
    let incarnation: u32 = child_var(INCARNATION_VAR).parse().unwrap();
    let log = File::options()
        .create_new(true)
        .append(true)
        .open(child_var(LOG_VAR))
        .expect("child log file");
    match role.as_str() {
        "producer" => produce(&ring, num, incarnation, log),
        "consumer" => consume(&ring, log),
        other => panic!("unknown role {other}"),
    }
}

fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// Writes one log line with a single `write` to an unbuffered file: once it returns
/// the line is in the kernel, and a SIGKILL can no longer take it back.
fn log_line(log: &mut File, text: &str) {
    log.write_all(format!("{text}\n").as_bytes())
        .expect("write log");
}

/// Pushes entries `seq = 0, 1, ...` until the stop file appears, logging `seq id`
/// after each push returns `Ok`.
fn produce(ring: &Ring, producer: u32, incarnation: u32, mut log: File) {
    let stop = PathBuf::from(child_var(STOP_VAR));
    let deadline = Instant::now() + CHILD_LIMIT;
    for seq in 0.. {
        if stop.exists() {
            return;
        }
        let data = payload(Key {
            producer,
            incarnation,
            seq,
        });
        let id = loop {
            match ring.push(&data) {
                Ok(id) => break id,
                Err(Error::Full) => {
                    assert!(Instant::now() < deadline, "no room: {:?}", ring.stats());
                    // Consumers may be down until the parent restarts them.
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("push failed: {e:?}"),
            }
        };
        log_line(&mut log, &format!("{seq} {id}"));
    }
}

/// Pops until it takes a stop marker, logging `id producer incarnation seq` for each
/// entry and `stop` for the marker.
fn consume(ring: &Ring, mut log: File) {
    let mut buf = Vec::new();
    loop {
        let info = match ring.pop_into(&mut buf) {
            Ok(Some(info)) => info,
            // Polling: nothing to block on.
            Ok(None) => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            Err(e) => panic!("pop failed: {e:?}"),
        };
        let key = decode(&buf).unwrap_or_else(|e| panic!("entry {}: {e}", info.id()));
        if key.producer == STOP_PRODUCER {
            log_line(&mut log, "stop");
            return;
        }
        log_line(
            &mut log,
            &format!(
                "{} {} {} {}",
                info.id(),
                key.producer,
                key.incarnation,
                key.seq
            ),
        );
    }
}

// ---------------------------------------------------------------- the parent

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

/// One child slot: its current process, and how many lives it has had.
struct Slot {
    role: Role,
    num: u32,
    incarnation: u32,
    process: Option<Child>,
}

impl Slot {
    fn label(&self) -> String {
        format!("{}{}.{}", self.role.name(), self.num, self.incarnation)
    }
}

/// The children and the files they share. Dropping it (also when a check panics)
/// kills whatever still runs.
struct Fleet {
    dir: PathBuf,
    ring: PathBuf,
    stop: PathBuf,
    slots: Vec<Slot>,
}

impl Fleet {
    fn log_path(&self, role: Role, num: u32, incarnation: u32) -> PathBuf {
        self.dir
            .join(format!("{}{num}.{incarnation}.log", role.name()))
    }

    fn stderr_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.stderr"))
    }

    /// Starts the current incarnation of slot `index`.
    fn start(&mut self, index: usize) {
        let slot = &self.slots[index];
        let label = slot.label();
        let process = Command::new(std::env::current_exe().expect("path of the test binary"))
            .args(["--exact", ENTRY, "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, slot.role.name())
            .env(RING_VAR, &self.ring)
            .env(STOP_VAR, &self.stop)
            .env(NUM_VAR, slot.num.to_string())
            .env(INCARNATION_VAR, slot.incarnation.to_string())
            .env(
                LOG_VAR,
                self.log_path(slot.role, slot.num, slot.incarnation),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.stderr_path(&label)).unwrap())
            .spawn()
            .expect("spawn child");
        self.slots[index].process = Some(process);
    }

    /// Panics with its stderr if a running child that is not of role `exiting` has
    /// exited by itself.
    fn check_running(&mut self, exiting: Option<Role>) {
        for index in 0..self.slots.len() {
            if Some(self.slots[index].role) == exiting {
                continue;
            }
            let exited = match self.slots[index].process.as_mut() {
                Some(process) => process.try_wait().expect("wait for child"),
                None => None,
            };
            if let Some(status) = exited {
                self.fail(index, &format!("exited by itself with {status}"));
            }
        }
    }

    /// Waits `delay` while watching the children.
    fn watch(&mut self, delay: Duration) {
        let end = Instant::now() + delay;
        loop {
            self.check_running(None);
            let now = Instant::now();
            if now >= end {
                return;
            }
            // Polling exit statuses: there is nothing else to wait on.
            std::thread::sleep((end - now).min(Duration::from_millis(5)));
        }
    }

    /// SIGKILLs slot `index` and starts its next incarnation.
    fn kill_and_restart(&mut self, index: usize) {
        let process = self.slots[index].process.as_mut().unwrap();
        process.kill().expect("kill child");
        let status = process.wait().expect("wait for killed child");
        if status.signal() != Some(SIGKILL) {
            self.fail(index, &format!("was to be killed but ended with {status}"));
        }
        self.slots[index].incarnation += 1;
        self.start(index);
    }

    /// Waits for every child of `role` to exit successfully by `deadline`.
    fn wait_exit(&mut self, role: Role, limit: Duration) {
        let deadline = Instant::now() + limit;
        for index in 0..self.slots.len() {
            if self.slots[index].role != role {
                continue;
            }
            loop {
                let process = self.slots[index].process.as_mut().unwrap();
                if let Some(status) = process.try_wait().expect("wait for child") {
                    if !status.success() {
                        self.fail(index, &format!("ended with {status}"));
                    }
                    self.slots[index].process = None;
                    break;
                }
                if Instant::now() >= deadline {
                    self.fail(index, &format!("still running after {limit:?}: wedged?"));
                }
                self.check_running(Some(role));
                // Polling exit statuses: there is nothing else to wait on.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn fail(&self, index: usize, what: &str) -> ! {
        let label = self.slots[index].label();
        let stderr = std::fs::read_to_string(self.stderr_path(&label)).unwrap_or_default();
        panic!("{label} {what}\n--- {label} stderr ---\n{stderr}");
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(process) = slot.process.as_mut() {
                // Our own child, by its handle; it may have exited meanwhile.
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }
}

/// Complete lines of a log; a last line without its newline was being written when
/// the process was killed and does not count as logged.
fn log_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete.lines().map(str::to_string).collect()
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={text}: {e}"))
        }
        Err(_) => default,
    }
}

#[test]
fn killed_processes_lose_and_duplicate_nothing_beyond_their_kills() {
    let rounds = env_num("MMRING_SOAK_ROUNDS", DEFAULT_ROUNDS);
    let seed = env_num("MMRING_SOAK_SEED", DEFAULT_SEED).max(1);
    println!("kill soak: seed={seed:#x} rounds={rounds} (MMRING_SOAK_SEED, MMRING_SOAK_ROUNDS)");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ring_path = dir.path().join("soak.ring");
    let ring = Options::new()
        .size(RING_SIZE)
        .on_full(OnFull::Reject)
        .abandon_timeout(ABANDON)
        .create(&ring_path)
        .unwrap();
    let mut slots = Vec::new();
    for num in 0..PRODUCERS {
        slots.push((Role::Producer, num));
    }
    for num in 0..CONSUMERS {
        slots.push((Role::Consumer, num));
    }
    let mut fleet = Fleet {
        dir: dir.path().to_path_buf(),
        ring: ring_path.clone(),
        stop: dir.path().join("stop"),
        slots: slots
            .into_iter()
            .map(|(role, num)| Slot {
                role,
                num: u32::try_from(num).unwrap(),
                incarnation: 0,
                process: None,
            })
            .collect(),
    };
    for index in 0..fleet.slots.len() {
        fleet.start(index);
    }

    // The killing.
    let mut rng = Rng(seed);
    let (mut producer_kills, mut consumer_kills) = (0u64, 0u64);
    for _ in 0..rounds {
        let delay = Duration::from_millis(1 + rng.below(MAX_KILL_DELAY_MS));
        let victim = rng.below(fleet.slots.len() as u64) as usize;
        fleet.watch(delay);
        fleet.kill_and_restart(victim);
        match fleet.slots[victim].role {
            Role::Producer => producer_kills += 1,
            Role::Consumer => consumer_kills += 1,
        }
    }
    let killing = started.elapsed();

    // The drain: producers finish, then one stop marker per consumer.
    File::create(&fleet.stop).unwrap();
    fleet.wait_exit(Role::Producer, PRODUCERS_FINISH);
    for consumer in 0..CONSUMERS {
        let marker = payload(Key {
            producer: STOP_PRODUCER,
            incarnation: 0,
            seq: consumer as u64,
        });
        ring.push(&marker).expect("push stop marker");
    }
    fleet.wait_exit(Role::Consumer, CONSUMERS_DRAIN);
    assert!(ring.pop().unwrap().is_none(), "entries after the markers");
    let stats = ring.stats();

    // What the producers logged: per incarnation, the ID of each push that returned
    // Ok, by seq (vectors, not a map per entry: a long soak logs millions).
    let mut pushed: HashMap<(u32, u32), Vec<u64>> = HashMap::new();
    let mut killed_incarnations = HashSet::new();
    for slot in fleet
        .slots
        .iter()
        .filter(|slot| slot.role == Role::Producer)
    {
        for incarnation in 0..=slot.incarnation {
            if incarnation < slot.incarnation {
                killed_incarnations.insert((slot.num, incarnation));
            }
            let mut ids = Vec::new();
            for line in log_lines(&fleet.log_path(Role::Producer, slot.num, incarnation)) {
                let (seq, id) = line.split_once(' ').expect("producer log line");
                assert_eq!(seq.parse::<usize>().unwrap(), ids.len(), "{line:?}");
                ids.push(id.parse::<u64>().unwrap());
            }
            pushed.insert((slot.num, incarnation), ids);
        }
    }
    let logged_pushes: usize = pushed.values().map(Vec::len).sum();

    // What the consumers logged, checked entry by entry. `seen` has one more flag per
    // producer incarnation than it logged: the entry it may have been pushing when
    // killed.
    let mut seen: HashMap<(u32, u32), Vec<bool>> = pushed
        .iter()
        .map(|(incarnation, ids)| (*incarnation, vec![false; ids.len() + 1]))
        .collect();
    let mut delivered_ids = Vec::new();
    let mut unlogged_delivered = Vec::new();
    let mut markers = 0;
    for slot in fleet
        .slots
        .iter()
        .filter(|slot| slot.role == Role::Consumer)
    {
        for incarnation in 0..=slot.incarnation {
            let name = format!("consumer{}.{incarnation}", slot.num);
            let mut last_id = None;
            let mut last_seq: HashMap<(u32, u32), u64> = HashMap::new();
            for line in log_lines(&fleet.log_path(Role::Consumer, slot.num, incarnation)) {
                if line == "stop" {
                    assert_eq!(incarnation, slot.incarnation, "{name}: stopped early");
                    markers += 1;
                    continue;
                }
                let fields: Vec<u64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
                let id = fields[0];
                let key = Key {
                    producer: u32::try_from(fields[1]).unwrap(),
                    incarnation: u32::try_from(fields[2]).unwrap(),
                    seq: fields[3],
                };
                let life = (key.producer, key.incarnation);
                let seq = usize::try_from(key.seq).unwrap();
                let (Some(ids), Some(flags)) = (pushed.get(&life), seen.get_mut(&life)) else {
                    panic!("{name}: delivered {key:?} from a producer that never ran");
                };
                assert!(
                    seq <= ids.len(),
                    "{name}: delivered {key:?}, but that producer logged only {} pushes",
                    ids.len()
                );
                assert!(!flags[seq], "{name}: {key:?} delivered twice");
                flags[seq] = true;
                match ids.get(seq) {
                    Some(pushed_id) => assert_eq!(
                        *pushed_id, id,
                        "{name}: {key:?} popped with ID {id}, pushed as {pushed_id}"
                    ),
                    None => unlogged_delivered.push(key),
                }
                delivered_ids.push(id);
                assert!(last_id < Some(id), "{name}: ID {id} after {last_id:?}");
                last_id = Some(id);
                if let Some(previous) = last_seq.insert(life, key.seq) {
                    assert!(previous < key.seq, "{name}: {key:?} after seq {previous}");
                }
            }
        }
    }
    assert_eq!(markers, CONSUMERS, "each consumer stops at one marker");
    delivered_ids.sort_unstable();
    for pair in delivered_ids.windows(2) {
        assert!(pair[0] != pair[1], "ID {} delivered twice", pair[0]);
    }

    // Pushed but not logged: only the entry a killed producer was pushing (its seq
    // is the number of pushes it logged, checked above).
    for key in &unlogged_delivered {
        assert!(
            killed_incarnations.contains(&(key.producer, key.incarnation)),
            "delivered {key:?}, which its producer, never killed, did not log"
        );
    }
    // Logged but not delivered: only entries a killed consumer popped before logging.
    let lost: Vec<Key> = seen
        .iter()
        .flat_map(|(&(producer, incarnation), flags)| {
            let logged = flags.len() - 1;
            (0..logged).filter(|seq| !flags[*seq]).map(move |seq| Key {
                producer,
                incarnation,
                seq: seq as u64,
            })
        })
        .collect();
    assert!(
        lost.len() as u64 <= consumer_kills,
        "{} logged entries never delivered with only {consumer_kills} consumer kills: {lost:?}",
        lost.len()
    );

    // The counters, up to what the kills explain (see the crash tests).
    let popped_logged = (delivered_ids.len() + markers) as u64;
    assert_eq!(
        (stats.corrupt, stats.evicted, stats.expired, stats.len),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.read_pos, stats.write_pos, "{stats:?}");
    assert!(
        stats.popped >= popped_logged && stats.popped - popped_logged <= consumer_kills,
        "popped {} but {popped_logged} logged, {consumer_kills} consumer kills",
        stats.popped
    );
    let deficit = i128::from(stats.pushed) - i128::from(stats.popped) - i128::from(stats.abandoned);
    assert!(
        -i128::from(producer_kills) <= deficit
            && deficit <= i128::from(producer_kills + consumer_kills),
        "pushed - popped - abandoned = {deficit} after {producer_kills} producer and \
         {consumer_kills} consumer kills: {stats:?}"
    );

    println!(
        "kill soak: seed={seed:#x} rounds={rounds} kills: {producer_kills} producers, \
         {consumer_kills} consumers; {} entries logged as pushed, {} delivered, {} lost with \
         killed consumers, {} delivered unlogged from killed producers, {} abandoned, \
         counter deficit {deficit}; killing {:.1} s, total {:.1} s: ok",
        logged_pushes,
        delivered_ids.len(),
        lost.len(),
        unlogged_delivered.len(),
        stats.abandoned,
        killing.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
