//! The in-process contenders, and the list of scenarios.
//!
//! Every contender moves the same entries: fixed-size payloads whose first 8 bytes
//! are a sequence number, which the consumer checks (so nothing is optimized away and
//! order is verified). Peers carry `[u8; N]` arrays by value, so no allocation is
//! timed; mmring copies into its mapped file, checksums, and copies out into a reused
//! buffer. Queues hold the same number of entries as the ring does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use crossbeam_queue::ArrayQueue;
use mmring::{Batch, OnFull, Options, Ring};

use crate::{Backoff, Config, Contender, Sample, Scenario, Timer, procs};

/// Ring file size of the throughput scenarios (header included).
pub const RING_SIZE: u64 = (1 << 20) + 4096;
/// Ring file size for 64 KiB entries: 64 of them.
pub const BIG_RING_SIZE: u64 = (4 << 20) + 4096;

pub fn scenarios() -> Vec<Scenario> {
    vec![
        spsc_scenario::<64>("SPSC 64 B", 2_000_000),
        spsc_scenario::<1024>("SPSC 1 KiB", 500_000),
        Scenario {
            name: "MPMC 2P/2C 64 B",
            entry_len: 64,
            contenders: vec![
                Contender {
                    name: "mmring",
                    run: Box::new(|c| mpmc_mmring::<64>(c, c.count(1_000_000), 1)),
                },
                Contender {
                    name: "mmring, batches of 32",
                    run: Box::new(|c| mpmc_mmring::<64>(c, c.count(1_000_000), BATCH)),
                },
                Contender {
                    name: "crossbeam ArrayQueue",
                    run: Box::new(|c| mpmc_array_queue::<64>(c.count(1_000_000))),
                },
            ],
        },
        Scenario {
            name: "cross-process SPSC 64 B",
            entry_len: 64,
            contenders: vec![
                Contender {
                    name: "mmring",
                    run: Box::new(|c| procs::stream_mmring(c, c.count(1_000_000))),
                },
                Contender {
                    name: "mmring, batches of 32",
                    run: Box::new(|c| procs::stream_mmring_batch(c, c.count(1_000_000))),
                },
                Contender {
                    name: "Unix domain socket",
                    run: Box::new(|c| procs::stream_socket(c, c.count(200_000))),
                },
                Contender {
                    name: "pipe",
                    run: Box::new(|c| procs::stream_pipe(c, c.count(200_000))),
                },
            ],
        },
        Scenario {
            name: "SPSC 64 KiB",
            entry_len: 65536,
            contenders: vec![
                Contender {
                    name: "mmring",
                    run: Box::new(|c| spsc_mmring::<65536>(c, c.count(40_000), BIG_RING_SIZE)),
                },
                Contender {
                    name: "mmring, batches of 4",
                    run: Box::new(|c| {
                        spsc_mmring_batch::<65536>(c, c.count(40_000), BIG_RING_SIZE, 4)
                    }),
                },
                Contender {
                    name: "memcpy (one thread)",
                    run: Box::new(|c| memcpy::<65536>(c.count(40_000))),
                },
                Contender {
                    name: "memcpy hand-off (two threads)",
                    run: Box::new(|c| memcpy_hand_off::<65536>(c.count(40_000), BIG_RING_SIZE)),
                },
                Contender {
                    name: "word-wise atomic copy (one thread)",
                    run: Box::new(|c| atomic_copy::<65536>(c.count(40_000))),
                },
                Contender {
                    name: "CRC32C, crc32c crate (one thread)",
                    run: Box::new(|c| checksum::<65536>(c.count(40_000))),
                },
            ],
        },
        Scenario {
            name: "ping-pong 64 B, 2 processes",
            entry_len: 64,
            contenders: vec![
                Contender {
                    name: "mmring (blocking wait)",
                    run: Box::new(|c| procs::ping_pong_mmring(c, c.count(200_000), true)),
                },
                Contender {
                    name: "mmring (polling)",
                    run: Box::new(|c| procs::ping_pong_mmring(c, c.count(200_000), false)),
                },
                Contender {
                    name: "spin on shared atomic",
                    run: Box::new(|c| procs::ping_pong_atomic(c, c.count(200_000))),
                },
                Contender {
                    name: "Unix domain socket",
                    run: Box::new(|c| procs::ping_pong_socket(c, c.count(50_000))),
                },
            ],
        },
    ]
}

fn spsc_scenario<const N: usize>(name: &'static str, full: usize) -> Scenario {
    Scenario {
        name,
        entry_len: N,
        contenders: vec![
            Contender {
                name: "mmring",
                run: Box::new(move |c| spsc_mmring::<N>(c, c.count(full), RING_SIZE)),
            },
            Contender {
                name: "mmring, batches of 32",
                run: Box::new(move |c| spsc_mmring_batch::<N>(c, c.count(full), RING_SIZE, BATCH)),
            },
            Contender {
                name: "crossbeam ArrayQueue",
                run: Box::new(move |c| spsc_array_queue::<N>(c.count(full))),
            },
            Contender {
                name: "rtrb",
                run: Box::new(move |c| spsc_rtrb::<N>(c.count(full))),
            },
            Contender {
                name: "std sync_channel",
                run: Box::new(move |c| spsc_sync_channel::<N>(c.count(full))),
            },
        ],
    }
}

/// Entries of `n` bytes a ring of `file_size` holds: the peers get the same capacity.
pub fn capacity(file_size: u64, n: usize) -> usize {
    ((file_size - 4096) / Ring::entry_footprint(n)) as usize
}

/// A fresh reject-mode ring in the scenario directory.
pub fn fresh_ring(config: &Config, name: &str, size: u64) -> Ring {
    let path = config.dir.join(name);
    let _ = std::fs::remove_file(&path);
    Options::new()
        .size(size)
        .on_full(OnFull::Reject)
        .create(&path)
        .expect("create the benchmark ring")
}

fn entry<const N: usize>(seq: u64) -> [u8; N] {
    let mut e = [0u8; N];
    e[..8].copy_from_slice(&seq.to_le_bytes());
    e
}

fn seq_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Pushes `data` into a reject-mode ring, waiting while it is full.
pub fn push_waiting(ring: &Ring, data: &[u8]) {
    let mut backoff = Backoff::new();
    loop {
        match ring.push(data) {
            Ok(_) => return,
            Err(mmring::Error::Full) => backoff.wait(),
            Err(e) => panic!("push failed: {e}"),
        }
    }
}

/// Entries per `push_batch` / `pop_batch` in the batch contenders.
pub const BATCH: usize = 32;

/// Pushes all of `entries` into a reject-mode ring with `push_batch`, waiting while
/// it is full.
pub fn push_batch_waiting<T: AsRef<[u8]>>(ring: &Ring, entries: &[T]) {
    let mut backoff = Backoff::new();
    let mut done = 0;
    while done < entries.len() {
        match ring.push_batch(&entries[done..]) {
            Ok(n) => {
                done += n;
                backoff.reset();
            }
            Err(mmring::Error::Full) => backoff.wait(),
            Err(e) => panic!("push failed: {e}"),
        }
    }
}

/// Pushes `n` entries numbered from 0 (the number, or'ed with `tag`, in each entry's
/// first 8 bytes) with `push_batch`, `entries.len()` at a time, waiting while the
/// ring is full.
pub fn push_numbered_batches<T: AsRef<[u8]> + AsMut<[u8]>>(
    ring: &Ring,
    entries: &mut [T],
    n: u64,
    tag: u64,
) {
    let mut i = 0;
    while i < n {
        let k = (entries.len() as u64).min(n - i) as usize;
        for (j, data) in entries[..k].iter_mut().enumerate() {
            data.as_mut()[..8].copy_from_slice(&(tag | (i + j as u64)).to_le_bytes());
        }
        push_batch_waiting(ring, &entries[..k]);
        i += k as u64;
    }
}

/// Pops up to `max` entries into `batch`, waiting while the ring is empty.
pub fn pop_batch_waiting(ring: &Ring, batch: &mut Batch, max: usize) {
    let mut backoff = Backoff::new();
    loop {
        match ring.pop_batch(batch, max) {
            Ok(0) => backoff.wait(),
            Ok(_) => return,
            Err(e) => panic!("pop failed: {e}"),
        }
    }
}

/// Pops the next entry into `buf`, waiting while the ring is empty. This polls; when a
/// blocking pop exists, this is the one place to switch the benchmarks to it.
pub fn pop_waiting(ring: &Ring, buf: &mut Vec<u8>) {
    let mut backoff = Backoff::new();
    loop {
        match ring.pop_into(buf) {
            Ok(Some(_)) => return,
            Ok(None) => backoff.wait(),
            Err(e) => panic!("pop failed: {e}"),
        }
    }
}

pub fn spsc_mmring<const N: usize>(config: &Config, n: usize, size: u64) -> Sample {
    let ring = fresh_ring(config, "spsc.ring", size);
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = Vec::with_capacity(N);
            for i in 0..n as u64 {
                pop_waiting(&ring, &mut buf);
                assert_eq!(seq_of(&buf), i);
            }
        });
        let mut data = vec![0u8; N];
        for i in 0..n as u64 {
            data[..8].copy_from_slice(&i.to_le_bytes());
            push_waiting(&ring, &data);
        }
    });
    timer.per_entry(n)
}

/// `spsc_mmring` with `push_batch` and `pop_batch` of up to `batch` entries.
pub fn spsc_mmring_batch<const N: usize>(
    config: &Config,
    n: usize,
    size: u64,
    batch: usize,
) -> Sample {
    let ring = fresh_ring(config, "spsc.ring", size);
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut got = Batch::with_capacity(batch, batch * N);
            let mut next = 0;
            while next < n as u64 {
                pop_batch_waiting(&ring, &mut got, batch);
                for (_, data) in &got {
                    assert_eq!(seq_of(data), next);
                    next += 1;
                }
            }
        });
        push_numbered_batches(&ring, &mut vec![vec![0u8; N]; batch], n as u64, 0);
    });
    timer.per_entry(n)
}

fn spsc_array_queue<const N: usize>(n: usize) -> Sample {
    let queue = ArrayQueue::<[u8; N]>::new(capacity(RING_SIZE, N));
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut backoff = Backoff::new();
            for i in 0..n as u64 {
                loop {
                    if let Some(e) = queue.pop() {
                        assert_eq!(seq_of(&e), i);
                        break;
                    }
                    backoff.wait();
                }
                backoff.reset();
            }
        });
        let mut backoff = Backoff::new();
        for i in 0..n as u64 {
            let mut e = entry::<N>(i);
            while let Err(back) = queue.push(e) {
                e = back;
                backoff.wait();
            }
            backoff.reset();
        }
    });
    timer.per_entry(n)
}

fn spsc_rtrb<const N: usize>(n: usize) -> Sample {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; N]>::new(capacity(RING_SIZE, N));
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut backoff = Backoff::new();
            for i in 0..n as u64 {
                loop {
                    if let Ok(e) = rx.pop() {
                        assert_eq!(seq_of(&e), i);
                        break;
                    }
                    backoff.wait();
                }
                backoff.reset();
            }
        });
        let mut backoff = Backoff::new();
        for i in 0..n as u64 {
            let mut e = entry::<N>(i);
            while let Err(rtrb::PushError::Full(back)) = tx.push(e) {
                e = back;
                backoff.wait();
            }
            backoff.reset();
        }
    });
    timer.per_entry(n)
}

fn spsc_sync_channel<const N: usize>(n: usize) -> Sample {
    let (tx, rx) = sync_channel::<[u8; N]>(capacity(RING_SIZE, N));
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..n as u64 {
                let e = rx.recv().expect("sender alive");
                assert_eq!(seq_of(&e), i);
            }
        });
        for i in 0..n as u64 {
            tx.send(entry::<N>(i)).expect("receiver alive");
        }
    });
    timer.per_entry(n)
}

/// Two producers push `n / 2` entries each; two consumers pop until `n` arrived.
/// Each consumer checks that each producer's entries reach it in order. With `batch`
/// above 1, through `push_batch` and `pop_batch` of that many entries.
fn mpmc_mmring<const N: usize>(config: &Config, n: usize, batch: usize) -> Sample {
    let ring = fresh_ring(config, "mpmc.ring", RING_SIZE);
    let popped = AtomicUsize::new(0);
    let per_producer = n / 2;
    let timer = Timer::start();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut buf = Vec::with_capacity(N);
                let mut got = Batch::with_capacity(batch, batch * N);
                let mut last = [None::<u64>; 2];
                let mut backoff = Backoff::new();
                while popped.load(Ordering::Relaxed) < 2 * per_producer {
                    let k = if batch > 1 {
                        ring.pop_batch(&mut got, batch).expect("pop")
                    } else {
                        usize::from(ring.pop_into(&mut buf).expect("pop").is_some())
                    };
                    if k == 0 {
                        backoff.wait();
                        continue;
                    }
                    popped.fetch_add(k, Ordering::Relaxed);
                    if batch > 1 {
                        for (_, data) in &got {
                            check_order(&mut last, seq_of(data));
                        }
                    } else {
                        check_order(&mut last, seq_of(&buf));
                    }
                    backoff.reset();
                }
            });
        }
        for p in 0..2u64 {
            let ring = &ring;
            s.spawn(move || {
                if batch > 1 {
                    let mut entries = vec![vec![0u8; N]; batch];
                    push_numbered_batches(ring, &mut entries, per_producer as u64, p << 63);
                    return;
                }
                let mut data = vec![0u8; N];
                for i in 0..per_producer as u64 {
                    data[..8].copy_from_slice(&(p << 63 | i).to_le_bytes());
                    push_waiting(ring, &data);
                }
            });
        }
    });
    timer.per_entry(2 * per_producer)
}

fn check_order(last: &mut [Option<u64>; 2], tagged: u64) {
    let producer = (tagged >> 63) as usize;
    let seq = tagged & !(1 << 63);
    assert!(
        last[producer].is_none_or(|prev| prev < seq),
        "producer {producer}: {seq} after {:?}",
        last[producer]
    );
    last[producer] = Some(seq);
}

fn mpmc_array_queue<const N: usize>(n: usize) -> Sample {
    let queue = ArrayQueue::<[u8; N]>::new(capacity(RING_SIZE, N));
    let popped = AtomicUsize::new(0);
    let per_producer = n / 2;
    let timer = Timer::start();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut last = [None::<u64>; 2];
                let mut backoff = Backoff::new();
                while popped.load(Ordering::Relaxed) < 2 * per_producer {
                    match queue.pop() {
                        Some(e) => {
                            popped.fetch_add(1, Ordering::Relaxed);
                            check_order(&mut last, seq_of(&e));
                            backoff.reset();
                        }
                        None => backoff.wait(),
                    }
                }
            });
        }
        for p in 0..2u64 {
            let queue = &queue;
            s.spawn(move || {
                let mut backoff = Backoff::new();
                for i in 0..per_producer as u64 {
                    let mut e = entry::<N>(p << 63 | i);
                    while let Err(back) = queue.push(e) {
                        e = back;
                        backoff.wait();
                    }
                    backoff.reset();
                }
            });
        }
    });
    timer.per_entry(2 * per_producer)
}

/// The physical reference for large entries: one thread copying `N` bytes from one
/// buffer to another, `n` times (both buffers stay in cache).
///
/// The destination is placed half a page away from the source modulo 4096: glibc
/// copies large blocks with `rep movsb`, which on some x86 CPUs (this benchmark's AMD
/// EPYC among them) runs some 20 times slower when destination and source are less
/// than 64 bytes apart modulo 4096, as two heap blocks of the same size often are.
/// The reference is the fast case.
fn memcpy<const N: usize>(n: usize) -> Sample {
    let src = vec![7u8; N];
    let mut dst_buf = vec![0u8; N + 4096];
    let start = half_page_from(&dst_buf, src.as_ptr() as usize);
    let dst = &mut dst_buf[start..start + N];
    let timer = Timer::start();
    for i in 0..n {
        dst.copy_from_slice(std::hint::black_box(&src));
        dst[i % N] ^= 1;
        std::hint::black_box(&mut *dst);
    }
    timer.per_entry(n)
}

/// What two threads handing entries of `N` bytes to each other need at least: an
/// `rtrb` byte ring of `size` bytes rounded down to whole entries, each entry copied
/// in and out with `memcpy`, no header, no checksum, no atomic copy. Both private
/// buffers sit half a page from the ring's entries, as in [`memcpy`]. The producer
/// takes its chunk with `write_chunk`, which fills it before the copy: on the
/// benchmark host that made the hand-off faster (17.5 GB/s against 13.7 GB/s with
/// `push_entire_slice`'s single copy), as the fill takes the lines from the
/// consumer's core in one sweep. The consumer checks each entry's number.
fn memcpy_hand_off<const N: usize>(n: usize, size: u64) -> Sample {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u8>::new(size as usize / N * N);
    // Every entry starts a whole number of entries (a multiple of 4096 bytes) from
    // the first, so one address stands for all of them.
    let ring_at = tx
        .write_chunk_uninit(1)
        .expect("an empty ring has room")
        .as_mut_slices()
        .0
        .as_ptr() as usize;
    let timer = Timer::start();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut buf = vec![0u8; N + 4096];
            let start = half_page_from(&buf, ring_at);
            let dst = &mut buf[start..start + N];
            let mut backoff = Backoff::new();
            for i in 0..n as u64 {
                let chunk = loop {
                    if let Ok(chunk) = rx.read_chunk(N) {
                        break chunk;
                    }
                    backoff.wait();
                };
                backoff.reset();
                let (first, second) = chunk.as_slices();
                dst[..first.len()].copy_from_slice(first);
                dst[first.len()..].copy_from_slice(second);
                chunk.commit_all();
                assert_eq!(seq_of(dst), i);
            }
        });
        let mut buf = vec![7u8; N + 4096];
        let start = half_page_from(&buf, ring_at);
        let src = &mut buf[start..start + N];
        let mut backoff = Backoff::new();
        for i in 0..n as u64 {
            src[..8].copy_from_slice(&i.to_le_bytes());
            let mut chunk = loop {
                if let Ok(chunk) = tx.write_chunk(N) {
                    break chunk;
                }
                backoff.wait();
            };
            backoff.reset();
            let (first, second) = chunk.as_mut_slices();
            let split = first.len();
            first.copy_from_slice(&src[..split]);
            second.copy_from_slice(&src[split..]);
            chunk.commit_all();
        }
    });
    timer.per_entry(n)
}

/// Where in `buf` to start so that the start lies half a page (2048 bytes modulo
/// 4096) from `other`: glibc's `memcpy` (`rep movsb`) is far slower between addresses
/// close to each other modulo 4096, which would measure the placement, not the copy.
fn half_page_from(buf: &[u8], other: usize) -> usize {
    (other.wrapping_sub(buf.as_ptr() as usize) + 2048) % 4096
}

/// The copy a push makes, alone: `N` bytes stored into shared memory one relaxed
/// atomic word at a time (mmring copies so because a lapped reader may race with the
/// writer; see docs/DESIGN.md). With [`checksum`], the two halves of the work each
/// side of the ring does per entry, each on one thread.
fn atomic_copy<const N: usize>(n: usize) -> Sample {
    use std::sync::atomic::AtomicU64;
    let src = vec![7u8; N];
    let dst: Vec<AtomicU64> = (0..N / 8).map(|_| AtomicU64::new(0)).collect();
    let timer = Timer::start();
    for _ in 0..n {
        let src = std::hint::black_box(&src);
        for (bytes, word) in src.chunks_exact(8).zip(&dst) {
            let mut le = [0u8; 8];
            le.copy_from_slice(bytes);
            word.store(u64::from_le_bytes(le), Ordering::Relaxed);
        }
        std::hint::black_box(&dst);
    }
    timer.per_entry(n)
}

/// The checksum each side computes, alone: CRC32C of `N` bytes in cache.
fn checksum<const N: usize>(n: usize) -> Sample {
    let src = vec![7u8; N];
    let timer = Timer::start();
    for i in 0..n {
        std::hint::black_box(crc32c::crc32c(std::hint::black_box(&src)) ^ i as u32);
    }
    timer.per_entry(n)
}

/// In-process SPSC throughput of every contender at entry size `N`, in ns per entry:
/// `(mmring, ArrayQueue, rtrb)`, for the plot.
pub fn sweep_point<const N: usize>(config: &Config, n: usize) -> [f64; 4] {
    let get = |s: Sample| match s {
        Sample::NsPerEntry(ns, _) => ns,
        Sample::RoundTrip { .. } => unreachable!(),
    };
    let size = RING_SIZE.max(4096 + 2 * Ring::entry_footprint(N) * 8);
    [
        get(spsc_mmring::<N>(config, n, size)),
        get(spsc_mmring_batch::<N>(config, n, size, BATCH)),
        get(spsc_array_queue::<N>(n)),
        get(spsc_rtrb::<N>(n)),
    ]
}
