//! The library example of README.md, which shows everything below these lines.
//! `cargo test` compiles it, and tests/cli.rs runs it and checks that README.md still
//! shows exactly this code (`main` is `pub` so that the test can call it).
use mmring::{OnFull, Options, Ring};
use std::time::Duration;

/// Creates a ring, pushes two entries, and pops one through a second handle.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("readme-{}.ring", std::process::id()));
    let ring = Options::new()
        .size(1 << 20) // the whole file, 4 KiB header included
        .on_full(OnFull::Reject)
        .create(&path)?;
    let id = ring.push(b"hello")?;
    ring.push_with_ttl(b"short-lived", Duration::from_secs(30))?;

    // Another process would do exactly this.
    let other = Ring::open(&path)?;
    assert_eq!(other.len(), 2);
    let first = other.pop()?.expect("an entry");
    assert_eq!((first.id(), first.data()), (id, &b"hello"[..]));

    std::fs::remove_file(&path)?;
    Ok(())
}
