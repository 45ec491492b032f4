//! `mmring info`: what a ring is and what it holds, as text or JSON.

use std::io::{self, Write};

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
             \"expired\":{},\"corrupt\":{},\"abandoned\":{}}}\n",
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
        )
    } else {
        let ttl = match ring.default_ttl().as_secs() {
            0 => "none (entries never expire)".to_owned(),
            secs => format!("{secs} s"),
        };
        let fill_percent = used as f64 * 100.0 / capacity_bytes as f64;
        format!(
            "path              {}\n\
             format version    {version}\n\
             file size         {file_len} bytes ({})\n\
             header            {} bytes\n\
             capacity          {capacity_bytes} bytes for entries, at most {} entries \
             (each takes a 56-byte header plus its payload rounded up to 8 bytes)\n\
             max entry size    {} bytes\n\
             fill              {} entries, {used} bytes ({fill_percent:.1}%)\n\
             positions         read {}, write {}\n\
             on full           {on_full}\n\
             default ttl       {ttl}\n\
             abandon timeout   {} ms\n\
             counters          pushed {}, popped {}, evicted {}, expired {}, corrupt {}, \
             abandoned {}\n",
            path.display(),
            human_bytes(file_len),
            file_len.saturating_sub(capacity_bytes),
            ring.capacity(),
            ring.max_entry_size(),
            stats.len,
            stats.read_pos,
            stats.write_pos,
            ring.abandon_timeout().as_millis(),
            stats.pushed,
            stats.popped,
            stats.evicted,
            stats.expired,
            stats.corrupt,
            stats.abandoned,
        )
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
