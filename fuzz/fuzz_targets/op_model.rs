//! An arbitrary sequence of operations on a small ring, checked after every step
//! against a model that computes byte positions independently of the library.
//!
//! Operations: pushes of any size up to one byte over `max_entry_size` (with the
//! ring's default TTL or an explicit one), batches of such pushes (`push_batch`),
//! pops, pops into a reused buffer, batch pops (`pop_batch`), peeks, reopening the
//! file, and reading the statistics. Rings are 8–10 KiB, mostly not a
//! power of two, in both `OnFull` policies, so wrap-around and padding come often.
//!
//! Invariants: every push gets the ID (position) the model predicts, or `Full` exactly
//! when the record does not fit, or `TooLarge` exactly over `max_entry_size`; a batch
//! pushes exactly what the same pushes one by one would, up to the first that does
//! not fit, and nothing if one is too large; a batch pop returns exactly the model's
//! oldest `max` entries; an
//! overwriting push evicts exactly the oldest entries it must; pop returns the model's
//! oldest entry with its payload and TTL; peek yields the model's contents in order;
//! `len` and every counter match. TTLs are 1 s or 1 h: an input that runs long enough
//! for a 1 s entry to be near expiry stops checking (expiry itself is tested with a
//! controlled clock in the library's unit tests).
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mmring::{Batch, Error, OnFull, Options, Ring};
use mmring_fuzz::*;

#[derive(Arbitrary, Debug)]
enum Ttl {
    Never,
    OneSecond,
    OneHour,
}

impl Ttl {
    fn secs(&self) -> u32 {
        match self {
            Ttl::Never => 0,
            Ttl::OneSecond => 1,
            Ttl::OneHour => 3600,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Payload length modulo `max_entry_size + 2` (so one past the maximum too).
    Push(u16),
    PushWithTtl(u16, Ttl),
    /// Payload lengths as for `Push`, at most 8 of them used.
    PushBatch(Vec<u16>),
    Pop,
    PopInto,
    /// At most `max % 10` entries.
    PopBatch(u8),
    Peek,
    Reopen,
    Stats,
}

#[derive(Arbitrary, Debug)]
struct Input {
    reject: bool,
    /// File size `8192 + 8 * (extra_words % 257)`.
    extra_words: u16,
    default_ttl: Ttl,
    ops: Vec<Op>,
}

struct ModelEntry {
    id: u64,
    data: Vec<u8>,
    ttl_secs: u32,
}

/// The ring as FORMAT.md says it must be: positions, padding, eviction.
struct Model {
    reject: bool,
    region_len: u64,
    read_pos: u64,
    write_pos: u64,
    entries: VecDeque<ModelEntry>,
    pushed: u64,
    popped: u64,
    evicted: u64,
}

impl Model {
    /// The ID the push gets, or `None` for `Full`.
    fn push(&mut self, data: Vec<u8>, ttl_secs: u32) -> Option<u64> {
        let record = record_len(data.len());
        let offset = self.write_pos % self.region_len;
        let pad = if offset + record <= self.region_len {
            0
        } else {
            self.region_len - offset
        };
        let id = self.write_pos + pad;
        let end = id + record;
        while end > self.read_pos + self.region_len {
            let front = self
                .entries
                .front()
                .expect("an entry of at most max_entry_size fits an empty ring");
            if self.read_pos < front.id {
                self.read_pos = front.id; // padding in front of the oldest entry
            } else if self.reject {
                return None;
            } else {
                self.read_pos = front.id + record_len(front.data.len());
                self.entries.pop_front();
                self.evicted += 1;
            }
        }
        self.write_pos = end;
        self.pushed += 1;
        self.entries.push_back(ModelEntry { id, data, ttl_secs });
        Some(id)
    }

    fn pop(&mut self) -> Option<ModelEntry> {
        let front = self.entries.pop_front()?;
        self.read_pos = front.id + record_len(front.data.len());
        self.popped += 1;
        Some(front)
    }
}

fn check_entry(got: Option<(u64, &[u8], Duration)>, want: Option<&ModelEntry>) {
    let want = want.map(|e| {
        (
            e.id,
            e.data.as_slice(),
            Duration::from_secs(e.ttl_secs.into()),
        )
    });
    assert_eq!(got, want);
}

fuzz_target!(|input: Input| {
    let size = 8192 + 8 * u64::from(input.extra_words % 257);
    let path = scratch_path("op_model");
    let options = Options::new()
        .size(size)
        .on_full(if input.reject {
            OnFull::Reject
        } else {
            OnFull::Overwrite
        })
        .ttl(Duration::from_secs(input.default_ttl.secs().into()));
    let mut ring = options.create(&path).unwrap();
    let max = ring.max_entry_size();
    let mut model = Model {
        reject: input.reject,
        region_len: size - HEADER_LEN,
        read_pos: 0,
        write_pos: 0,
        entries: VecDeque::new(),
        pushed: 0,
        popped: 0,
        evicted: 0,
    };
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut batch = Batch::new();
    for (seq, op) in input.ops.iter().enumerate() {
        // A 1 s entry could expire from here on, and the model does not follow time.
        if started.elapsed() > Duration::from_millis(800) {
            break;
        }
        match op {
            Op::Push(len) | Op::PushWithTtl(len, _) => {
                let len = usize::from(*len) % (max + 2);
                let data = payload(seq as u64, len);
                let (got, ttl_secs) = match op {
                    Op::PushWithTtl(_, ttl) => (
                        ring.push_with_ttl(&data, Duration::from_secs(ttl.secs().into())),
                        ttl.secs(),
                    ),
                    _ => (ring.push(&data), input.default_ttl.secs()),
                };
                if len > max {
                    assert!(
                        matches!(got, Err(Error::TooLarge { len: l, max: m }) if l == len && m == max)
                    );
                    continue;
                }
                match (got, model.push(data, ttl_secs)) {
                    (Ok(id), Some(want)) => assert_eq!(id, want),
                    (Err(Error::Full), None) => {}
                    (got, want) => panic!("push of {len} bytes: got {got:?}, model says {want:?}"),
                }
            }
            Op::PushBatch(lens) => {
                let lens: Vec<usize> = lens
                    .iter()
                    .take(8)
                    .map(|l| usize::from(*l) % (max + 2))
                    .collect();
                let entries: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, len)| payload((seq * 8 + i) as u64, *len))
                    .collect();
                let got = ring.push_batch(&entries);
                if let Some(&len) = lens.iter().find(|len| **len > max) {
                    assert!(
                        matches!(got, Err(Error::TooLarge { len: l, .. }) if l == len),
                        "{got:?}"
                    );
                    continue;
                }
                // What the same pushes one by one do, up to the first that does not fit.
                let mut want = 0;
                for data in entries {
                    if model.push(data, input.default_ttl.secs()).is_none() {
                        break;
                    }
                    want += 1;
                }
                match got {
                    Ok(n) => assert_eq!(n, want, "batch of {lens:?}"),
                    Err(Error::Full) => assert_eq!(want, 0, "batch of {lens:?}"),
                    Err(e) => panic!("batch of {lens:?}: {e}"),
                }
            }
            Op::PopBatch(max_entries) => {
                let max_entries = usize::from(*max_entries % 10);
                let n = ring.pop_batch(&mut batch, max_entries).unwrap();
                assert_eq!(n, batch.len());
                assert_eq!(n, max_entries.min(model.entries.len()));
                for (info, data) in &batch {
                    let want = model.pop();
                    check_entry(Some((info.id(), data, info.ttl())), want.as_ref());
                }
            }
            Op::Pop => {
                let entry = ring.pop().unwrap();
                let want = model.pop();
                check_entry(
                    entry.as_ref().map(|e| (e.id(), e.data(), e.ttl())),
                    want.as_ref(),
                );
            }
            Op::PopInto => {
                let info = ring.pop_into(&mut buf).unwrap();
                let want = model.pop();
                check_entry(
                    info.map(|i| (i.id(), buf.as_slice(), i.ttl())),
                    want.as_ref(),
                );
            }
            Op::Peek => {
                let got: Vec<_> = ring.peek().map(|e| e.unwrap()).collect();
                assert_eq!(got.len(), model.entries.len());
                for (entry, want) in got.iter().zip(&model.entries) {
                    check_entry(Some((entry.id(), entry.data(), entry.ttl())), Some(want));
                }
            }
            Op::Reopen => {
                drop(ring);
                ring = Ring::open(&path).unwrap();
            }
            Op::Stats => {
                let stats = ring.stats();
                assert_eq!(
                    (
                        stats.pushed,
                        stats.popped,
                        stats.evicted,
                        stats.expired,
                        stats.corrupt,
                        stats.abandoned
                    ),
                    (model.pushed, model.popped, model.evicted, 0, 0, 0)
                );
                assert_eq!(
                    (stats.read_pos, stats.write_pos),
                    (model.read_pos, model.write_pos)
                );
            }
        }
        assert_eq!(ring.len(), model.entries.len());
    }
    drop(ring);
    let _ = std::fs::remove_file(&path);
});
