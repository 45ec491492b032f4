//! The cross-process contenders: this same binary re-executed as the other process
//! (`compare --child ROLE ...`), talking to the parent over a ring file, a Unix domain
//! socket, a pipe, or one shared atomic word.
//!
//! The child says `ready` on its stdout once set up; the parent starts the clock, and
//! stops it when the child says `done` (streams) or after the last round trip.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use mmring::{Batch, Ring};

use crate::contenders::{
    BATCH, RING_SIZE, fresh_ring, pop_batch_waiting, pop_waiting, push_numbered_batches,
    push_waiting,
};
use crate::{Backoff, Config, Sample, Timer};

/// Payload of the cross-process scenarios.
const MSG: usize = 64;

fn spawn(args: &[&str], stdin: Stdio) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--child")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child process");
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    (child, out)
}

fn expect_line(out: &mut BufReader<ChildStdout>, want: &str) {
    let mut line = String::new();
    out.read_line(&mut line).expect("read the child's stdout");
    assert_eq!(line.trim(), want, "child process said {line:?}");
}

fn finish(mut child: Child) {
    let status = child.wait().expect("wait for the child");
    assert!(status.success(), "child process failed: {status}");
}

fn say(what: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{what}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

fn n_arg(s: &str) -> usize {
    s.parse().expect("a count")
}

/// Entry point of the child process: `ROLE ARGS...`.
pub fn child_main(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["mmring-sink", path, n] => {
            let ring = Ring::open(path).expect("open the ring");
            let mut buf = Vec::with_capacity(MSG);
            say("ready");
            for i in 0..n_arg(n) as u64 {
                pop_waiting(&ring, &mut buf);
                assert_eq!(buf[..8], i.to_le_bytes());
            }
            say("done");
        }
        ["mmring-batch-sink", path, n] => {
            let ring = Ring::open(path).expect("open the ring");
            let mut batch = Batch::with_capacity(BATCH, BATCH * MSG);
            say("ready");
            let mut next = 0;
            while next < n_arg(n) as u64 {
                pop_batch_waiting(&ring, &mut batch, BATCH);
                for (_, data) in &batch {
                    assert_eq!(data[..8], next.to_le_bytes());
                    next += 1;
                }
            }
            say("done");
        }
        ["socket-sink", path, n] => {
            let mut stream = UnixStream::connect(path).expect("connect");
            say("ready");
            sink(&mut stream, n_arg(n));
            say("done");
        }
        ["pipe-sink", n] => {
            say("ready");
            sink(&mut std::io::stdin().lock(), n_arg(n));
            say("done");
        }
        ["mmring-pong", ping, pong, n] => {
            let ping = Ring::open(ping).expect("open the ping ring");
            let pong = Ring::open(pong).expect("open the pong ring");
            let mut buf = Vec::with_capacity(MSG);
            say("ready");
            for _ in 0..n_arg(n) {
                pop_waiting(&ping, &mut buf);
                push_waiting(&pong, &buf);
            }
        }
        ["mmring-pong-blocking", ping, pong, n] => {
            let ping = Ring::open(ping).expect("open the ping ring");
            let pong = Ring::open(pong).expect("open the pong ring");
            say("ready");
            for _ in 0..n_arg(n) {
                let entry = ping.pop_blocking().expect("pop_blocking");
                push_waiting(&pong, entry.data());
            }
        }
        ["atomic-pong", path, n] => {
            let map = SharedWord::open(Path::new(path));
            say("ready");
            let word = map.word();
            for i in 0..n_arg(n) as u64 {
                spin_until(word, 2 * i + 1);
                word.store(2 * i + 2, Ordering::Release);
            }
        }
        ["socket-pong", path, n] => {
            let mut stream = UnixStream::connect(path).expect("connect");
            say("ready");
            let mut msg = [0u8; MSG];
            for _ in 0..n_arg(n) {
                stream.read_exact(&mut msg).expect("read");
                stream.write_all(&msg).expect("write");
            }
        }
        _ => panic!("unknown child role {args:?}"),
    }
}

fn sink(from: &mut impl Read, n: usize) {
    let mut msg = [0u8; MSG];
    for i in 0..n as u64 {
        from.read_exact(&mut msg).expect("read a message");
        assert_eq!(msg[..8], i.to_le_bytes());
    }
}

fn message(i: u64) -> [u8; MSG] {
    let mut msg = [0u8; MSG];
    msg[..8].copy_from_slice(&i.to_le_bytes());
    msg
}

/// The parent pushes `n` entries into a ring another process pops.
pub fn stream_mmring(config: &Config, n: usize) -> Sample {
    let ring = fresh_ring(config, "stream.ring", RING_SIZE);
    let path = ring.path().to_str().expect("UTF-8 path").to_string();
    let (child, mut out) = spawn(&["mmring-sink", &path, &n.to_string()], Stdio::null());
    expect_line(&mut out, "ready");
    let timer = Timer::start();
    for i in 0..n as u64 {
        push_waiting(&ring, &message(i));
    }
    expect_line(&mut out, "done");
    let sample = timer.wall_per_entry(n);
    finish(child);
    sample
}

/// `stream_mmring` with `push_batch` and `pop_batch` of up to `BATCH` entries.
pub fn stream_mmring_batch(config: &Config, n: usize) -> Sample {
    let ring = fresh_ring(config, "stream.ring", RING_SIZE);
    let path = ring.path().to_str().expect("UTF-8 path").to_string();
    let (child, mut out) = spawn(&["mmring-batch-sink", &path, &n.to_string()], Stdio::null());
    expect_line(&mut out, "ready");
    let timer = Timer::start();
    push_numbered_batches(&ring, &mut [[0u8; MSG]; BATCH], n as u64, 0);
    expect_line(&mut out, "done");
    let sample = timer.wall_per_entry(n);
    finish(child);
    sample
}

/// One `write` per 64-byte message over a stream socket; the reader reads each.
pub fn stream_socket(config: &Config, n: usize) -> Sample {
    let path = config.dir.join("stream.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let p = path.to_str().expect("UTF-8 path");
    let (child, mut out) = spawn(&["socket-sink", p, &n.to_string()], Stdio::null());
    let (mut stream, _) = listener.accept().expect("accept");
    expect_line(&mut out, "ready");
    let timer = Timer::start();
    for i in 0..n as u64 {
        stream.write_all(&message(i)).expect("write");
    }
    expect_line(&mut out, "done");
    let sample = timer.wall_per_entry(n);
    finish(child);
    sample
}

/// One `write` per 64-byte message into the child's stdin pipe.
pub fn stream_pipe(_config: &Config, n: usize) -> Sample {
    let (mut child, mut out) = spawn(&["pipe-sink", &n.to_string()], Stdio::piped());
    let mut stdin = child.stdin.take().expect("piped stdin");
    expect_line(&mut out, "ready");
    let timer = Timer::start();
    for i in 0..n as u64 {
        stdin.write_all(&message(i)).expect("write");
    }
    expect_line(&mut out, "done");
    let sample = timer.wall_per_entry(n);
    drop(stdin);
    finish(child);
    sample
}

/// Round trips: the parent records each; the first tenth is warm-up.
fn round_trips(n: usize, mut one: impl FnMut(u64)) -> Sample {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let warmup = n / 10;
    for i in 0..n as u64 {
        let started = Instant::now();
        one(i);
        if i as usize >= warmup {
            hist.saturating_record(started.elapsed().as_nanos() as u64);
        }
    }
    Sample::RoundTrip {
        p50: hist.value_at_quantile(0.50) as f64,
        p99: hist.value_at_quantile(0.99) as f64,
    }
}

/// Round trips through two rings; both sides poll (`pop_into` with backoff), or, with
/// `blocking`, sleep on the ring's futex in `pop_blocking` (spinning briefly first).
pub fn ping_pong_mmring(config: &Config, n: usize, blocking: bool) -> Sample {
    let ping = fresh_ring(config, "ping.ring", RING_SIZE);
    let pong = fresh_ring(config, "pong.ring", RING_SIZE);
    let paths = [ping.path(), pong.path()].map(|p| p.to_str().expect("UTF-8").to_string());
    let role = if blocking {
        "mmring-pong-blocking"
    } else {
        "mmring-pong"
    };
    let (child, mut out) = spawn(&[role, &paths[0], &paths[1], &n.to_string()], Stdio::null());
    expect_line(&mut out, "ready");
    let mut buf = Vec::with_capacity(MSG);
    let sample = round_trips(n, |i| {
        push_waiting(&ping, &message(i));
        if blocking {
            let entry = pong.pop_blocking().expect("pop_blocking");
            assert_eq!(entry.data()[..8], i.to_le_bytes());
        } else {
            pop_waiting(&pong, &mut buf);
            assert_eq!(buf[..8], i.to_le_bytes());
        }
    });
    finish(child);
    sample
}

/// The floor: no payload, one shared word, both sides spinning on it.
pub fn ping_pong_atomic(config: &Config, n: usize) -> Sample {
    let path = config.dir.join("word");
    let map = SharedWord::create(&path);
    let p = path.to_str().expect("UTF-8 path");
    let (child, mut out) = spawn(&["atomic-pong", p, &n.to_string()], Stdio::null());
    expect_line(&mut out, "ready");
    let word = map.word();
    let sample = round_trips(n, |i| {
        word.store(2 * i + 1, Ordering::Release);
        spin_until(word, 2 * i + 2);
    });
    finish(child);
    sample
}

pub fn ping_pong_socket(config: &Config, n: usize) -> Sample {
    let path = config.dir.join("pingpong.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let p = path.to_str().expect("UTF-8 path");
    let (child, mut out) = spawn(&["socket-pong", p, &n.to_string()], Stdio::null());
    let (mut stream, _) = listener.accept().expect("accept");
    expect_line(&mut out, "ready");
    let mut back = [0u8; MSG];
    let sample = round_trips(n, |i| {
        stream.write_all(&message(i)).expect("write");
        stream.read_exact(&mut back).expect("read");
    });
    finish(child);
    sample
}

fn spin_until(word: &AtomicU64, value: u64) {
    let mut backoff = Backoff::new();
    while word.load(Ordering::Acquire) != value {
        backoff.wait();
    }
}

/// One atomic word in a small file mapped by both processes.
struct SharedWord {
    map: memmap2::MmapRaw,
}

impl SharedWord {
    fn create(path: &Path) -> SharedWord {
        std::fs::write(path, [0u8; 4096]).expect("create the shared file");
        SharedWord::open(path)
    }

    fn open(path: &Path) -> SharedWord {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the shared file");
        SharedWord {
            map: memmap2::MmapRaw::map_raw(&file).expect("map the shared file"),
        }
    }

    fn word(&self) -> &AtomicU64 {
        assert!(self.map.len() >= 8);
        // SAFETY: the mapping is page-aligned and at least 8 bytes long (checked
        // above), lives as long as &self, and is only ever accessed through this
        // atomic, by this process and the other one.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>()) }
    }
}
