//! `mmring tail`, end to end through the real binary. Proves that:
//! - `tail PATH` prints the live entries without removing them and exits 0;
//! - `tail -f PATH` keeps running, prints entries pushed afterwards as they come, and
//!   while idle sleeps (a second of waiting costs it at most a couple of scheduler
//!   ticks of CPU time) until it is killed;
//! - `tail --subscriber NAME` commits what it printed: a second run prints only the
//!   entries pushed since, and the subscriber is listed by the library;
//! - `create --on-full block` makes a block-mode ring, which `info` reports.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use mmring::{Options, Ring};

/// Kills the child on drop, so a failing test leaves no `tail -f` behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time of process `pid` in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesized command name; utime and stime are fields 14, 15.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn tail_prints_live_entries_without_removing_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    ring.push(b"first").unwrap();
    ring.push(b"second").unwrap();
    let output = Command::cargo_bin("mmring")
        .unwrap()
        .arg("tail")
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "first\nsecond\n");
    assert_eq!(ring.len(), 2, "tail removes nothing");
}

#[test]
fn tail_follow_prints_new_entries_and_sleeps_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    ring.push(b"before").unwrap();
    let mut child = Running(
        Command::cargo_bin("mmring")
            .unwrap()
            .args(["tail", "-f"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let line = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no line {what:?} from tail -f: {e}"))
    };
    assert_eq!(line("before"), "before");
    // Idle: asleep on the futex.
    let idle_start = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let idle_ticks = cpu_ticks(pid) - idle_start;
    eprintln!(
        "tail -f used {idle_ticks} ticks of CPU in {:?} idle",
        started.elapsed()
    );
    assert!(
        idle_ticks <= 2,
        "tail -f used {idle_ticks} ticks while idle"
    );
    for text in ["one", "two", "three"] {
        ring.push(text.as_bytes()).unwrap();
        assert_eq!(line(text), text);
    }
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "tail -f keeps running"
    );
    assert_eq!(ring.len(), 4, "tail -f removes nothing");
}

#[test]
fn tail_with_a_subscriber_resumes_after_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let ring = Options::new().create(&path).unwrap();
    ring.push(b"a").unwrap();
    ring.push(b"b").unwrap();
    let tail = || {
        let output = Command::cargo_bin("mmring")
            .unwrap()
            .args(["tail", "--subscriber", "audit"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(tail(), "a\nb\n");
    ring.push(b"c").unwrap();
    assert_eq!(tail(), "c\n");
    assert_eq!(tail(), "");
    let ring = Ring::open(&path).unwrap();
    let listed = ring.subscribers();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "audit");
    assert_eq!(listed[0].committed, ring.stats().write_pos);
}

#[test]
fn create_on_full_block_makes_a_block_mode_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let status = Command::cargo_bin("mmring")
        .unwrap()
        .args(["create", "--size", "64KiB", "--on-full", "block"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(Ring::open(&path).unwrap().on_full(), mmring::OnFull::Block);
    let info = Command::cargo_bin("mmring")
        .unwrap()
        .args(["info", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(info.status.success());
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"on_full\":\"block\""));
}
