//! End-to-end tests of the `mmring` command-line tool, driving the real binary.
//!
//! Proves that:
//! - `mmring demo` runs producer and consumer processes, finds every entry delivered
//!   exactly once, intact and in order, reports it, and removes its temporary ring;
//! - `create`, `push`, `pop`, `peek` and `info` round-trip entries and metadata in
//!   every output format, including stdin lines and non-UTF-8 payloads; `info` shows
//!   every field in its table;
//! - failures (missing file, a file that is not a ring, a directory, a full ring, an
//!   existing file, bad arguments) exit non-zero with the documented status and one
//!   `mmring: ...` line on stderr, never a panic;
//! - every command's `--help` shows an example;
//! - the README's library example is `examples/readme.rs`, and it runs.
//!
//! `tests/cli_inspect.rs` covers dump and verify, `tests/cli_pipes.rs` push and pop
//! modes, pipes and processes, `tests/cli_tools.rs` bench, completions, the man page
//! and permissions.

use std::path::{Path, PathBuf};

use predicates::prelude::*;

mod cli_support;
use cli_support::*;

// The README example, compiled into this test so that it runs, not only builds.
#[path = "../examples/readme.rs"]
mod readme_example;

/// The value in the row named `name` of a table printed by `mmring info`.
fn table_row(table: &str, name: &str) -> String {
    table
        .lines()
        .filter_map(|line| {
            let line = line.trim_matches(|c| c == '│' || c == ' ');
            let (key, value) = line.split_once('┆')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
        .next()
        .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"))
}

/// Asserts a failure with exit status `code` and exactly one stderr line, starting
/// with `mmring: <subject>: ` and containing `needle`.
fn assert_one_line_failure(
    assert: assert_cmd::assert::Assert,
    code: i32,
    subject: &str,
    needle: &str,
) {
    let output = assert.code(code).stdout("").get_output().clone();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(
        stderr.starts_with(&format!("mmring: {subject}: ")),
        "stderr names the subject {subject:?}: {stderr:?}"
    );
    assert!(
        stderr.contains(needle),
        "stderr mentions {needle:?}: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn demo_delivers_every_entry_exactly_once_and_removes_its_ring() {
    let assert = mmring()
        .args(["demo", "--producers", "3", "--consumers", "2"])
        .args([
            "--entries",
            "3000",
            "--size",
            "64KiB",
            "--entry-size",
            "100",
        ])
        .assert()
        .success()
        .stderr("");
    let report = stdout_of(assert);
    assert!(
        report.contains("9000 delivered of 9000 pushed (3 producers x 3000, 100-byte payloads)"),
        "{report}"
    );
    assert!(
        report.contains("duplicates 0, lost 0, corrupt 0, order OK"),
        "{report}"
    );
    assert!(
        report.contains("ring stats  pushed 9002, popped 9002, evicted 0, expired 0, corrupt 0"),
        "{report}"
    );
    assert!(
        report.contains("entries/s") && report.contains("MB/s"),
        "{report}"
    );
    assert!(report.contains("\nOK: "), "{report}");
    let ring_line = report
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("ring file"))
        .expect("the report names the ring file");
    let ring_path = PathBuf::from(ring_line.trim_start().split(" (").next().unwrap());
    let ring_dir = ring_path.parent().unwrap();
    assert!(
        ring_dir.starts_with(std::env::temp_dir()),
        "the ring is in the temporary directory: {ring_dir:?}"
    );
    assert!(!ring_dir.exists(), "{ring_dir:?} was removed");
}

#[test]
fn demo_refuses_an_entry_size_the_ring_cannot_hold() {
    let assert = mmring()
        .args([
            "demo",
            "--size",
            "8KiB",
            "--entry-size",
            "4KiB",
            "--entries",
            "1",
        ])
        .assert();
    assert_one_line_failure(assert, 2, "--entry-size", "pass a larger --size");
    let assert = mmring().args(["demo", "--entry-size", "8"]).assert();
    assert_one_line_failure(assert, 2, "--entry-size", "at least 20 bytes");
}

#[test]
fn create_push_peek_info_pop_round_trip() {
    let (_dir, path) = scratch();
    create(
        &path,
        &["--on-full", "reject", "--ttl", "1h", "--mode", "0640"],
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(
        mode & 0o7777 & !0o022,
        0o640 & !0o022,
        "mode, less a typical umask"
    );

    let ids = stdout_of(
        mmring()
            .args(["push", "-v"])
            .arg(&path)
            .args(["one", "two", "three"])
            .assert()
            .success(),
    );
    let ids: Vec<u64> = ids.lines().map(|id| id.parse().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // peek shows everything and removes nothing.
    for _ in 0..2 {
        mmring()
            .arg("peek")
            .arg(&path)
            .assert()
            .success()
            .stdout("one\ntwo\nthree\n");
    }
    mmring()
        .args(["peek", "-n", "1", "--format", "hex"])
        .arg(&path)
        .assert()
        .success()
        .stdout("6f6e65\n");

    let info = stdout_of(mmring().arg("info").arg(&path).assert().success());
    for (row, expected) in [
        ("format version", "1"),
        ("file size", "65536 bytes (64.0 KiB)"),
        ("max entry size", "30664 bytes"),
        ("on full", "reject"),
        ("default ttl", "3600 s"),
        ("abandon timeout", "2000 ms"),
        (
            "counters",
            "pushed 3, popped 0, evicted 0, expired 0, corrupt 0, abandoned 0",
        ),
        ("subscribers", "none"),
    ] {
        assert_eq!(table_row(&info, row), expected, "info row {row}:\n{info}");
    }
    assert!(
        table_row(&info, "capacity").starts_with("61440 bytes for entries (4.0 KiB header)"),
        "{info}"
    );
    assert!(
        table_row(&info, "fill").starts_with("3 entries, "),
        "{info}"
    );
    let json = stdout_of(
        mmring()
            .args(["info", "--json"])
            .arg(&path)
            .assert()
            .success(),
    );
    assert_eq!(json.lines().count(), 1, "{json}");
    for expected in [
        "\"format_version\":1,",
        "\"file_size\":65536,",
        "\"capacity_bytes\":61440,",
        "\"len\":3,",
        "\"on_full\":\"reject\",",
        "\"default_ttl_secs\":3600,",
        "\"pushed\":3,",
    ] {
        assert!(
            json.contains(expected),
            "info --json has {expected}: {json}"
        );
    }

    mmring()
        .arg("pop")
        .arg(&path)
        .assert()
        .success()
        .stdout("one\n");
    let json = stdout_of(
        mmring()
            .args(["pop", "--all", "--format", "json"])
            .arg(&path)
            .assert()
            .success(),
    );
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert!(lines[0].starts_with(&format!(
        "{{\"id\":{},\"version\":1,\"ttl_secs\":3600,",
        ids[1]
    )));
    assert!(
        lines[0].ends_with(",\"size\":3,\"encoding\":\"utf-8\",\"data\":\"two\"}"),
        "{json}"
    );
    assert!(
        lines[1].ends_with(",\"size\":5,\"encoding\":\"utf-8\",\"data\":\"three\"}"),
        "{json}"
    );

    // Empty: nothing printed, and that is not an error.
    mmring()
        .args(["pop", "--all"])
        .arg(&path)
        .assert()
        .success()
        .stdout("");
    mmring()
        .arg("peek")
        .arg(&path)
        .assert()
        .success()
        .stdout("");
    let json = stdout_of(
        mmring()
            .args(["info", "--json"])
            .arg(&path)
            .assert()
            .success(),
    );
    assert!(
        json.contains("\"len\":0,") && json.contains("\"popped\":3,"),
        "{json}"
    );
}

#[test]
fn push_reads_stdin_lines_and_pop_raw_returns_their_exact_bytes() {
    let (_dir, path) = scratch();
    create(&path, &[]);
    mmring()
        .arg("push")
        .arg(&path)
        .write_stdin("alpha\nbeta\r\n\ngamma")
        .assert()
        .success()
        .stdout("");
    mmring()
        .args(["peek", "--format", "json"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"size\":0,").count(1));
    mmring()
        .args(["pop", "--all", "--format", "raw"])
        .arg(&path)
        .assert()
        .success()
        .stdout("alphabetagamma");
}

#[test]
fn pop_count_limits_how_many_entries_are_taken() {
    let (_dir, path) = scratch();
    create(&path, &[]);
    mmring()
        .arg("push")
        .arg(&path)
        .write_stdin("1\n2\n3\n4\n5\n")
        .assert()
        .success();
    mmring()
        .args(["pop", "-n", "2"])
        .arg(&path)
        .assert()
        .success()
        .stdout("1\n2\n");
    mmring()
        .args(["pop", "-n", "9"])
        .arg(&path)
        .assert()
        .success()
        .stdout("3\n4\n5\n");
}

#[test]
fn non_utf8_payloads_are_base64_in_json() {
    let (_dir, path) = scratch();
    create(&path, &[]);
    mmring()
        .arg("push")
        .arg(&path)
        .write_stdin(&[0xff, 0xfe, 0x00, b'\n'][..])
        .assert()
        .success();
    mmring()
        .args(["peek", "--format", "json"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::ends_with(
            ",\"size\":3,\"encoding\":\"base64\",\"data\":\"//4A\"}\n",
        ));
    mmring()
        .args(["pop", "--format", "raw"])
        .arg(&path)
        .assert()
        .success()
        .stdout(&[0xff, 0xfe, 0x00][..]);
}

#[test]
fn push_to_a_full_rejecting_ring_fails_with_status_5_and_keeps_earlier_entries() {
    let (_dir, path) = scratch();
    mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "8KiB", "--on-full", "reject"])
        .assert()
        .success();
    // 4096 bytes for entries; each 1900-byte entry takes 1960, so two fit.
    let big = "x".repeat(1900);
    let assert = mmring()
        .args(["push", "-v"])
        .arg(&path)
        .args([&big, &big, &big])
        .assert()
        .code(5);
    let output = assert.get_output();
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "mmring: {}: the ring is full; pop entries first, or create the ring with OnFull::Overwrite\n",
            path.display()
        )
    );
    mmring()
        .args(["info", "--json"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"len\":2,"));
}

#[test]
fn push_of_an_entry_over_the_maximum_fails_with_status_2() {
    let (_dir, path) = scratch();
    mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "8KiB"])
        .assert()
        .success();
    let assert = mmring()
        .arg("push")
        .arg(&path)
        .arg("y".repeat(3000))
        .assert();
    assert_one_line_failure(
        assert,
        2,
        &path.display().to_string(),
        "exceeds this ring's maximum",
    );
}

#[test]
fn missing_file_fails_with_status_3_for_every_command() {
    let (_dir, path) = scratch();
    let subject = path.display().to_string();
    for args in [&["push", "x"][..], &["pop"], &["peek"], &["info"]] {
        let assert = mmring().arg(args[0]).arg(&path).args(&args[1..]).assert();
        assert_one_line_failure(
            assert,
            3,
            &subject,
            "open failed: No such file or directory",
        );
    }
    assert!(!path.exists(), "no command creates a missing ring");
}

#[test]
fn a_file_that_is_not_a_ring_fails_with_status_4() {
    let (_dir, path) = scratch();
    std::fs::write(&path, "just some text, certainly no ring\n".repeat(300)).unwrap();
    for command in ["pop", "peek", "info"] {
        let assert = mmring().arg(command).arg(&path).assert();
        assert_one_line_failure(
            assert,
            4,
            &path.display().to_string(),
            "not an mmring ring file",
        );
    }
    let assert = mmring().arg("push").arg(&path).arg("x").assert();
    assert_one_line_failure(
        assert,
        4,
        &path.display().to_string(),
        "not an mmring ring file",
    );
}

#[test]
fn a_directory_fails_with_status_3() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["pop", "peek", "info"] {
        let assert = mmring().arg(command).arg(dir.path()).assert();
        assert_one_line_failure(assert, 3, &dir.path().display().to_string(), "directory");
    }
}

#[test]
fn create_refuses_an_existing_path_unless_forced() {
    let (_dir, path) = scratch();
    create(&path, &[]);
    mmring()
        .arg("push")
        .arg(&path)
        .arg("old")
        .assert()
        .success();
    let assert = mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "64KiB"])
        .assert();
    assert_one_line_failure(assert, 6, &path.display().to_string(), "already exists");
    create(&path, &["--force", "--on-full", "reject"]);
    let json = stdout_of(
        mmring()
            .args(["info", "--json"])
            .arg(&path)
            .assert()
            .success(),
    );
    assert!(
        json.contains("\"len\":0,") && json.contains("\"on_full\":\"reject\""),
        "{json}"
    );
}

#[test]
fn create_rejects_invalid_sizes() {
    let (_dir, path) = scratch();
    // Parsed fine, refused by the library: not a multiple of 8.
    let assert = mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "10001"])
        .assert();
    assert_one_line_failure(assert, 2, &path.display().to_string(), "invalid argument");
    assert!(!path.exists());
    // Not a size at all: clap's usage error.
    mmring()
        .arg("create")
        .arg(&path)
        .args(["--size", "lots"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a size"));
    assert!(!path.exists());
}

#[test]
fn every_command_help_shows_an_example() {
    for command in [
        "create",
        "push",
        "pop",
        "peek",
        "info",
        "dump",
        "verify",
        "bench",
        "completions",
        "man",
        "demo",
    ] {
        mmring()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("Example")
                    .and(predicate::str::contains(format!("mmring {command}"))),
            );
    }
    mmring().arg("--help").assert().success().stdout(
        predicate::str::contains("Exit status:")
            .and(predicate::str::contains("demo-worker").not())
            .and(predicate::str::contains("bench-worker").not()),
    );
}

#[test]
fn readme_shows_examples_readme_rs_and_it_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/readme.rs")).unwrap();
    let code: String = example
        .lines()
        .skip_while(|line| line.starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect();
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```rust block");
    assert_eq!(
        block, code,
        "README.md's example differs from examples/readme.rs"
    );
    readme_example::main().unwrap();
}

#[test]
fn info_lists_subscribers_with_their_cursors() {
    let (_dir, path) = scratch();
    create(&path, &[]);
    let ring = mmring::Ring::open(&path).unwrap();
    let ids: Vec<u64> = (0..3).map(|n| ring.push(&[n; 10]).unwrap()).collect();
    let mut audit = ring.subscribe("audit").unwrap();
    assert_eq!(audit.next().unwrap().unwrap().id(), ids[0]);
    audit.commit().unwrap();
    assert_eq!(audit.next().unwrap().unwrap().id(), ids[1]);

    let info = stdout_of(mmring().arg("info").arg(&path).assert().success());
    assert!(
        table_row(&info, "subscribers").starts_with(&format!(
            "audit: next {}, committed {}, missed 0, active ",
            ids[2], ids[1]
        )),
        "{info}"
    );
    let json = stdout_of(
        mmring()
            .args(["info", "--json"])
            .arg(&path)
            .assert()
            .success(),
    );
    assert!(
        json.contains(&format!(
            "\"subscribers\":[{{\"name\":\"audit\",\"position\":{},\"committed\":{},\"missed\":0,",
            ids[2], ids[1]
        )),
        "{json}"
    );
}
