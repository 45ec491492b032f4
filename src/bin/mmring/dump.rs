//! `mmring dump`: an annotated hexdump of a ring file, for debugging.
//!
//! Header fields, and with `--records` the fields of every record between the read and
//! the write position, are printed one per line with their names and decoded values,
//! from the library's layout tables ([`mmring::layout`]) and its walk of the records
//! ([`mmring::inspect::walk`]). Everything else is printed as plain 16-byte rows, with
//! runs of zero rows collapsed to `*`. The file is only read, and need not be a valid
//! ring: the header of a damaged file is dumped all the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use mmring::inspect::{Span, SpanKind};
use mmring::layout::{self, Field, FieldKind};

use crate::cli::DumpArgs;
use crate::output::stdout_failure;
use crate::{Failure, Outcome, warn};

/// Bytes per plain row.
const ROW: u64 = 16;

/// What to print at a file offset.
enum Annotation {
    /// A heading line before the record starting here.
    Heading(String),
    /// A field, with its decoded value.
    Field {
        len: u64,
        name: String,
        value: String,
    },
    /// A record's payload: plain rows, never collapsed.
    Payload { len: u64 },
}

/// Dumps the requested window of the file to stdout.
pub(crate) fn run(args: &DumpArgs) -> Outcome {
    let path = &args.path;
    let io_failure = |error| Failure::Io {
        what: path.display().to_string(),
        error,
    };
    // Non-blocking: a FIFO would otherwise wait for a writer before the regular-file
    // check below could refuse it. On a regular file the flag changes nothing.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(io_failure)?;
    let meta = file.metadata().map_err(io_failure)?;
    if !meta.is_file() {
        return Err(Failure::Usage {
            what: path.display().to_string(),
            message: "not a regular file".to_owned(),
        });
    }
    let file_len = meta.len();
    let start = args.offset.unwrap_or(0).min(file_len);
    let default_len = if args.records {
        file_len
    } else if start == 0 {
        layout::HEADER_LEN as u64
    } else {
        256
    };
    let end = start
        .saturating_add(args.length.unwrap_or(default_len))
        .min(file_len);

    let mut notes: BTreeMap<u64, Vec<Annotation>> = BTreeMap::new();
    let header = read_at(&file, 0, layout::HEADER_LEN as u64, file_len).map_err(io_failure)?;
    for field in layout::HEADER_FIELDS {
        let value = describe_header_field(field, &header);
        notes
            .entry(field.offset as u64)
            .or_default()
            .push(Annotation::Field {
                len: field.size as u64,
                name: field.name.to_owned(),
                value,
            });
    }
    if args.records {
        annotate_records(path, &file, file_len, &mut notes)?;
    }

    let mut text = String::new();
    render(&file, file_len, start, end, &notes, &mut text).map_err(io_failure)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failure)
}

/// Adds headings and field annotations for every record the library's walk finds.
fn annotate_records(
    path: &Path,
    file: &File,
    file_len: u64,
    notes: &mut BTreeMap<u64, Vec<Annotation>>,
) -> Outcome {
    let mut spans: Vec<Span> = Vec::new();
    match mmring::inspect::walk(path, |span| spans.push(*span)) {
        Ok(report) if !report.records_checked => {
            warn(
                &path.display(),
                &"records not shown: the header fails validation (see mmring verify)",
            );
        }
        Ok(_) => {}
        Err(error) => warn(&path.display(), &format!("records not shown: {error}")),
    }
    for span in spans {
        let (what, fields_shown) = match span.kind {
            SpanKind::Entry {
                data_len,
                expired: false,
            } => (format!("entry, {data_len} bytes"), true),
            SpanKind::Entry {
                data_len,
                expired: true,
            } => (format!("expired entry, {data_len} bytes"), true),
            SpanKind::Padding => ("padding to the end of the region".to_owned(), false),
            SpanKind::Abandoned => ("abandoned record".to_owned(), true),
            SpanKind::Claimed => ("claimed record, not committed".to_owned(), true),
            SpanKind::Unclaimed => ("reserved, not claimed".to_owned(), false),
            SpanKind::Skipped => ("skipped (marked by a reader or a repair)".to_owned(), false),
            SpanKind::Damaged => ("DAMAGED (see mmring verify)".to_owned(), true),
            _ => ("unknown".to_owned(), false),
        };
        let at = notes.entry(span.offset).or_default();
        at.push(Annotation::Heading(format!(
            "==== position {} (file offset {}, {} bytes): {what}",
            span.position, span.offset, span.len
        )));
        let header_fits = span.offset + layout::RECORD_HEADER_LEN as u64 <= file_len;
        let fields: &[Field] = if fields_shown && header_fits {
            layout::RECORD_FIELDS
        } else {
            &layout::RECORD_FIELDS[..1]
        };
        let record = read_at(
            file,
            span.offset,
            layout::RECORD_HEADER_LEN as u64,
            file_len,
        )
        .map_err(|error| Failure::Io {
            what: path.display().to_string(),
            error,
        })?;
        for field in fields {
            let value = describe_record_field(field, &record, span.position);
            notes
                .entry(span.offset + field.offset as u64)
                .or_default()
                .push(Annotation::Field {
                    len: field.size as u64,
                    name: field.name.to_owned(),
                    value,
                });
        }
        if let SpanKind::Entry { data_len, .. } = span.kind {
            notes
                .entry(span.offset + layout::RECORD_HEADER_LEN as u64)
                .or_default()
                .push(Annotation::Payload {
                    len: u64::from(data_len),
                });
        }
    }
    Ok(())
}

/// Up to `len` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &File, offset: u64, len: u64, file_len: u64) -> io::Result<Vec<u8>> {
    let len = len.min(file_len.saturating_sub(offset));
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(bytes)
}

fn describe_header_field(field: &Field, header: &[u8]) -> String {
    let Some(value) = field.value(header) else {
        return match header.get(field.offset..field.offset + field.size) {
            Some(bytes) => format!("\"{}\"", bytes.escape_ascii()),
            None => "(past the end of the file)".to_owned(),
        };
    };
    match field.name {
        "on_full" => match value {
            0 => "0 (overwrite)".to_owned(),
            1 => "1 (reject)".to_owned(),
            other => format!("{other} (invalid)"),
        },
        "header_crc" => format!("{value:#010x}"),
        _ => value.to_string(),
    }
}

fn describe_record_field(field: &Field, record: &[u8], position: u64) -> String {
    let Some(value) = field.value(record) else {
        return "(past the end of the file)".to_owned();
    };
    match field.name {
        "stamp" => {
            let (stamp_pos, state) = layout::decode_stamp(value);
            if stamp_pos == position {
                format!("{value:#x}: {state}")
            } else {
                format!("{value:#x}: stale (a stamp for position {stamp_pos}, {state})")
            }
        }
        "claim" => {
            let (data_len, pid) = layout::decode_claim(value);
            format!("data_len {data_len}, writer pid {pid}")
        }
        "meta_crc" | "data_crc" => format!("{value:#010x}"),
        _ if field.kind == FieldKind::Bytes => String::new(),
        _ => value.to_string(),
    }
}

/// Renders `start..end` of the file: annotations where they start, plain rows between
/// them.
fn render(
    file: &File,
    file_len: u64,
    start: u64,
    end: u64,
    notes: &BTreeMap<u64, Vec<Annotation>>,
    text: &mut String,
) -> io::Result<()> {
    let mut cursor = start;
    // An annotation that starts before the window but reaches into it is shown whole.
    if let Some((&at, list)) = notes.range(..start).next_back() {
        let reach = list.iter().map(annotation_len).max().unwrap_or(0);
        if at + reach > start {
            cursor = at;
        }
    }
    let mut zero_run = false;
    while cursor < end {
        if let Some(list) = notes.get(&cursor) {
            let mut advance = 0;
            for note in list {
                match note {
                    Annotation::Heading(line) => {
                        let _ = writeln!(text, "{line}");
                    }
                    Annotation::Field { len, name, value } => {
                        let bytes = read_at(file, cursor, *len, file_len)?;
                        let _ =
                            writeln!(text, "{cursor:08x}  {:<24} {name} = {value}", hex(&bytes));
                        advance = advance.max(*len);
                    }
                    Annotation::Payload { len } => {
                        let payload_end = (cursor + len).min(end);
                        plain_rows(file, file_len, cursor, payload_end, text)?;
                        advance = advance.max(*len);
                    }
                }
            }
            zero_run = false;
            cursor += advance.max(1);
            continue;
        }
        let next = notes
            .range(cursor + 1..)
            .next()
            .map_or(end, |(&at, _)| at)
            .min(end);
        zero_run = plain_rows_from(file, file_len, cursor, next, zero_run, text)?;
        cursor = next;
    }
    if zero_run {
        // Where the collapsed zeroes end, as hexdump shows it.
        let _ = writeln!(text, "{end:08x}");
    }
    Ok(())
}

fn annotation_len(note: &Annotation) -> u64 {
    match note {
        Annotation::Heading(_) => 0,
        Annotation::Field { len, .. } | Annotation::Payload { len } => *len,
    }
}

/// Plain rows of `from..to`, never collapsing zeroes.
fn plain_rows(file: &File, file_len: u64, from: u64, to: u64, text: &mut String) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let len = ROW.min(to - at);
        let bytes = read_at(file, at, len, file_len)?;
        row(at, &bytes, text);
        at += len;
    }
    Ok(())
}

/// Plain rows of `from..to` with runs of all-zero rows shown as one `*`; returns
/// whether it ended inside such a run.
fn plain_rows_from(
    file: &File,
    file_len: u64,
    from: u64,
    to: u64,
    mut in_zero_run: bool,
    text: &mut String,
) -> io::Result<bool> {
    let mut at = from;
    while at < to {
        let len = ROW.min(to - at);
        let bytes = read_at(file, at, len, file_len)?;
        if bytes.iter().all(|b| *b == 0) {
            if !in_zero_run {
                text.push_str("*\n");
                in_zero_run = true;
            }
        } else {
            row(at, &bytes, text);
            in_zero_run = false;
        }
        at += len;
    }
    Ok(in_zero_run)
}

fn row(at: u64, bytes: &[u8], text: &mut String) {
    let ascii: String = bytes
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect();
    let _ = writeln!(text, "{at:08x}  {:<48} |{ascii}|", hex(bytes));
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}
