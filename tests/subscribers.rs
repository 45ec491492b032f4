//! Persistent named subscribers (`Ring::subscribe`). Proves that:
//! - several subscriber processes each see every entry, intact and in push order,
//!   while the entries stay in the ring for `pop`;
//! - a subscriber restarted in a new process resumes right after its last commit
//!   (entries read but not committed are read again);
//! - entries removed before a subscriber read them (popped, or evicted by overwriting
//!   pushes) are reported by one `Error::Lapped` with their exact count, after which
//!   the subscriber continues with the oldest live entry; under concurrent pushes,
//!   evictions and pops, delivered + missed equals pushed exactly;
//! - the slot table holds 35 subscribers and a 36th gets `Error::SubscriberTableFull`;
//!   unsubscribing frees a slot; racing subscribes of one name share one slot;
//! - subscribers never block producers: a reject-mode ring is full or not regardless
//!   of what subscribers have read.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ChildProcess, Deadline, RING_VAR, child_num, child_role, child_var, wait_all};
use mmring::{Error, OnFull, Options, Ring, Subscriber};

const ENTRY: &str = "child_process_entry";
const COUNT_VAR: &str = "MMRING_TEST_COUNT";
const NAME_VAR: &str = "MMRING_TEST_NAME";

/// An entry numbered `seq`: its number, then filler derived from it.
fn payload(seq: u64) -> Vec<u8> {
    let mut data = seq.to_le_bytes().to_vec();
    data.extend((0..(seq % 23)).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    data
}

/// The number of an entry made by [`payload`], checking the rest of it.
fn seq_of(data: &[u8]) -> u64 {
    let seq = u64::from_le_bytes(data[..8].try_into().expect("an 8-byte prefix"));
    assert_eq!(data, payload(seq), "entry {seq} is damaged");
    seq
}

/// Reads the next entry's number, waiting up to 10 s.
fn next_seq(sub: &mut Subscriber<'_>) -> u64 {
    let entry = sub
        .next_timeout(Duration::from_secs(10))
        .expect("next")
        .expect("an entry within 10 s");
    seq_of(entry.data())
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_process_entry() {
    let Some(role) = child_role() else {
        return;
    };
    let ring = Ring::open(child_var(RING_VAR)).expect("child opens the ring");
    let out = child_var(common::OUT_VAR);
    let name = child_var(NAME_VAR);
    let count = child_num(COUNT_VAR);
    let mut sub = ring.subscribe(&name).expect("subscribe");
    match role.as_str() {
        // Reads COUNT entries, checking each is the next number; writes them.
        "reader" => {
            let mut seen = String::new();
            for expected in 0..count {
                let seq = next_seq(&mut sub);
                assert_eq!(seq, expected, "subscriber {name}: out of order");
                seen.push_str(&format!("{seq}\n"));
            }
            sub.commit().unwrap();
            std::fs::write(out, seen).unwrap();
        }
        // Reads COUNT entries, commits, reads two more and ends without committing.
        "quitter" => {
            for _ in 0..count {
                next_seq(&mut sub);
            }
            sub.commit().unwrap();
            let extra = [next_seq(&mut sub), next_seq(&mut sub)];
            std::fs::write(out, format!("{} {}\n", extra[0], extra[1])).unwrap();
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, name: &str, dir: &Path, path: &Path, count: u64) -> ChildProcess {
    ChildProcess::spawn(
        ENTRY,
        role,
        name,
        dir,
        &[
            (RING_VAR, path.display().to_string()),
            (NAME_VAR, name.to_string()),
            (COUNT_VAR, count.to_string()),
        ],
    )
}

#[test]
fn several_subscriber_processes_each_see_every_entry_in_order() {
    const COUNT: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new()
        .size(1 << 20)
        .on_full(OnFull::Reject)
        .create(&path)
        .unwrap();
    let mut children: Vec<ChildProcess> = (0..3)
        .map(|i| spawn("reader", &format!("reader-{i}"), dir.path(), &path, COUNT))
        .collect();
    for seq in 0..COUNT {
        ring.push(&payload(seq)).unwrap();
    }
    wait_all(&mut children, Deadline::after(Duration::from_secs(60)));
    let expected: String = (0..COUNT).map(|seq| format!("{seq}\n")).collect();
    for child in &children {
        assert_eq!(child.output(), expected, "{}", child.name);
    }
    assert_eq!(ring.len() as u64, COUNT, "subscribers remove nothing");
    let listed = ring.subscribers();
    assert_eq!(listed.len(), 3);
    for info in listed {
        assert_eq!(
            info.position,
            ring.stats().write_pos,
            "{} read everything",
            info.name
        );
        assert_eq!(info.committed, info.position);
        assert_eq!(info.missed, 0);
    }
    // pop still has queue semantics: every entry once, in order.
    for seq in 0..COUNT {
        assert_eq!(seq_of(ring.pop().unwrap().unwrap().data()), seq);
    }
}

#[test]
fn restarted_subscriber_resumes_after_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    for seq in 0..20 {
        ring.push(&payload(seq)).unwrap();
    }
    let mut quitter = [spawn("quitter", "audit", dir.path(), &path, 5)];
    wait_all(&mut quitter, Deadline::after(Duration::from_secs(30)));
    assert_eq!(
        quitter[0].output(),
        "5 6\n",
        "it read two entries past its commit"
    );
    let info = &ring.subscribers()[0];
    assert_eq!((info.name.as_str(), info.missed), ("audit", 0));
    let mut sub = ring.subscribe("audit").unwrap();
    assert_eq!(
        next_seq(&mut sub),
        5,
        "resumes after the commit, not after what it read"
    );
    for seq in 6..20 {
        assert_eq!(next_seq(&mut sub), seq);
    }
    assert!(sub.next().unwrap().is_none());
}

#[test]
fn lapping_by_pops_and_evictions_is_reported_once_with_the_exact_count() {
    let dir = tempfile::tempdir().unwrap();
    // 8192-byte file: 4096 bytes of records; 64-byte records (8-byte payloads).
    let ring = Options::new()
        .size(8192)
        .create(dir.path().join("r"))
        .unwrap();
    let push = |seq: u64| ring.push(&seq.to_le_bytes()).unwrap();
    let mut sub = ring.subscribe("slow").unwrap();
    for seq in 0..10 {
        push(seq);
    }
    let next = |sub: &mut Subscriber<'_>| {
        sub.next()
            .map(|e| e.map(|e| u64::from_le_bytes(e.data().try_into().unwrap())))
    };
    assert_eq!(next(&mut sub).unwrap(), Some(0));
    assert_eq!(next(&mut sub).unwrap(), Some(1));
    // A consumer pops 0..5: 2, 3 and 4 leave before the subscriber read them.
    for _ in 0..5 {
        ring.pop().unwrap().unwrap();
    }
    assert!(matches!(next(&mut sub), Err(Error::Lapped { missed: 3 })));
    assert_eq!(next(&mut sub).unwrap(), Some(5));
    // 64 records fill the region: pushing 100 more evicts 6..=45 (40 entries), of
    // which the subscriber read none.
    for seq in 10..110 {
        push(seq);
    }
    assert_eq!(ring.stats().evicted, 41, "entries 5..=45");
    assert!(matches!(next(&mut sub), Err(Error::Lapped { missed: 40 })));
    assert_eq!(
        next(&mut sub).unwrap(),
        Some(46),
        "continues at the oldest live entry"
    );
    let info = &ring.subscribers()[0];
    assert_eq!((info.missed, info.unreported), (43, 0));
    for seq in 47..110 {
        assert_eq!(next(&mut sub).unwrap(), Some(seq));
    }
    assert_eq!(next(&mut sub).unwrap(), None);
}

#[test]
fn under_concurrent_evictions_and_pops_delivered_plus_missed_equals_pushed() {
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(16384)
        .create(dir.path().join("r"))
        .unwrap();
    let mut sub = ring.subscribe("racer").unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..COUNT {
                ring.push(&payload(seq)).unwrap();
                if seq % 3 == 0 {
                    let _ = ring.pop().unwrap();
                }
            }
        });
        let (mut delivered, mut missed, mut last) = (0u64, 0u64, None);
        while last != Some(COUNT - 1) {
            match sub.next() {
                Ok(Some(entry)) => {
                    let seq = seq_of(entry.data());
                    assert!(last < Some(seq), "{seq} after {last:?}");
                    last = Some(seq);
                    delivered += 1;
                }
                Ok(None) => {
                    deadline.check(|| format!("the last entry; {:?}", ring.stats()));
                    std::thread::yield_now();
                }
                Err(Error::Lapped { missed: n }) => missed += n,
                Err(e) => panic!("subscriber: {e}"),
            }
        }
        // Removals that passed the cursor are all counted before the last push; their
        // report may still be pending.
        loop {
            match sub.next() {
                Ok(None) => break,
                Err(Error::Lapped { missed: n }) => missed += n,
                other => panic!("after the last entry: {other:?}"),
            }
        }
        eprintln!("delivered {delivered}, missed {missed}, {:?}", ring.stats());
        assert_eq!(
            delivered + missed,
            COUNT,
            "every entry delivered or counted missed"
        );
    });
}

#[test]
fn subscribers_never_hold_space_in_a_reject_ring() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .create(dir.path().join("r"))
        .unwrap();
    let mut sub = ring.subscribe("idle").unwrap();
    let mut pushed = 0u64;
    while ring.push(&pushed.to_le_bytes()).is_ok() {
        pushed += 1;
    }
    assert_eq!(pushed, 64);
    while ring.pop().unwrap().is_some() {}
    // The subscriber read nothing; the space is free all the same.
    for seq in 0..64u64 {
        ring.push(&(100 + seq).to_le_bytes()).unwrap();
    }
    assert!(matches!(sub.next(), Err(Error::Lapped { missed: 64 })));
    let first = sub.next().unwrap().unwrap();
    assert_eq!(first.data(), 100u64.to_le_bytes());
}

#[test]
fn slot_table_holds_35_subscribers_and_the_next_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    for i in 0..35 {
        ring.subscribe(&format!("subscriber-{i}")).unwrap();
    }
    match ring.subscribe("one-too-many") {
        Err(e @ Error::SubscriberTableFull { slots: 35 }) => {
            assert!(e.to_string().contains("unsubscribe"), "{e}");
        }
        other => panic!("expected SubscriberTableFull, got {other:?}"),
    }
    // Existing names still attach.
    ring.subscribe("subscriber-7").unwrap();
    assert!(ring.unsubscribe("subscriber-7").unwrap());
    assert!(!ring.unsubscribe("subscriber-7").unwrap());
    ring.subscribe("one-too-many").unwrap();
    let names: Vec<String> = ring.subscribers().into_iter().map(|s| s.name).collect();
    assert_eq!(names.len(), 35);
    assert!(names.contains(&"one-too-many".to_string()));
    assert!(!names.contains(&"subscriber-7".to_string()));
}

#[test]
fn names_must_be_1_to_40_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    assert!(matches!(
        ring.subscribe(""),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        ring.subscribe(&"n".repeat(41)),
        Err(Error::InvalidArgument { .. })
    ));
    ring.subscribe(&"n".repeat(40)).unwrap();
}

#[test]
fn unsubscribed_handle_fails_with_not_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    let mut sub = ring.subscribe("temp").unwrap();
    ring.push(b"x").unwrap();
    assert!(ring.unsubscribe("temp").unwrap());
    assert!(matches!(sub.next(), Err(Error::NotSubscribed { name }) if name == "temp"));
    assert!(
        matches!(sub.commit(), Ok(())),
        "nothing read, nothing to commit"
    );
    assert!(ring.subscribers().is_empty());
}

#[test]
fn racing_subscribes_of_one_name_share_one_slot() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new().create(dir.path().join("r")).unwrap();
    for round in 0..50 {
        let name = format!("shared-{round}");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| ring.subscribe(&name).unwrap());
            }
        });
        let count = ring.subscribers().iter().filter(|s| s.name == name).count();
        assert_eq!(count, 1, "round {round}");
        assert!(ring.unsubscribe(&name).unwrap());
    }
}
