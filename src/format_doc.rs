//! Checks that docs/FORMAT.md and the constants in format.rs agree, so that a change to
//! either without the other fails the build.
//!
//! FORMAT.md marks each machine-checked table with an HTML comment on the line before
//! it (`<!-- table: NAME -->`, invisible when rendered). Columns are found by their
//! header names, so they may be reordered; offsets, sizes and values are plain decimal
//! (or `0x` hexadecimal) integers; field and constant names are in backticks. The worked
//! example's hexdump (after `<!-- hexdump: tiny_ring -->`) is rebuilt into a file image
//! and must be a valid ring holding the two entries the text describes.

use std::collections::BTreeMap;

use crate::format::*;

const DOC: &str = include_str!("../docs/FORMAT.md");

/// A table from FORMAT.md: its column names and its rows, cells trimmed.
struct Table {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The cell of `row` in the column called `column`.
    fn cell<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .unwrap_or_else(|| panic!("table {} has no column {column:?}", self.name));
        &row[index]
    }
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// Every marked table in the document, by name.
fn tables() -> BTreeMap<String, Table> {
    let mut tables = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- table:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let name = name.trim().to_string();
        let header = lines.next().unwrap_or_default();
        assert!(header.starts_with('|'), "table {name}: no header row");
        let separator = lines.next().unwrap_or_default();
        assert!(
            separator.starts_with("|---"),
            "table {name}: no separator row"
        );
        let columns = split_row(header);
        let mut rows = Vec::new();
        for row in lines.by_ref() {
            if !row.starts_with('|') {
                break;
            }
            let cells = split_row(row);
            assert_eq!(
                cells.len(),
                columns.len(),
                "table {name}: row {row:?} has the wrong number of cells"
            );
            rows.push(cells);
        }
        let previous = tables.insert(
            name.clone(),
            Table {
                name: name.clone(),
                columns,
                rows,
            },
        );
        assert!(previous.is_none(), "two tables are named {name}");
    }
    tables
}

fn table(name: &str) -> Table {
    tables()
        .remove(name)
        .unwrap_or_else(|| panic!("FORMAT.md has no table marked `<!-- table: {name} -->`"))
}

/// A decimal or `0x` hexadecimal integer cell.
fn number(cell: &str) -> Option<u64> {
    match cell.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => cell.parse().ok(),
    }
}

/// The text between the first pair of backticks in `cell`.
fn ticked(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

/// A row of a structure table: field name, offset, and size (None when the size is
/// not a number, as for the payload).
#[derive(Debug)]
struct Field {
    name: String,
    offset: usize,
    size: Option<usize>,
}

/// The rows of a structure table, with the type column checked against the size and
/// the endianness column checked for every integer.
fn fields(name: &str) -> Vec<Field> {
    let table = table(name);
    table
        .rows
        .iter()
        .map(|row| {
            let field = ticked(table.cell(row, "field"))
                .unwrap_or_else(|| panic!("{name}: a field name is not in backticks: {row:?}"))
                .to_string();
            let offset = number(table.cell(row, "offset"))
                .unwrap_or_else(|| panic!("{name}: offset of {field} is not a number"))
                as usize;
            let size = number(table.cell(row, "size")).map(|size| size as usize);
            let ty = table.cell(row, "type");
            let endianness = table.cell(row, "endianness");
            let type_size = if ty.starts_with("u64") {
                Some(8)
            } else if ty.starts_with("u32") {
                Some(4)
            } else if ty == "[u8; 8]" {
                Some(8)
            } else {
                assert_eq!(ty, "bytes", "{name}: unknown type {ty:?} of {field}");
                None
            };
            if ty.starts_with('u') {
                assert_eq!(endianness, "LE", "{name}: {field} must be little-endian");
                assert_eq!(
                    size, type_size,
                    "{name}: size of {field} disagrees with {ty}"
                );
            }
            if ty.contains("atomic") {
                assert_eq!(
                    offset % type_size.unwrap_or(8),
                    0,
                    "{name}: atomic field {field} is not aligned"
                );
            }
            Field {
                name: field,
                offset,
                size,
            }
        })
        .collect()
}

/// Asserts that the fields with numeric sizes follow each other without gaps or
/// overlaps from `start` to `end`.
fn assert_tiles(name: &str, fields: &[Field], start: usize, end: usize) {
    let mut at = start;
    for field in fields.iter().filter(|f| f.size.is_some()) {
        assert_eq!(
            field.offset, at,
            "{name}: {} starts at {}, but the previous field ends at {at}",
            field.name, field.offset
        );
        at += field.size.unwrap_or(0);
    }
    assert_eq!(at, end, "{name}: the fields end at {at}, not at {end}");
}

/// Asserts that the non-reserved fields are exactly `expected`, as (name, offset, size).
fn assert_fields(name: &str, fields: &[Field], expected: &[(&str, usize, usize)]) {
    let documented: Vec<(&str, usize, usize)> = fields
        .iter()
        .filter(|f| f.name != "reserved" && f.size.is_some())
        .map(|f| (f.name.as_str(), f.offset, f.size.unwrap_or(0)))
        .collect();
    assert_eq!(documented, expected, "{name} disagrees with src/format.rs");
}

#[test]
fn static_header_table_matches_the_constants() {
    let fields = fields("header-static");
    assert_fields(
        "header-static",
        &fields,
        &[
            ("magic", MAGIC_OFFSET, MAGIC.len()),
            ("version", VERSION_OFFSET, 4),
            ("header_len", HEADER_LEN_OFFSET, 4),
            ("file_len", FILE_LEN_OFFSET, 8),
            ("region_len", REGION_LEN_OFFSET, 8),
            ("default_ttl_secs", DEFAULT_TTL_OFFSET, 4),
            ("on_full", ON_FULL_OFFSET, 4),
            ("abandon_ms", ABANDON_MS_OFFSET, 4),
            ("flags", FLAGS_OFFSET, 4),
            ("created_ms", CREATED_OFFSET, 8),
            ("header_crc", HEADER_CRC_OFFSET, 4),
        ],
    );
    let reserved: Vec<_> = fields.iter().filter(|f| f.name == "reserved").collect();
    assert_eq!(reserved.len(), 1);
    assert_eq!(
        (reserved[0].offset, reserved[0].size),
        (RESERVED_OFFSET, Some(4))
    );
    assert_tiles("header-static", &fields, 0, STATIC_HEADER_LEN);
}

#[test]
fn stamp_key_table_matches_the_constants() {
    let fields = fields("header-key");
    assert_fields(
        "header-key",
        &fields,
        &[
            ("stamp_key", STAMP_KEY_OFFSET, 8),
            ("stamp_key_crc", STAMP_KEY_CRC_OFFSET, 4),
        ],
    );
    assert_tiles("header-key", &fields, STATIC_HEADER_LEN, WRITE_POS_OFFSET);
}

#[test]
fn magic_is_documented_byte_for_byte() {
    let table = table("header-static");
    let row = table
        .rows
        .iter()
        .find(|row| table.cell(row, "field") == "`magic`")
        .expect("a magic row");
    let hex = ticked(table.cell(row, "valid values")).expect("magic bytes in backticks");
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
        .collect();
    assert_eq!(bytes, MAGIC);
}

#[test]
fn atomic_slot_table_matches_the_constants() {
    let fields = fields("header-slots");
    assert_fields(
        "header-slots",
        &fields,
        &[
            ("write_pos", WRITE_POS_OFFSET, 8),
            ("pushed", PUSHED_OFFSET, 8),
            ("evicted", EVICTED_OFFSET, 8),
            ("read_pos", READ_POS_OFFSET, 8),
            ("popped", POPPED_OFFSET, 8),
            ("notify", NOTIFY_OFFSET, 4),
            ("waiters", WAITERS_OFFSET, 4),
            ("expired", EXPIRED_OFFSET, 8),
            ("corrupt", CORRUPT_OFFSET, 8),
            ("abandoned", ABANDONED_OFFSET, 8),
            ("sub_mask", SUB_MASK_OFFSET, 8),
            ("sub_slots", SUB_SLOTS_OFFSET, SUB_SLOT_COUNT * SUB_SLOT_LEN),
        ],
    );
    assert_tiles("header-slots", &fields, WRITE_POS_OFFSET, HEADER_LEN);
    let last_reserved = fields.last().expect("a final reserved row");
    assert_eq!(
        (last_reserved.name.as_str(), last_reserved.offset),
        ("reserved", SUB_TABLE_END)
    );
    for (field, slot) in [
        ("write_pos", 1),
        ("read_pos", 2),
        ("notify", 3),
        ("expired", 4),
        ("sub_mask", 5),
    ] {
        let offset = fields.iter().find(|f| f.name == field).map(|f| f.offset);
        assert_eq!(offset, Some(slot * SLOT_LEN), "{field} opens slot {slot}");
    }
}

#[test]
fn subscriber_slot_table_matches_the_constants() {
    let fields = fields("subscriber-slot");
    assert_fields(
        "subscriber-slot",
        &fields,
        &[
            ("state", SUB_STATE_OFFSET, 8),
            ("cursor", SUB_CURSOR_OFFSET, 8),
            ("committed", SUB_COMMITTED_OFFSET, 8),
            ("missed", SUB_MISSED_OFFSET, 8),
            ("reported", SUB_REPORTED_OFFSET, 8),
            ("active_ms", SUB_ACTIVE_MS_OFFSET, 8),
            ("name_len", SUB_NAME_LEN_OFFSET, 4),
            ("name", SUB_NAME_OFFSET, SUB_NAME_MAX),
        ],
    );
    let reserved: Vec<_> = fields.iter().filter(|f| f.name == "reserved").collect();
    assert_eq!(reserved.len(), 1);
    assert_eq!(
        (reserved[0].offset, reserved[0].size),
        (SUB_RESERVED_OFFSET, Some(4))
    );
    assert_tiles("subscriber-slot", &fields, 0, SUB_SLOT_LEN);
}

#[test]
fn subscriber_state_table_matches_the_constants() {
    let table = table("subscriber-states");
    let documented: Vec<(String, u64)> = table
        .rows
        .iter()
        .map(|row| {
            let value = number(table.cell(row, "value")).expect("a state value");
            let state = ticked(table.cell(row, "state")).expect("a state name");
            (state.to_string(), value)
        })
        .collect();
    let expected = [
        ("FREE", SUB_STATE_FREE),
        ("CLAIMING", SUB_STATE_CLAIMING),
        ("ACTIVE", SUB_STATE_ACTIVE),
    ]
    .map(|(name, value)| (name.to_string(), value));
    assert_eq!(documented, expected);
    for (_, value) in &expected {
        assert_eq!(value & !SUB_STATE_MASK, 0);
    }
}

#[test]
fn record_header_table_matches_the_constants() {
    let fields = fields("record-header");
    assert_fields(
        "record-header",
        &fields,
        &[
            ("stamp", REC_STAMP_OFFSET, 8),
            ("claim", REC_CLAIM_OFFSET, 8),
            ("meta_crc", REC_META_CRC_OFFSET, 4),
            ("version", REC_VERSION_OFFSET, 8),
            ("data_len", REC_DATA_LEN_OFFSET, 4),
            ("ttl_secs", REC_TTL_OFFSET, 4),
            ("id", REC_ID_OFFSET, 8),
            ("data_crc", REC_DATA_CRC_OFFSET, 4),
            ("write_time_ms", REC_WRITE_TIME_OFFSET, 8),
        ],
    );
    assert_tiles("record-header", &fields, 0, REC_HEADER_LEN);
    let data = fields.last().expect("a payload row");
    assert_eq!(
        (data.name.as_str(), data.offset, data.size),
        ("data", REC_HEADER_LEN, None),
        "the payload follows the record header"
    );
}

#[test]
fn padding_record_table_matches_the_constants() {
    let fields = fields("padding-record");
    assert_eq!(fields.len(), 2);
    assert_eq!(
        (fields[0].name.as_str(), fields[0].offset, fields[0].size),
        ("stamp", REC_STAMP_OFFSET, Some(8))
    );
    assert_eq!(
        (fields[1].name.as_str(), fields[1].offset),
        ("unused", REC_STAMP_OFFSET + 8)
    );
}

#[test]
fn state_table_matches_the_constants() {
    let table = table("states");
    let mut documented = Vec::new();
    for row in &table.rows {
        let value = number(table.cell(row, "value")).expect("a state value");
        // The stale row names no state: its value is the one that is never written.
        match ticked(table.cell(row, "state")) {
            Some(state) => documented.push((state.to_string(), value)),
            None => assert_eq!(value, 0, "only state 0 is unnamed"),
        }
    }
    let expected = [
        ("CLAIMED", STATE_CLAIMED),
        ("COMMITTED", STATE_COMMITTED),
        ("PADDING", STATE_PADDING),
        ("ABANDONED", STATE_ABANDONED),
        ("SKIPPED", STATE_SKIPPED),
        ("BATCHED", STATE_BATCHED),
    ];
    let expected: Vec<(String, u64)> = expected
        .iter()
        .map(|(name, value)| (name.to_string(), *value))
        .collect();
    assert_eq!(documented, expected);
    for (_, value) in &expected {
        assert_eq!(
            value & !STATE_MASK,
            0,
            "a state fits in the stamp's low bits"
        );
    }
}

#[test]
fn constant_table_matches_the_constants() {
    let table = table("constants");
    let documented: BTreeMap<&str, u64> = table
        .rows
        .iter()
        .map(|row| {
            let name = ticked(table.cell(row, "name")).expect("a constant name in backticks");
            let value = number(table.cell(row, "value"))
                .unwrap_or_else(|| panic!("value of {name} is not a number"));
            (name, value)
        })
        .collect();
    let expected: BTreeMap<&str, u64> = [
        ("FORMAT_VERSION", u64::from(FORMAT_VERSION)),
        ("ENTRY_VERSION", ENTRY_VERSION),
        ("HEADER_LEN", HEADER_LEN as u64),
        ("STATIC_HEADER_LEN", STATIC_HEADER_LEN as u64),
        ("SLOT_LEN", SLOT_LEN as u64),
        ("REC_HEADER_LEN", REC_HEADER_LEN as u64),
        ("RECORD_ALIGN", RECORD_ALIGN),
        ("STATE_MASK", STATE_MASK),
        ("FLAG_BATCH_RUNS", u64::from(FLAG_BATCH_RUNS)),
        ("FLAG_STAMP_KEY", u64::from(FLAG_STAMP_KEY)),
        ("STAMP_KEY_MASK", STAMP_KEY_MASK),
        ("FIXED_HEADER_LEN", FIXED_HEADER_LEN as u64),
        ("MIN_REGION_LEN", MIN_REGION_LEN),
        ("MAX_REGION_LEN", MAX_REGION_LEN),
        ("MIN_FILE_LEN", HEADER_LEN as u64 + MIN_REGION_LEN),
        ("MAX_POS", MAX_POS),
        ("ON_FULL_OVERWRITE", u64::from(POLICY_OVERWRITE)),
        ("ON_FULL_REJECT", u64::from(POLICY_REJECT)),
        ("ON_FULL_BLOCK", u64::from(POLICY_BLOCK)),
        ("SUB_SLOT_LEN", SUB_SLOT_LEN as u64),
        ("SUB_SLOT_COUNT", SUB_SLOT_COUNT as u64),
        ("SUB_NAME_MAX", SUB_NAME_MAX as u64),
        ("CRC32C_CHECK", u64::from(crc32c::crc32c(b"123456789"))),
    ]
    .into_iter()
    .collect();
    assert_eq!(documented, expected);
}

#[test]
fn documented_max_entry_size_formula_matches_the_code() {
    // FORMAT.md: max_entry_size = min(floor8(region_len / 2) - 56, 2^32 - 1);
    // record_len = ceil8(56 + n).
    let regions = [
        MIN_REGION_LEN,
        4104,
        4112,
        65536,
        1 << 20,
        1 << 34,
        MAX_REGION_LEN,
    ];
    for region_len in regions {
        let documented = ((region_len / 2) / 8 * 8 - 56).min(u64::from(u32::MAX));
        assert_eq!(u64::from(max_data_len(region_len)), documented);
    }
    for data_len in [0u32, 1, 7, 8, 9, 1000] {
        assert_eq!(
            record_len(data_len),
            (56 + u64::from(data_len)).div_ceil(8) * 8
        );
    }
}

/// The worked example's hexdump as a file image: 8192 bytes, zero where not shown.
fn example_image() -> Vec<u8> {
    let (_, after) = DOC
        .split_once("<!-- hexdump: tiny_ring -->")
        .expect("FORMAT.md has the worked example's hexdump");
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block after the hexdump marker");
    let mut image = vec![0u8; 8192];
    let mut lines = 0;
    let is_dump_line = |line: &&str| {
        line.len() > 49 && line[..8].bytes().all(|b| b.is_ascii_hexdigit()) && &line[8..10] == ": "
    };
    for line in block.lines().filter(is_dump_line) {
        let offset = usize::from_str_radix(&line[..8], 16).expect("a hex offset");
        // xxd: the offset, ": ", 39 columns of hex groups, two spaces, the ASCII column.
        let hex: String = line[10..49].chars().filter(|c| *c != ' ').collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
            .collect();
        assert_eq!(bytes.len(), 16, "line {line:?} is not a full xxd line");
        image[offset..offset + 16].copy_from_slice(&bytes);
        lines += 1;
    }
    assert!(
        lines >= 4 + 1 + 2 + 1 + 8,
        "the hexdump lost lines: {lines}"
    );
    image
}

fn u64_le(bytes: &[u8], offset: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(le)
}

#[test]
fn worked_example_is_a_valid_ring_holding_the_documented_entries() {
    let image = example_image();
    let header = Header::from_bytes(&image[..FIXED_HEADER_LEN], image.len() as u64)
        .expect("the example's header validates");
    assert!(header.stamp_key.is_some(), "the example shows a keyed file");
    assert_eq!(header.region_len, 4096);
    assert_eq!(header.policy, Policy::Reject);
    assert_eq!(header.abandon_ms, 2000);
    let read_pos = u64_le(&image, READ_POS_OFFSET);
    let write_pos = u64_le(&image, WRITE_POS_OFFSET);
    assert_eq!((read_pos, write_pos), (0, 128));
    assert_eq!(u64_le(&image, PUSHED_OFFSET), 2);

    let mut entries = Vec::new();
    let mut pos = read_pos;
    while pos < write_pos {
        let off = HEADER_LEN + (pos % header.region_len) as usize;
        let stamp = u64_le(&image, off + REC_STAMP_OFFSET);
        assert_eq!(header.key().state(stamp, pos), Some(STATE_COMMITTED));
        let mut rec = [0u8; REC_HEADER_LEN];
        rec.copy_from_slice(&image[off..off + REC_HEADER_LEN]);
        let meta = RecordMeta::from_bytes(pos, &rec, header.region_len)
            .unwrap_or_else(|e| panic!("record at {pos}: {e:?}"));
        let data = &image[off + REC_HEADER_LEN..][..meta.data_len as usize];
        assert_eq!(crc32c::crc32c(data), meta.data_crc, "payload at {pos}");
        entries.push((meta.id, data.to_vec(), meta.ttl_secs));
        pos += record_len(meta.data_len);
    }
    assert_eq!(
        entries,
        [(0, b"hello".to_vec(), 0), (64, b"world!".to_vec(), 60)]
    );
}

#[test]
fn layout_tables_match_format_md() {
    let documented = |name: &str| -> Vec<(String, usize, usize)> {
        fields(name)
            .into_iter()
            .filter(|f| f.name != "reserved")
            .filter_map(|f| Some((f.name, f.offset, f.size?)))
            .collect()
    };
    let listed = |fields: &[crate::layout::Field]| -> Vec<(String, usize, usize)> {
        fields
            .iter()
            .filter(|f| f.name != "reserved")
            .map(|f| (f.name.to_string(), f.offset, f.size))
            .collect()
    };
    let mut header = documented("header-static");
    header.extend(documented("header-key"));
    header.extend(documented("header-slots"));
    assert_eq!(listed(crate::layout::HEADER_FIELDS), header);
    assert_eq!(
        listed(crate::layout::RECORD_FIELDS),
        documented("record-header")
    );
}
