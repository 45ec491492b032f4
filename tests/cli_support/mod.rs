//! Helpers shared by the tests that drive the `mmring` binary: the command, a scratch
//! path, creating a ring through the CLI, and reading a command's output.

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::borrow::Borrow;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use assert_cmd::assert::Assert;

/// The `mmring` binary under test, with backtraces off so that a panic would show as
/// the one-line failure the CLI promises, not be hidden by the environment.
pub fn mmring() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmring"));
    command.env_remove("RUST_BACKTRACE");
    command
}

/// A temporary directory and a ring path inside it (not yet created).
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.ring");
    (dir, path)
}

/// `mmring create PATH --size 64KiB EXTRA...`, which must succeed silently.
pub fn create(path: &Path, extra: &[&str]) {
    mmring()
        .arg("create")
        .arg(path)
        .args(["--size", "64KiB"])
        .args(extra)
        .assert()
        .success()
        .stdout("")
        .stderr("");
}

/// The bytes a finished command wrote to stdout.
pub fn stdout_bytes(assert: impl Borrow<Assert>) -> Vec<u8> {
    assert.borrow().get_output().stdout.clone()
}

/// What a finished command wrote to stdout, as UTF-8.
pub fn stdout_of(assert: impl Borrow<Assert>) -> String {
    String::from_utf8(stdout_bytes(assert)).unwrap()
}
