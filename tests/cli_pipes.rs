//! End-to-end tests of how `mmring push` and `mmring pop` move data through pipes and
//! between processes, driving the real binary.
//!
//! Proves that `push --raw` stores all of stdin as one entry byte for byte, `--null`
//! splits on NUL, and `--ttl` is recorded; that `pop` prints hex and JSON (id,
//! version, ttl, write time, size, data) and raw bytes exactly; that `pop --format
//! raw` piped into `push --raw` of another ring copies entries exactly; that `pop
//! --wait` in one process receives, in order, every entry `mmring push` processes
//! push, including ones pushed while it waits on an empty ring; that `pop --wait
//! --timeout` on an empty ring gives up with exit status 7 and one stderr line,
//! keeping what arrived, and with a timeout too long for the clock waits without a
//! deadline; that every command writing to a stdout its reader closed (`| head -1`)
//! ends quietly, status 0; that `pop --wait` writes out each entry it takes before it
//! waits for the next; that `push` refuses an entry longer than the ring takes after
//! reading little more than that, with `--raw` and by lines; and that `pop` without
//! `--wait` gets past the record of a producer that died mid-push, after the ring's
//! abandon timeout.

use std::io::{Read, Write};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;

mod cli_support;
use cli_support::*;

#[test]
fn push_raw_stores_all_of_stdin_as_one_entry() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    let payload: Vec<u8> = (0..=255u8)
        .chain(b"\nline\r\n\0end".iter().copied())
        .collect();
    mmring()
        .args(["push", "--raw", "-v"])
        .arg(&path)
        .write_stdin(payload.clone())
        .assert()
        .success()
        .stdout("0\n");
    mmring()
        .args(["pop", "--all", "--format", "raw"])
        .arg(&path)
        .assert()
        .success()
        .stdout(payload);
}

#[test]
fn push_null_splits_on_nul_bytes() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    mmring()
        .args(["push", "--null"])
        .arg(&path)
        .write_stdin(&b"with\nnewline\0second\0last"[..])
        .assert()
        .success();
    mmring()
        .args(["pop", "--all", "--format", "hex"])
        .arg(&path)
        .assert()
        .success()
        .stdout("77697468 0a6e65776c696e65\n7365636f6e64\n6c617374\n".replace(' ', ""));
}

#[test]
fn pop_json_carries_id_version_ttl_write_time_size_and_data() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    mmring()
        .args(["push", "--ttl", "90s"])
        .arg(&path)
        .arg("tea \"time\"")
        .assert()
        .success();
    let json = String::from_utf8(stdout_bytes(
        mmring()
            .args(["pop", "--format", "json"])
            .arg(&path)
            .assert()
            .success(),
    ))
    .unwrap();
    assert!(
        json.starts_with("{\"id\":0,\"version\":1,\"ttl_secs\":90,\"written_at_ms\":"),
        "{json}"
    );
    assert!(
        json.ends_with(",\"size\":10,\"encoding\":\"utf-8\",\"data\":\"tea \\\"time\\\"\"}\n"),
        "{json}"
    );
    let written: u128 = json
        .split("\"written_at_ms\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap();
    // The write time is a coarse clock: it may be a few ms behind.
    assert!(
        written + 100 >= before_ms && written < before_ms + 60_000,
        "{json}"
    );
}

#[test]
fn pop_raw_piped_into_push_raw_copies_the_entries_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from.ring"), dir.path().join("to.ring"));
    create(&from, &["--on-full", "reject"]);
    create(&to, &["--on-full", "reject"]);
    mmring()
        .arg("push")
        .arg(&from)
        .write_stdin("alpha\nbeta\n")
        .assert()
        .success();
    let mut pop = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
        .args(["pop", "--all", "--format", "raw"])
        .arg(&from)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let push = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
        .args(["push", "--raw"])
        .arg(&to)
        .stdin(pop.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(push.success());
    assert!(pop.wait().unwrap().success());
    mmring()
        .args(["pop", "--all"])
        .arg(&to)
        .assert()
        .success()
        .stdout("alphabeta\n");
    mmring()
        .args(["pop", "--all"])
        .arg(&from)
        .assert()
        .success()
        .stdout("");
}

#[test]
fn pop_wait_in_one_process_receives_what_another_pushes() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    let count = 200;
    // The consumer starts first, on an empty ring, and waits (bounded by --timeout,
    // so a lost entry fails the test instead of hanging it).
    let mut consumer = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
        .args([
            "pop",
            "--wait",
            "--timeout",
            "20s",
            "--format",
            "json",
            "-n",
        ])
        .arg(count.to_string())
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two producer processes: the second starts only once the consumer has taken
    // everything the first pushed, so the consumer is certainly waiting on an empty
    // ring when the second half arrives.
    let push_half = |half: std::ops::Range<usize>| {
        let lines: String = half.map(|i| format!("entry {i}\n")).collect();
        let mut producer = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
            .arg("push")
            .arg(&path)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        producer
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(producer.wait().unwrap().success());
    };
    push_half(0..count / 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let popped_json = format!("\"popped\":{},", count / 2);
    loop {
        let info = mmring()
            .args(["info", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&info.stdout).contains(&popped_json) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never took the first half"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    push_half(count / 2..count);
    let mut out = String::new();
    consumer
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = consumer.wait().unwrap();
    let mut err = String::new();
    consumer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    let data: Vec<String> = out
        .lines()
        .map(|line| {
            line.split("\"data\":\"")
                .nth(1)
                .and_then(|rest| rest.strip_suffix("\"}"))
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..count).map(|i| format!("entry {i}")).collect();
    assert_eq!(data, expected);
}

#[test]
fn pop_wait_timeout_gives_up_with_status_7_keeping_what_arrived() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    let started = Instant::now();
    let assert = mmring()
        .args(["pop", "--wait", "--timeout", "300ms"])
        .arg(&path)
        .assert()
        .code(7)
        .stdout("");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert_eq!(
        stderr,
        format!(
            "mmring: {}: timed out after 0.300 s waiting for entries\n",
            path.display()
        )
    );
    mmring()
        .arg("push")
        .arg(&path)
        .arg("only")
        .assert()
        .success();
    mmring()
        .args(["pop", "--wait", "--timeout", "200ms", "-n", "2"])
        .arg(&path)
        .assert()
        .code(7)
        .stdout("only\n")
        .stderr(predicate::str::contains("timed out"));
    // --all waits for the first entry only.
    mmring()
        .arg("push")
        .arg(&path)
        .args(["x", "y"])
        .assert()
        .success();
    mmring()
        .args(["pop", "--wait", "--all", "--timeout", "5s"])
        .arg(&path)
        .assert()
        .success()
        .stdout("x\ny\n");
}

#[test]
fn timeout_needs_wait() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    mmring()
        .args(["pop", "--timeout", "1s"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--wait"));
}

/// Regression: a timeout too long to add to the clock (`--timeout
/// 18446744073709551615s`) made `pop --wait` panic with a backtrace; it now means no
/// deadline.
#[test]
fn pop_wait_with_a_timeout_beyond_the_clock_waits_without_a_deadline() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    mmring()
        .arg("push")
        .arg(&path)
        .arg("ready")
        .assert()
        .success();
    mmring()
        .args(["pop", "--wait", "--timeout", "18446744073709551615s"])
        .arg(&path)
        .assert()
        .success()
        .stdout("ready\n")
        .stderr("");
}

/// Regression: a command whose stdout reader went away (`mmring pop --all | head -1`)
/// printed `mmring: stdout: Broken pipe` and exited 3, as if mmring had failed.
#[test]
fn commands_writing_into_a_closed_pipe_end_quietly() {
    let (_dir, path) = scratch();
    mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "1MiB"])
        .assert()
        .success();
    // Far more than a pipe holds, so each command meets the closed end whatever the
    // timing.
    let line = "x".repeat(1000);
    let lines: String = (0..400).map(|_| format!("{line}\n")).collect();
    mmring()
        .arg("push")
        .arg(&path)
        .write_stdin(lines)
        .assert()
        .success();
    for args in [
        &["peek"][..],
        &["dump", "--records"],
        &["man"],
        &["pop", "--all"],
    ] {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
            .args(args)
            .args((args[0] != "man").then_some(&path))
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ),
            (Some(0), "".into()),
            "mmring {args:?}"
        );
    }
}

/// Regression: `pop --wait -n 2` kept the first entry it had removed in its output
/// buffer while it waited for the second, so a reader saw nothing, and interrupting
/// the wait (Ctrl-C, a kill) lost an entry already taken from the ring.
#[test]
fn pop_wait_writes_each_entry_before_waiting_for_the_next() {
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    mmring()
        .arg("push")
        .arg(&path)
        .arg("first")
        .assert()
        .success();
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
        .args(["pop", "--wait", "-n", "2"])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        let _ = lines.send(line);
    });
    let first = received.recv_timeout(Duration::from_secs(10));
    // The second entry ends the child's wait either way.
    mmring()
        .arg("push")
        .arg(&path)
        .arg("second")
        .assert()
        .success();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        first.as_deref(),
        Ok(&b"first\n"[..]),
        "the first entry was held back while pop waited for the second"
    );
}

/// Regression: `push --raw` read all of stdin, and `push` a whole line, into memory
/// before the ring refused it as too large, so an endless or huge stream (`push --raw
/// < /dev/zero`) grew the process without bound. Both now stop reading just past the
/// ring's largest entry and fail with status 2.
#[test]
fn push_refuses_an_oversized_entry_without_reading_all_of_it() {
    const STREAM: usize = 64 << 20;
    let (_dir, path) = scratch();
    create(&path, &["--on-full", "reject"]);
    for mode in [&["--raw"][..], &[]] {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_mmring"))
            .arg("push")
            .args(mode)
            .arg(&path)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // No line ending anywhere: one 64 MiB entry, or until the reader leaves.
        let writer = std::thread::spawn(move || {
            let chunk = [b'z'; 64 << 10];
            let mut written = 0;
            while written < STREAM && stdin.write_all(&chunk).is_ok() {
                written += chunk.len();
            }
            written
        });
        let output = child.wait_with_output().unwrap();
        let written = writer.join().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{mode:?}: {stderr}");
        assert!(
            stderr.contains("longer than this ring's maximum"),
            "{stderr}"
        );
        assert!(
            written < STREAM / 4,
            "{mode:?}: push read {written} bytes of an entry it can't take"
        );
    }
}

/// A ring with the abandon timeout `abandon` holding the entries "in flight" and
/// "queued", whose first record is put back to how its producer left it if it stopped
/// or died before committing: claimed, not committed (the stamp at the start of the
/// region holds position 0 and state CLAIMED, 1, XORed with the file's stamp key). Its
/// claim word names the `mmring push` process that wrote it, which has exited.
fn ring_with_a_stuck_head(abandon: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::FileExt;
    let (dir, path) = scratch();
    mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "64KiB", "--abandon-timeout", abandon])
        .assert()
        .success();
    mmring()
        .arg("push")
        .arg(&path)
        .args(["in flight", "queued"])
        .assert()
        .success();
    let key = mmring::layout::stamp_key(&std::fs::read(&path).unwrap())
        .expect("the first 76 bytes of a ring file");
    assert_ne!(key, 0, "new files have a stamp key");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&(1 ^ key).to_le_bytes(), 4096).unwrap();
    (dir, path)
}

/// Regression: a producer that died between claiming its record and committing it
/// blocked `mmring pop` for good. Each reader times a stuck head from when it first
/// sees it, and a one-shot `pop` gave up within microseconds, printing nothing and
/// exiting 0 however long ago the producer died, with entries queued behind it (verify
/// said readers skip it after the abandon timeout). `pop` now gives such a head the
/// abandon timeout before it reports the ring empty; an empty ring still returns at
/// once. (A producer whose process is gone is now found out sooner: see the next
/// test; here the claim names a live process.)
#[test]
fn pop_gets_past_a_stuck_producers_record_after_the_abandon_timeout() {
    use std::os::unix::fs::FileExt;
    let (_empty_dir, empty) = scratch();
    mmring()
        .arg("create")
        .arg(&empty)
        .args(["--size", "64KiB", "--abandon-timeout", "200ms"])
        .assert()
        .success();
    let started = Instant::now();
    mmring()
        .arg("pop")
        .arg(&empty)
        .assert()
        .success()
        .stdout("");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "waited on an empty ring"
    );
    let (_dir, path) = ring_with_a_stuck_head("200ms");
    // The claim word holds the data size (low 32 bits) and the writer: its process ID
    // (22 bits) under its PID-namespace tag (10 bits). Keep the tag and name this
    // process, alive, so that only the timeout frees the record.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut old = [0u8; 8];
    file.read_exact_at(&mut old, 4096 + 8).unwrap();
    let tag = u64::from_le_bytes(old) & 0xffc0_0000_0000_0000;
    let claim = tag | u64::from(std::process::id()) << 32 | 9;
    file.write_all_at(&claim.to_le_bytes(), 4096 + 8).unwrap();
    let started = Instant::now();
    mmring()
        .arg("pop")
        .arg(&path)
        .assert()
        .success()
        .stdout("queued\n");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

/// A record left claimed by a producer whose process is gone (the `mmring push` that
/// wrote it has exited and been reaped) is abandoned as soon as `pop` finds that out,
/// long before a long abandon timeout.
#[test]
fn pop_gets_past_a_record_whose_producer_is_gone_without_the_timeout() {
    let (_dir, path) = ring_with_a_stuck_head("60s");
    let started = Instant::now();
    mmring()
        .arg("pop")
        .arg(&path)
        .assert()
        .success()
        .stdout("queued\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} with a 60 s abandon timeout",
        started.elapsed()
    );
}
