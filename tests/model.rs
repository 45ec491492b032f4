//! Model test: random single-threaded sequences of pushes, pops, peeks, oversized
//! pushes and reopenings, checked after every step against a `VecDeque` model that
//! computes the exact byte positions (record footprints, padding at the end of a lap,
//! eviction) independently of the library.
//!
//! What it proves, for both `OnFull::Reject` and `OnFull::Overwrite`: every push gets
//! the ID (position) the model predicts, `Error::Full` comes exactly when the record
//! does not fit, an overwriting push evicts exactly the oldest entries it must, `pop`
//! returns the model's front with its payload, `peek` yields exactly the model's
//! contents in order, `len` and every counter match, the stats identity holds, and a
//! reopened handle sees the same ring. Ring sizes of 8–16 KiB and payloads up to
//! `max_entry_size` make wrap-around and padding records frequent.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mmring::{Error, OnFull, Options, Ring};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Bytes in a ring file before the region.
const HEADER_LEN: u64 = 4096;
/// Bytes of a record header before the payload.
const RECORD_HEADER_LEN: u64 = 56;

/// Bytes a record with an `len`-byte payload occupies in the region.
fn footprint(len: usize) -> u64 {
    (RECORD_HEADER_LEN + len as u64).next_multiple_of(8)
}

/// How a push picks its payload length, resolved against the ring's maximum so that
/// every size class is exercised whatever the ring size.
#[derive(Clone, Copy, Debug)]
enum Len {
    /// 0..=16 bytes: many records per lap.
    Tiny(u32),
    /// 0..=400 bytes.
    Small(u32),
    /// Anywhere in 0..=max_entry_size: padding at almost every wrap.
    Any(u32),
    /// Exactly max_entry_size.
    Max,
}

impl Len {
    fn resolve(self, max: usize) -> usize {
        match self {
            Len::Tiny(raw) => raw as usize % 17,
            Len::Small(raw) => raw as usize % 401,
            Len::Any(raw) => raw as usize % (max + 1),
            Len::Max => max,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Push(Len),
    Pop,
    Peek,
    PushTooLarge,
    Reopen,
}

fn len_strategy() -> impl Strategy<Value = Len> {
    prop_oneof![
        2 => any::<u32>().prop_map(Len::Tiny),
        3 => any::<u32>().prop_map(Len::Small),
        4 => any::<u32>().prop_map(Len::Any),
        1 => Just(Len::Max),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => len_strategy().prop_map(Op::Push),
        6 => Just(Op::Pop),
        2 => Just(Op::Peek),
        1 => Just(Op::PushTooLarge),
        1 => Just(Op::Reopen),
    ]
}

/// File sizes from 8 KiB to 16 KiB in steps of 8 bytes: regions of 4–12 KiB, most of
/// them not a power of two.
fn size_strategy() -> impl Strategy<Value = u64> {
    (1024u64..=2048).prop_map(|words| words * 8)
}

/// A payload that differs from every other one of the same test: each byte depends
/// on the entry's sequence number and the byte's index.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

#[derive(Debug)]
struct ModelEntry {
    id: u64,
    data: Vec<u8>,
}

/// What the ring should hold, with positions computed the way FORMAT.md specifies.
#[derive(Debug)]
struct Model {
    policy: OnFull,
    region_len: u64,
    /// The ring's `read_pos`: the start of the oldest record, which may be a padding
    /// record in front of `entries[0]`.
    read_pos: u64,
    write_pos: u64,
    entries: VecDeque<ModelEntry>,
    pushed: u64,
    popped: u64,
    evicted: u64,
}

/// What the model expects a push to do.
#[derive(Debug, PartialEq, Eq)]
enum PushOutcome {
    Pushed { id: u64, evicted: u64 },
    Full,
}

impl Model {
    fn new(policy: OnFull, region_len: u64) -> Model {
        Model {
            policy,
            region_len,
            read_pos: 0,
            write_pos: 0,
            entries: VecDeque::new(),
            pushed: 0,
            popped: 0,
            evicted: 0,
        }
    }

    fn push(&mut self, data: Vec<u8>) -> PushOutcome {
        let region = self.region_len;
        let record = footprint(data.len());
        let offset = self.write_pos % region;
        // A record never crosses the region end: the rest of the lap becomes padding.
        let pad = if offset + record <= region {
            0
        } else {
            region - offset
        };
        let id = self.write_pos + pad;
        let end = id + record;
        let mut evicted = 0;
        while end > self.read_pos + region {
            match self.entries.front() {
                // Only a padding record lies between read_pos and the oldest entry;
                // removing it frees space without losing anything.
                Some(front) if self.read_pos < front.id => self.read_pos = front.id,
                Some(front) => match self.policy {
                    OnFull::Reject => return PushOutcome::Full,
                    _ => {
                        self.read_pos = front.id + footprint(front.data.len());
                        self.entries.pop_front();
                        evicted += 1;
                    }
                },
                None => unreachable!("an entry of at most max_entry_size fits an empty ring"),
            }
        }
        self.write_pos = end;
        self.entries.push_back(ModelEntry { id, data });
        self.pushed += 1;
        self.evicted += evicted;
        PushOutcome::Pushed { id, evicted }
    }

    fn pop(&mut self) -> Option<ModelEntry> {
        let front = self.entries.pop_front()?;
        self.read_pos = front.id + footprint(front.data.len());
        self.popped += 1;
        Some(front)
    }
}

fn create(path: &Path, size: u64, policy: OnFull) -> Ring {
    Options::new()
        .size(size)
        .on_full(policy)
        .create(path)
        .expect("create ring")
}

/// Asserts everything observable about `ring` against `model`.
fn check(ring: &Ring, model: &Model, step: usize, op: Op) -> Result<(), TestCaseError> {
    let context = || format!("after step {step} ({op:?})");
    let stats = ring.stats();
    prop_assert_eq!(ring.len(), model.entries.len(), "len {}", context());
    prop_assert_eq!(ring.is_empty(), model.entries.is_empty(), "{}", context());
    prop_assert_eq!(stats.len, model.entries.len() as u64, "{}", context());
    prop_assert_eq!(stats.read_pos, model.read_pos, "read_pos {}", context());
    prop_assert_eq!(stats.write_pos, model.write_pos, "write_pos {}", context());
    prop_assert_eq!(stats.pushed, model.pushed, "pushed {}", context());
    prop_assert_eq!(stats.popped, model.popped, "popped {}", context());
    prop_assert_eq!(stats.evicted, model.evicted, "evicted {}", context());
    prop_assert_eq!(
        (stats.expired, stats.corrupt, stats.abandoned),
        (0, 0, 0),
        "{}",
        context()
    );
    prop_assert_eq!(
        stats.pushed,
        stats.popped + stats.evicted + stats.expired + stats.corrupt + stats.abandoned + stats.len,
        "stats identity {}: {:?}",
        context(),
        stats
    );
    Ok(())
}

fn check_peek(ring: &Ring, model: &Model, step: usize) -> Result<(), TestCaseError> {
    let peeked: Vec<(u64, Vec<u8>)> = ring
        .peek()
        .map(|entry| entry.map(|e| (e.id(), e.into_data())))
        .collect::<Result<_, _>>()
        .map_err(|e| TestCaseError::fail(format!("peek at step {step}: {e}")))?;
    let expected: Vec<(u64, Vec<u8>)> = model
        .entries
        .iter()
        .map(|e| (e.id, e.data.clone()))
        .collect();
    prop_assert_eq!(peeked.len(), expected.len(), "peek count at step {}", step);
    prop_assert_eq!(peeked, expected, "peek contents at step {}", step);
    Ok(())
}

fn run(policy: OnFull, size: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("model.ring");
    let mut ring = create(&path, size, policy);
    let region_len = size - HEADER_LEN;
    prop_assert_eq!(ring.capacity_bytes(), region_len);
    let max = ring.max_entry_size();
    prop_assert_eq!(max as u64, region_len / 2 / 8 * 8 - RECORD_HEADER_LEN);
    let mut model = Model::new(policy, region_len);
    let mut seq = 0u64;
    for (step, &op) in ops.iter().enumerate() {
        match op {
            Op::Push(len) => {
                seq += 1;
                let data = payload(seq, len.resolve(max));
                let evicted_before = ring.stats().evicted;
                let expected = model.push(data.clone());
                let got = match ring.push(&data) {
                    Ok(id) => PushOutcome::Pushed {
                        id,
                        evicted: ring.stats().evicted - evicted_before,
                    },
                    Err(Error::Full) => PushOutcome::Full,
                    Err(e) => return Err(TestCaseError::fail(format!("push at step {step}: {e}"))),
                };
                prop_assert_eq!(
                    got,
                    expected,
                    "push of {} bytes at step {}",
                    data.len(),
                    step
                );
            }
            Op::Pop => {
                let got = ring
                    .pop()
                    .map_err(|e| TestCaseError::fail(format!("pop at step {step}: {e}")))?;
                match (got, model.pop()) {
                    (None, None) => {}
                    (Some(entry), Some(expected)) => {
                        prop_assert_eq!(entry.id(), expected.id, "popped id at step {}", step);
                        prop_assert_eq!(entry.data(), &expected.data[..], "payload at {}", step);
                        prop_assert_eq!(entry.version(), 1);
                        prop_assert_eq!(entry.ttl(), Duration::ZERO);
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: pop returned {:?}, model expected {:?}",
                            got.map(|e| e.id()),
                            expected.map(|e| e.id)
                        )));
                    }
                }
            }
            Op::Peek => check_peek(&ring, &model, step)?,
            Op::PushTooLarge => match ring.push(&vec![0xa5; max + 1]) {
                Err(Error::TooLarge { len, max: reported }) => {
                    prop_assert_eq!((len, reported), (max + 1, max));
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: oversized push returned {other:?}"
                    )));
                }
            },
            Op::Reopen => {
                drop(ring);
                ring = Ring::open(&path)
                    .map_err(|e| TestCaseError::fail(format!("reopen at step {step}: {e}")))?;
                prop_assert_eq!(ring.on_full(), policy);
                prop_assert_eq!(ring.max_entry_size(), max);
            }
        }
        check(&ring, &model, step, op)?;
    }
    // Whatever the sequence left behind is still exactly the model's, and drains so.
    check_peek(&ring, &model, ops.len())?;
    while let Some(expected) = model.pop() {
        let entry = ring
            .pop()
            .map_err(|e| TestCaseError::fail(format!("final drain: {e}")))?;
        prop_assert_eq!(
            entry.map(|e| (e.id(), e.into_data())),
            Some((expected.id, expected.data))
        );
    }
    prop_assert!(
        ring.pop()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .is_none()
    );
    check(&ring, &model, ops.len(), Op::Pop)?;
    Ok(())
}

fn config() -> Config {
    Config {
        cases: 128,
        // Failures are reported with their minimal case; no regression files are
        // written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reject_mode_matches_the_model(
        size in size_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..200),
    ) {
        run(OnFull::Reject, size, &ops)?;
    }

    #[test]
    fn overwrite_mode_matches_the_model(
        size in size_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..200),
    ) {
        run(OnFull::Overwrite, size, &ops)?;
    }
}

/// A fixed sequence that must wrap with padding, so the property tests above can't
/// pass merely because their random sequences never reached a lap end.
#[test]
fn fixed_sequence_wraps_with_padding_in_both_modes() {
    for policy in [OnFull::Reject, OnFull::Overwrite] {
        let size = 8192 + 8 * 13; // a region that is not a power of two
        let max = (size - HEADER_LEN) / 2 / 8 * 8 - RECORD_HEADER_LEN;
        let mut ops = Vec::new();
        for _ in 0..6 {
            ops.push(Op::Push(Len::Small(1000 % 401)));
            ops.push(Op::Push(Len::Any(max as u32 * 2 / 3)));
            ops.push(Op::Pop);
            ops.push(Op::Peek);
        }
        ops.push(Op::Reopen);
        ops.extend([Op::Push(Len::Max), Op::Push(Len::Max), Op::Push(Len::Max)]);
        run(policy, size, &ops).unwrap_or_else(|e| panic!("{policy:?}: {e}"));

        // The same sequence, replayed on the model alone, crossed a lap end with
        // padding and (for the overwrite case) evicted.
        let mut model = Model::new(policy, size - HEADER_LEN);
        let mut seq = 0;
        let mut padded = false;
        for op in &ops {
            if let Op::Push(len) = op {
                seq += 1;
                let before = model.write_pos;
                if let PushOutcome::Pushed { id, .. } =
                    model.push(payload(seq, len.resolve(max as usize)))
                {
                    padded |= id != before;
                }
            } else if let Op::Pop = op {
                model.pop();
            }
        }
        assert!(padded, "{policy:?}: the fixed sequence never padded");
        assert!(
            model.write_pos > model.region_len,
            "{policy:?}: never wrapped"
        );
        if policy == OnFull::Overwrite {
            assert!(model.evicted > 0, "the fixed sequence never evicted");
        }
    }
}
