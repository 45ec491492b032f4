//! Blocking waits: `pop_timeout`, `pop_blocking`, `OnFull::Block` and `push_timeout`,
//! in one process and across processes. Proves that:
//! - a timed pop returns `None` after its timeout, and an entry as soon as one comes;
//! - a consumer blocked for a second uses well under 10 ms of CPU time (read from the
//!   thread's CPU clock, the accounting `getrusage(RUSAGE_THREAD)` reports);
//! - a push in one process wakes a consumer process asleep in `pop_blocking` promptly
//!   (the futex is shared between processes, not private: a private one would leave
//!   the consumer asleep until its 100 ms sleep ran out), and each entry arrives once;
//! - a block-mode push waits while the ring is full and returns once a consumer in
//!   another process pops; `push_timeout` gives `Error::Timeout` and pushes nothing;
//! - a waiter killed while asleep leaves only a stale waiter count: pushes and pops
//!   work, and a new sleeper is woken by the next push;
//! - with producer threads blocked on a tiny block-mode ring and consumers blocked
//!   on it empty, in turns, every entry is delivered exactly once, intact, and in
//!   each producer's order.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{ChildProcess, Deadline, RING_VAR, child_num, child_role, child_var, wait_all};
use mmring::{Error, OnFull, Options, Ring};

/// The name of the test children run.
const ENTRY: &str = "child_process_entry";
const ROUNDS_VAR: &str = "MMRING_TEST_ROUNDS";
/// File offset of the waiter count (docs/FORMAT.md).
const WAITERS_OFFSET: u64 = 388;
/// Longest a waiter sleeps between looks (src/wait.rs).
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Monotonic nanoseconds, comparable between processes.
fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap()
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap(),
        u32::try_from(ts.tv_nsec).unwrap(),
    )
}

/// The waiter count in the ring file, read through the file (not the mapping).
fn waiters(path: &Path) -> u32 {
    let file = std::fs::File::open(path).unwrap();
    let mut word = [0u8; 4];
    file.read_exact_at(&mut word, WAITERS_OFFSET).unwrap();
    u32::from_le_bytes(word)
}

/// Waits until at least `n` waiters are registered in the ring file.
fn await_waiters(path: &Path, n: u32, deadline: Deadline) {
    while waiters(path) < n {
        deadline.check(|| format!("{n} registered waiter(s)"));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else {
        return;
    };
    let ring = Ring::open(child_var(RING_VAR)).expect("child opens the ring");
    let out = child_var(common::OUT_VAR);
    match role.as_str() {
        // Pops ROUNDS entries with pop_blocking; writes the wake-up latency of each
        // (now minus the push time the entry carries), in ns, one per line.
        "sleeper" => {
            let mut lines = String::new();
            for round in 0..child_num(ROUNDS_VAR) {
                let entry = ring.pop_blocking().expect("pop_blocking");
                let popped_at = mono_ns();
                let data = entry.data();
                let pushed_at = u64::from_le_bytes(data[..8].try_into().unwrap());
                let seq = u64::from_le_bytes(data[8..16].try_into().unwrap());
                assert_eq!(seq, round, "entries arrive once, in order");
                lines.push_str(&format!("{}\n", popped_at - pushed_at));
            }
            std::fs::write(out, lines).unwrap();
        }
        // Pushes one large entry into a full block-mode ring, waiting for room.
        "blocked-producer" => {
            let id = ring.push(&vec![3u8; ring.max_entry_size()]).expect("push");
            std::fs::write(out, format!("{id}\n")).unwrap();
        }
        // Sleeps in pop_blocking until it is killed.
        "doomed-sleeper" => {
            let entry = ring.pop_blocking().expect("pop_blocking");
            panic!(
                "the doomed sleeper got entry {} instead of dying",
                entry.id()
            );
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn pop_timeout_returns_none_after_its_timeout_and_an_entry_once_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    let started = Instant::now();
    assert!(
        ring.pop_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none()
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| ring.pop_timeout(Duration::from_secs(10)).unwrap());
        ring.push(b"wake").unwrap();
        let entry = waiter.join().unwrap().expect("an entry before the timeout");
        assert_eq!(entry.data(), b"wake");
    });
    assert_eq!(
        waiters(&dir.path().join("r")),
        0,
        "every waiter deregistered"
    );
}

#[test]
fn consumer_blocked_for_a_second_uses_well_under_10ms_of_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    let (cpu, waited) = std::thread::scope(|s| {
        s.spawn(|| {
            let cpu_before = thread_cpu_time();
            let started = Instant::now();
            assert!(ring.pop_timeout(Duration::from_secs(1)).unwrap().is_none());
            (thread_cpu_time() - cpu_before, started.elapsed())
        })
        .join()
        .unwrap()
    });
    eprintln!("blocked {waited:?} in pop_timeout, using {cpu:?} of CPU");
    assert!(waited >= Duration::from_secs(1));
    assert!(
        cpu < Duration::from_millis(10),
        "a blocked consumer used {cpu:?} of CPU"
    );
}

#[test]
fn push_in_one_process_wakes_a_consumer_process_asleep_in_pop_blocking() {
    const ROUNDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    let deadline = Deadline::after(Duration::from_secs(30));
    let mut children = [ChildProcess::spawn(
        ENTRY,
        "sleeper",
        "sleeper",
        dir.path(),
        &[
            (RING_VAR, path.display().to_string()),
            (ROUNDS_VAR, ROUNDS.to_string()),
        ],
    )];
    for round in 0..ROUNDS {
        // The consumer has registered: it is asleep, or about to be.
        await_waiters(&path, 1, deadline);
        std::thread::sleep(Duration::from_millis(2));
        let mut payload = mono_ns().to_le_bytes().to_vec();
        payload.extend_from_slice(&round.to_le_bytes());
        ring.push(&payload).unwrap();
        // Wait for the pop before the next round's registration check.
        while ring.stats().popped <= round {
            deadline.check(|| format!("the consumer to pop entry {round}"));
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    wait_all(&mut children, deadline);
    let mut latencies: Vec<u64> = children[0]
        .output()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(latencies.len() as u64, ROUNDS);
    latencies.sort_unstable();
    let median = Duration::from_nanos(latencies[latencies.len() / 2]);
    eprintln!(
        "cross-process wake-up: median {median:?}, max {:?}",
        Duration::from_nanos(latencies[latencies.len() - 1])
    );
    // Woken by the push, not by the end of a sleep slice.
    assert!(median < MAX_SLEEP / 5, "median wake-up latency {median:?}");
    assert_eq!(ring.len(), 0);
    assert_eq!(waiters(&path), 0);
}

#[test]
fn block_mode_push_waits_for_room_and_a_pop_in_another_process_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Block)
        .create(&path)
        .unwrap();
    assert_eq!(ring.on_full(), OnFull::Block);
    let big = vec![1u8; ring.max_entry_size()];
    let first = ring.push(&big).unwrap();
    let second = ring.push(&vec![2u8; ring.max_entry_size()]).unwrap();
    let started = Instant::now();
    match ring.push_timeout(&big, Duration::from_millis(30)) {
        Err(Error::Timeout { waited }) => assert_eq!(waited, Duration::from_millis(30)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(ring.len(), 2, "a timed-out push pushes nothing");

    let deadline = Deadline::after(Duration::from_secs(30));
    let mut children = [ChildProcess::spawn(
        ENTRY,
        "blocked-producer",
        "producer",
        dir.path(),
        &[(RING_VAR, path.display().to_string())],
    )];
    await_waiters(&path, 1, deadline);
    assert_eq!(ring.len(), 2, "the producer waits: the ring is full");
    assert_eq!(ring.pop().unwrap().unwrap().id(), first);
    wait_all(&mut children, deadline);
    let third: u64 = children[0].output().trim().parse().unwrap();
    assert!(third > second);
    let rest: Vec<(u64, u8)> = std::iter::from_fn(|| ring.pop().unwrap())
        .map(|entry| (entry.id(), entry.data()[0]))
        .collect();
    assert_eq!(rest, [(second, 2), (third, 3)]);
    assert_eq!(waiters(&path), 0);
}

#[test]
fn waiter_killed_while_asleep_leaves_nothing_that_blocks_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    let deadline = Deadline::after(Duration::from_secs(30));
    let mut doomed = [ChildProcess::spawn(
        ENTRY,
        "doomed-sleeper",
        "doomed",
        dir.path(),
        &[(RING_VAR, path.display().to_string())],
    )];
    await_waiters(&path, 1, deadline);
    common::kill_all(&mut doomed);
    drop(doomed);
    assert_eq!(waiters(&path), 1, "the dead waiter's registration stays");

    // Pushes and pops go on; each push now makes a wake call nobody needs.
    for i in 0..1000u32 {
        let id = ring.push(&i.to_le_bytes()).unwrap();
        assert_eq!(ring.pop().unwrap().unwrap().id(), id);
    }
    // A new sleeper is woken by a push, long before its sleep would end on its own.
    std::thread::scope(|s| {
        let sleeper = s.spawn(|| {
            let entry = ring.pop_blocking().unwrap();
            (entry, mono_ns())
        });
        await_waiters(&path, 2, deadline);
        std::thread::sleep(Duration::from_millis(2));
        let pushed_at = mono_ns();
        ring.push(b"after").unwrap();
        let (entry, woke_at) = sleeper.join().unwrap();
        assert_eq!(entry.data(), b"after");
        let latency = Duration::from_nanos(woke_at - pushed_at);
        eprintln!("wake-up with a stale waiter count: {latency:?}");
        assert!(latency < Duration::from_secs(5));
    });
    assert_eq!(
        waiters(&path),
        1,
        "only the dead waiter's registration is left"
    );
}

#[test]
fn block_mode_producers_and_blocked_consumers_deliver_everything_once_in_order() {
    const PRODUCERS: u32 = 3;
    const PER_PRODUCER: u64 = 3000;
    const CONSUMERS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Block)
        .create(dir.path().join("r"))
        .unwrap();
    let watch = common::Watch::new(Duration::from_secs(60));
    let received: Vec<Vec<common::Received>> = std::thread::scope(|s| {
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|consumer| {
                let (ring, watch) = (&ring, &watch);
                s.spawn(move || {
                    let _guard = watch.guard();
                    let mut got = Vec::new();
                    loop {
                        let Some(entry) = ring.pop_timeout(Duration::from_millis(200)).unwrap()
                        else {
                            watch.check(|| format!("consumer {consumer}: entries"));
                            continue;
                        };
                        let (producer, seq) = common::decode(entry.data()).unwrap();
                        if producer == common::STOP_PRODUCER {
                            return got;
                        }
                        got.push(common::Received {
                            id: entry.id(),
                            producer,
                            seq,
                        });
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let (ring, watch) = (&ring, &watch);
                s.spawn(move || {
                    let _guard = watch.guard();
                    for seq in 0..PER_PRODUCER {
                        let data = common::payload(producer, seq);
                        loop {
                            match ring.push_timeout(&data, Duration::from_millis(200)) {
                                Ok(_) => break,
                                Err(Error::Timeout { .. }) => {
                                    watch.check(|| format!("producer {producer}: room"));
                                }
                                Err(e) => panic!("producer {producer}: {e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        for consumer in 0..CONSUMERS {
            ring.push(&common::stop_marker(consumer)).unwrap();
        }
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut seen = std::collections::HashSet::new();
    for (consumer, got) in received.iter().enumerate() {
        common::assert_consumer_order(&format!("consumer {consumer}"), got);
        for entry in got {
            assert!(seen.insert((entry.producer, entry.seq)), "{entry:?} twice");
        }
    }
    assert_eq!(seen.len() as u64, u64::from(PRODUCERS) * PER_PRODUCER);
    let stats = ring.stats();
    assert_eq!((stats.evicted, stats.len), (0, 0), "{stats:?}");
}
