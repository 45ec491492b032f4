//! docs/FORMAT.md is precise enough for an independent reader: `tools/read_ring.py`,
//! written in Python from that document alone, lists exactly the entries mmring's own
//! readers yield (id, payload, TTL and write time, in order) from ring files the
//! library wrote: entries of many sizes, rings that wrapped with padding, rings with
//! popped and evicted entries, batch runs (`push_batch`), files without the batch
//! runs flag, and files without a stamp key (`Options::stamp_key(false)`, as mmring
//! 0.3.1 and earlier wrote them). It applies the TTL rule at the same millisecond,
//! steps over abandoned records (and abandoned batch runs, by their first record's
//! claim) and unfinished skips as `pop` does, stops where `peek` stops at a record
//! still being written, reports damaged records at the file offsets the library
//! reports (scanning past payload words that look like stamps, as `pop` does, and on
//! to the rest of a batch run whose first record is damaged), and refuses damaged
//! headers, damaged stamp keys and unknown flags.
//!
//! Each test is skipped, with a message, where `python3` is not installed.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use mmring::{Entry, Error, OnFull, Options, Ring};

/// Bytes of the file header; the region starts here (FORMAT.md).
const HEADER_LEN: u64 = 4096;
/// Static header fields (FORMAT.md, "File header: static part").
const FLAGS_OFFSET: u64 = 44;
const HEADER_CRC_OFFSET: u64 = 60;
/// `flags` bit 0 (FORMAT.md, "Batch runs").
const FLAG_BATCH_RUNS: u32 = 1;
/// `flags` bit 1 and the key it announces (FORMAT.md, "File header: stamp key").
const FLAG_STAMP_KEY: u32 = 2;
const STAMP_KEY_OFFSET: u64 = 64;
const STAMP_KEY_CRC_OFFSET: u64 = 72;
/// Record-relative offsets used to damage records (FORMAT.md, "Record header").
const REC_CLAIM_OFFSET: u64 = 8;
const REC_META_CRC_OFFSET: u64 = 16;
const REC_DATA_LEN_OFFSET: u64 = 28;
const REC_TTL_OFFSET: u64 = 32;
const REC_HEADER_LEN: u64 = 56;
/// Stamp states (FORMAT.md, "Stamps and states").
const STATE_CLAIMED: u64 = 1;
const STATE_COMMITTED: u64 = 2;
const STATE_PADDING: u64 = 3;
const STATE_ABANDONED: u64 = 4;
const STATE_SKIPPED: u64 = 5;
const STATE_BATCHED: u64 = 7;

/// The reader script, or `None` (after saying so) when `python3` can't run it.
fn reader_script() -> Option<PathBuf> {
    let usable = Command::new("python3")
        .args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 6) else 1)",
        ])
        .status()
        .is_ok_and(|status| status.success());
    if !usable {
        eprintln!(
            "skipping: python3 (3.6 or later) was not found, so tools/read_ring.py can't run"
        );
        return None;
    }
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/read_ring.py"))
}

/// What one run of the reader printed.
#[derive(Debug)]
struct Listing {
    status: i32,
    entries: Vec<String>,
    stderr: String,
}

impl Listing {
    /// File offsets of the damaged records it reported, in order.
    fn corrupt_offsets(&self) -> Vec<u64> {
        self.stderr
            .lines()
            .filter_map(|line| line.split_once("corrupt record at file offset "))
            .map(|(_, rest)| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().expect("an offset after 'file offset'")
            })
            .collect()
    }
}

fn run_reader(script: &Path, ring: &Path, now_ms: Option<u64>) -> Listing {
    let mut command = Command::new("python3");
    command.arg(script);
    if let Some(now_ms) = now_ms {
        command.arg(format!("--now-ms={now_ms}"));
    }
    let output = command.arg(ring).output().expect("run python3");
    Listing {
        status: output.status.code().expect("the reader exits normally"),
        entries: String::from_utf8(output.stdout)
            .expect("UTF-8 output")
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 errors"),
    }
}

fn write_time_ms(entry: &Entry) -> u64 {
    let since_epoch = entry
        .written_at()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since_epoch.as_millis()).expect("fits u64")
}

/// The JSON line the reader prints for `entry`.
fn json_line(entry: &Entry) -> String {
    let hex: String = entry.data().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        r#"{{"id": {}, "data_hex": "{hex}", "ttl_secs": {}, "write_time_ms": {}}}"#,
        entry.id(),
        entry.ttl().as_secs(),
        write_time_ms(entry)
    )
}

/// What `peek` yields, every item expected to be good.
fn peeked(ring: &Ring) -> Vec<Entry> {
    ring.peek()
        .map(|item| item.expect("a healthy entry"))
        .collect()
}

/// Collects what `peek` yields: JSON lines, or the offsets of damaged records.
fn peek_results(ring: &Ring) -> Vec<Result<String, u64>> {
    ring.peek()
        .map(|item| match item {
            Ok(entry) => Ok(json_line(&entry)),
            Err(Error::Corrupt { offset, .. }) => Err(offset),
            Err(other) => panic!("peek failed: {other}"),
        })
        .collect()
}

/// Pops the ring at `path` until it is empty, through a new handle: each entry's JSON
/// line, and the offsets of the damaged records reported on the way. Pops run on
/// another thread, so that a wedged pop fails the test instead of hanging it.
fn pop_all(path: &Path) -> (Vec<String>, Vec<u64>) {
    let (done, result) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let ring = Ring::open(&path).expect("open");
        let (mut entries, mut corrupt) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            match ring.pop() {
                Ok(Some(entry)) => entries.push(json_line(&entry)),
                Ok(None) => {
                    let _ = done.send((entries, corrupt));
                    return;
                }
                Err(Error::Corrupt { offset, .. }) => corrupt.push(offset),
                Err(other) => panic!("pop failed: {other}"),
            }
        }
        panic!("pop never emptied the ring");
    });
    result
        .recv_timeout(Duration::from_secs(20))
        .expect("pop wedged (or panicked) instead of emptying the ring")
}

/// A payload of `len` bytes that differs from entry to entry.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

/// File offset of the record at `id` (its position) in a ring.
fn record_offset(ring: &Ring, id: u64) -> u64 {
    HEADER_LEN + id % ring.capacity_bytes()
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the ring file for patching");
    file.write_all_at(bytes, offset)
        .expect("patch the ring file");
}

/// The key the stamps of the ring file at `path` are XORed with (0 without
/// `FLAG_STAMP_KEY`).
fn stamp_key(path: &Path) -> u64 {
    mmring::layout::stamp_key(&read_at(path, 0, mmring::layout::FIXED_HEADER_LEN))
        .expect("the first 76 bytes of a ring file")
}

fn set_stamp(ring: &Ring, id: u64, state: u64) {
    let stamp = (id + state) ^ stamp_key(ring.path());
    patch(ring.path(), record_offset(ring, id), &stamp.to_le_bytes());
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open the ring file");
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, offset)
        .expect("read the ring file");
    bytes
}

fn read_u32(path: &Path, offset: u64) -> u32 {
    u32::from_le_bytes(read_at(path, offset, 4).try_into().expect("4 bytes"))
}

fn read_u64(path: &Path, offset: u64) -> u64 {
    u64::from_le_bytes(read_at(path, offset, 8).try_into().expect("8 bytes"))
}

/// Sets the header's `flags` and rewrites `header_crc` (CRC32C of bytes 0..60), so
/// that the flags are judged on their own merits.
fn set_flags(path: &Path, flags: u32) {
    patch(path, FLAGS_OFFSET, &flags.to_le_bytes());
    let crc = crc32c::crc32c(&read_at(path, 0, HEADER_CRC_OFFSET as usize));
    patch(path, HEADER_CRC_OFFSET, &crc.to_le_bytes());
}

/// The state in the stamp of the record at `id`, or `None` if the word there is not
/// that record's stamp.
fn stamp_state(ring: &Ring, id: u64) -> Option<u64> {
    let stamp = read_u64(ring.path(), record_offset(ring, id)) ^ stamp_key(ring.path());
    (stamp - stamp % 8 == id).then_some(stamp % 8)
}

/// Whether `entry`'s record is the first of a batch run: committed, with a claim
/// larger than its payload (FORMAT.md, "Batch runs").
fn starts_a_run(ring: &Ring, entry: &Entry) -> bool {
    let claimed = read_u32(
        ring.path(),
        record_offset(ring, entry.id()) + REC_CLAIM_OFFSET,
    );
    stamp_state(ring, entry.id()) == Some(STATE_COMMITTED) && claimed as usize > entry.data().len()
}

/// How many of `entries` start batch runs, and how many are later records of one.
fn run_records(ring: &Ring, entries: &[Entry]) -> (usize, usize) {
    let firsts = entries.iter().filter(|e| starts_a_run(ring, e)).count();
    let batched = entries
        .iter()
        .filter(|e| stamp_state(ring, e.id()) == Some(STATE_BATCHED))
        .count();
    (firsts, batched)
}

/// The live entries that follow a padding record: each starts a lap without
/// following the entry before it directly.
fn after_padding<'a>(ring: &Ring, entries: &'a [Entry]) -> Vec<&'a Entry> {
    let region = ring.capacity_bytes();
    entries
        .windows(2)
        .filter(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            b.id() % region == 0 && a.id() + Ring::entry_footprint(a.data().len()) < b.id()
        })
        .map(|pair| &pair[1])
        .collect()
}

fn has_padding(ring: &Ring, entries: &[Entry]) -> bool {
    !after_padding(ring, entries).is_empty()
}

fn flip_byte(path: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the ring file");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read a byte");
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).expect("write a byte");
}

/// A new ring of the smallest size, 8192 bytes, named `name` in `dir`.
fn small_ring(dir: &Path, name: &str, on_full: OnFull) -> Ring {
    Options::new()
        .size(8192)
        .on_full(on_full)
        .create(dir.join(name))
        .expect("create")
}

/// A new 8192-byte ring in reject mode at `path` without a stamp key, as mmring 0.3.1
/// created files: batch runs, stamps `position + state`.
fn unkeyed_ring(path: &Path) -> Ring {
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .stamp_key(false)
        .create(path)
        .expect("create");
    assert_eq!(read_u32(path, FLAGS_OFFSET), FLAG_BATCH_RUNS);
    assert_eq!(
        read_at(path, STAMP_KEY_OFFSET, 12),
        [0; 12],
        "no key, no key checksum"
    );
    ring
}

/// Asserts that the reader, run on a healthy ring, prints exactly what `peek` yields.
fn assert_reader_matches_peek(script: &Path, ring: &Ring) -> Vec<Entry> {
    let entries = peeked(ring);
    let listing = run_reader(script, ring.path(), None);
    assert_eq!(listing.status, 0, "reader failed: {}", listing.stderr);
    assert_eq!(listing.stderr, "", "a healthy ring gives no messages");
    let expected: Vec<String> = entries.iter().map(json_line).collect();
    assert_eq!(listing.entries, expected);
    entries
}

/// A ring with three short entries; returns their IDs.
fn three_entry_ring(path: &Path) -> (Ring, [u64; 3]) {
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .create(path)
        .expect("create");
    let ids = [
        ring.push(b"first entry").expect("push"),
        ring.push(&payload(2, 300)).expect("push"),
        ring.push(b"third entry").expect("push"),
    ];
    (ring, ids)
}

/// A ring holding `before the run`, a batch run of four entries, and `after the run`;
/// returns the six entries, after checking that the batch was written as one run.
fn ring_with_a_batch_run(path: &Path) -> (Ring, Vec<Entry>) {
    let ring = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .create(path)
        .expect("create");
    ring.push(b"before the run").expect("push");
    let run = [
        payload(1, 40),
        payload(2, 0),
        payload(3, 300),
        payload(4, 17),
    ];
    assert_eq!(ring.push_batch(&run).expect("push_batch"), run.len());
    ring.push(b"after the run").expect("push");
    let entries = peeked(&ring);
    assert_eq!(entries.len(), 6);
    assert!(starts_a_run(&ring, &entries[1]), "the batch is one run");
    assert_eq!(run_records(&ring, &entries), (1, 3));
    (ring, entries)
}

/// Pushes batches of 1 to 9 entries of up to 400 bytes until the ring is full, pops
/// one to four entries, and so on, until `done` holds for the live entries; returns
/// them.
fn churn_batches(ring: &Ring, done: impl Fn(&[Entry]) -> bool) -> Vec<Entry> {
    let mut seed = 0u64;
    for round in 0..1000u64 {
        loop {
            let n = seed % 9 + 1;
            let batch: Vec<Vec<u8>> = (seed..seed + n)
                .map(|s| payload(s, (s * 7919 % 400) as usize))
                .collect();
            seed += n;
            match ring.push_batch(&batch) {
                Ok(pushed) if pushed == batch.len() => {}
                Ok(_) | Err(Error::Full) => break,
                Err(other) => panic!("push_batch failed: {other}"),
            }
        }
        for _ in 0..round % 4 + 1 {
            ring.pop().expect("pop").expect("an entry");
        }
        let live = peeked(ring);
        if done(&live) {
            return live;
        }
    }
    panic!("the ring never reached the state the test needs");
}

#[test]
fn lists_entries_of_many_sizes_exactly_as_peek() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = Options::new()
        .size(64 * 1024)
        .on_full(OnFull::Reject)
        .create(dir.path().join("sizes.ring"))
        .expect("create");
    let mut sizes = vec![
        0, 1, 2, 7, 8, 9, 15, 16, 17, 55, 56, 57, 63, 64, 100, 255, 256, 1000, 4000,
    ];
    sizes.push(ring.max_entry_size());
    for (seed, &len) in sizes.iter().enumerate() {
        let data = payload(seed as u64, len);
        if seed % 3 == 0 {
            ring.push_with_ttl(&data, Duration::from_secs(3600))
                .expect("push with ttl");
        } else {
            ring.push(&data).expect("push");
        }
    }
    let entries = assert_reader_matches_peek(&script, &ring);
    let lens: Vec<usize> = entries.iter().map(|e| e.data().len()).collect();
    assert_eq!(lens, sizes, "every entry, in push order");
    assert!(entries.iter().any(|e| e.ttl() == Duration::from_secs(3600)));
}

#[test]
fn lists_a_wrapped_ring_with_padding_and_popped_entries() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "wrapped.ring", OnFull::Reject);
    let region = ring.capacity_bytes();
    // Fill, pop a few, refill, ... until the ring has lapped three times and its live
    // range holds a padding record.
    let mut seed = 0u64;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(
            rounds < 1000,
            "the ring never lapped three times with padding live"
        );
        loop {
            seed += 1;
            let len = (seed * 7919 % 700) as usize;
            match ring.push(&payload(seed, len)) {
                Ok(_) => {}
                Err(Error::Full) => break,
                Err(other) => panic!("push failed: {other}"),
            }
        }
        for _ in 0..3 {
            ring.pop().expect("pop").expect("an entry");
        }
        let stats = ring.stats();
        if stats.write_pos > 3 * region && has_padding(&ring, &peeked(&ring)) {
            break;
        }
    }
    let stats = ring.stats();
    assert!(stats.popped > 0 && stats.read_pos > 0);
    let entries = assert_reader_matches_peek(&script, &ring);
    assert!(entries.len() > 2 && has_padding(&ring, &entries));
}

#[test]
fn lists_an_overwrite_ring_after_evictions() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "overwrite.ring", OnFull::Overwrite);
    for seed in 0..400u64 {
        ring.push(&payload(seed, (seed * 104_729 % 500) as usize))
            .expect("push");
    }
    let stats = ring.stats();
    assert!(stats.evicted > 0, "the ring overwrote entries: {stats:?}");
    assert!(stats.write_pos > 4 * ring.capacity_bytes());
    let entries = assert_reader_matches_peek(&script, &ring);
    assert_eq!(entries.len() as u64, stats.pushed - stats.evicted);
}

#[test]
fn applies_the_ttl_rule_at_the_exact_millisecond() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "ttl.ring", OnFull::Reject);
    ring.push(b"forever").expect("push");
    // Long enough that neither expires while the test runs on a loaded machine; the
    // boundaries are probed with --now-ms.
    ring.push_with_ttl(b"five minutes", Duration::from_secs(300))
        .expect("push");
    ring.push_with_ttl(b"one minute", Duration::from_secs(60))
        .expect("push");
    let entries = assert_reader_matches_peek(&script, &ring);
    let lines: Vec<String> = entries.iter().map(json_line).collect();
    let expires = |entry: &Entry| write_time_ms(entry) + entry.ttl().as_secs() * 1000;
    let (five, one) = (expires(&entries[1]), expires(&entries[2]));
    assert!(one < five, "pushed within 4 minutes of each other");

    // An entry is expired once now_ms >= write_time_ms + ttl_secs * 1000.
    for (now_ms, live) in [
        (one - 1, &lines[..]),
        (one, &lines[..2]),
        (five - 1, &lines[..2]),
        (five, &lines[..1]),
        (u64::MAX / 2, &lines[..1]),
    ] {
        let listing = run_reader(&script, ring.path(), Some(now_ms));
        assert_eq!(listing.status, 0, "{}", listing.stderr);
        assert_eq!(listing.entries, live, "at now_ms = {now_ms}");
    }
}

#[test]
fn steps_over_an_abandoned_record_by_its_claimed_length() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("abandoned.ring"));
    set_stamp(&ring, ids[1], STATE_ABANDONED);
    let entries = assert_reader_matches_peek(&script, &ring);
    let seen: Vec<u64> = entries.iter().map(Entry::id).collect();
    assert_eq!(seen, [ids[0], ids[2]]);
}

#[test]
fn stops_like_peek_at_a_record_still_being_written() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("claimed.ring"));
    set_stamp(&ring, ids[1], STATE_CLAIMED);
    assert_both_stop_at_the_claimed_second_record(&script, &ring, ids[1]);
}

/// Asserts that `peek` and the reader list only the first entry of `ring`, whose
/// second record, at `claimed`, is CLAIMED, and that the reader says why it stopped.
fn assert_both_stop_at_the_claimed_second_record(script: &Path, ring: &Ring, claimed: u64) {
    let entries = peeked(ring);
    assert_eq!(entries.len(), 1, "peek stops at the CLAIMED record");
    assert!(entries[0].id() < claimed);
    let listing = run_reader(script, ring.path(), None);
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    assert_eq!(listing.entries, [json_line(&entries[0])]);
    let note = format!("the record at position {claimed} ");
    assert!(
        listing.stderr.contains(&note) && listing.stderr.contains("not committed"),
        "the reader says why it stopped: {}",
        listing.stderr
    );
}

#[test]
fn steps_over_an_unfinished_skip_as_pop_does() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("skipped.ring"));
    // A reader that died right after poisoning the head of a range it was skipping.
    set_stamp(&ring, ids[1], STATE_SKIPPED);
    let peek_ids: Vec<u64> = peeked(&ring).iter().map(Entry::id).collect();
    assert_eq!(
        peek_ids,
        [ids[0]],
        "peek stops where the SKIPPED marks break off: the skip is unfinished (FORMAT.md)"
    );
    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    assert_eq!(corrupt, [], "an unfinished skip is not damage");
    assert_eq!(popped.len(), 2, "pop delivers the first and third entries");
    assert_eq!(listing.status, 0, "{}", listing.stderr);
    assert_eq!(listing.entries, popped);
}

#[test]
fn reports_a_damaged_payload_where_peek_and_pop_do() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("payload.ring"));
    let payload_offset = record_offset(&ring, ids[1]) + REC_HEADER_LEN;
    flip_byte(ring.path(), payload_offset + 10);

    let peek = peek_results(&ring);
    assert_eq!(peek.len(), 3);
    assert_eq!(peek[1], Err(payload_offset));

    let listing = run_reader(&script, ring.path(), None);
    assert_eq!(listing.status, 3, "damaged records give exit status 3");
    let good: Vec<String> = peek.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(listing.entries, good);
    assert_eq!(listing.corrupt_offsets(), [payload_offset]);
    assert_eq!(pop_all(ring.path()), (good, vec![payload_offset]));
}

#[test]
fn reports_damaged_metadata_and_resynchronizes_as_pop_does() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("meta.ring"));
    let record = record_offset(&ring, ids[1]);
    flip_byte(ring.path(), record + REC_TTL_OFFSET);

    let peek: Vec<_> = ring.peek().collect();
    assert_eq!(
        peek.len(),
        2,
        "peek stops after a damaged header (FORMAT.md)"
    );
    assert!(
        matches!(peek[1], Err(Error::Corrupt { offset, .. }) if offset == record + REC_META_CRC_OFFSET)
    );

    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    assert_eq!(corrupt, [record + REC_META_CRC_OFFSET]);
    assert_eq!(popped.len(), 2);
    assert_eq!(listing.status, 3);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

/// Regression: a version of `pop` treated any word that looked like a stamp of a later
/// lap as proof that its skip was stale, gave up, and retried forever: payload bytes
/// could wedge every consumer. Only stamps for their own position end a scan.
#[test]
fn resynchronizes_past_payload_words_that_look_like_stamps() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "forged.ring", OnFull::Reject);
    let first = ring.push(b"first entry").expect("push");
    // The next record's position is known in advance, so its payload can hold words
    // that look like stamps: at payload word 0 a COMMITTED stamp of a later lap, at
    // word 1 a COMMITTED stamp for that word's own position (a forged record start).
    let middle = first + Ring::entry_footprint(b"first entry".len());
    let word0 = middle + REC_HEADER_LEN;
    let word1 = word0 + 8;
    // Stamps are XORed with the file's key, so the forgeries are too.
    let key = stamp_key(ring.path());
    assert_ne!(key, 0, "new files have a stamp key");
    let mut data = vec![b'x'; 300];
    data[..8].copy_from_slice(&((word0 + ring.capacity_bytes() + 2) ^ key).to_le_bytes());
    data[8..16].copy_from_slice(&((word1 + 2) ^ key).to_le_bytes());
    assert_eq!(ring.push(&data).expect("push"), middle);
    let third = ring.push(b"third entry").expect("push");
    // Damage the middle record's metadata: readers must scan for the next record.
    flip_byte(ring.path(), record_offset(&ring, middle) + REC_TTL_OFFSET);

    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    // The scan stops at the forged record start, whose header fails its checksum: a
    // second damaged record, never an entry. The later-lap look-alike is not a stop.
    assert_eq!(
        corrupt,
        [
            record_offset(&ring, middle) + REC_META_CRC_OFFSET,
            record_offset(&ring, word1) + REC_META_CRC_OFFSET,
        ]
    );
    assert_eq!(popped.len(), 2, "the first and third entries");
    assert!(popped[1].starts_with(&format!(r#"{{"id": {third},"#)));
    assert_eq!(listing.status, 3, "{}", listing.stderr);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

#[test]
fn reports_a_committed_stamp_turned_into_padding() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, ids) = three_entry_ring(&dir.path().join("padding.ring"));
    // COMMITTED (2) and PADDING (3) differ in one bit; padding over 3/4 of the region
    // can't be real, so the rest of the lap must not be dropped silently.
    assert_eq!(ids[1] % ring.capacity_bytes(), ids[1], "first lap");
    set_stamp(&ring, ids[1], STATE_PADDING);
    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    assert_eq!(corrupt, [record_offset(&ring, ids[1])]);
    assert_eq!(popped.len(), 2, "the first and third entries");
    assert_eq!(listing.status, 3);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

#[test]
fn refuses_damaged_headers_and_files_that_are_not_rings() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, _) = three_entry_ring(&dir.path().join("header.ring"));
    drop(ring);
    let path = dir.path().join("header.ring");
    flip_byte(&path, 32); // default_ttl_secs: only the checksum can tell
    assert!(matches!(
        Ring::open(&path),
        Err(Error::Corrupt { offset: 60, .. })
    ));
    let listing = run_reader(&script, &path, None);
    assert_eq!(listing.status, 1);
    assert_eq!(listing.entries, Vec::<String>::new());
    assert!(
        listing.stderr.contains("file offset 60") && listing.stderr.contains("checksum"),
        "{}",
        listing.stderr
    );

    let text = dir.path().join("text");
    std::fs::write(&text, "just some text\n".repeat(1000)).expect("write");
    assert!(matches!(Ring::open(&text), Err(Error::NotARing { .. })));
    let listing = run_reader(&script, &text, None);
    assert_eq!(listing.status, 1);
    assert!(listing.stderr.contains("magic"), "{}", listing.stderr);

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    assert_eq!(run_reader(&script, &empty, None).status, 1);
    assert_eq!(
        run_reader(&script, &dir.path().join("missing"), None).status,
        1
    );
}

#[test]
fn lists_batch_runs_across_wraps_with_padding_exactly_as_peek() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "runs.ring", OnFull::Reject);
    let region = ring.capacity_bytes();
    // Until the ring has lapped three times and its live range holds several batch
    // runs, one of them right after a padding record.
    let live = churn_batches(&ring, |live| {
        let (firsts, batched) = run_records(&ring, live);
        ring.stats().write_pos > 3 * region
            && firsts >= 2
            && batched > firsts
            && after_padding(&ring, live)
                .iter()
                .any(|entry| starts_a_run(&ring, entry))
    });
    let stats = ring.stats();
    assert!(stats.popped > 0 && stats.read_pos > 0);
    let entries = assert_reader_matches_peek(&script, &ring);
    assert_eq!(entries.len(), live.len());
    assert!(
        entries.iter().any(|e| !starts_a_run(&ring, e)
            && stamp_state(&ring, e.id()) == Some(STATE_COMMITTED)),
        "single records too"
    );
}

#[test]
fn lists_an_overwrite_ring_of_batch_runs_after_evictions() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = small_ring(dir.path(), "overwrite_runs.ring", OnFull::Overwrite);
    for seed in 0..150u64 {
        let batch: Vec<Vec<u8>> = (0..seed % 7 + 1)
            .map(|i| payload(seed + i, ((seed + i) * 104_729 % 300) as usize))
            .collect();
        assert_eq!(ring.push_batch(&batch).expect("push_batch"), batch.len());
    }
    let stats = ring.stats();
    assert!(stats.evicted > 0, "the ring overwrote entries: {stats:?}");
    assert!(stats.write_pos > 4 * ring.capacity_bytes());
    let entries = assert_reader_matches_peek(&script, &ring);
    let (firsts, batched) = run_records(&ring, &entries);
    assert!(firsts > 0 && batched > 0, "batch runs are live");
}

#[test]
fn reports_a_damaged_batch_run_head_and_steps_over_the_run_as_pop_does() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, entries) = ring_with_a_batch_run(&dir.path().join("damaged_run.ring"));
    let lines: Vec<String> = entries.iter().map(json_line).collect();
    let head = record_offset(&ring, entries[1].id());
    flip_byte(ring.path(), head + REC_TTL_OFFSET); // covered by meta_crc

    let peek = peek_results(&ring);
    assert_eq!(
        peek,
        [Ok(lines[0].clone()), Err(head + REC_META_CRC_OFFSET)],
        "peek stops after a damaged header (FORMAT.md)"
    );

    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    assert_eq!(corrupt, [head + REC_META_CRC_OFFSET]);
    let mut rest = vec![lines[0].clone()];
    rest.extend_from_slice(&lines[5..]);
    assert_eq!(
        popped, rest,
        "pop resynchronizes after the run: a scan does not stop at BATCHED records"
    );
    assert_eq!(listing.status, 3, "{}", listing.stderr);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

/// An abandoned run's first record whose claim word was damaged to end on one of the
/// run's BATCHED records: the claim is damage (a claim never ends inside a run), and
/// both pop and the reader report it and resynchronize after the run.
#[test]
fn reports_an_abandoned_claim_ending_inside_a_run_as_pop_does() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, entries) = ring_with_a_batch_run(&dir.path().join("short_claim.ring"));
    let lines: Vec<String> = entries.iter().map(json_line).collect();
    let head = record_offset(&ring, entries[1].id());
    set_stamp(&ring, entries[1].id(), STATE_ABANDONED);
    // The claim of the first record alone: 40 bytes, ending on the run's second.
    patch(ring.path(), head + REC_CLAIM_OFFSET, &40u32.to_le_bytes());
    let claim_offset = head + REC_CLAIM_OFFSET;
    assert_eq!(
        peek_results(&ring),
        [Ok(lines[0].clone()), Err(claim_offset)]
    );
    let listing = run_reader(&script, ring.path(), None);
    let (popped, corrupt) = pop_all(ring.path());
    assert_eq!(corrupt, [claim_offset]);
    assert_eq!(popped, [lines[0].clone(), lines[5].clone()]);
    assert_eq!(listing.status, 3, "{}", listing.stderr);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

#[test]
fn steps_over_an_abandoned_batch_run_by_its_first_claim() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, entries) = ring_with_a_batch_run(&dir.path().join("abandoned_run.ring"));
    set_stamp(&ring, entries[1].id(), STATE_ABANDONED);
    let listed = assert_reader_matches_peek(&script, &ring);
    let seen: Vec<u64> = listed.iter().map(Entry::id).collect();
    assert_eq!(
        seen,
        [entries[0].id(), entries[5].id()],
        "no record of an abandoned run is read"
    );
    let lines: Vec<String> = listed.iter().map(json_line).collect();
    assert_eq!(pop_all(ring.path()), (lines, vec![]));
}

#[test]
fn stops_like_peek_at_a_batch_run_still_being_written() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (ring, entries) = ring_with_a_batch_run(&dir.path().join("claimed_run.ring"));
    // The run's later records are BATCHED already; they wait for its commit.
    set_stamp(&ring, entries[1].id(), STATE_CLAIMED);
    assert_both_stop_at_the_claimed_second_record(&script, &ring, entries[1].id());
}

#[test]
fn lists_a_file_without_the_batch_runs_flag() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unflagged.ring");
    // Without a stamp key, as every mmring before 0.4.0 wrote files.
    drop(unkeyed_ring(&path));
    // A file as mmring 0.2.0 created it (no flag at all): its batches are written as
    // records of their own, each claimed and committed.
    set_flags(&path, 0);
    let ring = Ring::open(&path).expect("open a file without the flag");
    let region = ring.capacity_bytes();
    churn_batches(&ring, |live| {
        ring.stats().write_pos > 2 * region && has_padding(&ring, live)
    });
    let entries = assert_reader_matches_peek(&script, &ring);
    assert!(entries.len() > 2);
    assert_eq!(run_records(&ring, &entries), (0, 0), "no batch runs");
    assert_eq!(read_u32(&path, FLAGS_OFFSET), 0, "the flag stays clear");
}

#[test]
fn reports_a_batch_run_head_in_a_file_without_the_flag_as_pop_does() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unflagged_run.ring");
    let (ring, entries) = ring_with_a_batch_run(&path);
    let lines: Vec<String> = entries.iter().map(json_line).collect();
    let head = record_offset(&ring, entries[1].id());
    drop(ring);
    // Without the flag, a claim larger than data_len is damage (committed-record
    // rule 4), reported at data_len. The stamp key flag stays: the stamps are keyed.
    assert_eq!(
        read_u32(&path, FLAGS_OFFSET),
        FLAG_BATCH_RUNS | FLAG_STAMP_KEY
    );
    set_flags(&path, FLAG_STAMP_KEY);
    let ring = Ring::open(&path).expect("open");
    assert_eq!(
        peek_results(&ring),
        [Ok(lines[0].clone()), Err(head + REC_DATA_LEN_OFFSET)]
    );
    let listing = run_reader(&script, &path, None);
    let (popped, corrupt) = pop_all(&path);
    assert_eq!(corrupt, [head + REC_DATA_LEN_OFFSET]);
    let mut rest = vec![lines[0].clone()];
    rest.extend_from_slice(&lines[5..]);
    assert_eq!(popped, rest, "the run goes with its damaged first record");
    assert_eq!(listing.status, 3, "{}", listing.stderr);
    assert_eq!(listing.entries, popped);
    assert_eq!(listing.corrupt_offsets(), corrupt);
}

#[test]
fn refuses_flags_other_than_batch_runs_and_stamp_key() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.ring");
    let (ring, _) = three_entry_ring(&path);
    drop(ring);
    for flags in [
        4,
        FLAG_BATCH_RUNS | FLAG_STAMP_KEY | 4,
        FLAG_STAMP_KEY | 8,
        1 << 31,
    ] {
        set_flags(&path, flags);
        let opened = Ring::open(&path);
        assert!(
            matches!(opened, Err(Error::Corrupt { offset, .. }) if offset == FLAGS_OFFSET),
            "flags {flags:#x}: {opened:?}"
        );
        let listing = run_reader(&script, &path, None);
        assert_eq!(listing.status, 1, "flags {flags:#x}");
        assert_eq!(listing.entries, Vec::<String>::new());
        assert!(
            listing.stderr.contains("file offset 44") && listing.stderr.contains("flags"),
            "{}",
            listing.stderr
        );
    }
}

#[test]
fn lists_a_file_without_a_stamp_key_exactly_as_peek() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("unkeyed.ring");
    let ring = unkeyed_ring(&path);
    let region = ring.capacity_bytes();
    let live = churn_batches(&ring, |live| {
        let (firsts, batched) = run_records(&ring, live);
        ring.stats().write_pos > 2 * region
            && firsts >= 1
            && batched > firsts
            && has_padding(&ring, live)
    });
    let entries = assert_reader_matches_peek(&script, &ring);
    assert_eq!(entries.len(), live.len());
    let first = &entries[0];
    let stamp = read_u64(&path, record_offset(&ring, first.id()));
    assert!(
        stamp == first.id() + STATE_COMMITTED || stamp == first.id() + STATE_BATCHED,
        "the stamps are position + state: {stamp:#x} at {}",
        first.id()
    );
    assert_eq!(
        read_u32(&path, FLAGS_OFFSET),
        FLAG_BATCH_RUNS,
        "still unkeyed"
    );
}

#[test]
fn refuses_a_damaged_stamp_key() {
    let Some(script) = reader_script() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key.ring");
    let (ring, _) = three_entry_ring(&path);
    drop(ring);
    assert_eq!(
        read_u32(&path, FLAGS_OFFSET),
        FLAG_BATCH_RUNS | FLAG_STAMP_KEY
    );
    let key = read_u64(&path, STAMP_KEY_OFFSET);
    assert_eq!(key, stamp_key(&path));
    let assert_refused = |offset: u64, what: &str, damage: &str| {
        let opened = Ring::open(&path);
        assert!(
            matches!(opened, Err(Error::Corrupt { offset: at, .. }) if at == offset),
            "{damage}: {opened:?}"
        );
        let listing = run_reader(&script, &path, None);
        assert_eq!(listing.status, 1, "{damage}");
        assert_eq!(listing.entries, Vec::<String>::new(), "{damage}");
        assert!(
            listing.stderr.contains(&format!("file offset {offset}"))
                && listing.stderr.contains(what),
            "{damage}: {}",
            listing.stderr
        );
    };

    // Neither is covered by header_crc: only the key's own checksum can tell.
    flip_byte(&path, STAMP_KEY_CRC_OFFSET + 1);
    assert_refused(STAMP_KEY_CRC_OFFSET, "checksum", "stamp_key_crc damaged");
    flip_byte(&path, STAMP_KEY_CRC_OFFSET + 1);
    flip_byte(&path, STAMP_KEY_OFFSET + 3);
    assert_refused(STAMP_KEY_CRC_OFFSET, "checksum", "stamp_key damaged");
    flip_byte(&path, STAMP_KEY_OFFSET + 3);
    Ring::open(&path).expect("the key restored");

    // A key with bits outside 3..61, with a checksum that matches it.
    for bad in [key | 1, key | 1 << 63] {
        patch(&path, STAMP_KEY_OFFSET, &bad.to_le_bytes());
        let crc = crc32c::crc32c(&bad.to_le_bytes());
        patch(&path, STAMP_KEY_CRC_OFFSET, &crc.to_le_bytes());
        assert_refused(STAMP_KEY_OFFSET, "stamp key", &format!("key {bad:#x}"));
    }
}
