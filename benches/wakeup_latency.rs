//! Wake-up latency across processes: the time from a push in one process to the
//! return of `pop_blocking` in another process that was asleep on the ring's futex.
//!
//! The benchmark runs itself again as the consumer process. For each sample the
//! producer waits until the consumer is registered as a waiter (the waiter count at
//! header offset 388, read through the file) and a little longer, so that it is
//! asleep in the kernel, then pushes an entry carrying the push time
//! (`CLOCK_MONOTONIC`, shared by all processes). The consumer records
//! `return time - push time` in an HDR histogram and prints p50, p99, p99.9 and the
//! maximum.
//!
//! `cargo bench --bench wakeup_latency` takes 2000 samples (a few seconds);
//! `-- --quick` takes 200, for a smoke run; `-- --samples N` sets the number.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mmring::{Options, Ring};

/// Environment variable that makes this binary the consumer, with the ring's path.
const CONSUMER_VAR: &str = "MMRING_BENCH_CONSUMER";
/// Environment variable with the number of samples, for the consumer.
const SAMPLES_VAR: &str = "MMRING_BENCH_SAMPLES";
/// File offset of the waiter count (docs/FORMAT.md).
const WAITERS_OFFSET: u64 = 388;
/// Longest the whole run may take.
const LIMIT: Duration = Duration::from_secs(120);

fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

fn waiters(path: &Path) -> u32 {
    let file = std::fs::File::open(path).expect("open the ring file");
    let mut word = [0u8; 4];
    file.read_exact_at(&mut word, WAITERS_OFFSET)
        .expect("read the waiter count");
    u32::from_le_bytes(word)
}

fn consumer(path: &str, samples: u64) {
    let ring = Ring::open(path).expect("consumer opens the ring");
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..samples {
        let entry = ring.pop_blocking().expect("pop_blocking");
        let now = mono_ns();
        let pushed_at = u64::from_le_bytes(entry.data()[..8].try_into().expect("a timestamp"));
        latencies
            .record(now.saturating_sub(pushed_at).max(1))
            .expect("record");
    }
    let at = |q: f64| Duration::from_nanos(latencies.value_at_quantile(q));
    println!(
        "wake-up latency, push to pop_blocking return across processes, {} samples: \
         p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        latencies.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        Duration::from_nanos(latencies.max())
    );
}

fn main() {
    if let Ok(path) = std::env::var(CONSUMER_VAR) {
        let samples = std::env::var(SAMPLES_VAR)
            .ok()
            .and_then(|n| n.parse().ok())
            .expect("sample count");
        consumer(&path, samples);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let mut samples: u64 = 2000;
    if args.iter().any(|arg| arg == "--quick") {
        samples = 200;
    }
    if let Some(i) = args.iter().position(|arg| arg == "--samples") {
        samples = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--samples N");
    }
    let dir = std::env::temp_dir().join(format!("mmring-wakeup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("bench.ring");
    let ring = Options::new()
        .size(1 << 20)
        .create(&path)
        .expect("create ring");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env(CONSUMER_VAR, &path)
        .env(SAMPLES_VAR, samples.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the consumer process");
    let started = Instant::now();
    for sample in 0..samples {
        while waiters(&path) == 0 {
            assert!(started.elapsed() < LIMIT, "the consumer stopped waiting");
            std::thread::sleep(Duration::from_micros(200));
        }
        // Registered; give it time to enter the kernel.
        std::thread::sleep(Duration::from_micros(500));
        ring.push(&mono_ns().to_le_bytes()).expect("push");
        while ring.stats().popped <= sample {
            assert!(started.elapsed() < LIMIT, "the consumer stopped popping");
            std::thread::yield_now();
        }
    }
    let status = child.wait().expect("wait for the consumer");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "the consumer failed: {status}");
}
