"""A writer of W&B's transaction file (`run-<id>.wandb`) for the import tests,
written apart from the C reader (cli/import/wandb_txlog.c): its own CRC-32, its
own protobuf encoding of W&B's Record messages (field numbers from
wandb_internal.proto, as ../shared/design/WANDB-TXLOG.md lists them).

Format: a 7-byte header (":W&B", 0xBEE1 little-endian, version 0), then
LevelDB-log chunks in 32 KiB blocks aligned to file offsets: checksum (u32 LE,
CRC-32 of the type byte then the payload), length (u16 LE), type (FULL 1,
FIRST 2, MIDDLE 3, LAST 4), payload. Fewer than 7 bytes left in a block are
zero-padded. The writer remembers where every record and chunk starts, so a
test can cut or damage the file at a known place and say which records must
survive."""
import json
import struct

BLOCK = 32768
HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _crc_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---- protobuf, by hand -------------------------------------------------------------

# The wire encoding is the tests' own (conftest.py), apart from the C reader.
from conftest import field_bytes as f_bytes  # noqa: E402
from conftest import field_varint as f_varint  # noqa: E402
from conftest import varint  # noqa: E402


def f_str(num, s):
    return f_bytes(num, s.encode())


def timestamp(t):
    sec = int(t)
    return f_varint(1, sec) + f_varint(2, int(round((t - sec) * 1e9)))


def item(key, value, nested=None):
    """HistoryItem / SummaryItem / ConfigItem: key 1, nested_key 2, value_json 16."""
    head = b"".join(f_str(2, k) for k in nested) if nested else f_str(1, key)
    return head + f_str(16, json.dumps(value))


def record(num, field, body):
    """wandb_internal.Record: num 1, then the oneof member `field`."""
    return f_varint(1, num) + f_bytes(field, body)


def items_of(d, field):
    return b"".join(f_bytes(field, item(k, v)) for k, v in d.items())


def run_record(num, run_id, entity="", project="", display_name="", notes="", group="",
               job_type="", tags=(), config=None, start_time=None, host=""):
    body = f_str(1, run_id)
    for n, s in ((2, entity), (3, project), (6, group), (7, job_type), (8, display_name),
                 (9, notes), (13, host)):
        if s:
            body += f_str(n, s)
    if config:
        body += f_bytes(4, items_of(config, 1))   # ConfigRecord.update
    body += b"".join(f_str(10, t) for t in tags)
    if start_time is not None:
        body += f_bytes(17, timestamp(start_time))
    return record(num, 17, body)


def history_record(num, step, row, nested=()):
    """row: the items (with _step, _runtime, _timestamp as W&B writes them);
    nested: (path, value) pairs written with nested_key."""
    body = b"".join(f_bytes(1, item(k, v)) for k, v in row.items())
    body += b"".join(f_bytes(1, item(None, v, nested=path)) for path, v in nested)
    body += f_bytes(2, f_varint(1, step))
    return record(num, 2, body)


def summary_record(num, update, remove=()):
    body = items_of(update, 1) + b"".join(f_bytes(2, f_str(1, k)) for k in remove)
    return record(num, 3, body)


def config_record(num, update):
    return record(num, 5, items_of(update, 1))


def output_raw_record(num, line, t, stderr=False):
    """OutputRawRecord: output_type 1 (STDERR 0, STDOUT 1), timestamp 2, line 3."""
    body = f_varint(1, 0 if stderr else 1) + f_bytes(2, timestamp(t)) + f_str(3, line)
    return record(num, 13, body)


def stats_record(num, t, values):
    body = f_varint(1, 0) + f_bytes(2, timestamp(t))
    body += b"".join(f_bytes(3, f_str(1, k) + f_str(16, json.dumps(v)))
                     for k, v in values.items())
    return record(num, 7, body)


def metric_record(num, name, summary):
    """MetricRecord: name 1, summary 7 (MetricSummary: min 1, max 2, mean 3, last 5)."""
    flag = {"min": 1, "max": 2, "mean": 3, "last": 5}[summary]
    return record(num, 12, f_str(1, name) + f_bytes(7, f_varint(flag, 1)))


def exit_record(num, code, runtime):
    return record(num, 18, f_varint(1, code) + f_varint(2, runtime))


def header_record(num):
    """HeaderRecord{version_info{producer}}: read and ignored by the import."""
    return record(num, 21, f_bytes(1, f_str(1, "0.19.0+test")))


def telemetry_record(num):
    """TelemetryRecord (11): a kind the import does not take."""
    return record(num, 11, f_str(4, "3.11.4"))


# ---- the log ------------------------------------------------------------------------

class TxlogWriter:
    def __init__(self):
        self.buf = bytearray(HEADER)
        self.records = []   # per record: list of (chunk offset, chunk length incl. header)
        self.payloads = []

    def add(self, payload):
        chunks = []
        first = True
        data = memoryview(payload)
        while True:
            left = BLOCK - len(self.buf) % BLOCK
            if left < 7:
                self.buf += b"\x00" * left
                continue
            take = min(len(data), left - 7)
            last = take == len(data)
            kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            piece = bytes(data[:take])
            crc = crc32(bytes([kind]) + piece)
            chunks.append((len(self.buf), 7 + take))
            self.buf += struct.pack("<IHB", crc, take, kind) + piece
            data = data[take:]
            first = False
            if last:
                break
        self.records.append(chunks)
        self.payloads.append(payload)
        return len(self.records) - 1

    def bytes(self):
        return bytes(self.buf)

    def chunk_offsets(self):
        return sorted(off for chunks in self.records for off, _ in chunks)

    def surviving(self, lost):
        """Indexes of the records none of whose chunks is in a lost byte range
        (lost: a list of (start, end) file offsets)."""
        out = []
        for i, chunks in enumerate(self.records):
            if not any(s <= off < e or s < off + n <= e or (off <= s and off + n > s)
                       for off, n in chunks for s, e in lost):
                out.append(i)
        return out
