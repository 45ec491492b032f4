//! Pops messages from a ring file that other processes push to, and prints them.
//!
//! ```text
//! cargo run --example producer -- /dev/shm/demo.ring 1000 &
//! cargo run --example consumer -- /dev/shm/demo.ring 1000
//! ```
//! Stops after COUNT messages, or when nothing has arrived for 5 seconds.

use std::time::{Duration, Instant};

use mmring::{OnFull, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: consumer RING_PATH [COUNT]")?;
    let count: u64 = args.next().map_or(Ok(100), |n| n.parse())?;

    // Either side may start first; the options apply only if the ring is new.
    let ring = Options::new()
        .size(1 << 20)
        .on_full(OnFull::Reject)
        .open_or_create(&path)?;
    let mut received = 0;
    let mut last_arrival = Instant::now();
    let mut buf = Vec::with_capacity(ring.max_entry_size());
    while received < count {
        // pop_into reuses `buf`: no allocation per message.
        match ring.pop_into(&mut buf)? {
            Some(info) => {
                received += 1;
                last_arrival = Instant::now();
                println!("#{} {}", info.id(), String::from_utf8_lossy(&buf));
            }
            None if last_arrival.elapsed() > Duration::from_secs(5) => {
                eprintln!("consumer: nothing arrived for 5 s; stopping");
                break;
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    eprintln!("consumer: received {received} messages from {path}");
    Ok(())
}
