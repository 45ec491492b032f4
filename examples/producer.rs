//! Pushes numbered messages into a ring file shared with other processes.
//!
//! ```text
//! cargo run --example producer -- /dev/shm/demo.ring 1000 &
//! cargo run --example consumer -- /dev/shm/demo.ring 1000
//! ```
//! The ring is created (1 MiB, rejecting pushes when full) unless it exists already;
//! while it is full the producer waits for a consumer to make room.

use std::time::{Duration, Instant};

use mmring::{Error, OnFull, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: producer RING_PATH [COUNT]")?;
    let count: u64 = args.next().map_or(Ok(100), |n| n.parse())?;

    let ring = Options::new()
        .size(1 << 20)
        .on_full(OnFull::Reject)
        .open_or_create(&path)?;
    let pid = std::process::id();
    for seq in 0..count {
        let message = format!("message {seq} from process {pid}");
        let mut full_since: Option<Instant> = None;
        loop {
            match ring.push(message.as_bytes()) {
                Ok(_) => break,
                Err(Error::Full) => {
                    // Nobody is making room: give up instead of waiting forever.
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(10) {
                        return Err("the ring stayed full for 10 s; is a consumer running?".into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    eprintln!("producer {pid}: pushed {count} messages to {path}");
    Ok(())
}
