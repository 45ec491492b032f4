//! `mmring dump`: an annotated hexdump of a ring file, for debugging.
//!
//! Header fields, and with `--records` the fields of every record between the read and
//! the write position, are printed one per line with their names and decoded values,
//! from the library's layout tables ([`mmring::layout`]) and its walk of the records
//! ([`mmring::inspect::walk`]). Everything else is printed as plain 16-byte rows, with
//! runs of zero rows collapsed to `*`. The file is only read, and need not be a valid
//! ring: the header of a damaged file is dumped all the same.

use std::cell::RefCell;
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
    let source = Source::new(file, file_len);
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
    let header = source
        .read(0, layout::HEADER_LEN as u64)
        .map_err(io_failure)?;
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
        annotate_records(
            path,
            &source,
            layout::stamp_key(&header).unwrap_or(0),
            &mut notes,
        )?;
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    render(&source, path, start, end, &notes, &mut out)?;
    out.flush().map_err(stdout_failure)
}

/// Adds headings and field annotations for every record the library's walk finds.
fn annotate_records(
    path: &Path,
    source: &Source,
    key: u64,
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
        let header_fits = span.offset + layout::RECORD_HEADER_LEN as u64 <= source.len;
        let fields: &[Field] = if fields_shown && header_fits {
            layout::RECORD_FIELDS
        } else {
            &layout::RECORD_FIELDS[..1]
        };
        let record = source
            .read(span.offset, layout::RECORD_HEADER_LEN as u64)
            .map_err(|error| Failure::Io {
                what: path.display().to_string(),
                error,
            })?;
        for field in fields {
            let value = describe_record_field(field, &record, span.position, key);
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
/// The file, read through a cached window so that a dump row by row does not cost a
/// system call per row.
struct Source {
    file: File,
    len: u64,
    /// File offset and bytes of the cached window.
    window: RefCell<(u64, Vec<u8>)>,
}

impl Source {
    const WINDOW: u64 = 64 * 1024;

    fn new(file: File, len: u64) -> Source {
        Source {
            file,
            len,
            window: RefCell::new((0, Vec::new())),
        }
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file).
    fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let len = len.min(self.len.saturating_sub(offset));
        let mut window = self.window.borrow_mut();
        let (start, bytes) = &mut *window;
        let cached = offset >= *start && offset + len <= *start + bytes.len() as u64;
        if !cached {
            let fill = Self::WINDOW.max(len).min(self.len - offset);
            bytes.resize(usize::try_from(fill).unwrap_or(0), 0);
            self.file.read_exact_at(bytes, offset)?;
            *start = offset;
        }
        let from = usize::try_from(offset - *start).unwrap_or(0);
        let to = from + usize::try_from(len).unwrap_or(0);
        Ok(bytes[from..to].to_vec())
    }
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
            2 => "2 (block)".to_owned(),
            other => format!("{other} (invalid)"),
        },
        "stamp_key" | "stamp_key_crc" if layout::has_stamp_key(header) != Some(true) => {
            format!("{value} (unused: flags bit 1 is clear, the file has no stamp key)")
        }
        "header_crc" | "stamp_key_crc" => format!("{value:#010x}"),
        "stamp_key" => format!("{value:#018x}"),
        _ => value.to_string(),
    }
}

fn describe_record_field(field: &Field, record: &[u8], position: u64, key: u64) -> String {
    let Some(value) = field.value(record) else {
        return "(past the end of the file)".to_owned();
    };
    match field.name {
        "stamp" => {
            let (stamp_pos, state) = layout::decode_stamp(value, key);
            if stamp_pos == position {
                format!("{value:#x}: {state}")
            } else {
                format!("{value:#x}: stale (a stamp for position {stamp_pos}, {state})")
            }
        }
        "claim" => {
            let (claimed, pid, tag) = layout::decode_claim(value);
            format!("claims {claimed} bytes, writer pid {pid} (PID namespace tag {tag})")
        }
        "meta_crc" | "data_crc" => format!("{value:#010x}"),
        _ if field.kind == FieldKind::Bytes => String::new(),
        _ => value.to_string(),
    }
}

/// Renders `start..end` of the file to `out`: annotations where they start, plain rows
/// between them.
fn render(
    source: &Source,
    path: &Path,
    start: u64,
    end: u64,
    notes: &BTreeMap<u64, Vec<Annotation>>,
    out: &mut impl Write,
) -> Outcome {
    let read_failure = |error| Failure::Io {
        what: path.display().to_string(),
        error,
    };
    // Written out a megabyte at a time: a whole ring can be large.
    let mut text = String::new();
    let mut emit = |text: &mut String, force: bool| -> Outcome {
        if force || text.len() > 1 << 20 {
            out.write_all(text.as_bytes()).map_err(stdout_failure)?;
            text.clear();
        }
        Ok(())
    };
    let text = &mut text;
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
                        let bytes = source.read(cursor, *len).map_err(read_failure)?;
                        let _ =
                            writeln!(text, "{cursor:08x}  {:<24} {name} = {value}", hex(&bytes));
                        advance = advance.max(*len);
                    }
                    Annotation::Payload { len } => {
                        let payload_end = (cursor + len).min(end);
                        plain_rows(source, cursor, payload_end, text).map_err(read_failure)?;
                        advance = advance.max(*len);
                    }
                }
            }
            zero_run = false;
            cursor += advance.max(1);
            emit(text, false)?;
            continue;
        }
        let next = notes
            .range(cursor + 1..)
            .next()
            .map_or(end, |(&at, _)| at)
            .min(end);
        zero_run = plain_rows_from(source, cursor, next, zero_run, text).map_err(read_failure)?;
        emit(text, false)?;
        cursor = next;
    }
    if zero_run {
        // Where the collapsed zeroes end, as hexdump shows it.
        let _ = writeln!(text, "{end:08x}");
    }
    emit(text, true)
}

fn annotation_len(note: &Annotation) -> u64 {
    match note {
        Annotation::Heading(_) => 0,
        Annotation::Field { len, .. } | Annotation::Payload { len } => *len,
    }
}

/// Plain rows of `from..to`, never collapsing zeroes.
fn plain_rows(source: &Source, from: u64, to: u64, text: &mut String) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let len = ROW.min(to - at);
        let bytes = source.read(at, len)?;
        row(at, &bytes, text);
        at += len;
    }
    Ok(())
}

/// Plain rows of `from..to` with runs of all-zero rows shown as one `*`; returns
/// whether it ended inside such a run.
fn plain_rows_from(
    source: &Source,
    from: u64,
    to: u64,
    mut in_zero_run: bool,
    text: &mut String,
) -> io::Result<bool> {
    let mut at = from;
    while at < to {
        let len = ROW.min(to - at);
        let bytes = source.read(at, len)?;
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
