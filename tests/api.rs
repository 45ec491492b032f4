//! The public API's promises, one behaviour per test: creating (refusing existing
//! paths, permissions, preallocation, size and option validation), entry size limits,
//! TTL rounding, entry accessors, buffer reuse by `pop_into`, capacity, racing
//! `open_or_create` from threads and from processes, opening a file without write
//! permission, thread-safety of `Ring`, and error messages that name the path or
//! offset.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mmring::{Entry, EntryInfo, Error, OnFull, Options, Ring, Stats};

/// Bytes in a ring file before the region.
const HEADER_LEN: u64 = 4096;
/// Bytes of a record header before the payload.
const RECORD_HEADER_LEN: usize = 56;

/// `Ring`, its results and its errors can be shared and sent between threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Ring>();
    send_sync::<Entry>();
    send_sync::<EntryInfo>();
    send_sync::<Error>();
    send_sync::<Stats>();
    send_sync::<Options>();
};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The process umask, read without changing it (other tests create files meanwhile).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask line in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

// ---------------------------------------------------------------- create

#[test]
fn create_refuses_an_existing_file_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken");
    std::fs::write(&path, b"precious bytes").unwrap();
    match Options::new().size(8192).create(&path) {
        Err(Error::AlreadyExists { path: got }) => assert_eq!(got, path),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"precious bytes");
    assert_eq!(
        files_in(dir.path()),
        ["taken"],
        "no staging file left behind"
    );
}

#[test]
fn create_refuses_an_existing_ring_and_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().size(8192).create(&path).unwrap();
    let id = ring.push(b"kept").unwrap();
    drop(ring);
    assert!(matches!(
        Options::new().size(1 << 20).create(&path),
        Err(Error::AlreadyExists { .. })
    ));
    let ring = Ring::open(&path).unwrap();
    assert_eq!(ring.capacity_bytes(), 8192 - HEADER_LEN);
    let entry = ring.pop().unwrap().unwrap();
    assert_eq!((entry.id(), entry.data()), (id, &b"kept"[..]));
    assert_eq!(files_in(dir.path()), ["r"]);
}

#[test]
fn created_file_has_mode_0600_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    Options::new().size(8192).create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600 & !umask());
    assert_eq!(mode & 0o777, 0o600, "a usual umask leaves 0600 as it is");
}

/// Every new file gets a stamp key of its own (FORMAT.md, "File header: stamp key"),
/// and its stamps are keyed; `stamp_key(false)` makes a file whose stamps are
/// `position | state`, as older versions write them. Both work the same.
#[test]
fn new_files_get_a_random_stamp_key_unless_asked_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let first_stamp = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let stamp = u64::from_le_bytes(bytes[HEADER_LEN as usize..][..8].try_into().unwrap());
        (
            mmring::layout::stamp_key(&bytes).expect("the first 76 bytes of a ring file"),
            stamp,
        )
    };
    let mut keys = Vec::new();
    for name in ["a", "b", "c"] {
        let path = dir.path().join(name);
        let ring = Options::new().size(8192).create(&path).unwrap();
        ring.push(b"entry").unwrap();
        let (key, stamp) = first_stamp(&path);
        assert_ne!(key, 0, "{name}: no key");
        assert_eq!(key & !0x3FFF_FFFF_FFFF_FFF8, 0, "{name}: key {key:#x}");
        assert_eq!(
            stamp ^ key,
            2,
            "{name}: the stamp of a committed record at 0"
        );
        assert_eq!(ring.pop().unwrap().unwrap().data(), b"entry");
        keys.push(key);
    }
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 3, "keys repeat: {keys:x?}");

    let path = dir.path().join("unkeyed");
    let ring = Options::new()
        .size(8192)
        .stamp_key(false)
        .create(&path)
        .unwrap();
    ring.push(b"entry").unwrap();
    assert_eq!(first_stamp(&path), (0, 2));
    drop(ring);
    let ring = Ring::open(&path).unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().data(), b"entry");
}

#[test]
fn created_file_has_the_requested_mode_minus_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o640u32, 0o644, 0o660, 0o400] {
        let path = dir.path().join(format!("r{mode:o}"));
        Options::new().size(8192).mode(mode).create(&path).unwrap();
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode & !umask(), "mode {mode:o}");
    }
}

#[test]
fn created_file_is_preallocated_to_exactly_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    for size in [8192u64, 8200, 12288 + 64, 1 << 20] {
        let path = dir.path().join(format!("r{size}"));
        let ring = Options::new().size(size).create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), size);
        // Every block is allocated (not a sparse file), so a full disk fails at create
        // instead of raising SIGBUS later. st_blocks counts 512-byte units.
        assert!(
            meta.blocks() * 512 >= size,
            "{size}-byte ring has only {} bytes allocated",
            meta.blocks() * 512
        );
        assert_eq!(ring.capacity_bytes(), size - HEADER_LEN);
    }
}

#[test]
fn invalid_sizes_are_refused_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let too_big = HEADER_LEN + (1 << 46) + 8;
    for size in [
        0u64,
        8,
        4096,
        8184,
        8191,
        8193,
        8196,
        12290,
        too_big,
        u64::MAX,
    ] {
        let path = dir.path().join(format!("r{size}"));
        match Options::new().size(size).create(&path) {
            Err(Error::InvalidArgument { what }) => {
                assert!(what.contains(&size.to_string()), "size {size}: {what}");
            }
            other => panic!("size {size}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
    // The boundary itself is accepted.
    Options::new()
        .size(8192)
        .create(dir.path().join("min"))
        .unwrap();
}

#[test]
fn invalid_abandon_timeout_and_ttl_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    for timeout in [Duration::ZERO, Duration::from_micros(999)] {
        assert!(
            matches!(
                Options::new()
                    .size(8192)
                    .abandon_timeout(timeout)
                    .create(&path),
                Err(Error::InvalidArgument { .. })
            ),
            "abandon timeout {timeout:?}"
        );
    }
    let huge_ttl = Duration::from_secs(u64::from(u32::MAX) + 1);
    assert!(matches!(
        Options::new().size(8192).ttl(huge_ttl).create(&path),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(!path.exists());
    let ring = Options::new().size(8192).create(&path).unwrap();
    assert!(matches!(
        ring.push_with_ttl(b"x", huge_ttl),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(ring.stats().pushed, 0, "a refused push changes nothing");
    // u32::MAX seconds itself is accepted.
    let id = ring
        .push_with_ttl(b"x", Duration::from_secs(u64::from(u32::MAX)))
        .unwrap();
    let entry = ring.pop().unwrap().unwrap();
    assert_eq!(entry.id(), id);
    assert_eq!(entry.ttl(), Duration::from_secs(u64::from(u32::MAX)));
}

// ---------------------------------------------------------------- entry sizes

#[test]
fn max_entry_size_is_accepted_and_one_more_byte_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    for size in [8192u64, 8200, 12288 + 40, 1 << 20] {
        for policy in [OnFull::Reject, OnFull::Overwrite] {
            let path = dir.path().join(format!("r{size}{policy:?}"));
            let ring = Options::new()
                .size(size)
                .on_full(policy)
                .create(&path)
                .unwrap();
            let region = size - HEADER_LEN;
            let max = ring.max_entry_size();
            assert_eq!(max as u64, region / 2 / 8 * 8 - RECORD_HEADER_LEN as u64);
            match ring.push(&vec![1; max + 1]) {
                Err(Error::TooLarge { len, max: reported }) => {
                    assert_eq!((len, reported), (max + 1, max));
                }
                other => panic!("expected TooLarge, got {other:?}"),
            }
            assert_eq!(ring.stats(), Stats::default(), "TooLarge changed the ring");
            // The largest entry fits wherever the write position is: push small entries
            // to move it, then pop to make room, three laps' worth.
            for round in 0..6u8 {
                ring.push(&vec![round; 13 * usize::from(round)]).unwrap();
                let big = vec![round.wrapping_add(100); max];
                let id = ring.push(&big).unwrap();
                ring.pop().unwrap().unwrap();
                let entry = ring.pop().unwrap().unwrap();
                assert_eq!((entry.id(), entry.data()), (id, &big[..]), "round {round}");
            }
        }
    }
}

#[test]
fn entry_footprint_is_the_header_plus_the_payload_rounded_up_to_8() {
    assert_eq!(Ring::entry_footprint(0), 56);
    assert_eq!(Ring::entry_footprint(1), 64);
    assert_eq!(Ring::entry_footprint(8), 64);
    assert_eq!(Ring::entry_footprint(9), 72);
    // And that is what a push consumes.
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .create(dir.path().join("r"))
        .unwrap();
    let mut expected_pos = 0;
    for len in [0usize, 1, 7, 8, 9, 100] {
        assert_eq!(ring.push(&vec![0; len]).unwrap(), expected_pos);
        expected_pos += Ring::entry_footprint(len);
        assert_eq!(ring.stats().write_pos, expected_pos);
    }
}

#[test]
fn capacity_is_capacity_bytes_over_56_and_reachable_with_empty_entries() {
    let dir = tempfile::tempdir().unwrap();
    for size in [8192u64, 8192 + 56 * 3, 20_000, 65536] {
        let path = dir.path().join(format!("r{size}"));
        let ring = Options::new()
            .size(size)
            .on_full(OnFull::Reject)
            .create(&path)
            .unwrap();
        assert_eq!(ring.capacity_bytes(), size - HEADER_LEN);
        assert_eq!(ring.capacity() as u64, ring.capacity_bytes() / 56);
        let mut pushed = 0;
        while ring.push(b"").is_ok() {
            pushed += 1;
            assert!(pushed <= ring.capacity(), "more entries than capacity()");
        }
        assert_eq!(pushed, ring.capacity(), "size {size}");
        assert_eq!(ring.len(), ring.capacity());
        assert!(matches!(ring.push(b""), Err(Error::Full)));
    }
}

// ---------------------------------------------------------------- entries

#[test]
fn push_with_ttl_rounds_up_to_whole_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .create(dir.path().join("r"))
        .unwrap();
    let cases = [
        (Duration::from_millis(1500), Duration::from_secs(2)),
        (Duration::from_nanos(1), Duration::from_secs(1)),
        (Duration::from_secs(3), Duration::from_secs(3)),
        (Duration::from_millis(3001), Duration::from_secs(4)),
        (Duration::ZERO, Duration::ZERO),
    ];
    for (ttl, _) in cases {
        ring.push_with_ttl(b"t", ttl).unwrap();
    }
    for (ttl, expected) in cases {
        assert_eq!(ring.pop().unwrap().unwrap().ttl(), expected, "ttl {ttl:?}");
    }
}

#[test]
fn default_ttl_is_rounded_up_and_applied_by_push() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .ttl(Duration::from_millis(2500))
        .create(dir.path().join("r"))
        .unwrap();
    assert_eq!(ring.default_ttl(), Duration::from_secs(3));
    ring.push(b"default").unwrap();
    ring.push_with_ttl(b"never", Duration::ZERO).unwrap();
    assert_eq!(ring.pop().unwrap().unwrap().ttl(), Duration::from_secs(3));
    assert_eq!(ring.pop().unwrap().unwrap().ttl(), Duration::ZERO);
}

#[test]
fn entry_accessors_report_what_was_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(8192)
        .create(dir.path().join("r"))
        .unwrap();
    let before = SystemTime::now();
    let id = ring
        .push_with_ttl(b"payload", Duration::from_secs(60))
        .unwrap();
    let after = SystemTime::now();
    let peeked = ring.peek().next().unwrap().unwrap();
    let entry = ring.pop().unwrap().unwrap();
    assert_eq!(peeked, entry, "peek and pop see the same entry");
    assert_eq!(entry.id(), id);
    assert_eq!(entry.data(), b"payload");
    assert_eq!(entry.version(), 1);
    assert_eq!(entry.ttl(), Duration::from_secs(60));
    // Millisecond resolution from a coarse clock: allow a few ticks either side.
    let slack = Duration::from_millis(50);
    let written = entry.written_at();
    assert!(
        written >= before - slack && written <= after + slack,
        "written_at {:?} outside [{before:?}, {after:?}]",
        written.duration_since(UNIX_EPOCH)
    );
    assert_eq!(
        written.duration_since(UNIX_EPOCH).unwrap().subsec_nanos() % 1_000_000,
        0
    );
    let info = entry.info();
    assert_eq!(
        (
            info.id(),
            info.len(),
            info.is_empty(),
            info.ttl(),
            info.version(),
            info.written_at()
        ),
        (id, 7, false, Duration::from_secs(60), 1, written)
    );
    assert_eq!(entry.into_data(), b"payload");

    ring.push(b"").unwrap();
    let empty = ring.pop().unwrap().unwrap();
    assert!(empty.info().is_empty() && empty.data().is_empty());
    assert_eq!(empty.ttl(), Duration::ZERO);
}

#[test]
fn pop_into_reuses_the_buffer_and_replaces_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Options::new()
        .size(1 << 16)
        .create(dir.path().join("r"))
        .unwrap();
    let mut buf = Vec::with_capacity(ring.max_entry_size());
    buf.extend_from_slice(b"stale contents that must disappear");
    let (capacity, ptr) = (buf.capacity(), buf.as_ptr());
    let payloads: Vec<Vec<u8>> = [0usize, 1, 100, 5, 4000, 3]
        .iter()
        .map(|&len| (0..len).map(|i| (i * 7 + len) as u8).collect())
        .collect();
    let ids: Vec<u64> = payloads.iter().map(|p| ring.push(p).unwrap()).collect();
    for (payload, id) in payloads.iter().zip(&ids) {
        let info = ring.pop_into(&mut buf).unwrap().expect("an entry");
        assert_eq!((info.id(), info.len()), (*id, payload.len()));
        assert_eq!(&buf, payload);
        assert_eq!(buf.capacity(), capacity, "pop_into reallocated");
        assert_eq!(buf.as_ptr(), ptr, "pop_into replaced the buffer");
    }
    assert!(ring.pop_into(&mut buf).unwrap().is_none());
}

#[test]
fn reopened_ring_keeps_entries_parameters_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new()
        .size(12288)
        .on_full(OnFull::Reject)
        .ttl(Duration::from_secs(9))
        .create(&path)
        .unwrap();
    let a = ring.push(b"a").unwrap();
    let b = ring.push(b"b").unwrap();
    ring.pop().unwrap().unwrap();
    ring.flush().unwrap();
    let stats = ring.stats();
    drop(ring);
    let ring = Ring::open(&path).unwrap();
    assert_eq!(ring.path(), path);
    assert_eq!(ring.on_full(), OnFull::Reject);
    assert_eq!(ring.default_ttl(), Duration::from_secs(9));
    assert_eq!(ring.capacity_bytes(), 12288 - HEADER_LEN);
    assert_eq!(ring.stats(), stats);
    let entry = ring.pop().unwrap().unwrap();
    assert!(a < b);
    assert_eq!((entry.id(), entry.data()), (b, &b"b"[..]));
    assert!(format!("{ring:?}").contains(&path.display().to_string()));
}

// ---------------------------------------------------------------- open_or_create

#[test]
fn open_or_create_racing_threads_share_one_ring() {
    const THREADS: usize = 8;
    for round in 0..500 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.ring");
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<Ring> = (0..THREADS)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // Each thread asks for a different size: the winner's is kept.
                    let options = Options::new().size(8192 + 8 * i as u64);
                    barrier.wait();
                    options.open_or_create(&path)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: open_or_create: {e:?}"))
            })
            .collect();
        assert_eq!(files_in(dir.path()), ["shared.ring"], "round {round}");
        let region = handles[0].capacity_bytes();
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(region, file_len - HEADER_LEN);
        for (i, ring) in handles.iter().enumerate() {
            assert_eq!(ring.capacity_bytes(), region, "round {round}: handle {i}");
        }
        // Each handle's push is seen and popped by the next handle.
        for i in 0..THREADS {
            let data = format!("from handle {i}");
            let id = handles[i].push(data.as_bytes()).unwrap();
            let entry = handles[(i + 1) % THREADS].pop().unwrap().expect("visible");
            assert_eq!((entry.id(), entry.data()), (id, data.as_bytes()));
        }
        assert_eq!(handles[0].stats().popped, THREADS as u64);
    }
}

#[test]
fn open_or_create_in_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no such dir").join("r");
    match Options::new().size(8192).open_or_create(&path) {
        Err(Error::Io {
            path: got, source, ..
        }) => {
            assert_eq!(got, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io NotFound, got {other:?}"),
    }
}

#[test]
fn open_or_create_keeps_an_existing_rings_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let first = Options::new()
        .size(8192)
        .on_full(OnFull::Reject)
        .open_or_create(&path)
        .unwrap();
    let id = first.push(b"first").unwrap();
    let second = Options::new()
        .size(1 << 20)
        .on_full(OnFull::Overwrite)
        .ttl(Duration::from_secs(5))
        .open_or_create(&path)
        .unwrap();
    assert_eq!(second.capacity_bytes(), 8192 - HEADER_LEN);
    assert_eq!(second.on_full(), OnFull::Reject);
    assert_eq!(second.default_ttl(), Duration::ZERO);
    let entry = second.pop().unwrap().unwrap();
    assert_eq!((entry.id(), entry.data()), (id, &b"first"[..]));
}

/// Set in a child process: the ring path to open_or_create.
const CHILD_RING_VAR: &str = "MMRING_API_CHILD_RING";
/// Set in a child process: when to call open_or_create (Unix ms), so all race.
const CHILD_START_VAR: &str = "MMRING_API_CHILD_START_MS";
/// Set in a child process: the child's number.
const CHILD_INDEX_VAR: &str = "MMRING_API_CHILD_INDEX";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The part of `open_or_create_racing_processes_share_one_ring` that runs in each
/// child process.
fn race_child(path: &Path) {
    let start: u64 = std::env::var(CHILD_START_VAR).unwrap().parse().unwrap();
    let index = std::env::var(CHILD_INDEX_VAR).unwrap();
    // Start together: wait for the agreed time, then call at once.
    while unix_ms() < start {
        std::thread::sleep(Duration::from_micros(200));
    }
    let ring = Options::new()
        .size(16384)
        .open_or_create(path)
        .expect("child open_or_create");
    ring.push(format!("child {index}").as_bytes())
        .expect("child push");
}

#[test]
fn open_or_create_racing_processes_share_one_ring() {
    if let Ok(path) = std::env::var(CHILD_RING_VAR) {
        race_child(Path::new(&path));
        return;
    }
    const CHILDREN: usize = 4;
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("shared.ring");
        let start = unix_ms() + 300;
        let mut children: Vec<_> = (0..CHILDREN)
            .map(|i| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "open_or_create_racing_processes_share_one_ring",
                        "--test-threads=1",
                    ])
                    .env(CHILD_RING_VAR, &path)
                    .env(CHILD_START_VAR, start.to_string())
                    .env(CHILD_INDEX_VAR, i.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn child")
            })
            .collect();
        // The parent races too.
        while unix_ms() < start {
            std::thread::sleep(Duration::from_micros(200));
        }
        let ring = Options::new().size(16384).open_or_create(&path).unwrap();
        ring.push(b"parent").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, child) in children.iter_mut().enumerate() {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("round {round}: child {i} did not finish");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            assert!(
                status.success(),
                "round {round}: child {i} failed: {stderr}"
            );
        }
        assert_eq!(files_in(dir.path()), ["shared.ring"], "round {round}");
        let mut seen: Vec<String> = std::iter::from_fn(|| ring.pop().unwrap())
            .map(|e| String::from_utf8(e.into_data()).unwrap())
            .collect();
        seen.sort();
        let mut expected: Vec<String> = (0..CHILDREN).map(|i| format!("child {i}")).collect();
        expected.push("parent".into());
        expected.sort();
        assert_eq!(
            seen, expected,
            "round {round}: every process pushed into one ring"
        );
    }
}

// ---------------------------------------------------------------- permissions

#[test]
fn file_without_write_permission_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    drop(Options::new().size(8192).create(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    // Privileged users (root, CAP_DAC_OVERRIDE) bypass permission bits: then there is
    // nothing to test.
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        println!("skipped: this process may write a 0400 file (running as root?)");
        return;
    }
    match Ring::open(&path) {
        Err(Error::Io {
            path: got, source, ..
        }) => {
            assert_eq!(got, path);
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
        }
        other => panic!("expected Io PermissionDenied, got {other:?}"),
    }
}

// ---------------------------------------------------------------- threads

#[test]
fn one_handle_is_shared_by_threads() {
    let dir = tempfile::tempdir().unwrap();
    let ring = Arc::new(
        Options::new()
            .size(1 << 16)
            .on_full(OnFull::Reject)
            .create(dir.path().join("r"))
            .unwrap(),
    );
    let producers: Vec<_> = (0..4u8)
        .map(|t| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    ring.push(&[t, i]).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut seen: Vec<Vec<u8>> = std::iter::from_fn(|| ring.pop().unwrap())
        .map(Entry::into_data)
        .collect();
    assert_eq!(seen.len(), 200);
    // Each producer's entries come out in its push order.
    for t in 0..4u8 {
        let order: Vec<u8> = seen.iter().filter(|d| d[0] == t).map(|d| d[1]).collect();
        assert_eq!(order, (0..50).collect::<Vec<u8>>());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200);
}

// ---------------------------------------------------------------- messages

#[test]
fn error_messages_name_the_path_offset_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ring");
    let err = Ring::open(&missing).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "Io keeps its source"
    );

    let garbage = dir.path().join("garbage.ring");
    std::fs::write(&garbage, b"not a ring").unwrap();
    let text = Ring::open(&garbage).unwrap_err().to_string();
    assert!(
        text.contains(&garbage.display().to_string()) && text.contains("not an mmring"),
        "{text}"
    );

    let taken = dir.path().join("taken.ring");
    let ring = Options::new().size(8192).create(&taken).unwrap();
    let text = Options::new().create(&taken).unwrap_err().to_string();
    assert!(
        text.contains(&taken.display().to_string()) && text.contains("exists"),
        "{text}"
    );

    let max = ring.max_entry_size();
    let text = ring.push(&vec![0; max + 1]).unwrap_err().to_string();
    assert!(
        text.contains(&(max + 1).to_string()) && text.contains(&max.to_string()),
        "{text}"
    );
    drop(ring);

    // A future format version: found and supported versions are named.
    let mut bytes = std::fs::read(&taken).unwrap();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let future = dir.path().join("future.ring");
    std::fs::write(&future, &bytes).unwrap();
    let text = Ring::open(&future).unwrap_err().to_string();
    assert!(text.contains(&future.display().to_string()), "{text}");
    assert!(
        text.contains("version 7") && text.contains("version 1"),
        "{text}"
    );

    // A damaged header: the offset is named.
    let mut bytes = std::fs::read(&taken).unwrap();
    bytes[40] ^= 1;
    let damaged = dir.path().join("damaged.ring");
    std::fs::write(&damaged, &bytes).unwrap();
    let err = Ring::open(&damaged).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset: 60, .. }), "{err:?}");
    assert!(err.to_string().contains("offset 60"), "{err}");

    let text = Options::new()
        .size(8191)
        .create(dir.path().join("odd"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("8191"), "{text}");

    let text = Error::Full.to_string();
    assert!(text.contains("full"), "{text}");
}
