//! `mmring info`: what a ring is and what it holds, as a table or JSON.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use mmring::{OnFull, Ring};

use crate::cli::InfoArgs;
use crate::output::{json_string, stdout_failure};
use crate::{AtPath, Outcome};

/// Opens the ring (which validates it) and prints its description.
pub(crate) fn run(args: &InfoArgs) -> Outcome {
    let path = &args.path;
    let ring = Ring::open(path).at(path)?;
    let file_len = ring.file_size();
    let version = ring.format_version();
    let stats = ring.stats();
    let subscribers = ring.subscribers();
    let used = stats.write_pos.saturating_sub(stats.read_pos);
    let capacity_bytes = ring.capacity_bytes();
    let on_full = match ring.on_full() {
        OnFull::Reject => "reject",
        OnFull::Block => "block",
        _ => "overwrite",
    };
    let report = if args.json {
        format!(
            "{{\"path\":{},\"format_version\":{version},\"file_size\":{file_len},\
             \"header_size\":{},\"capacity_bytes\":{capacity_bytes},\"capacity_entries\":{},\
             \"max_entry_size\":{},\"len\":{},\"used_bytes\":{used},\"read_pos\":{},\
             \"write_pos\":{},\"on_full\":\"{on_full}\",\"default_ttl_secs\":{},\
             \"abandon_timeout_ms\":{},\"pushed\":{},\"popped\":{},\"evicted\":{},\
             \"expired\":{},\"corrupt\":{},\"abandoned\":{},\"subscribers\":[{}]}}\n",
            json_string(&path.to_string_lossy()),
            file_len.saturating_sub(capacity_bytes),
            ring.capacity(),
            ring.max_entry_size(),
            stats.len,
            stats.read_pos,
            stats.write_pos,
            ring.default_ttl().as_secs(),
            ring.abandon_timeout().as_millis(),
            stats.pushed,
            stats.popped,
            stats.evicted,
            stats.expired,
            stats.corrupt,
            stats.abandoned,
            subscribers
                .iter()
                .map(|sub| format!(
                    "{{\"name\":{},\"position\":{},\"committed\":{},\"missed\":{},\
                     \"last_active_ms\":{}}}",
                    json_string(&sub.name),
                    sub.position,
                    sub.committed,
                    sub.missed,
                    unix_ms(sub.last_active),
                ))
                .collect::<Vec<_>>()
                .join(","),
        )
    } else {
        let ttl = match ring.default_ttl().as_secs() {
            0 => "none (entries never expire)".to_owned(),
            secs => format!("{secs} s"),
        };
        let fill_percent = used as f64 * 100.0 / capacity_bytes as f64;
        let rows: [(&str, String); 12] = [
            ("path", path.display().to_string()),
            ("format version", version.to_string()),
            (
                "file size",
                format!("{file_len} bytes ({})", human_bytes(file_len)),
            ),
            (
                "capacity",
                format!(
                    "{capacity_bytes} bytes for entries ({} header), at most {} entries",
                    human_bytes(file_len.saturating_sub(capacity_bytes)),
                    ring.capacity()
                ),
            ),
            ("max entry size", format!("{} bytes", ring.max_entry_size())),
            (
                "fill",
                format!("{} entries, {used} bytes ({fill_percent:.1}%)", stats.len),
            ),
            (
                "positions",
                format!("read {}, write {}", stats.read_pos, stats.write_pos),
            ),
            ("on full", on_full.to_owned()),
            ("default ttl", ttl),
            (
                "abandon timeout",
                format!("{} ms", ring.abandon_timeout().as_millis()),
            ),
            (
                "counters",
                format!(
                    "pushed {}, popped {}, evicted {}, expired {}, corrupt {}, abandoned {}",
                    stats.pushed,
                    stats.popped,
                    stats.evicted,
                    stats.expired,
                    stats.corrupt,
                    stats.abandoned
                ),
            ),
            ("subscribers", describe_subscribers(&subscribers)),
        ];
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        for (name, value) in rows {
            table.add_row([name.to_owned(), value]);
        }
        format!("{table}\n")
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(report.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// `bytes` in the largest binary unit that keeps the number at least 1.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// One line per subscriber: where it reads next, where a restart resumes, what it
/// missed, and how long ago it was last active.
fn describe_subscribers(subscribers: &[mmring::SubscriberInfo]) -> String {
    if subscribers.is_empty() {
        return "none".to_owned();
    }
    subscribers
        .iter()
        .map(|sub| {
            let idle = SystemTime::now()
                .duration_since(sub.last_active)
                .unwrap_or_default()
                .as_secs();
            format!(
                "{}: next {}, committed {}, missed {}, active {idle} s ago",
                sub.name, sub.position, sub.committed, sub.missed
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Milliseconds since the Unix epoch (0 for times before it).
fn unix_ms(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}
