#!/usr/bin/env python3
"""Deliberately break the ring and check that the test suites notice.

Each mutant below replaces one exact snippet of mmring's source with a broken
version (a relaxed ordering, a skipped check, a plain store instead of a CAS).
For each, the suites run in order, cheapest first, until one fails; the table
printed at the end names the suite and test that caught the mutant. A mutant
that every suite passes is a hole in the tests.

    tools/mutants.py                 # all mutants
    tools/mutants.py commit-relaxed  # only the named ones
    tools/mutants.py --list

The source is restored after each mutant, also on Ctrl-C. Run it on a clean
tree: it refuses to start when `git status` shows changes under src/.
Takes minutes per mutant (each is a rebuild plus the suites, loom last).
"""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "mutants"
LOOM_TARGET = ROOT / "target" / "mutants-loom"


@dataclass
class Mutant:
    name: str
    file: str
    find: str
    replace: str
    why: str


MUTANTS = [
    Mutant(
        "commit-relaxed",
        "src/ring.rs",
        """                self.params.key.stamp(pos, STATE_COMMITTED),
                Ordering::Release,""",
        """                self.params.key.stamp(pos, STATE_COMMITTED),
                Ordering::Relaxed,""",
        "push publishes COMMITTED with Relaxed: a reader may see the stamp before the payload",
    ),
    Mutant(
        "pop-stamp-relaxed",
        "src/ring.rs",
        """            let stamp = self.word(off).load(Ordering::Acquire);
            if !self.readable(self.params.key.state(stamp, read)) {""",
        """            let stamp = self.word(off).load(Ordering::Relaxed);
            if !self.readable(self.params.key.state(stamp, read)) {""",
        "pop loads the stamp with Relaxed: it may copy the payload from before the commit",
    ),
    Mutant(
        "no-writer-fence",
        "src/ring.rs",
        """        // "is read_pos still where I started?" check can't pass on a stale value.
        fence(Ordering::Release);""",
        """        // "is read_pos still where I started?" check can't pass on a stale value.""",
        "the writer's half of the seqlock is dropped: a peek may accept reused bytes",
    ),
    Mutant(
        "pop-store-not-cas",
        "src/ring.rs",
        """        let moved = self
            .read_pos()
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();""",
        """        self.read_pos().store(to, Ordering::Release);
        let moved = true;""",
        "read_pos is moved with a plain store: two consumers can both take one entry",
    ),
    Mutant(
        "peek-no-recheck",
        "src/ring.rs",
        """            fence(Ordering::Acquire);
            if self.read_pos().load(Ordering::Relaxed) > pos {
                continue;
            }
            let meta = match parsed {""",
        """            let meta = match parsed {""",
        "peek trusts its copy without checking the record was not freed meanwhile",
    ),
    Mutant(
        "pop-skip-data-crc",
        "src/ring.rs",
        """            if data_crc != meta.data_crc {
                return Err(self.payload_corrupt(&head));""",
        """            if false && data_crc != meta.data_crc {
                return Err(self.payload_corrupt(&head));""",
        "pop returns a payload without verifying its CRC32C",
    ),
    Mutant(
        "meta-crc-ignored",
        "src/format.rs",
        """        if stored != computed {
            return Err(MetaFault::MetaCrc { stored, computed });""",
        """        if false && stored != computed {
            return Err(MetaFault::MetaCrc { stored, computed });""",
        "record metadata is trusted without its checksum",
    ),
    Mutant(
        "ttl-ignored",
        "src/ring.rs",
        """            let expired = meta.ttl_secs != 0 && meta.expired(self.clock.wall_ms());
            // The copy is consistent""",
        """            let expired = false;
            // The copy is consistent""",
        "pop returns expired entries",
    ),
    Mutant(
        "reserve-ignores-readers",
        "src/ring.rs",
        """                room = read + region_len;
                if end > room {""",
        """                room = read + region_len;
                if false {""",
        "a push reserves space that unread entries still occupy",
    ),
    Mutant(
        "padding-trusted",
        "src/ring.rs",
        """        if pad >= format::record_len(self.max_data) || !self.within_written(end + RECORD_ALIGN) {
            return Some(false);
        }""",
        """        if pad < u64::MAX {
            return Some(true);
        }""",
        "a PADDING stamp is trusted without checking it can be real",
    ),
    Mutant(
        "claim-no-postcheck",
        "src/ring.rs",
        """        if self.lapped(pos) {
            let _ = stamp.compare_exchange(claimed, replaced, Ordering::AcqRel, Ordering::Relaxed);
            return false;
        }""",
        "",
        "a producer stalled past the abandon timeout keeps a claim in a later lap",
    ),
    Mutant(
        "lapped-a-lap-late",
        "src/ring.rs",
        """        self.write_pos().load(Ordering::Acquire) > pos + self.params.region_len""",
        """        self.write_pos().load(Ordering::Acquire) > pos + 2 * self.params.region_len""",
        "claim's lap check notices a later lap one lap too late",
    ),
    Mutant(
        "skip-no-readpos-check",
        "src/ring.rs",
        """        fence(Ordering::Acquire);
        if self.read_pos().load(Ordering::Acquire) != read {
            return Ok(false);
        }
        let head = self.stamp_at(read);""",
        """        let head = self.stamp_at(read);""",
        "a skip acts on a stale head, possibly a later lap's record",
    ),
    Mutant(
        "abandon-immediately",
        "src/ring.rs",
        """        now.saturating_sub(self.stall.since.load(Ordering::Relaxed))
    }""",
        """        u64::MAX
    }""",
        "a head being written is abandoned without waiting for the timeout",
    ),
    Mutant(
        "batch-pop-ignores-cas",
        "src/ring.rs",
        """            if !self.advance_read(head.pos, end, !first_expired) {""",
        """            if !{
                self.advance_read(head.pos, end, !first_expired);
                true
            } {""",
        "pop_batch keeps its copies when another consumer moved read_pos first",
    ),
    Mutant(
        "batch-damage-consumed",
        "src/ring.rs",
        """                    break if damaged { record.end } else { record.pos };""",
        """                    break record.end;""",
        "pop_batch removes a damaged record behind good ones without reporting it",
    ),
    Mutant(
        "batch-commit-keeps-rest",
        "src/ring.rs",
        """                self.abandon_claimed(at, &run[i..]);
                return i;""",
        """                let mut next = at + format::record_len(data.as_ref().len() as u32);
                for rest in &run[i + 1..] {
                    self.commit(next, off(next));
                    next += format::record_len(rest.as_ref().len() as u32);
                }
                return i;""",
        "after a failed commit, the rest of the batch is still committed, ahead of the retried entry",
    ),
    Mutant(
        "batch-claims-miscounted",
        "src/ring.rs",
        """        let more = if claimed == n { n - 1 } else { claimed };""",
        """        let more = claimed;""",
        "a full batch counts one record too many: the counters no longer add up",
    ),
    Mutant(
        "batch-writes-after-failed-claim",
        "src/ring.rs",
        """        if claimed < n {
            // A claim fails""",
        """        if false && claimed < n {
            // A claim fails""",
        "after a failed claim, the records claimed before it are still written, into reused space",
    ),
    Mutant(
        "no-abandon-chain",
        "src/ring.rs",
        """        self.params.key.state(stamp, read) == Some(STATE_CLAIMED)
            && self.stall.chain_pos""",
        """        false
            && self.stall.chain_pos""",
        "a dead batch producer's records are abandoned one timeout at a time",
    ),
    Mutant(
        "batch-wraps",
        "src/ring.rs",
        """            let mut limit = room.min(pos - pos_in_lap + region_len);""",
        """            let mut limit = room;""",
        "a batch reservation runs past the end of the lap (records would straddle it)",
    ),
    Mutant(
        "writer-gone-always",
        "src/process.rs",
        """    writer != own && own_tag != 0 && tag == own_tag && !may_exist(pid)""",
        """    writer != own && own_tag != 0 && tag == own_tag""",
        "a live producer's record is abandoned after 10 ms instead of the abandon timeout",
    ),
    Mutant(
        "writer-gone-never",
        "src/process.rs",
        """    writer != own && own_tag != 0 && tag == own_tag && !may_exist(pid)""",
        """    writer != own && own_tag != 0 && tag == own_tag && !may_exist(pid) && false""",
        "a dead producer's record waits out the whole abandon timeout",
    ),
    Mutant(
        "writer-gone-any-namespace",
        "src/process.rs",
        """    writer != own && own_tag != 0 && tag == own_tag && !may_exist(pid)""",
        """    writer != own && !may_exist(pid)""",
        "a process ID from another PID namespace is taken for one of this namespace",
    ),
    Mutant(
        "writer-gone-stale-head",
        "src/ring.rs",
        """        if stuck_ms < PROBE_AFTER_MS || self.params.key.state(stamp, read) != Some(STATE_CLAIMED) {""",
        """        if stuck_ms < PROBE_AFTER_MS {""",
        "an unclaimed head is judged by the writer an earlier lap left in its claim word",
    ),
    Mutant(
        "short-copy-skips-the-tail",
        "src/region.rs",
        """        load_part(last, 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);""",
        """        load_part(last, 0, tail);""",
        "the one-pass copy of a short payload leaves its last partial word out of the checksum",
    ),
    Mutant(
        "short-store-skips-the-tail",
        "src/region.rs",
        """        store_end(last, 0, tail);
        crc = crate::crc::crc32c_append(crc, tail);""",
        """        store_end(last, 0, tail);""",
        "the one-pass copy of a short payload into the mapping leaves its last partial word out of the checksum it records",
    ),
    Mutant(
        "payload-end-keeps-stale-bytes",
        "src/region.rs",
        """        store_end(last, 0, tail);""",
        """        merge_part(last, 0, tail);""",
        "a short payload's last word keeps the bytes of an earlier lap after the payload, which can read as the stamp of a later record",
    ),
    Mutant(
        "stamp-key-unmasked",
        "src/format.rs",
        """        StampKey(random & STAMP_KEY_MASK)""",
        """        StampKey(random)""",
        "the stamp key keeps its top bits (a payload's 0xFF fill can then read as a stamp) and its state bits",
    ),
    Mutant(
        "stamp-key-crc-unchecked",
        "src/format.rs",
        """            if stored_crc != crc {
                return Err(corrupt(
                    STAMP_KEY_CRC_OFFSET,""",
        """            if stored_crc != crc && false {
                return Err(corrupt(
                    STAMP_KEY_CRC_OFFSET,""",
        "a damaged stamp key is trusted: every stamp reads as stale and readers skip every record",
    ),
    Mutant(
        "stamp-key-never-drawn",
        "src/options.rs",
        """        if self.stamp_key {""",
        """        if self.stamp_key && false {""",
        "new files are created without a stamp key, open to payloads built to pass for stamps",
    ),
    Mutant(
        "wide-skips-a-stream",
        "src/wide.rs",
        """        z = _mm_crc32_u64(z, word(b_at[2], i));""",
        """        let _ = word(b_at[2], i);""",
        "the vector copy of a long payload leaves one of its word-wise parts out of the checksum",
    ),
    Mutant(
        "wide-drops-a-lane",
        "src/wide.rs",
        """        _mm_xor_si128(low, high),\n        _mm256_extracti128_si256::<1>(last),""",
        """        _mm_xor_si128(low, low),\n        _mm256_extracti128_si256::<1>(last),""",
        "the vector copy of a long payload leaves most of part A out of the checksum",
    ),
    Mutant(
        "chain-reaches-retry",
        "src/ring.rs",
        """            && read < self.stall.chain_limit.load(Ordering::Relaxed)""",
        """            && read < u64::MAX""",
        "a producer's retry, reserved right behind its abandoned record, is abandoned with it",
    ),
    Mutant(
        "lap-cache-off-by-one",
        "src/lap.rs",
        """        if in_lap < region_len {""",
        """        if in_lap <= region_len {""",
        "the first position of the next lap is taken for the end of the cached one",
    ),
    Mutant(
        "lap-cache-keeps-any-start",
        "src/lap.rs",
        """        if start < 1 << 63 {""",
        """        if start > 0 || start == 0 {""",
        "a lap start near 2^64 (from a damaged position) is cached and wraps for small positions",
    ),
    Mutant(
        "pop-batch-trusts-read-pos",
        "src/ring.rs",
        """                if self.check_pos(read, READ_POS_OFFSET).is_err() {
                    break;
                }""",
        "",
        "pop_batch takes a read position written between its moves without checking it",
    ),
    Mutant(
        "run-claim-covers-first-only",
        "src/ring.rs",
        """let run_claim = format::claim((end - pos - REC_HEADER_LEN as u64) as u32, self.pid);""",
        """let run_claim = format::claim(first.len() as u32, self.pid);""",
        "a batch run's claim covers its first record only: a reader that abandons the run steps onto its BATCHED records and delivers them, and the producer pushes them again",
    ),
    Mutant(
        "run-batched-before-claim",
        "src/ring.rs",
        """        if !self.claim_with_off(pos, first_off, STATE_CLAIMED, Some(run_claim)) {
            // A reader is skipping the unclaimed run after the abandon timeout.""",
        """        if false {
            // A reader is skipping the unclaimed run after the abandon timeout.""",
        "a batch run is written without claiming its first record: nothing stops readers, who deliver its records before the commit",
    ),
    Mutant(
        "run-counts-before-commit",
        "src/ring.rs",
        """        if !self.commit(pos, first_off) {
            // A reader abandoned the first record and stepped over the run, counting
            // it as one abandoned record, as the reservation counted it pushed.
            return 0;
        }""",
        """        self.word(PUSHED_OFFSET).fetch_add((run.len() - 1) as u64, Ordering::Relaxed);
        if !self.commit(pos, first_off) {
            return 0;
        }
        self.word(PUSHED_OFFSET).fetch_sub((run.len() - 1) as u64, Ordering::Relaxed);""",
        "a batch run counts its records pushed before its commit: an abandoned run leaves pushed too high",
    ),
    Mutant(
        "run-cap-ignored",
        "src/ring.rs",
        """                limit = limit.min(pos + REC_HEADER_LEN as u64 + u64::from(self.max_data));""",
        """                let _ = limit.min(pos + REC_HEADER_LEN as u64 + u64::from(self.max_data));""",
        "a batch run may be longer than a claim readers accept: an abandoned one is taken for damage",
    ),
    Mutant(
        "run-writes-after-abandon",
        "src/ring.rs",
        """            if self.word(first_off).load(Ordering::Relaxed) != claimed {""",
        """            if false && self.word(first_off).load(Ordering::Relaxed) != claimed {""",
        "a batch run's producer goes on writing the run after readers abandoned it, into space a later lap may hold",
    ),
    Mutant(
        "scan-stops-at-batched",
        "src/format.rs",
        """        STATE_CLAIMED | STATE_COMMITTED | STATE_PADDING | STATE_ABANDONED
    )""",
        """        STATE_CLAIMED | STATE_COMMITTED | STATE_PADDING | STATE_ABANDONED | STATE_BATCHED
    )""",
        "a scan stops at BATCHED records, which may belong to a run never committed (its first stamp damaged)",
    ),
    Mutant(
        "abandoned-claim-into-run",
        "src/ring.rs",
        """                != Some(STATE_BATCHED)
    }""",
        """                != Some(u64::MAX)
    }""",
        "an abandoned record is stepped over by a damaged claim that ends inside a run, onto records never committed",
    ),
    Mutant(
        "peek-scans-past-unfinished-skip",
        "src/ring.rs",
        """                Some(STATE_SKIPPED) => match self.end_of_skipped(pos, end) {""",
        """                Some(STATE_SKIPPED) => match Some(self.next_record_start(pos, end)) {""",
        "peek scans past an unfinished skip, over a reservation claimed behind a stale word, to a later record: a subscriber would lose that reservation's entries",
    ),
    Mutant(
        "leads-run-ignores-next",
        "src/ring.rs",
        """                .load(Ordering::Acquire)
                == self.params.key.stamp(next, STATE_BATCHED)""",
        """                .load(Ordering::Acquire)
                != u64::MAX""",
        "any committed record whose claim exceeds its data length is taken for a batch run's first",
    ),
    Mutant(
        "repair-marks-inside-run",
        "src/ring/check.rs",
        """                self.split_run(head, pos, write);""",
        """                let _ = (head, pos, write);""",
        "repair marks a damaged record inside a batch run without splitting the run: the scan a reader then makes takes the rest of the run, and the run's first record can fail validation",
    ),
    Mutant(
        "make-room-trusts-end",
        "src/ring.rs",
        """                        if !self.within_written(end) {
                            // As in ready_head""",
        """                        if false && !self.within_written(end) {
                            // As in ready_head""",
        "a push making room past a committed head that ends beyond write_pos (damage) loops forever",
    ),
]

# Suites, cheapest and most specific first. Each is (label, command, env, timeout s).
SUITES = [
    ("unit", ["cargo", "test", "--all-features", "--lib"], {}, 300),
    ("model", ["cargo", "test", "--all-features", "--test", "model"], {}, 300),
    ("batch", ["cargo", "test", "--all-features", "--test", "batch"], {}, 300),
    ("corrupt_files", ["cargo", "test", "--all-features", "--test", "corrupt_files"], {}, 300),
    ("verify_repair", ["cargo", "test", "--all-features", "--test", "verify_repair"], {}, 300),
    ("stress", ["cargo", "test", "--all-features", "--test", "stress"], {}, 300),
    ("persistence", ["cargo", "test", "--all-features", "--test", "persistence"], {}, 300),
    ("crash", ["cargo", "test", "--all-features", "--test", "crash", "--test", "crash_batch"], {}, 300),
    ("kill_soak", ["cargo", "test", "--all-features", "--test", "kill_soak"], {}, 300),
    (
        "loom",
        ["cargo", "test", "--release", "--test", "loom"],
        {
            "RUSTFLAGS": "--cfg loom",
            "LOOM_MAX_PREEMPTIONS": "2",
            "CARGO_TARGET_DIR": str(LOOM_TARGET),
        },
        900,
    ),
]


def failing_test(output: str) -> str:
    """The first failing test's name in cargo test output, if any."""
    found = re.findall(r"^test (\S+) \.\.\. FAILED", output, re.MULTILINE)
    if found:
        return found[0]
    if "panicked" in output:
        return "(a panic)"
    if "error[" in output or "error:" in output:
        return "(build failed)"
    return "(failed)"


def run_suites(only_build_check: bool = False):
    for label, cmd, extra_env, timeout in SUITES:
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", str(TARGET))
        env.update(extra_env)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return label, f"(timed out after {timeout} s: a hang)", time.monotonic() - started
        if proc.returncode != 0:
            return label, failing_test(proc.stdout + proc.stderr), time.monotonic() - started
    return None, None, 0.0


def main(argv):
    if "--list" in argv:
        for mutant in MUTANTS:
            print(f"{mutant.name:26} {mutant.why}")
        return 0
    chosen = [m for m in MUTANTS if not argv or m.name in argv]
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    if dirty.strip():
        print("mutants: src/ has uncommitted changes; commit or stash them first", file=sys.stderr)
        return 2
    rows = []
    for mutant in chosen:
        path = ROOT / mutant.file
        original = path.read_text()
        count = original.count(mutant.find)
        if count != 1:
            rows.append((mutant, "-", f"not applied: snippet found {count} times", 0.0))
            print(f"{mutant.name}: snippet found {count} times in {mutant.file}; skipped", flush=True)
            continue
        try:
            path.write_text(original.replace(mutant.find, mutant.replace))
            print(f"{mutant.name}: running suites ...", flush=True)
            suite, test, secs = run_suites()
        finally:
            path.write_text(original)
        if suite is None:
            rows.append((mutant, "NONE", "survived every suite", 0.0))
        else:
            rows.append((mutant, suite, test, secs))
        print(f"{mutant.name}: caught by {suite}: {test}", flush=True)
    print()
    print("| mutant | what it breaks | caught by suite | failing test |")
    print("|---|---|---|---|")
    for mutant, suite, test, _ in rows:
        print(f"| `{mutant.name}` | {mutant.why} | {suite} | `{test}` |")
    return 1 if any(suite == "NONE" for _, suite, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
