#!/usr/bin/env python3
"""List the live entries of an mmring ring file.

An independent reader, written from docs/FORMAT.md alone (Python 3 standard library
only). It validates the file header and the positions, then walks the records from
read_pos to write_pos and prints each live entry as one JSON line (the records of a
batch run, "Batch runs", one entry each):

    {"id": 0, "data_hex": "68656c6c6f", "ttl_secs": 0, "write_time_ms": 1795424510495}

Damaged records are reported on stderr with their file offset and skipped; the listing
then continues at the next record start. The file is only read, never written.

usage: read_ring.py [--now-ms MS] FILE

Exit status: 0 every record in the ring was readable; 1 the file is not a valid ring
(missing, not a ring, another format version, a damaged header or positions);
2 bad usage; 3 one or more damaged records were reported.
"""

import argparse
import json
import mmap
import os
import struct
import sys
import time

# ---------------------------------------------------------------- FORMAT.md constants

MAGIC = b"\x89MMRING\n"
FORMAT_VERSION = 1
ENTRY_VERSION = 1
HEADER_LEN = 4096
STATIC_HEADER_LEN = 64
FIXED_HEADER_LEN = 76  # the static header, stamp_key and stamp_key_crc
REC_HEADER_LEN = 56
RECORD_ALIGN = 8
STATE_MASK = 7
MIN_REGION_LEN = 4096
MAX_REGION_LEN = 1 << 46
MAX_POS = 1 << 62
FLAG_BATCH_RUNS = 1
FLAG_STAMP_KEY = 2
STAMP_KEY_MASK = 0x3FFFFFFFFFFFFFF8

# File header, static part: (offset, struct format) per field.
VERSION_OFF = 8
HEADER_LEN_OFF = 12
FILE_LEN_OFF = 16
REGION_LEN_OFF = 24
DEFAULT_TTL_OFF = 32
ON_FULL_OFF = 36
ABANDON_MS_OFF = 40
FLAGS_OFF = 44
CREATED_OFF = 48
RESERVED_OFF = 56
HEADER_CRC_OFF = 60

# File header, stamp key (read only with FLAG_STAMP_KEY).
STAMP_KEY_OFF = 64
STAMP_KEY_CRC_OFF = 72

# File header, atomic slots.
WRITE_POS_OFF = 128
READ_POS_OFF = 256

# Record header, offsets relative to the record.
REC_STAMP_OFF = 0
REC_CLAIM_OFF = 8
REC_META_CRC_OFF = 16
REC_VERSION_OFF = 20
REC_DATA_LEN_OFF = 28
REC_TTL_OFF = 32
REC_ID_OFF = 36
REC_DATA_CRC_OFF = 44
REC_WRITE_TIME_OFF = 48

STALE = 0
CLAIMED = 1
COMMITTED = 2
PADDING = 3
ABANDONED = 4
SKIPPED = 5
BATCHED = 7
# BATCHED is not one: a scan can't tell whether its run was committed.
RECORD_START_STATES = (CLAIMED, COMMITTED, PADDING, ABANDONED)
STATE_NAMES = {
    STALE: "stale",
    CLAIMED: "CLAIMED",
    COMMITTED: "COMMITTED",
    PADDING: "PADDING",
    ABANDONED: "ABANDONED",
    SKIPPED: "SKIPPED",
    BATCHED: "BATCHED",
    6: "unassigned state 6",
}

EXIT_OK = 0
EXIT_NOT_A_RING = 1
EXIT_USAGE = 2
EXIT_CORRUPT = 3

# ---------------------------------------------------------------- CRC32C


def _crc32c_table():
    """The 256-entry table of the reflected Castagnoli polynomial 0x82F63B78."""
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC32C: init 0xFFFFFFFF, reflected, final XOR 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


if crc32c(b"123456789") != 0xE3069283 or crc32c(b"") != 0:
    raise AssertionError("CRC32C implementation does not match its check value")

# ---------------------------------------------------------------- decoding


def u32_at(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def u64_at(buf, off):
    return struct.unpack_from("<Q", buf, off)[0]


def floor8(value):
    return value - value % RECORD_ALIGN


def ceil8(value):
    return floor8(value + RECORD_ALIGN - 1)


def record_len(data_len):
    return ceil8(REC_HEADER_LEN + data_len)


class NotARing(Exception):
    """The file can't be listed; `offset` names the offending field, if any."""

    def __init__(self, what, offset=None):
        super().__init__(what)
        self.what = what
        self.offset = offset

    def __str__(self):
        if self.offset is None:
            return self.what
        return "corrupt header at file offset %d: %s" % (self.offset, self.what)


class Header:
    """The validated static header (FORMAT.md, "Validation rules", header)."""

    def __init__(self, buf, actual_len):
        if actual_len < HEADER_LEN:
            raise NotARing(
                "file is %d bytes, shorter than the %d-byte ring header"
                % (actual_len, HEADER_LEN)
            )
        if bytes(buf[0:8]) != MAGIC:
            raise NotARing("the file does not start with the mmring magic bytes")
        version = u32_at(buf, VERSION_OFF)
        if version != FORMAT_VERSION:
            raise NotARing(
                "format version %d is not supported (this reader reads version %d)"
                % (version, FORMAT_VERSION)
            )
        stored = u32_at(buf, HEADER_CRC_OFF)
        computed = crc32c(buf[0:HEADER_CRC_OFF])
        if stored != computed:
            raise NotARing(
                "header checksum is 0x%08x, computed 0x%08x" % (stored, computed),
                HEADER_CRC_OFF,
            )
        header_len = u32_at(buf, HEADER_LEN_OFF)
        if header_len != HEADER_LEN:
            raise NotARing(
                "header_len is %d, expected %d" % (header_len, HEADER_LEN),
                HEADER_LEN_OFF,
            )
        self.file_len = u64_at(buf, FILE_LEN_OFF)
        if self.file_len != actual_len:
            raise NotARing(
                "header says the file is %d bytes but it is %d"
                % (self.file_len, actual_len),
                FILE_LEN_OFF,
            )
        self.region_len = u64_at(buf, REGION_LEN_OFF)
        if (
            self.region_len != self.file_len - HEADER_LEN
            or self.region_len % RECORD_ALIGN != 0
            or not MIN_REGION_LEN <= self.region_len <= MAX_REGION_LEN
        ):
            raise NotARing(
                "region_len is %d; it must be file_len - %d, a multiple of 8, "
                "and lie in %d..=%d"
                % (self.region_len, HEADER_LEN, MIN_REGION_LEN, MAX_REGION_LEN),
                REGION_LEN_OFF,
            )
        on_full = u32_at(buf, ON_FULL_OFF)
        if on_full not in (0, 1, 2):
            raise NotARing("on_full is %d, expected 0, 1 or 2" % on_full, ON_FULL_OFF)
        if u32_at(buf, ABANDON_MS_OFF) == 0:
            raise NotARing("abandon_ms is 0", ABANDON_MS_OFF)
        if u32_at(buf, RESERVED_OFF) != 0:
            raise NotARing("reserved field is not 0", RESERVED_OFF)
        flags = u32_at(buf, FLAGS_OFF)
        if flags & ~(FLAG_BATCH_RUNS | FLAG_STAMP_KEY) != 0:
            raise NotARing(
                "flags are 0x%x; no bit but FLAG_BATCH_RUNS (bit 0) and "
                "FLAG_STAMP_KEY (bit 1) is defined" % flags,
                FLAGS_OFF,
            )
        self.batch_runs = flags & FLAG_BATCH_RUNS != 0
        # The key every stamp is XORed with; 0 in a file without FLAG_STAMP_KEY.
        self.stamp_key = 0
        if flags & FLAG_STAMP_KEY:
            stored = u32_at(buf, STAMP_KEY_CRC_OFF)
            computed = crc32c(buf[STAMP_KEY_OFF:STAMP_KEY_CRC_OFF])
            if stored != computed:
                raise NotARing(
                    "stamp key checksum is 0x%08x, computed 0x%08x" % (stored, computed),
                    STAMP_KEY_CRC_OFF,
                )
            self.stamp_key = u64_at(buf, STAMP_KEY_OFF)
            if self.stamp_key & ~STAMP_KEY_MASK != 0:
                raise NotARing(
                    "stamp key 0x%016x has bits outside 3..61" % self.stamp_key,
                    STAMP_KEY_OFF,
                )


# ---------------------------------------------------------------- the walk


class Reader:
    """Walks [read_pos, write_pos) as in FORMAT.md, "Listing the live entries"."""

    def __init__(self, buf, header, now_ms, path):
        self.buf = buf
        self.region_len = header.region_len
        self.batch_runs = header.batch_runs
        self.stamp_key = header.stamp_key
        self.max_data = min(floor8(self.region_len // 2) - REC_HEADER_LEN, 0xFFFFFFFF)
        self.now_ms = now_ms
        self.path = path
        self.corrupt = 0
        self.read_pos = u64_at(buf, READ_POS_OFF)
        self.write_pos = u64_at(buf, WRITE_POS_OFF)
        for name, pos, off in (
            ("read_pos", self.read_pos, READ_POS_OFF),
            ("write_pos", self.write_pos, WRITE_POS_OFF),
        ):
            if pos % RECORD_ALIGN != 0 or pos >= MAX_POS:
                raise NotARing(
                    "%s %d is not a multiple of 8 below 2^62" % (name, pos), off
                )
        if not self.read_pos <= self.write_pos <= self.read_pos + self.region_len:
            raise NotARing(
                "read_pos %d and write_pos %d are out of order or more than "
                "region_len %d apart" % (self.read_pos, self.write_pos, self.region_len),
                READ_POS_OFF,
            )

    def rec_off(self, pos):
        """File offset of the record at position `pos`."""
        return HEADER_LEN + pos % self.region_len

    def lap_end(self, pos):
        return pos - pos % self.region_len + self.region_len

    def fits_in_lap(self, pos, length):
        return pos % self.region_len + length <= self.region_len

    def state_at(self, pos):
        """The state of the stamp at `pos`, STALE if the word is not its stamp."""
        stamp = u64_at(self.buf, self.rec_off(pos)) ^ self.stamp_key
        state = stamp & STATE_MASK
        return state if stamp - state == pos else STALE

    def claim_data_len(self, pos):
        return u64_at(self.buf, self.rec_off(pos) + REC_CLAIM_OFF) & 0xFFFFFFFF

    def report(self, pos, field, what):
        self.corrupt += 1
        print(
            "read_ring.py: %s: corrupt record at file offset %d (position %d): %s"
            % (self.path, self.rec_off(pos) + field, pos, what),
            file=sys.stderr,
        )

    def resync(self, pos):
        """The next record start after `pos`, or write_pos."""
        probe = pos + RECORD_ALIGN
        while probe < self.write_pos:
            if self.state_at(probe) in RECORD_START_STATES:
                return probe
            probe += RECORD_ALIGN
        return self.write_pos

    def starts_batch_run(self, pos, data_len, claimed):
        """Whether the record at `pos`, whose claim differs from its data_len, is the
        first record of a batch run (committed-record rule 4)."""
        following = pos + record_len(data_len)
        run_end = pos + REC_HEADER_LEN + claimed
        return (
            self.batch_runs
            and self.state_at(pos) != BATCHED
            and claimed % RECORD_ALIGN == 0
            and run_end > following
            and claimed <= self.max_data
            and self.fits_in_lap(pos, REC_HEADER_LEN + claimed)
            and run_end <= self.write_pos
            and self.state_at(following) == BATCHED
        )

    def check_committed(self, pos, rec):
        """Rules 2 to 7 for a committed record header (COMMITTED or BATCHED); (field
        offset, what) or None."""
        stored = u32_at(rec, REC_META_CRC_OFF)
        computed = crc32c(
            struct.pack("<Q", pos)
            + rec[REC_CLAIM_OFF:REC_META_CRC_OFF]
            + rec[REC_VERSION_OFF:REC_HEADER_LEN]
        )
        if stored != computed:
            return (
                REC_META_CRC_OFF,
                "metadata checksum is 0x%08x, computed 0x%08x" % (stored, computed),
            )
        version = u64_at(rec, REC_VERSION_OFF)
        if version != ENTRY_VERSION:
            return (REC_VERSION_OFF, "entry version is %d, expected 1" % version)
        data_len = u32_at(rec, REC_DATA_LEN_OFF)
        claimed = u64_at(rec, REC_CLAIM_OFF) & 0xFFFFFFFF
        if claimed != data_len and not self.starts_batch_run(pos, data_len, claimed):
            return (
                REC_DATA_LEN_OFF,
                "data_len %d differs from the claimed %d, and the record does not start "
                "a batch run" % (data_len, claimed),
            )
        if data_len > self.max_data or not self.fits_in_lap(pos, record_len(data_len)):
            return (
                REC_DATA_LEN_OFF,
                "data_len %d does not fit the region at offset %d"
                % (data_len, pos % self.region_len),
            )
        entry_id = u64_at(rec, REC_ID_OFF)
        if entry_id != pos:
            return (REC_ID_OFF, "id is %d, expected the position %d" % (entry_id, pos))
        if pos + record_len(data_len) > self.write_pos:
            return (REC_DATA_LEN_OFF, "the record extends past write_pos")
        return None

    def padding(self, pos):
        """'plausible', 'not ready' or 'damaged' for a PADDING stamp at `pos`."""
        end = self.lap_end(pos)
        pad = end - pos
        if pad >= floor8(self.region_len // 2) or end + RECORD_ALIGN > self.write_pos:
            return "damaged"
        state = self.state_at(end)
        if state == STALE:
            return "not ready"
        if state not in (CLAIMED, COMMITTED, ABANDONED):
            return "damaged"
        return "plausible" if record_len(self.claim_data_len(end)) > pad else "damaged"

    def entries(self):
        """Yields (id, data, ttl_secs, write_time_ms) for every live entry."""
        pos = self.read_pos
        while pos < self.write_pos:
            off = self.rec_off(pos)
            state = self.state_at(pos)
            if state == COMMITTED or (state == BATCHED and self.batch_runs):
                if not self.fits_in_lap(pos, REC_HEADER_LEN):
                    self.report(pos, REC_STAMP_OFF, "a record stamp where no record header fits")
                    pos = self.resync(pos)
                    continue
                rec = bytes(self.buf[off : off + REC_HEADER_LEN])
                problem = self.check_committed(pos, rec)
                if problem is not None:
                    self.report(pos, *problem)
                    pos = self.resync(pos)
                    continue
                data_len = u32_at(rec, REC_DATA_LEN_OFF)
                data = bytes(self.buf[off + REC_HEADER_LEN : off + REC_HEADER_LEN + data_len])
                entry_pos = pos
                pos += record_len(data_len)
                if crc32c(data) != u32_at(rec, REC_DATA_CRC_OFF):
                    self.report(entry_pos, REC_HEADER_LEN, "payload checksum mismatch")
                    continue
                ttl_secs = u32_at(rec, REC_TTL_OFF)
                write_time_ms = u64_at(rec, REC_WRITE_TIME_OFF)
                if ttl_secs != 0 and self.now_ms >= write_time_ms + ttl_secs * 1000:
                    continue
                yield (entry_pos, data, ttl_secs, write_time_ms)
            elif state == PADDING:
                verdict = self.padding(pos)
                if verdict == "plausible":
                    pos = self.lap_end(pos)
                elif verdict == "not ready":
                    self.note_stop(pos, "PADDING before a record that is not claimed yet")
                    return
                else:
                    self.report(pos, REC_STAMP_OFF, "padding stamp where no padding can be")
                    pos = self.resync(pos)
            elif state == ABANDONED:
                # For the first record of a batch run, the claim covers the whole run.
                data_len = self.claim_data_len(pos)
                length = record_len(data_len)
                if (
                    data_len <= self.max_data
                    and self.fits_in_lap(pos, length)
                    and pos + length <= self.write_pos
                    and self.state_at(pos + length) != BATCHED
                ):
                    pos += length
                else:
                    self.report(
                        pos,
                        REC_CLAIM_OFF,
                        "abandoned record claims an impossible length of %d bytes" % data_len,
                    )
                    pos = self.resync(pos)
            elif state == SKIPPED:
                pos = self.resync(pos)
            else:
                self.note_stop(pos, STATE_NAMES[state])
                return

    def note_stop(self, pos, why):
        print(
            "read_ring.py: %s: note: the record at position %d (file offset %d) is not "
            "committed (%s); the listing stops there" % (self.path, pos, self.rec_off(pos), why),
            file=sys.stderr,
        )


# ---------------------------------------------------------------- main


def list_ring(path, now_ms, out):
    """Prints the live entries of the ring at `path`; returns the exit status."""
    try:
        with open(path, "rb") as file:
            actual_len = os.fstat(file.fileno()).st_size
            if actual_len < HEADER_LEN:
                raise NotARing(
                    "file is %d bytes, shorter than the %d-byte ring header"
                    % (actual_len, HEADER_LEN)
                )
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                header = Header(buf[0:FIXED_HEADER_LEN], actual_len)
                reader = Reader(buf, header, now_ms, path)
                for entry_id, data, ttl_secs, write_time_ms in reader.entries():
                    line = {
                        "id": entry_id,
                        "data_hex": data.hex(),
                        "ttl_secs": ttl_secs,
                        "write_time_ms": write_time_ms,
                    }
                    out.write(json.dumps(line) + "\n")
                return EXIT_CORRUPT if reader.corrupt else EXIT_OK
    except OSError as error:
        print("read_ring.py: %s: %s" % (path, error.strerror or error), file=sys.stderr)
        return EXIT_NOT_A_RING
    except NotARing as error:
        print("read_ring.py: %s: %s" % (path, error), file=sys.stderr)
        return EXIT_NOT_A_RING


def main(argv):
    parser = argparse.ArgumentParser(
        prog="read_ring.py",
        description="List the live entries of an mmring ring file as JSON lines.",
    )
    parser.add_argument("file", help="the ring file")
    parser.add_argument(
        "--now-ms",
        type=int,
        default=None,
        help="the current time for TTL expiry, in milliseconds since the Unix epoch "
        "(default: the system clock)",
    )
    args = parser.parse_args(argv)
    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    return list_ring(args.file, now_ms, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
