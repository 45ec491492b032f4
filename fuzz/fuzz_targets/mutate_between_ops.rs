//! A valid ring with arbitrary byte changes made to its file between operations, as
//! another program (or a failing disk) might make them while the ring is in use.
//!
//! Operations: pushes, batch pushes (batch runs), pops and peeks through either of two
//! handles, and reopening, interleaved with overwriting bytes of the region, flipping
//! bits, forging record stamps (any state, this lap or another, under the file's
//! stamp key), and overwriting header words (positions and counters).
//!
//! Invariants: nothing panics or hangs (libFuzzer's timeout); an entry returned by pop
//! or peek is byte for byte one that was pushed under its ID (for a batch, whose IDs
//! the API does not return, one that was pushed), unless the fuzzer overwrote bytes
//! of that very record (it can forge a record, checksums included);
//! popped IDs strictly increase, so no entry is popped twice, unless a header word was
//! overwritten (moving `read_pos` back legitimately replays entries).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mmring::{Error, OnFull, Options, Ring};
use mmring_fuzz::*;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Push, pop and peek go through the first handle, or (`true`) the second: two
    /// handles on one ring have separate cached positions and stall clocks.
    Push(u16, bool),
    /// `push_batch` of entries of these lengths (at most 8 of them).
    PushBatch(Vec<u16>, bool),
    Pop(bool),
    Peek(bool),
    /// Reopens the first handle.
    Reopen,
    /// Overwrite bytes at region offset `at % region_len`.
    Write {
        at: u16,
        bytes: Vec<u8>,
    },
    FlipBit {
        at: u16,
        bit: u8,
    },
    /// Store the stamp `((offset + lap * region_len) | state) ^ key` at the word at
    /// `word * 8`, with the file's stamp key.
    ForgeStamp {
        word: u16,
        lap: u8,
        state: u8,
    },
    /// Store `value` at header word `slot` (positions and counters live at 128..536).
    HeaderWord {
        slot: u8,
        value: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    reject: bool,
    extra_words: u8,
    ops: Vec<Op>,
}

/// Asserts that `data`, returned under `id`, is what was pushed under `id`, or that
/// the fuzzer overwrote that record since (or, for an ID never pushed, ever).
fn check(pushed: &Pushed, damage: &Damage, region_len: u64, id: u64, data: &[u8]) {
    // A batch's entries are known by content only. A position may also have held
    // another entry before, when a damaged header word moved the positions back.
    if pushed.in_batches.contains(data) {
        return;
    }
    let since = match pushed.by_id.get(&id) {
        Some((want, _)) if want == data => return,
        Some((_, step)) => *step,
        None => 0,
    };
    assert!(
        damage.touches(region_len, id, data.len(), since),
        "entry {id} ({} bytes) was never pushed with these bytes, and its record was not overwritten",
        data.len()
    );
}

/// What was pushed: by ID, with the step it was pushed at, and the payloads pushed in
/// batches (whose IDs the API does not return).
#[derive(Default)]
struct Pushed {
    by_id: HashMap<u64, (Vec<u8>, usize)>,
    in_batches: HashSet<Vec<u8>>,
}

/// Byte ranges of the file the fuzzer changed, with the step that changed them.
struct Damage {
    ranges: Vec<(u64, u64, usize)>,
    header_touched: bool,
}

impl Damage {
    /// Whether the record at `id` with a `len`-byte payload was changed at or after
    /// `since` (a step index).
    fn touches(&self, region_len: u64, id: u64, len: usize, since: usize) -> bool {
        let start = HEADER_LEN + id % region_len;
        let end = start + record_len(len);
        self.ranges
            .iter()
            .any(|&(s, e, step)| step >= since && s < end && start < e)
    }
}

fuzz_target!(|input: Input| {
    if input.ops.len() > 512 {
        return;
    }
    let size = 8192 + 8 * u64::from(input.extra_words);
    let region_len = size - HEADER_LEN;
    let path = scratch_path("mutate");
    let first = Options::new()
        .size(size)
        .on_full(if input.reject {
            OnFull::Reject
        } else {
            OnFull::Overwrite
        })
        .abandon_timeout(Duration::from_millis(1))
        .create(&path)
        .unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let max = first.max_entry_size();
    let mut header = [0u8; FIXED_HEADER_LEN];
    file.read_exact_at(&mut header, 0).unwrap();
    let key = mmring::layout::stamp_key(&header).expect("the first 76 bytes of a ring file");
    assert_ne!(key, 0, "a new file is keyed");
    let mut rings = [first, Ring::open(&path).unwrap()];
    let mut pushed = Pushed::default();
    let mut damage = Damage {
        ranges: Vec::new(),
        header_touched: false,
    };
    let mut last_popped: Option<u64> = None;

    for (step, op) in input.ops.iter().enumerate() {
        match op {
            Op::Push(len, second) => {
                let len = usize::from(*len) % (max + 1);
                let data = payload(step as u64, len);
                match rings[usize::from(*second)].push(&data) {
                    Ok(id) => {
                        pushed.by_id.insert(id, (data, step));
                    }
                    Err(Error::Full | Error::Corrupt { .. }) => {}
                    Err(other) => panic!("unexpected push error: {other:?}"),
                }
            }
            Op::PushBatch(lens, second) => {
                let entries: Vec<Vec<u8>> = lens
                    .iter()
                    .take(8)
                    .enumerate()
                    .map(|(i, len)| {
                        payload(
                            (1 << 40) + step as u64 * 8 + i as u64,
                            usize::from(*len) % (max + 1),
                        )
                    })
                    .collect();
                match rings[usize::from(*second)].push_batch(&entries) {
                    Ok(n) => pushed.in_batches.extend(entries.into_iter().take(n)),
                    Err(Error::Full | Error::Corrupt { .. }) => {}
                    Err(other) => panic!("unexpected push_batch error: {other:?}"),
                }
            }
            Op::Pop(second) => match rings[usize::from(*second)].pop() {
                Ok(Some(entry)) => {
                    check(&pushed, &damage, region_len, entry.id(), entry.data());
                    if !damage.header_touched {
                        assert!(
                            last_popped < Some(entry.id()),
                            "entry {} popped twice or out of order",
                            entry.id()
                        );
                    }
                    last_popped = Some(entry.id());
                }
                Ok(None) | Err(Error::Corrupt { .. }) => {}
                Err(other) => panic!("unexpected pop error: {other:?}"),
            },
            Op::Peek(second) => {
                let ring = &rings[usize::from(*second)];
                for entry in ring.peek().take(2 * ring.capacity() + 8) {
                    match entry {
                        Ok(entry) => check(&pushed, &damage, region_len, entry.id(), entry.data()),
                        Err(Error::Corrupt { .. }) => {}
                        Err(other) => panic!("unexpected peek error: {other:?}"),
                    }
                }
            }
            Op::Reopen => {
                rings[0] = match Ring::open(&path) {
                    Ok(ring) => ring,
                    Err(Error::Corrupt { .. }) if damage.header_touched => {
                        let _ = std::fs::remove_file(&path);
                        return;
                    }
                    Err(other) => panic!("reopen failed: {other:?}"),
                };
            }
            Op::Write { at, bytes } => {
                let off = HEADER_LEN + u64::from(*at) % region_len;
                let len = (bytes.len() as u64).min(HEADER_LEN + region_len - off);
                file.write_all_at(&bytes[..len as usize], off).unwrap();
                damage.ranges.push((off, off + len, step));
            }
            Op::FlipBit { at, bit } => {
                let off = HEADER_LEN + u64::from(*at) % region_len;
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, off).unwrap();
                byte[0] ^= 1 << (bit % 8);
                file.write_all_at(&byte, off).unwrap();
                damage.ranges.push((off, off + 1, step));
            }
            Op::ForgeStamp { word, lap, state } => {
                let region_off = (u64::from(*word) * 8) % region_len;
                let stamp =
                    ((region_off + u64::from(*lap) * region_len) | u64::from(state % 8)) ^ key;
                let off = HEADER_LEN + region_off;
                file.write_all_at(&stamp.to_le_bytes(), off).unwrap();
                damage.ranges.push((off, off + 8, step));
            }
            Op::HeaderWord { slot, value } => {
                // Only the atomics part: the static header is checked at open, and
                // its damage is the open_bytes target's business.
                let off = 128 + (u64::from(*slot) % 51) * 8;
                file.write_all_at(&value.to_le_bytes(), off).unwrap();
                damage.header_touched = true;
            }
        }
    }
    drop(rings);
    let _ = std::fs::remove_file(&path);
});
