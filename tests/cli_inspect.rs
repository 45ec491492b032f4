//! End-to-end tests of `mmring verify` and `mmring dump`, driving the real binary on
//! rings damaged at the offsets docs/FORMAT.md specifies.
//!
//! Proves that verify exits 0 on a clean ring, 1 with each problem listed on stdout at
//! its exact file offset and field, and 2 for files that are not rings or can't be
//! read; that `verify --repair` drops exactly the damaged entry, after which the ring
//! verifies clean, pops every other entry in order and accepts pushes; that a damaged
//! header is reported at its checksum and left alone; and that dump names every header
//! and record field beside its bytes, honours --offset and -n, and still dumps a file
//! that is not a valid ring; and that verify's status does not depend on whether its
//! stdout was read to the end.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use predicates::prelude::*;

mod cli_support;
use cli_support::*;

/// A 64 KiB reject-mode ring holding `entries`; returns their IDs.
fn ring_with(path: &Path, entries: &[&str]) -> Vec<u64> {
    mmring()
        .arg("create")
        .arg(path)
        .args(["--size", "64KiB", "--on-full", "reject"])
        .assert()
        .success();
    let ids = stdout_of(
        mmring()
            .args(["push", "-v"])
            .arg(path)
            .args(entries)
            .assert()
            .success(),
    );
    ids.lines().map(|id| id.parse().unwrap()).collect()
}

fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stderr.clone()).unwrap()
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// File offset of the record with ID `id` in a 64 KiB ring.
fn record_offset(id: u64) -> u64 {
    4096 + id % (65536 - 4096)
}

/// The key the ring's stamps are XORed with (FORMAT.md, "File header: stamp key").
fn stamp_key(path: &Path) -> u64 {
    mmring::layout::stamp_key(&std::fs::read(path).unwrap())
        .expect("the first 76 bytes of a ring file")
}

/// `bytes` as dump shows them: two hex digits each, separated by spaces.
fn hex(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(" ")
}

/// `bytes` as dump's text column shows them: printable ASCII, else `.`.
fn ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

/// Asserts exactly one stderr line, `mmring: <path>: ...` containing `needle`.
fn assert_one_line(stderr: &str, path: &Path, needle: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(&format!("mmring: {}: ", path.display())),
        "{stderr:?}"
    );
    assert!(stderr.contains(needle), "{needle:?} in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn verify_exits_0_on_a_clean_ring() {
    let (_dir, path) = scratch();
    ring_with(&path, &["a", "bb", "ccc"]);
    mmring()
        .arg("verify")
        .arg(&path)
        .assert()
        .success()
        .stderr("")
        .stdout(
            "clean: 3 intact entries (0 expired, 6 payload bytes) between positions 0 and 192\n",
        );
}

#[test]
fn verify_lists_a_damaged_payload_at_its_offset_and_exits_1() {
    let (_dir, path) = scratch();
    let ids = ring_with(&path, &["first", "second", "third"]);
    let data_offset = record_offset(ids[1]) + 56;
    patch(&path, data_offset, b"S");
    let assert = mmring().arg("verify").arg(&path).assert().code(1);
    let stdout = stdout_of(&assert);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "problem at offset {data_offset} (data): record at position {}: payload checksum",
            ids[1]
        )),
        "{stdout}"
    );
    assert!(
        lines[0].ends_with(&format!("--repair drops positions {}..{}", ids[1], ids[2])),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("1 problem(s): 2 intact entries"),
        "{stdout}"
    );
    assert_one_line(&stderr_of(&assert), &path, "1 problem(s) found");
}

#[test]
fn verify_repair_drops_only_the_damaged_entry_and_the_ring_works_again() {
    let (_dir, path) = scratch();
    let ids = ring_with(&path, &["one", "two", "three", "four"]);
    // Damage the record header of "two" (its TTL, covered by meta_crc).
    let rec = record_offset(ids[1]);
    patch(&path, rec + 32, &[0x55]);
    mmring()
        .args(["verify", "--repair"])
        .arg(&path)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "problem at offset {} (meta_crc): record at position {}",
            rec + 16,
            ids[1]
        )))
        .stdout(predicate::str::contains(format!(
            "dropped positions {}..{}",
            ids[1], ids[2]
        )))
        .stderr(predicate::str::contains("found and repaired"));
    mmring().arg("verify").arg(&path).assert().success();
    mmring()
        .arg("peek")
        .arg(&path)
        .assert()
        .success()
        .stdout("one\nthree\nfour\n");
    mmring()
        .args(["push"])
        .arg(&path)
        .arg("five")
        .assert()
        .success();
    mmring()
        .args(["pop", "--all"])
        .arg(&path)
        .assert()
        .success()
        .stdout("one\nthree\nfour\nfive\n");
    mmring()
        .args(["info", "--json"])
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"corrupt\":1,"));
}

#[test]
fn verify_reports_a_damaged_header_at_its_checksum_and_repair_leaves_it() {
    let (_dir, path) = scratch();
    ring_with(&path, &["x"]);
    patch(&path, 40, &[0x01]); // abandon_ms
    let before = std::fs::read(&path).unwrap();
    for args in [&["verify"][..], &["verify", "--repair"]] {
        mmring()
            .args(args)
            .arg(&path)
            .assert()
            .code(1)
            .stdout(predicate::str::starts_with(
                "problem at offset 60 (header_crc): header checksum is",
            ))
            .stdout(predicate::str::contains("records not checked"))
            // Regression: the advice was to run `verify --repair`, which was just run
            // and does not repair a header.
            .stderr(predicate::str::contains("the header is damaged"))
            .stderr(predicate::str::contains("makes the ring usable").not());
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn verify_exits_2_for_what_is_not_a_ring() {
    let (dir, path) = scratch();
    let assert = mmring()
        .arg("verify")
        .arg(&path)
        .assert()
        .code(2)
        .stdout("");
    assert_one_line(&stderr_of(&assert), &path, "No such file or directory");
    std::fs::write(&path, "text, not a ring\n".repeat(500)).unwrap();
    let assert = mmring()
        .arg("verify")
        .arg(&path)
        .assert()
        .code(2)
        .stdout("");
    assert_one_line(&stderr_of(&assert), &path, "not an mmring ring file");
    let assert = mmring().arg("verify").arg(dir.path()).assert().code(2);
    assert_one_line(&stderr_of(&assert), dir.path(), "not a regular file");
}

#[test]
fn dump_names_each_header_field_beside_its_bytes() {
    let (_dir, path) = scratch();
    ring_with(&path, &["hello"]);
    let dump = stdout_of(
        mmring()
            .arg("dump")
            .arg(&path)
            .assert()
            .success()
            .stderr(""),
    );
    for line in [
        "00000000  89 4d 4d 52 49 4e 47 0a  magic = \"\\x89MMRING\\n\"\n",
        "00000008  01 00 00 00              version = 1\n",
        "00000010  00 00 01 00 00 00 00 00  file_len = 65536\n",
        "00000024  01 00 00 00              on_full = 1 (reject)\n",
        "0000002c  03 00 00 00              flags = 3\n",
        "00000080  40 00 00 00 00 00 00 00  write_pos = 64\n",
        "00000088  01 00 00 00 00 00 00 00  pushed = 1\n",
        "00000100  00 00 00 00 00 00 00 00  read_pos = 0\n",
        "00000210  00 00 00 00 00 00 00 00  abandoned = 0\n",
    ] {
        assert!(dump.contains(line), "{line:?} in\n{dump}");
    }
    // The stamp key is random: its rows are built from the key in the file.
    let key = stamp_key(&path).to_le_bytes();
    let key_crc = crc32c::crc32c(&key);
    for line in [
        format!(
            "00000040  {}  stamp_key = {:#018x}\n",
            hex(&key),
            u64::from_le_bytes(key)
        ),
        format!(
            "00000048  {}              stamp_key_crc = {key_crc:#010x}\n",
            hex(&key_crc.to_le_bytes())
        ),
    ] {
        assert!(dump.contains(&line), "{line:?} in\n{dump}");
    }
    assert!(
        !dump.contains(" stamp = ") && !dump.contains("===="),
        "no records without --records"
    );
}

#[test]
fn dump_records_shows_every_record_field_and_the_payload() {
    let (_dir, path) = scratch();
    ring_with(&path, &["hello", "world!"]);
    let dump = stdout_of(
        mmring()
            .args(["dump", "--records"])
            .arg(&path)
            .assert()
            .success(),
    );
    // Stamps are XORed with the file's random key; dump shows the stored word and
    // the state it decodes to.
    let key = stamp_key(&path);
    assert_ne!(key, 0, "new files have a stamp key");
    let stamp_line = |at: u64, stamp: u64| {
        let stamp = stamp ^ key;
        format!(
            "{at:08x}  {}  stamp = {stamp:#x}: committed\n",
            hex(&stamp.to_le_bytes())
        )
    };
    for line in [
        "==== position 0 (file offset 4096, 64 bytes): entry, 5 bytes\n",
        &stamp_line(0x1000, 2),
        "0000101c  05 00 00 00              data_len = 5\n",
        "00001024  00 00 00 00 00 00 00 00  id = 0\n",
        "00001038  68 65 6c 6c 6f                                   |hello|\n",
        "==== position 64 (file offset 4160, 64 bytes): entry, 6 bytes\n",
        &stamp_line(0x1040, 64 | 2),
        "00001064  40 00 00 00 00 00 00 00  id = 64\n",
    ] {
        assert!(dump.contains(line), "{line:?} in\n{dump}");
    }
    for field in [
        "claim = claims 5 bytes, writer pid ",
        "meta_crc = 0x",
        "version = 1",
        "ttl_secs = 0",
        "data_crc = 0x",
        "write_time_ms = ",
    ] {
        assert!(dump.contains(field), "{field:?} in\n{dump}");
    }
}

#[test]
fn dump_offset_and_length_select_a_window() {
    let (_dir, path) = scratch();
    ring_with(&path, &["a", "b"]);
    mmring()
        .args(["dump", "--offset", "128", "-n", "16"])
        .arg(&path)
        .assert()
        .success()
        .stdout(
            "00000080  80 00 00 00 00 00 00 00  write_pos = 128\n\
             00000088  02 00 00 00 00 00 00 00  pushed = 2\n",
        );
    // Plain rows where no field is annotated: the payload of entry 0, the 0xFF bytes
    // after it, then the stamp of entry 1 (64 | COMMITTED, XORed with the file's key).
    let stamp = ((64 | 2) ^ stamp_key(&path)).to_le_bytes();
    mmring()
        .args(["dump", "--offset", "4152", "-n", "16"])
        .arg(&path)
        .assert()
        .success()
        .stdout(format!(
            "00001038  61 ff ff ff ff ff ff ff {}  |a.......{}|\n",
            hex(&stamp),
            ascii(&stamp)
        ));
}

#[test]
fn dump_shows_a_file_that_is_not_a_ring() {
    let (_dir, path) = scratch();
    std::fs::write(&path, b"hello, this is not a ring").unwrap();
    mmring()
        .arg("dump")
        .arg(&path)
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "00000000  68 65 6c 6c 6f 2c 20 74  magic = \"hello, t\"\n",
        ))
        .stdout(predicate::str::contains(
            "region_len = (past the end of the file)",
        ));
    let assert = mmring()
        .args(["dump", "--records"])
        .arg(&path)
        .assert()
        .success();
    assert_one_line(&stderr_of(&assert), &path, "records not shown");
    let missing = path.with_extension("missing");
    let assert = mmring().arg("dump").arg(&missing).assert().code(3);
    assert_one_line(&stderr_of(&assert), &missing, "No such file or directory");
}

/// Regression: verify's listing written into a pipe whose reader left (`mmring verify
/// ring | head -1`) ended the command with status 0, as for any closed stdout, although
/// the ring had problems: the status, verify's verdict, now stays 1.
#[test]
fn verify_keeps_its_status_when_its_stdout_is_closed() {
    let (_dir, path) = scratch();
    let entries: Vec<String> = (0..900).map(|n| format!("e{n:05}")).collect();
    let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
    let ids = ring_with(&path, &entries);
    // Damage every payload: a listing far larger than a pipe holds.
    let mut bytes = std::fs::read(&path).unwrap();
    for id in ids {
        bytes[4096 + id as usize + 56] ^= 1;
    }
    std::fs::write(&path, bytes).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mmring"))
        .arg("verify")
        .arg(&path)
        .env_remove("RUST_BACKTRACE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("900 problem(s) found"), "{stderr}");
}
