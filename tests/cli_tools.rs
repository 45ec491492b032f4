//! End-to-end tests of `mmring bench`, `completions` and `man`, and of how every
//! command treats files it can't use.
//!
//! Proves that bench runs with threads and with processes, moves every entry (its
//! summary names the count) and prints only the table on stdout when stderr is not a
//! terminal; that completion scripts for bash, zsh and fish and a roff man page are
//! generated from the command definitions; and that every command, given a missing
//! file, a directory, a file that is not a ring, a ring with a damaged header or (run
//! as another user) a file it may not open, fails with one `mmring: <path>: ...` line
//! on stderr and a non-zero status, never a panic; and that a FIFO is refused at once,
//! not waited on for a writer.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use predicates::prelude::*;

mod cli_support;
use cli_support::*;

#[test]
fn bench_with_threads_and_with_processes_moves_every_entry() {
    for extra in [&[][..], &["--processes"]] {
        let assert = mmring()
            .args(["bench", "--producers", "2", "--consumers", "2"])
            .args(["--entries", "2000", "--entry", "32", "--size", "256KiB"])
            .args(extra)
            .assert()
            .success()
            .stderr("");
        let table = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
        let mode = if extra.is_empty() {
            "threads"
        } else {
            "processes"
        };
        for expected in [
            format!("2 producer(s), 2 consumer(s) as {mode}, 256.0 KiB ring, 32-byte entries"),
            "4000 in ".to_owned(),
            "entries/s".to_owned(),
            "latency p99".to_owned(),
        ] {
            assert!(table.contains(&expected), "{expected:?} in\n{table}");
        }
    }
}

#[test]
fn bench_in_batches_with_threads_and_with_processes_moves_every_entry() {
    // Two consumers and batches: a consumer may take several stop markers at once
    // and must hand the others back, or the other consumer never stops.
    for extra in [&[][..], &["--processes"]] {
        let assert = mmring()
            .args([
                "bench",
                "--producers",
                "2",
                "--consumers",
                "2",
                "--batch",
                "16",
            ])
            .args(["--entries", "3000", "--entry", "40", "--size", "256KiB"])
            .args(extra)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .success()
            .stderr("");
        let table = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
        for expected in ["40-byte entries, batches of 16", "6000 in "] {
            assert!(table.contains(expected), "{expected:?} in\n{table}");
        }
    }
}

#[test]
fn bench_refuses_entries_too_small_for_the_send_time() {
    mmring()
        .args(["bench", "--entry", "4"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("mmring: --entry: must be at least 8 bytes (the send time)\n");
}

#[test]
fn completions_and_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "_mmring()"),
        ("zsh", "#compdef mmring"),
        ("fish", "complete -c mmring"),
    ] {
        mmring()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(
                predicate::str::contains(marker)
                    .and(predicate::str::contains("verify"))
                    .and(predicate::str::contains("dump")),
            );
    }
    mmring().args(["completions", "tcsh"]).assert().code(2);
    mmring().arg("man").assert().success().stdout(
        predicate::str::contains(".TH mmring 1")
            .and(predicate::str::contains("verify"))
            .and(predicate::str::contains("bench-worker").not()),
    );
}

/// Every command that takes a ring path, with arguments that would otherwise work.
fn commands(path: &Path) -> Vec<Vec<String>> {
    let path = path.display().to_string();
    [
        &["push", &path, "x"][..],
        &["pop", &path],
        &["peek", &path],
        &["info", &path],
        &["verify", &path],
        &["dump", "--records", &path],
    ]
    .iter()
    .map(|args| args.iter().map(|arg| arg.to_string()).collect())
    .collect()
}

/// Runs `args`, expecting failure with one stderr line naming `path`; returns the
/// status.
fn fails_on_one_line(args: &[String], path: &Path, uid: Option<u32>) -> i32 {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mmring"));
    command.args(args).env_remove("RUST_BACKTRACE");
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    // Only verify has something to say on stdout: the problems it found.
    assert!(
        output.stdout.is_empty() || args[0] == "verify",
        "{args:?} printed data"
    );
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(
        stderr.starts_with(&format!("mmring: {}: ", path.display())),
        "{args:?}: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr:?}");
    output.status.code().unwrap()
}

#[test]
fn every_command_fails_cleanly_on_files_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ring");
    let text = dir.path().join("text.ring");
    std::fs::write(&text, "not a ring\n".repeat(1000)).unwrap();
    let damaged = dir.path().join("damaged.ring");
    create(&damaged, &[]);
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[16] ^= 0x40; // file_len, under the header checksum
    std::fs::write(&damaged, bytes).unwrap();
    for path in [missing.as_path(), dir.path(), &text, &damaged] {
        for args in commands(path) {
            let is_dump = args[0] == "dump";
            // dump shows any file and only warns about records it can't list.
            if is_dump && (path == text || path == damaged) {
                continue;
            }
            let code = fails_on_one_line(&args, path, None);
            if args[0] == "verify" {
                let expected = if path == damaged { 1 } else { 2 };
                assert_eq!(code, expected, "{args:?}");
            }
        }
    }
}

#[test]
fn every_command_fails_cleanly_without_permission() {
    // Tests run as root, who may open anything: run the binary as another user.
    const NOBODY: u32 = 65534;
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: changing the user of a child process needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path: PathBuf = dir.path().join("private.ring");
    create(&path, &[]); // mode 0600, owned by root
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_mmring"))
        .arg("--version")
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    if !probe.is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: the mmring binary is not executable by uid {NOBODY} here");
        return;
    }
    for args in commands(&path) {
        let code = fails_on_one_line(&args, &path, Some(NOBODY));
        let expected = if args[0] == "verify" { 2 } else { 3 };
        assert_eq!(code, expected, "{args:?}");
    }
}

/// Regression: `verify` and `dump` opened their file read-only, which for a FIFO
/// blocks until some process opens it for writing: `mmring verify some.fifo` hung
/// for ever instead of saying it is not a ring file.
#[test]
fn every_command_refuses_a_fifo_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("jobs.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for args in commands(&fifo) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mmring"))
            .args(&args)
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(status.is_some(), "{args:?} waited on the FIFO");
        // The same one-line failure as for any other file it can't use.
        let code = fails_on_one_line(&args, &fifo, None);
        if args[0] == "verify" {
            assert_eq!(code, 2, "{args:?}");
        }
    }
}
