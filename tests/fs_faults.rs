//! File-system and process faults around the ring file, each answered by a distinct,
//! typed error that names the path (or, for a mapped file cut short, by the SIGBUS
//! docs/OPERATIONS.md describes).
//!
//! What it proves: a full file system fails `create` with `Io { op: "preallocate" }`
//! and ENOSPC and leaves no file behind, while a ring that fits still works; a
//! read-only file system fails `open`, `create` and `open_or_create` with EROFS; as an
//! unprivileged user, a file owned by someone else (0600 or 0644), a directory the
//! user may not write and one it may not search each give `PermissionDenied` for the
//! operation attempted, and nothing is created; a directory, a device and a missing
//! parent each give their own error from `create`, `open` and `open_or_create`; a
//! ring file truncated by another process while mapped kills the process that touches
//! the missing pages with SIGBUS and is refused at the next open (`Corrupt` at
//! `file_len`, or `NotARing` if the header went too), a file extended while mapped
//! goes on working and is refused at the next open until it is cut back; and of
//! processes racing to `create` one path, exactly one succeeds, the others get
//! `AlreadyExists`, and no observer ever opens a half-initialized file.
//!
//! Mounting (tmpfs) and changing user need root; those tests print a skip message and
//! pass when the process may not do it.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mmring::{Error, OnFull, Options, Ring};

/// Offset of the `file_len` field in the header (docs/FORMAT.md).
const FILE_LEN_OFFSET: u64 = 16;
/// The unprivileged user and group the permission tests run a child as ("nobody").
const NOBODY: u32 = 65534;
/// Longest a child process may take.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

/// Set in a child process: which role to play.
const ROLE_VAR: &str = "MMRING_FS_FAULTS_ROLE";
/// Set in a child process: the directory or ring path it works on.
const PATH_VAR: &str = "MMRING_FS_FAULTS_PATH";
/// Set in a child process: when to start (Unix ms), so that children race.
const START_VAR: &str = "MMRING_FS_FAULTS_START_MS";
/// Set in a child process: the ring size it asks for.
const SIZE_VAR: &str = "MMRING_FS_FAULTS_SIZE";

/// The names in `dir`, sorted (staging files included: they start with a dot).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_io<T: std::fmt::Debug>(
    result: mmring::Result<T>,
    path: &Path,
    op: &str,
    kind: std::io::ErrorKind,
) {
    match result {
        Err(Error::Io {
            path: got,
            op: got_op,
            source,
        }) => {
            assert_eq!(got, path, "the error names the path");
            assert_eq!(got_op, op, "the error names the operation");
            assert_eq!(source.kind(), kind, "{source}");
        }
        other => panic!(
            "expected Io {{ {op}, {kind:?} }} for {}, got {other:?}",
            path.display()
        ),
    }
}

/// This test binary, run again as a child playing `role` for test `test`.
fn child(test: &str, role: &str, path: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        .stdin(Stdio::null());
    cmd
}

/// Waits for `child` within `CHILD_LIMIT`, killing it (and failing) after that.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + CHILD_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: child did not finish within {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    Some((role, PathBuf::from(std::env::var(PATH_VAR).unwrap())))
}

// ---------------------------------------------------------------- tmpfs mounts

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes, or `None` (after printing why) when this
    /// process may not mount.
    fn mount(size: u64, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(Tmpfs { dir }),
            other => {
                println!("skipped {test}: cannot mount a tmpfs here ({other:?}); needs root");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a test that failed with a ring still mapped must not leave it mounted.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

// ---------------------------------------------------------------- full and read-only

#[test]
fn full_file_system_fails_create_at_preallocation_and_leaves_no_file() {
    let Some(fs) = Tmpfs::mount(64 * 1024, "full_file_system") else {
        return;
    };
    let fits = fs.path().join("fits.ring");
    let ring = Options::new()
        .size(32 * 1024)
        .on_full(OnFull::Reject)
        .create(&fits)
        .expect("a 32 KiB ring fits in 64 KiB");
    let too_big = fs.path().join("too-big.ring");
    let result = Options::new().size(48 * 1024).create(&too_big);
    if let Err(Error::Io { source, .. }) = &result {
        assert_eq!(source.raw_os_error(), Some(28), "ENOSPC");
    }
    assert_io(
        result,
        &too_big,
        "preallocate",
        std::io::ErrorKind::StorageFull,
    );
    assert_io(
        Options::new().size(1 << 20).open_or_create(&too_big),
        &too_big,
        "preallocate",
        std::io::ErrorKind::StorageFull,
    );
    assert_eq!(
        files_in(fs.path()),
        ["fits.ring"],
        "no file or staging file left"
    );
    // The ring that fit is whole: its pages were allocated at create.
    let data = vec![0x5a; ring.max_entry_size()];
    let mut ids = Vec::new();
    while let Ok(id) = ring.push(&data) {
        ids.push(id);
    }
    assert!(ids.len() >= 2);
    for id in ids {
        let entry = ring.pop().unwrap().expect("entry");
        assert_eq!((entry.id(), entry.data()), (id, data.as_slice()));
    }
}

#[test]
fn read_only_file_system_fails_open_and_create_with_erofs() {
    let Some(fs) = Tmpfs::mount(1 << 20, "read_only_file_system") else {
        return;
    };
    let existing = fs.path().join("existing.ring");
    let ring = Options::new().size(8192).create(&existing).unwrap();
    ring.push(b"kept").unwrap();
    drop(ring);
    fs.remount_read_only();
    let kind = std::io::ErrorKind::ReadOnlyFilesystem;
    let open_op = "open";
    assert_io(Ring::open(&existing), &existing, open_op, kind);
    assert_io(
        Options::new().open_or_create(&existing),
        &existing,
        open_op,
        kind,
    );
    let new = fs.path().join("new.ring");
    assert_io(Options::new().size(8192).create(&new), &new, "create", kind);
    assert_io(Options::new().open_or_create(&new), &new, "create", kind);
    assert_eq!(files_in(fs.path()), ["existing.ring"]);
}

// ---------------------------------------------------------------- permissions

/// Paths the unprivileged child is refused.
struct Denied {
    owned_0600: PathBuf,
    owned_0644: PathBuf,
    in_unwritable_dir: PathBuf,
    in_unsearchable_dir: PathBuf,
}

impl Denied {
    fn new(dir: &Path) -> Denied {
        Denied {
            owned_0600: dir.join("owned-0600.ring"),
            owned_0644: dir.join("owned-0644.ring"),
            in_unwritable_dir: dir.join("new.ring"),
            in_unsearchable_dir: dir.join("private").join("r.ring"),
        }
    }
}

/// The child's half of `unprivileged_user_is_denied_with_permission_errors`.
fn denied_child(dir: &Path) {
    let paths = Denied::new(dir);
    let denied = std::io::ErrorKind::PermissionDenied;
    let rw = "open for reading and writing (a ring needs both)";
    assert_io(Ring::open(&paths.owned_0600), &paths.owned_0600, rw, denied);
    assert_io(Ring::open(&paths.owned_0644), &paths.owned_0644, rw, denied);
    assert_io(
        Options::new().open_or_create(&paths.owned_0644),
        &paths.owned_0644,
        rw,
        denied,
    );
    let new = &paths.in_unwritable_dir;
    assert_io(Options::new().size(8192).create(new), new, "create", denied);
    assert_io(Options::new().open_or_create(new), new, "create", denied);
    let hidden = &paths.in_unsearchable_dir;
    assert_io(Ring::open(hidden), hidden, rw, denied);
    assert_io(Options::new().create(hidden), hidden, "create", denied);
    println!("all refused");
}

#[test]
fn unprivileged_user_is_denied_with_permission_errors() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "denied");
        denied_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Searchable by everyone, writable by its owner (this process) only.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let paths = Denied::new(dir.path());
    for (path, mode) in [(&paths.owned_0600, 0o600), (&paths.owned_0644, 0o644)] {
        Options::new().size(8192).mode(mode).create(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let private = paths.in_unsearchable_dir.parent().unwrap();
    std::fs::create_dir(private).unwrap();
    Options::new()
        .size(8192)
        .create(&paths.in_unsearchable_dir)
        .unwrap();
    std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = files_in(dir.path());

    let test = "unprivileged_user_is_denied_with_permission_errors";
    let mut cmd = child(test, "denied", dir.path());
    cmd.uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = match cmd.spawn() {
        Ok(proc) => proc,
        Err(e) => {
            println!("skipped {test}: cannot start a child as uid {NOBODY} ({e}); needs root");
            return;
        }
    };
    let status = wait(&mut proc, test);
    let output = proc.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success() && stdout.contains("all refused"),
        "child as uid {NOBODY}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(files_in(dir.path()), before, "the child created nothing");
}

// ---------------------------------------------------------------- not a ring file

#[test]
fn directory_device_and_missing_parent_each_give_their_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A directory: open says so; create finds the name taken.
    assert_io(Ring::open(d), d, "open", std::io::ErrorKind::IsADirectory);
    assert_io(
        Options::new().open_or_create(d),
        d,
        "open",
        std::io::ErrorKind::IsADirectory,
    );
    match Options::new().create(d) {
        Err(Error::AlreadyExists { path }) => assert_eq!(path, d),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // A device opens read-write but is not a regular file.
    let null = Path::new("/dev/null");
    match Ring::open(null) {
        Err(Error::NotARing { path, reason }) => {
            assert_eq!(path, null);
            assert!(reason.contains("not a regular file"), "{reason}");
        }
        other => panic!("expected NotARing, got {other:?}"),
    }
    // A missing parent directory.
    let orphan = d.join("missing").join("r.ring");
    assert_io(
        Ring::open(&orphan),
        &orphan,
        "open",
        std::io::ErrorKind::NotFound,
    );
    assert_io(
        Options::new().create(&orphan),
        &orphan,
        "create",
        std::io::ErrorKind::NotFound,
    );
    assert_eq!(files_in(d), Vec::<String>::new());
}

// ---------------------------------------------------------------- resized while mapped

/// The child's half of the truncation test: opens the ring, says "ready", waits until
/// the file is shorter than the ring, then pops.
fn truncation_victim(path: &Path) {
    let ring = Ring::open(path).unwrap();
    let size = ring.file_size();
    println!("ready");
    let deadline = Instant::now() + CHILD_LIMIT;
    while std::fs::metadata(path).unwrap().len() >= size {
        assert!(Instant::now() < deadline, "the file was never truncated");
        std::thread::sleep(Duration::from_millis(1));
    }
    let result = ring.pop();
    println!("pop after truncation returned {result:?}");
}

#[test]
fn ring_truncated_while_mapped_raises_sigbus_and_is_refused_at_open() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "victim");
        truncation_victim(&path);
        return;
    }
    let test = "ring_truncated_while_mapped_raises_sigbus_and_is_refused_at_open";
    let dir = tempfile::tempdir().unwrap();
    for (cut_to, name) in [(4096u64, "header-only"), (0, "empty")] {
        let path = dir.path().join(name);
        let ring = Options::new().size(1 << 16).create(&path).unwrap();
        for i in 0..10u32 {
            ring.push(&i.to_le_bytes()).unwrap();
        }
        drop(ring);
        let mut victim = child(test, "victim", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The harness prints "test <name> ... " first; EOF means the child failed.
        let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|line| line.unwrap().trim_end().ends_with("ready")),
            "{name}: the child failed to open the ring"
        );
        // Another process (this one) truncates the file under the child's mapping.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut_to)
            .unwrap();
        let status = wait(&mut victim, name);
        let mut said = String::new();
        for line in lines {
            said += &line.unwrap();
        }
        victim
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut said)
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(7),
            "{name}: the child touching the missing pages dies of SIGBUS; it said {said}"
        );
        match Ring::open(&path) {
            Err(Error::Corrupt { offset, what }) if cut_to >= 4096 => {
                assert_eq!(offset, FILE_LEN_OFFSET, "{what}");
                assert!(what.contains("truncated"), "{what}");
            }
            Err(Error::NotARing { path: got, .. }) if cut_to < 4096 => assert_eq!(got, path),
            other => panic!("{name}: reopening the truncated ring gave {other:?}"),
        }
    }
}

#[test]
fn ring_extended_while_mapped_keeps_working_and_is_refused_at_open_until_cut_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let size = 1 << 16;
    let ring = Options::new().size(size).create(&path).unwrap();
    let first = ring.push(b"before").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size + 4096).unwrap();
    // The mapping covers the ring's own bytes, all still there.
    let second = ring.push(b"after").unwrap();
    let entry = ring.pop().unwrap().unwrap();
    assert_eq!((entry.id(), entry.data()), (first, &b"before"[..]));
    match Ring::open(&path) {
        Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, FILE_LEN_OFFSET),
        other => panic!("expected Corrupt at file_len, got {other:?}"),
    }
    // Cutting the file back to the length in its header is the repair.
    file.set_len(size).unwrap();
    let reopened = Ring::open(&path).unwrap();
    let entry = reopened.pop().unwrap().unwrap();
    assert_eq!((entry.id(), entry.data()), (second, &b"after"[..]));
}

// ---------------------------------------------------------------- racing creators

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Exit status of a racing creator that got `AlreadyExists`.
const LOST: i32 = 3;

/// The child's half of the creation race: exit 0 if it created the ring, `LOST` if
/// the path was taken; anything else is a failure.
fn creator(path: &Path) {
    let start: u64 = std::env::var(START_VAR).unwrap().parse().unwrap();
    let size: u64 = std::env::var(SIZE_VAR).unwrap().parse().unwrap();
    while unix_ms() < start {
        std::thread::sleep(Duration::from_micros(100));
    }
    match Options::new().size(size).create(path) {
        Ok(ring) => {
            ring.push(&size.to_le_bytes()).unwrap();
            std::process::exit(0)
        }
        Err(Error::AlreadyExists { path: got }) if got == path => std::process::exit(LOST),
        Err(other) => panic!("create: {other:?}"),
    }
}

#[test]
fn processes_racing_to_create_one_path_make_exactly_one_ring() {
    if let Some((role, path)) = role() {
        assert_eq!(role, "creator");
        creator(&path);
        return;
    }
    const CREATORS: u64 = 4;
    let test = "processes_racing_to_create_one_path_make_exactly_one_ring";
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.ring");
        let start = unix_ms() + 300;
        // Creator i asks for its own size, so the ring tells who won.
        let sizes: Vec<u64> = (0..CREATORS).map(|i| 8192 + 8 * i).collect();
        let mut children: Vec<Child> = sizes
            .iter()
            .map(|size| {
                child(test, "creator", &path)
                    .env(START_VAR, start.to_string())
                    .env(SIZE_VAR, size.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // An observer opens the path over and over while they race: it must see no
        // file, or a whole ring of one of the requested sizes; never anything between.
        let done = Arc::new(AtomicBool::new(false));
        let observer = {
            let (path, sizes, done) = (path.clone(), sizes.clone(), done.clone());
            std::thread::spawn(move || {
                let mut opened = 0u32;
                // Until the race is over and it has seen the ring at least once: on a
                // loaded machine it may not be scheduled during the race at all.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !(done.load(Ordering::Relaxed) && opened > 0) {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "observer never saw a ring"
                    );
                    match Ring::open(&path) {
                        Ok(ring) => {
                            assert!(sizes.contains(&ring.file_size()), "{}", ring.file_size());
                            opened += 1;
                        }
                        Err(Error::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound => {}
                        Err(other) => panic!("observer opened a half-made ring: {other:?}"),
                    }
                }
                opened
            })
        };
        let mut winners = Vec::new();
        for (i, c) in children.iter_mut().enumerate() {
            let status = wait(c, test);
            match status.code() {
                Some(0) => winners.push(sizes[i]),
                Some(LOST) => {}
                _ => {
                    let mut err = String::new();
                    std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
                    panic!("round {round}: creator {i} failed ({status}): {err}");
                }
            }
        }
        done.store(true, Ordering::Relaxed);
        let opened = observer.join().unwrap();
        assert_eq!(winners.len(), 1, "round {round}: exactly one creator wins");
        assert_eq!(files_in(dir.path()), ["shared.ring"], "round {round}");
        let ring = Ring::open(&path).unwrap();
        assert_eq!(ring.file_size(), winners[0], "round {round}");
        let entry = ring.pop().unwrap().expect("the winner's entry");
        assert_eq!(entry.data(), winners[0].to_le_bytes(), "round {round}");
        assert!(
            opened > 0,
            "round {round}: the observer saw the ring at least once"
        );
    }
}
