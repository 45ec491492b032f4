//! Named crash points for the crash-consistency tests, compiled only with the
//! `crash-points` feature. `MMRING_CRASH_AT=name:n` aborts the process the n-th time
//! (1-based) execution reaches `point(name)`; `name` alone means the first time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
static HITS: AtomicUsize = AtomicUsize::new(0);

/// Aborts the process if this is the configured crash point and hit.
pub(crate) fn point(name: &str) {
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("MMRING_CRASH_AT").ok()?;
        match spec.split_once(':') {
            Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
            None => Some((spec, 1)),
        }
    });
    if let Some((target, n)) = target
        && target == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        std::process::abort();
    }
}
