//! Checking and repairing a ring: the walk behind `mmring::verify` and `mmring::repair`.
//!
//! One walk does both. It follows docs/FORMAT.md ("Validation rules", "Listing the
//! live entries") from `read_pos` to `write_pos`, decoding with the same format.rs
//! functions and ring helpers that `pop` uses, and reports every problem with the file
//! offset and name of the field at fault. Repairing is the same walk with consequences:
//! impossible positions are reset, and every range that can't be trusted is marked
//! with `SKIPPED` stamps word by word, the marks a skipping reader leaves, so that
//! `pop` and `peek` step over it like any interrupted skip and deliver every intact
//! entry around it. `verify` runs the walk on a private copy-on-write map, so it sees
//! exactly what a repair would do without changing the file.
//!
//! The walk expects a quiescent ring (no other process pushing or popping); on a live
//! ring it may report torn records that are only being overwritten. Every loop
//! advances by at least 8 bytes and stays below `write_pos`, which is at most
//! `region_len` past `read_pos` once positions are settled, so it ends on any bytes.

use super::{RawRing, Region};
use crate::format::{
    self, CORRUPT_OFFSET, HEADER_LEN, MAX_POS, READ_POS_OFFSET, REC_CLAIM_OFFSET,
    REC_DATA_LEN_OFFSET, REC_HEADER_LEN, REC_HEADER_WORDS, REC_STAMP_OFFSET, RECORD_ALIGN,
    STATE_ABANDONED, STATE_BATCHED, STATE_CLAIMED, STATE_COMMITTED, STATE_PADDING, STATE_SKIPPED,
    WRITE_POS_OFFSET,
};
use crate::sync::Ordering;

/// What the walk found at one place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// File offset of the field at fault.
    pub offset: u64,
    /// Name of that field, as docs/FORMAT.md and [`layout`](crate::layout) spell it.
    pub field: &'static str,
    /// Position of the record concerned, if it is a record.
    pub position: Option<u64>,
    /// What is wrong, in words.
    pub message: String,
    /// What repairing does about it (for [`verify`](crate::verify): would do).
    pub action: Action,
}

/// What a repair does about a [`Finding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Nothing: the ring deals with it itself (e.g. a producer that died mid-push is
    /// skipped after the abandon timeout).
    None,
    /// A position field is set from `from` to `to`.
    Reset {
        /// The damaged value.
        from: u64,
        /// The value it gets.
        to: u64,
    },
    /// The positions `start..end` are dropped: readers skip them. Any entry in them
    /// is lost; its payload could not be trusted.
    Drop {
        /// First position dropped.
        start: u64,
        /// First position kept after them.
        end: u64,
    },
    /// The word in the free space where the record at `position` will start is zeroed:
    /// it held a stamp for that position that no producer wrote. Nothing is lost.
    Clear {
        /// The future position whose word is zeroed.
        position: u64,
    },
}

/// What a stretch of the ring between `read_pos` and `write_pos` holds, as the walk
/// classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanKind {
    /// An intact entry (`expired`: its TTL has passed, so readers drop it).
    Entry {
        /// Its payload length.
        data_len: u32,
        /// Whether its TTL has passed.
        expired: bool,
    },
    /// Padding up to the end of the region.
    Padding,
    /// A record whose producer was given up on; skipped by its claimed length.
    Abandoned,
    /// A record a producer is writing, or died writing.
    Claimed,
    /// A reservation whose producer has not claimed it (still writing, or died).
    Unclaimed,
    /// Words marked by a skipping reader (or by a repair).
    Skipped,
    /// Bytes that fail validation (see the report's findings).
    Damaged,
}

/// One stretch of the ring, `len` bytes from `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Span {
    /// Its position in the ring's stream.
    pub position: u64,
    /// The file offset where it starts.
    pub offset: u64,
    /// How many bytes of the stream it covers.
    pub len: u64,
    /// What it is.
    pub kind: SpanKind,
}

/// The outcome of a walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    pub read_pos: u64,
    pub write_pos: u64,
    pub entries: u64,
    pub expired: u64,
    pub entry_bytes: u64,
    pub problems: Vec<Finding>,
    pub notes: Vec<Finding>,
}

fn position_is_valid(pos: u64) -> bool {
    pos.is_multiple_of(RECORD_ALIGN) && pos < MAX_POS
}

impl<R: Region> RawRing<R> {
    /// Walks the ring, reporting every problem and calling `visit` for each stretch in
    /// position order. With `repair`, positions are reset and untrusted ranges
    /// dropped in the region; without, the region is not written (callers that want
    /// the effect of a repair without one pass a private copy and `repair = true`).
    pub(crate) fn check(&self, repair: bool, visit: &mut dyn FnMut(&Span)) -> Walk {
        let mut walk = Walk::default();
        let (read, write) = self.settle_positions(repair, &mut walk);
        walk.read_pos = read;
        walk.write_pos = write;
        let now_ms = self.clock.wall_ms();
        let mut buf = Vec::new();
        let mut pos = read;
        // Where the last padding record started, if the walk just stepped over one: a
        // damaged record right after it takes the padding with it, since padding is
        // only plausible in front of a record.
        let mut padding_before: Option<u64> = None;
        // The batch run the walk is in, as its first record and its end, if the
        // walk passed a committed record whose claim covers a run.
        let mut run: Option<(u64, u64)> = None;
        while pos < write {
            run = run.filter(|&(_, run_end)| pos < run_end);
            let offset = self.rec_off(pos) as u64;
            let stamp = self.stamp_at(pos).load(Ordering::Acquire);
            let mut span = |len: u64, kind: SpanKind| {
                visit(&Span {
                    position: pos,
                    offset,
                    len,
                    kind,
                })
            };
            let next = match self.params.key.state(stamp, pos) {
                state if self.readable(state) => match self.read_meta(pos) {
                    Err((field, what)) => Step::Damaged(field, what),
                    Ok(meta) => {
                        let end = pos + format::record_len(meta.data_len);
                        // A claim longer than the data validates only for a run's
                        // first record (`leads_run`).
                        match self.claimed_len(pos) {
                            Some(claimed) if claimed != meta.data_len => {
                                let run_end = pos + REC_HEADER_LEN as u64 + u64::from(claimed);
                                run = Some((pos, run_end));
                            }
                            _ => {}
                        }
                        if end > write {
                            Step::Damaged(
                                REC_DATA_LEN_OFFSET,
                                "the record extends past the write position".into(),
                            )
                        } else {
                            buf.clear();
                            buf.resize(meta.data_len as usize, 0);
                            self.region.read(offset as usize + REC_HEADER_LEN, &mut buf);
                            let crc = crc32c::crc32c(&buf);
                            if crc != meta.data_crc {
                                Step::DamagedTo(
                                    end,
                                    REC_HEADER_LEN,
                                    format!(
                                        "payload checksum is {crc:#010x}, the header says \
                                         {:#010x} (entry {}, {} bytes)",
                                        meta.data_crc, meta.id, meta.data_len
                                    ),
                                )
                            } else {
                                let expired = meta.expired(now_ms);
                                walk.entries += 1;
                                walk.expired += u64::from(expired);
                                walk.entry_bytes += u64::from(meta.data_len);
                                span(
                                    end - pos,
                                    SpanKind::Entry {
                                        data_len: meta.data_len,
                                        expired,
                                    },
                                );
                                Step::To(end)
                            }
                        }
                    }
                },
                Some(STATE_PADDING) => match self.padding_plausible(pos) {
                    Some(true) => {
                        span(self.lap_end(pos) - pos, SpanKind::Padding);
                        Step::To(self.lap_end(pos))
                    }
                    Some(false) => Step::Damaged(
                        REC_STAMP_OFFSET,
                        "padding stamp where no padding can be (a damaged stamp)".into(),
                    ),
                    // The record after it is not claimed: that is reported there.
                    None => {
                        span(self.lap_end(pos) - pos, SpanKind::Padding);
                        Step::To(self.lap_end(pos))
                    }
                },
                Some(state @ (STATE_ABANDONED | STATE_CLAIMED)) => {
                    let data_len = self.claimed_len(pos).unwrap_or(u32::MAX);
                    let rec_len = format::record_len(data_len);
                    if self.claimed_len_plausible(pos, data_len) && pos + rec_len <= write {
                        if state == STATE_CLAIMED {
                            walk.notes.push(Finding {
                                offset,
                                field: "stamp",
                                position: Some(pos),
                                message: format!(
                                    "record at position {pos} is claimed but not committed: \
                                     its producer is writing it or died; readers skip it \
                                     after the abandon timeout"
                                ),
                                action: Action::None,
                            });
                        }
                        let kind = if state == STATE_CLAIMED {
                            SpanKind::Claimed
                        } else {
                            SpanKind::Abandoned
                        };
                        span(rec_len, kind);
                        Step::To(pos + rec_len)
                    } else {
                        Step::Damaged(
                            REC_CLAIM_OFFSET,
                            format!(
                                "{} record claims an impossible length of {data_len} bytes",
                                if state == STATE_CLAIMED {
                                    "claimed"
                                } else {
                                    "abandoned"
                                }
                            ),
                        )
                    }
                }
                Some(STATE_SKIPPED) => {
                    let end = self.next_record_start(pos, write);
                    span(end - pos, SpanKind::Skipped);
                    Step::To(end)
                }
                _ => self.classify_stale(pos, stamp, write, &mut walk, &mut span),
            };
            let after_padding = padding_before
                .take()
                .filter(|_| pos % self.params.region_len == 0);
            // A damaged record inside a batch run: marks over it would make the
            // reader that meets them scan, and a scan passes (pop poisons) the run's
            // later records; and the run's first record claims the run only while the
            // record after it is stamped `BATCHED`. So the run is first split into
            // records of their own (DESIGN: Batch runs): from its first record if the
            // walk passed it, else (`read_pos` inside the run) from this record on.
            let split = match next {
                Step::To(_) => None,
                Step::Damaged(..) | Step::DamagedTo(..) => run.take().map(Some).or_else(|| {
                    let batched = self.params.key.state(stamp, pos) == Some(STATE_BATCHED);
                    (self.params.batch_runs && batched).then_some(None)
                }),
            };
            if let (true, Some(head)) = (repair, split) {
                self.split_run(head, pos, write);
            }
            let (end, damage) = match next {
                Step::To(end) => {
                    if self.params.key.state(stamp, pos) == Some(STATE_PADDING) {
                        padding_before = Some(pos);
                    }
                    (end, None)
                }
                Step::Damaged(field, message) => {
                    (self.next_record_start(pos, write), Some((field, message)))
                }
                Step::DamagedTo(end, field, message) => (end, Some((field, message))),
            };
            let damage = damage.map(|(field, mut message)| {
                if split.is_some() {
                    message.push_str(
                        "; the other records of its batch run are kept as records of their own",
                    );
                }
                (field, message)
            });
            if let Some((field, message)) = damage {
                let drop = DroppedRange {
                    start: after_padding.unwrap_or(pos),
                    at: pos,
                    end,
                    field,
                };
                self.drop_range(repair, drop, message, &mut walk, visit);
            }
            pos = end;
        }
        self.check_free_space(read, write, repair, &mut walk);
        walk
    }

    /// Reports the words of the free space, `[write, read + region_len)`, that already
    /// hold a stamp for the position the next reservation there will have, and zeroes
    /// them when repairing. No producer wrote such a word (positions are never
    /// reused): the bytes are forged or damaged. A producer can't claim over it,
    /// because a reader may act on a stamp for its head without a compare-and-swap on
    /// it (stepping over padding, popping a committed record), so it gives that space
    /// up and the word enters the ring as a record readers report as damaged.
    fn check_free_space(&self, read: u64, write: u64, repair: bool, walk: &mut Walk) {
        let region_len = self.params.region_len;
        let mut off = write % region_len;
        for pos in (write..read + region_len).step_by(RECORD_ALIGN as usize) {
            let word = self.word(HEADER_LEN + off as usize);
            if let Some(state) = self.params.key.state(word.load(Ordering::Acquire), pos) {
                walk.problems.push(Finding {
                    offset: (HEADER_LEN as u64) + off,
                    field: "stamp",
                    position: Some(pos),
                    message: format!(
                        "free space holds a stamp for position {pos} (state {state}), which \
                         no producer has reserved yet: forged or damaged bytes, which a push \
                         there would give up and readers would then report"
                    ),
                    action: Action::Clear { position: pos },
                });
                if repair {
                    word.store(0, Ordering::Release);
                }
            }
            off += RECORD_ALIGN;
            if off == region_len {
                off = 0;
            }
        }
    }

    /// Rewrites a batch run as records of their own, before a repair drops its
    /// damaged record at `damaged`. `head` is the run's first record and its end, if
    /// the walk passed it (it validated): its claim word then says its own length,
    /// with its metadata checksum recomputed (the checksum covers the claim word).
    /// Every later record, from the first record's next or else from `damaged`, is
    /// stamped `COMMITTED` instead of `BATCHED`: the run was committed (a reader got
    /// to it), so every record in it was complete, and each is then read, and
    /// checked, on its own. Later records are found by the lengths in their claim
    /// words (exactly their data), within the run, the lap and the written part, and
    /// only while each is a `BATCHED` stamp over a header that validates; the damaged
    /// record itself is passed by its claim word, not restamped (marks cover it).
    /// Where the chain breaks, the rest stays `BATCHED` and goes with the damaged
    /// record, as a reader's scan from it would take it.
    fn split_run(&self, head: Option<(u64, u64)>, damaged: u64, write: u64) {
        let (mut at, end) = match head {
            Some((head, run_end)) => {
                let Ok(meta) = self.read_meta(head) else {
                    return;
                };
                let writer = format::claim_pid(self.claim_at(head).load(Ordering::Relaxed));
                let words = meta.to_words(head, format::claim(meta.data_len, writer));
                let cells = self.region.atomics(self.rec_off(head), REC_HEADER_WORDS);
                for (cell, word) in cells.iter().zip(words).skip(1) {
                    cell.store(word, Ordering::Relaxed);
                }
                (head + format::record_len(meta.data_len), run_end)
            }
            None => (damaged, self.lap_end(damaged).min(write)),
        };
        while at < end {
            let stamp = self.stamp_at(at).load(Ordering::Acquire);
            let (Some(STATE_BATCHED), Some(len)) =
                (self.params.key.state(stamp, at), self.claimed_len(at))
            else {
                break;
            };
            let next = at + format::record_len(len);
            if next > end {
                break;
            }
            if at != damaged {
                if self.read_meta(at).is_err() {
                    break;
                }
                self.stamp_at(at).store(
                    self.params.key.stamp(at, STATE_COMMITTED),
                    Ordering::Release,
                );
            }
            at = next;
        }
    }

    /// A word at `pos` that is no stamp of the record there: a reservation whose
    /// producer has not claimed it (the word holds whatever an earlier lap left), or
    /// a damaged stamp. A record header that validates for `pos` proves a producer
    /// claimed and wrote it, so then the stamp is damaged; so is a word carrying
    /// `pos` itself with no valid state.
    fn classify_stale(
        &self,
        pos: u64,
        stamp: u64,
        write: u64,
        walk: &mut Walk,
        span: &mut dyn FnMut(u64, SpanKind),
    ) -> Step {
        if self.params.key.position(stamp) == pos || self.read_meta(pos).is_ok() {
            let (named, state) = self.params.key.decode(stamp);
            return Step::Damaged(
                REC_STAMP_OFFSET,
                format!(
                    "stamp {stamp:#x} (position {named}, state {state} with the stamp key \
                     taken off) is not a valid state of the record at this position"
                ),
            );
        }
        let end = self.next_record_start(pos, write);
        walk.notes.push(Finding {
            offset: self.rec_off(pos) as u64,
            field: "stamp",
            position: Some(pos),
            message: format!(
                "positions {pos}..{end} are reserved but not claimed: a producer is writing \
                 there or died; readers skip them after the abandon timeout"
            ),
            action: Action::None,
        });
        span(end - pos, SpanKind::Unclaimed);
        Step::To(end)
    }

    /// Reports the damaged range `drop` and, when repairing, marks every word of it
    /// `SKIPPED` and counts it once as corrupt.
    fn drop_range(
        &self,
        repair: bool,
        drop: DroppedRange,
        message: String,
        walk: &mut Walk,
        visit: &mut dyn FnMut(&Span),
    ) {
        let DroppedRange {
            start,
            at,
            end,
            field,
        } = drop;
        let offset = self.rec_off(at) as u64;
        let field_name = if field == REC_HEADER_LEN {
            "data"
        } else {
            crate::layout::record_field(field).map_or("record", |f| f.name)
        };
        walk.problems.push(Finding {
            offset: offset + field as u64,
            field: field_name,
            position: Some(at),
            message: format!("record at position {at}: {message}"),
            action: Action::Drop { start, end },
        });
        visit(&Span {
            position: at,
            offset,
            len: end - at,
            kind: SpanKind::Damaged,
        });
        if repair {
            let mut word = start;
            while word < end {
                // The marks a skipping reader leaves (DESIGN: Skipping): pop walks
                // them to the next record start, peek steps over them.
                self.stamp_at(word).store(
                    self.params.key.stamp(word, STATE_SKIPPED),
                    Ordering::Release,
                );
                word += RECORD_ALIGN;
            }
            self.count(CORRUPT_OFFSET);
        }
    }

    /// Validates `read_pos` and `write_pos` and, where they are impossible, chooses
    /// new values (stored in the region when repairing).
    ///
    /// The write position can be checked against the records and rebuilt from them. A
    /// producer reserves before it writes, so every record mmring wrote ends at or
    /// before `write_pos`: a committed record whose header validates (its checksum
    /// covers its position) ending past it proves `write_pos` was damaged to a lower
    /// value. A lost or too low write position becomes the end of the newest record
    /// the stamps show. The read position can't be rebuilt: a popped record keeps its
    /// committed stamp, so nothing in the region tells the entries still queued from
    /// the ones already delivered. A lost read position is therefore set to the write
    /// position, dropping what lay between rather than delivering anything twice.
    fn settle_positions(&self, repair: bool, walk: &mut Walk) -> (u64, u64) {
        let region_len = self.params.region_len;
        let read = self.read_pos().load(Ordering::Acquire);
        let write = self.write_pos().load(Ordering::Acquire);
        let consistent = |read: u64, write: u64| read <= write && write - read <= region_len;
        let read_valid = position_is_valid(read);
        let write_valid = position_is_valid(write);
        let intact = self.newest_end_within(MAX_POS, true);
        let settled = read_valid && write_valid && consistent(read, write);
        // A write position that moved during the scan belongs to a live ring, whose
        // newest records may have been written after `write` was loaded.
        if settled && (intact <= write || self.write_pos().load(Ordering::Acquire) != write) {
            return (read, write);
        }
        let newest = self.newest_record_end(intact);
        let new_write = if !write_valid {
            newest.max(if read_valid { read } else { 0 })
        } else if read_valid && consistent(read, newest) {
            // The records agree with the read position: the write position is wrong.
            newest
        } else {
            write.max(intact)
        };
        let new_read = if read_valid && consistent(read, new_write) {
            read
        } else {
            new_write
        };
        if new_write != write {
            let why = if !write_valid {
                format!("write position {write} is not a multiple of 8 below 2^62")
            } else if write < intact {
                format!("write position {write} is behind the intact record ending at {intact}")
            } else {
                format!(
                    "write position {write} is out of reach of the read position {read} \
                     ({region_len}-byte region)"
                )
            };
            walk.problems.push(Finding {
                offset: WRITE_POS_OFFSET as u64,
                field: "write_pos",
                position: None,
                message: format!("{why}; reset to {new_write}, the end of the newest record"),
                action: Action::Reset {
                    from: write,
                    to: new_write,
                },
            });
        }
        if new_read != read {
            let why = if read_valid {
                format!(
                    "read position {read} is out of reach of the write position {new_write} \
                     ({region_len}-byte region)"
                )
            } else {
                format!("read position {read} is not a multiple of 8 below 2^62")
            };
            let lost = self.count_entries(new_write.saturating_sub(region_len), new_write);
            walk.problems.push(Finding {
                offset: READ_POS_OFFSET as u64,
                field: "read_pos",
                position: None,
                message: format!(
                    "{why}; reset to the write position, which empties the ring: the \
                     {lost} intact record(s) before it may have been popped already, so \
                     they are dropped rather than risk delivering one twice"
                ),
                action: Action::Reset {
                    from: read,
                    to: new_read,
                },
            });
        }
        if repair {
            self.write_pos().store(new_write, Ordering::Release);
            self.read_pos().store(new_read, Ordering::Release);
        }
        (new_read, new_write)
    }

    /// Committed records with a valid header that start in `from..to`.
    fn count_entries(&self, from: u64, to: u64) -> u64 {
        let mut count = 0;
        let mut pos = self.next_record_start_from(from, to);
        while pos < to {
            let stamp = self.stamp_at(pos).load(Ordering::Acquire);
            let intact = self
                .readable(self.params.key.state(stamp, pos))
                .then(|| self.read_meta(pos).ok())
                .flatten();
            match intact {
                // Stepped over by its length, so that a run's later records count too
                // (a scan passes them).
                Some(meta) => {
                    count += 1;
                    pos += format::record_len(meta.data_len);
                }
                None => pos = self.next_record_start(pos, to),
            }
        }
        count
    }

    /// Where the records say writing stopped, given `intact`, the end of the newest
    /// intact record (a committed one whose header validates). Every word that is a
    /// plausible stamp for its own offset counts, at its length: an intact record up
    /// to its end, padding to the end of its lap, any other stamp by one word.
    ///
    /// Records newer than the newest intact one are ones never finished, less than a
    /// region past it; a stamp further ahead is damage (in a region whose length is a
    /// power of two, a stamp with a flipped high bit still fits its offset) and is not
    /// counted, nor is an end at or past `MAX_POS`, which no valid position reaches.
    fn newest_record_end(&self, intact: u64) -> u64 {
        // Without an intact record there is nothing to measure from (and nothing to
        // lose by trusting any stamp).
        let limit = if intact == 0 {
            MAX_POS
        } else {
            intact + self.params.region_len
        };
        self.newest_end_within(limit, false)
    }

    /// The newest record end at or below `limit` (and below `MAX_POS`) that the stamps
    /// show, counted as [`newest_record_end`](Self::newest_record_end) describes; with
    /// `intact_only`, only intact records count.
    fn newest_end_within(&self, limit: u64, intact_only: bool) -> u64 {
        let region_len = self.params.region_len;
        let mut newest = 0;
        let mut off = 0;
        while off < region_len {
            let value = self.word(HEADER_LEN + off as usize).load(Ordering::Acquire);
            let (pos, state) = self.params.key.decode(value);
            // Record starts, and a run's later records where the file has runs.
            let counts = format::starts_record(state) || self.readable(Some(state));
            if pos < MAX_POS && pos % region_len == off && counts {
                let intact = self
                    .readable(Some(state))
                    .then(|| self.read_meta(pos).ok())
                    .flatten()
                    .map(|meta| pos + format::record_len(meta.data_len));
                let end = match (intact, state) {
                    (Some(end), _) => Some(end),
                    (None, _) if intact_only => None,
                    (None, STATE_PADDING) => Some(self.lap_end(pos)),
                    (None, _) => Some(pos + RECORD_ALIGN),
                };
                if let Some(end) = end.filter(|end| *end < MAX_POS && *end <= limit) {
                    newest = newest.max(end);
                }
            }
            off += RECORD_ALIGN;
        }
        newest
    }
}

/// A damaged range: `start..end`, found at the record at `at` (`field`: the
/// record-relative offset at fault). `start` is before `at` when the padding in front
/// of the record goes with it.
struct DroppedRange {
    start: u64,
    at: u64,
    end: u64,
    field: usize,
}

/// Where the walk goes after a record.
enum Step {
    /// On to this position.
    To(u64),
    /// The record is damaged at this record-relative field; its length can't be
    /// trusted, so resynchronize.
    Damaged(usize, String),
    /// The record is damaged at this field, but its length is trusted: it ends here.
    DamagedTo(u64, usize, String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Header, Policy, TEST_STAMP_KEY};
    use crate::region::HeapRegion;
    use crate::ring::{Clock, Params};

    struct FixedClock;
    impl Clock for FixedClock {
        fn wall_ms(&self) -> u64 {
            1_000
        }
        fn mono_ms(&self) -> u64 {
            0
        }
    }

    fn ring() -> RawRing<HeapRegion> {
        let region_len = 4096;
        let file_len = HEADER_LEN as u64 + region_len;
        let region = HeapRegion::new(file_len as usize);
        let mut header = Header::new(file_len, 0, Policy::Reject, 100, 0);
        header.stamp_key = Some(TEST_STAMP_KEY);
        region.write(0, &header.to_bytes());
        let params = Params::from_header(&header);
        RawRing::unvalidated(
            region,
            params,
            1,
            Box::new(FixedClock),
            Box::new(crate::wait::YieldFutex),
        )
    }

    fn pop_all(ring: &RawRing<HeapRegion>) -> Vec<Vec<u8>> {
        pop_n(ring, 100)
    }

    /// Up to `n` entries popped one at a time.
    fn pop_n(ring: &RawRing<HeapRegion>, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..n {
            match ring.pop_into(&mut buf) {
                Ok(Some(_)) => out.push(buf.clone()),
                Ok(None) => break,
                Err(e) => panic!("pop after repair: {e}"),
            }
        }
        out
    }

    #[test]
    fn clean_ring_has_no_findings() {
        let ring = ring();
        for data in [&b"a"[..], b"bb", b"ccc"] {
            ring.push(data, 0).unwrap();
        }
        let mut kinds = Vec::new();
        let walk = ring.check(false, &mut |span| kinds.push(span.kind));
        assert_eq!(walk.problems, vec![]);
        assert_eq!((walk.entries, walk.entry_bytes), (3, 6));
        assert_eq!(kinds.len(), 3);
    }

    #[test]
    fn damaged_payload_is_dropped_exactly_and_the_rest_delivered() {
        let ring = ring();
        ring.push(b"first", 0).unwrap();
        let bad = ring.push(b"second", 0).unwrap();
        ring.push(b"third", 0).unwrap();
        let data_off = ring.rec_off(bad) + REC_HEADER_LEN;
        ring.region.write(data_off, b"X");
        let walk = ring.check(true, &mut |_| {});
        assert_eq!(walk.problems.len(), 1);
        let problem = &walk.problems[0];
        assert_eq!((problem.offset, problem.field), (data_off as u64, "data"));
        assert_eq!(
            problem.action,
            Action::Drop {
                start: bad,
                end: bad + 64
            }
        );
        assert_eq!(pop_all(&ring), vec![b"first".to_vec(), b"third".to_vec()]);
        assert_eq!(ring.check(false, &mut |_| {}).problems, vec![]);
        assert!(ring.push(b"more", 0).is_ok());
    }

    /// A damaged payload anywhere in a batch run, or a damaged header field after its
    /// first record: the repair splits the run into records of their own and drops
    /// exactly the damaged one, so every other entry of the run, and after it, is
    /// delivered, and the repaired ring checks clean; also when entries of the run
    /// were popped, so that the walk starts inside it. (Found by fuzzing: marking the
    /// run's second record made its first record, whose claim covers the run, fail
    /// validation, and the repair lost it.)
    #[test]
    fn damaged_record_in_a_batch_run_is_dropped_alone() {
        let entries: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        // The byte damaged, and the field and record offset it is reported at.
        let damage = [
            (REC_HEADER_LEN, "data", REC_HEADER_LEN),
            (
                format::REC_TTL_OFFSET,
                "meta_crc",
                format::REC_META_CRC_OFFSET,
            ),
        ];
        let mut cases = Vec::new();
        for len in 2..=entries.len() {
            for bad in 0..len {
                for damage in damage {
                    // Entries of the run popped first: `read_pos` inside the run, so
                    // the walk starts after its first record.
                    for popped in 0..=bad {
                        cases.push((len, bad, damage, popped));
                    }
                }
            }
        }
        for (len, bad, (field, name, reported), popped) in cases {
            // A damaged first header costs the whole run (nothing says where its
            // records are): `crate::ring`'s tests cover that.
            if bad == 0 && field != REC_HEADER_LEN {
                continue;
            }
            let case = format!("run of {len}, {popped} popped, record {bad} damaged at {name}");
            let ring = ring();
            ring.push(b"before", 0).unwrap();
            let first = ring.write_pos().load(Ordering::Relaxed);
            assert_eq!(ring.push_batch(&entries[..len], 0).unwrap(), len);
            ring.push(b"after", 0).unwrap();
            let at: Vec<u64> = (0..len as u64).map(|i| first + 64 * i).collect();
            for (i, &pos) in at.iter().enumerate() {
                let stamp = ring.stamp_at(pos).load(Ordering::Relaxed);
                let want = if i == 0 {
                    STATE_COMMITTED
                } else {
                    STATE_BATCHED
                };
                assert_eq!(TEST_STAMP_KEY.state(stamp, pos), Some(want), "{case}");
            }
            let popped_data = pop_n(&ring, 1 + popped);
            assert_eq!(popped_data.len(), 1 + popped, "{case}");
            ring.region.write(ring.rec_off(at[bad]) + field, b"X");

            let walk = ring.check(true, &mut |_| {});
            assert_eq!(walk.problems.len(), 1, "{case}: {:?}", walk.problems);
            let problem = &walk.problems[0];
            assert_eq!(
                (problem.offset, problem.field),
                ((ring.rec_off(at[bad]) + reported) as u64, name),
                "{case}"
            );
            let drop = Action::Drop {
                start: at[bad],
                end: at[bad] + 64,
            };
            assert_eq!(problem.action, drop, "{case}");
            assert!(problem.message.contains("records of their own"), "{case}");
            let after = ring.check(false, &mut |_| {});
            assert_eq!(after.problems, vec![], "{case}");

            let mut want = Vec::new();
            for (i, data) in entries[..len].iter().enumerate().skip(popped) {
                if i != bad {
                    want.push(data.to_vec());
                }
            }
            want.push(b"after".to_vec());
            assert_eq!(after.entries, want.len() as u64, "{case}");
            assert_eq!(pop_all(&ring), want, "{case}");
        }
    }

    #[test]
    fn impossible_positions_are_reset() {
        let ring = ring();
        ring.push(b"kept", 0).unwrap();
        ring.write_pos().store(3, Ordering::Relaxed);
        let walk = ring.check(true, &mut |_| {});
        assert_eq!(walk.problems.len(), 1, "{:?}", walk.problems);
        assert_eq!(walk.problems[0].field, "write_pos");
        assert_eq!(walk.problems[0].action, Action::Reset { from: 3, to: 64 });
        assert_eq!(pop_all(&ring), vec![b"kept".to_vec()]);
    }
}
