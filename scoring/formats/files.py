"""Opening a file once and streaming its records: JSON (an array, one object, or
objects one after another as PRM800K ships them), JSONL or parquet, each optionally
gzip-compressed, with or without a UTF-8 byte order mark.

Nothing is read whole: JSONL goes line by line, parquet batch by batch, and JSON
documents through an incremental decoder over 1 MiB chunks, so an upload's size
does not decide the memory it takes. A file cannot be turned against the worker
either: one line or record is capped at :data:`MAX_RECORD_BYTES`, nesting at
:data:`MAX_DEPTH`, and a gzip stream at :data:`MAX_DECOMPRESSED_BYTES` and
:data:`MAX_COMPRESSION_RATIO` times the compressed bytes read so far (a "zip bomb"
is refused after reading a bounded amount, never decompressed whole). Errors name the
file, the line (or record, or row) and the limit.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from scoring.formats.base import MAX_DEPTH, ImportFormatError, too_deep

MiB = 1024 * 1024
MAX_RECORD_BYTES = 16 * MiB
# The largest real files (PRM800K phase 2 train, 1M-step exports) decompress to about
# 1 GiB; gzip's best ratio on JSON text is near 10-20x, its ceiling about 1030x.
MAX_DECOMPRESSED_BYTES = 4 * 1024 * MiB
MAX_COMPRESSION_RATIO = 100
# Below this much output the ratio is not checked: a small file of repeated records may
# compress far better than a big one.
RATIO_CHECKED_AFTER_BYTES = 16 * MiB
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 1 << 20
# The white space JSON allows between values (RFC 8259, section 2).
_JSON_NON_SPACE = re.compile(r"[^ \t\n\r]")
_BYTES_NON_SPACE = re.compile(rb"[^ \t\n\r]")

Opener = Callable[[], IO[bytes]]


@dataclass
class RecordSource:
    """The records of one file, with a count when it is cheap to know."""

    name: str
    records: Iterator[tuple[str, Any]]
    total: int | None


def open_records(path: str | Path, display_name: str | None = None) -> RecordSource:
    """Yield ``(where, record)`` pairs from a JSON, JSONL or parquet file, gzip or not."""
    path = Path(path)
    name = display_name or path.name
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PAR1"):
        return _parquet_records(path, name)
    compressed = head.startswith(b"\x1f\x8b")
    opener: Opener = partial(_Gunzipped, path, name) if compressed else partial(open, path, "rb")
    with opener() as fh:
        start, first_line = _sniff(fh, name)
    if start == b"":
        raise ImportFormatError(name, "the file is empty")
    if start == b"[":
        return RecordSource(name, _json_document_records(opener, name), None)
    if start != b"{":
        raise ImportFormatError(
            name, "not JSON, JSONL or parquet (expected '[', '{' or a parquet header)"
        )
    try:
        orjson.loads(first_line)
        one_object_per_line = True
    except orjson.JSONDecodeError:
        # A first line over the cap is not taken for a JSON document: the JSONL reader
        # refuses it by name, as it does any other line (a JSON document's first line
        # is a few characters, never megabytes).
        one_object_per_line = len(first_line) > MAX_RECORD_BYTES
    if one_object_per_line:
        total = None if compressed else _count_lines(path)
        return RecordSource(name, _jsonl_records(opener, name), total)
    return RecordSource(name, _json_document_records(opener, name), None)


def _sniff(fh: IO[bytes], name: str) -> tuple[bytes, bytes]:
    """The file's first character after a byte order mark and white space and, when
    it opens an object, the rest of its line (at most ``MAX_RECORD_BYTES + 1`` bytes),
    read in chunks: a megabyte of leading spaces costs one read, not a million."""
    skipped = 0
    chunk = fh.read(max(CHUNK_BYTES, len(UTF8_BOM)))
    if not chunk:
        return b"", b""
    chunk = chunk.removeprefix(UTF8_BOM)
    while (found := _BYTES_NON_SPACE.search(chunk)) is None:
        skipped += len(chunk)
        if skipped > MAX_RECORD_BYTES:
            raise ImportFormatError(
                name, f"the file starts with more than {_size(MAX_RECORD_BYTES)} of white space"
            )
        chunk = fh.read(CHUNK_BYTES)
        if not chunk:
            return b"", b""
    line = chunk[found.start() :]
    if not line.startswith(b"{"):
        return line[:1], b""
    while b"\n" not in line and len(line) <= MAX_RECORD_BYTES:
        more = fh.read(CHUNK_BYTES)
        if not more:
            break
        line += more
    end = line.find(b"\n")
    return line[:1], line[: end if end >= 0 else MAX_RECORD_BYTES + 1]


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"


class _Gunzipped:
    """A gzip file read through caps: it stops with an error, naming the limit, once
    it has given more than ``MAX_DECOMPRESSED_BYTES`` or more than
    ``MAX_COMPRESSION_RATIO`` times the compressed bytes read so far, so a bomb costs
    the worker a bounded amount of CPU and no memory; and a damaged or truncated
    stream is an :class:`ImportFormatError`, not ``EOFError`` from deep in gzip."""

    def __init__(self, path: Path, name: str):
        self.name = name
        self.raw = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.given = 0
        self.fh = gzip.GzipFile(fileobj=self.raw, mode="rb")

    @property
    def compressed_bytes(self) -> int:
        """The compressed bytes consumed so far (gzip reads ahead by up to 128 KiB).
        Not the file's size: a bomb behind megabytes of padding (or a bomb's own tail)
        would otherwise buy a hundred times that much output, minutes of a worker."""
        return max(self.raw.tell(), 1)

    def read(self, size: int) -> bytes:
        return self._counted(self._guarded(self.fh.read, size))

    def readline(self, size: int) -> bytes:
        return self._counted(self._guarded(self.fh.readline, size))

    def _guarded(self, read: Callable[[int], bytes], size: int) -> bytes:
        if size < 0:
            raise ValueError("read a gzip stream in bounded pieces")
        try:
            return read(size)
        except EOFError:
            raise ImportFormatError(
                self.name,
                f"the gzip data ends early, after {self.given} bytes of text "
                "(no end-of-stream marker): the file is truncated; upload it again",
            ) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise ImportFormatError(
                self.name, f"damaged gzip data after {self.given} bytes of text ({exc})"
            ) from None

    def _counted(self, data: bytes) -> bytes:
        self.given += len(data)
        if self.given > MAX_DECOMPRESSED_BYTES:
            raise ImportFormatError(
                self.name,
                f"decompresses to more than {_size(MAX_DECOMPRESSED_BYTES)}, "
                "the most one import may hold",
            )
        consumed = self.compressed_bytes
        if self.given > RATIO_CHECKED_AFTER_BYTES and self.given > MAX_COMPRESSION_RATIO * consumed:
            raise ImportFormatError(
                self.name,
                f"decompresses to more than {MAX_COMPRESSION_RATIO} times its size "
                f"({consumed} bytes gave {self.given} and counting): "
                "refused as a compression bomb",
            )
        return data

    def close(self) -> None:
        self.fh.close()
        self.raw.close()

    def __enter__(self) -> _Gunzipped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _too_deep(where: str) -> ImportFormatError:
    return ImportFormatError(where, f"a record is nested more than {MAX_DEPTH} levels deep")


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            where, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None


def _jsonl_records(opener: Opener, name: str) -> Iterator[tuple[str, Any]]:
    with opener() as fh:
        line_no = 0
        while True:
            raw = fh.readline(MAX_RECORD_BYTES + 1)
            if not raw:
                return
            line_no += 1
            where = f"{name}, line {line_no}"
            if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
                raise ImportFormatError(where, f"line is longer than {_size(MAX_RECORD_BYTES)}")
            if line_no == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                _decode(raw, where)  # a clearer message when the cause is the encoding
                if "depth limit" in str(exc):  # orjson's own guard, at 1024 levels
                    raise _too_deep(where) from None
                raise ImportFormatError(where, f"malformed JSON ({exc})") from None
            # A line with at most MAX_DEPTH brackets cannot nest deeper (brackets inside
            # strings only overcount), so the walk runs only on the rare line with more.
            if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and too_deep(record):
                raise _too_deep(where)
            yield where, record


class _Utf8Chunks:
    """Text from a binary stream, chunk by chunk; a bad byte is named by its line and
    column (in bytes, as the JSONL reader counts) in the whole file."""

    def __init__(self, fh: IO[bytes], name: str):
        self.fh = fh
        self.name = name
        self.pending = b""  # a multi-byte character cut by the chunk's end
        self.line = 1  # of the next byte to decode
        self.column = 0  # bytes on that line before it
        self.started = False
        self.done = False

    def read(self, size: int) -> str:
        """At least one character unless the stream is done ("")."""
        while not self.done:
            raw = self.fh.read(size if self.started else max(size, len(UTF8_BOM)))
            self.done = not raw
            if not self.started:
                raw = raw.removeprefix(UTF8_BOM)
                self.started = True
            data = self.pending + raw
            try:
                text = data.decode("utf-8")
                self.pending = b""
            except UnicodeDecodeError as exc:
                if self.done or exc.end != len(data) or exc.reason != "unexpected end of data":
                    raise self._error(data, exc.start) from None
                text, self.pending = data[: exc.start].decode("utf-8"), data[exc.start :]
            self._advance(data[: len(data) - len(self.pending)])
            if text:
                return text
        return ""

    def _advance(self, data: bytes) -> None:
        newlines = data.count(b"\n")
        if newlines:
            self.line += newlines
            self.column = len(data) - data.rfind(b"\n") - 1
        else:
            self.column += len(data)

    def _error(self, data: bytes, pos: int) -> ImportFormatError:
        line_start = data.rfind(b"\n", 0, pos)
        line = self.line + data.count(b"\n", 0, pos)
        column = pos - line_start if line_start >= 0 else self.column + pos + 1
        return ImportFormatError(
            f"{self.name}, line {line}",
            f"not valid UTF-8 (byte 0x{data[pos]:02x} at column {column})",
        )


class _JsonDocument:
    """An incremental reader of one JSON text: values are decoded one at a time from a
    buffer refilled as needed, and the text before them is dropped."""

    def __init__(self, chunks: _Utf8Chunks, name: str):
        self.chunks = chunks
        self.name = name
        self.buf = ""
        self.pos = 0
        self.line = 1  # the line of buf[counted]
        self.counted = 0
        self.decoder = json.JSONDecoder()

    def _fill(self, size: int = 0) -> bool:
        """Read ``size`` more bytes (a chunk by default); False at the end."""
        if self.pos > len(self.buf) // 2:  # drop what was read; counting lines first
            self.line_at(self.pos)
            self.buf = self.buf[self.pos :]
            self.counted -= self.pos
            self.pos = 0
        more = self.chunks.read(size or CHUNK_BYTES)
        self.buf += more
        return bool(more)

    def line_at(self, pos: int) -> int:
        """The line of ``buf[pos]``; positions are asked for in increasing order."""
        self.line += self.buf.count("\n", self.counted, pos)
        self.counted = pos
        return self.line

    def peek(self) -> str:
        """The next character after white space, without consuming it; "" at the end."""
        while True:
            found = _JSON_NON_SPACE.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self._fill():
                return ""

    def error(self, message: str, pos: int | None = None) -> ImportFormatError:
        line = self.line_at(self.pos if pos is None else pos)
        return ImportFormatError(f"{self.name}, line {line}", f"malformed JSON ({message})")

    def _maybe_cut(self, value: Any, end: int) -> bool:
        """Whether a decoded scalar may be the start of a longer one: ``2.`` decodes
        as 2 when the buffer ends before ``2.5``. In JSON a number ends at white
        space, a comma or a closing bracket; objects, arrays and strings end at
        their own closing character."""
        if isinstance(value, dict | list | str):
            return False
        return end == len(self.buf) or self.buf[end] not in " \t\n\r,]}"

    def value(self) -> Any:
        """The value at the current position. A value the buffer cuts short fails to
        decode, or (a number) decodes short: both read more and retry, reading as
        much again as the value took so far, so a long one costs linear time. Once
        the file is read to its end, a failure is the file's."""
        start = self.pos
        at_end = False
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, start)
                error = None
            except json.JSONDecodeError as exc:
                error, end = exc, exc.pos
            except RecursionError:
                raise _too_deep(f"{self.name}, line {self.line_at(start)}") from None
            if (len(self.buf) if error is not None else end) - start > MAX_RECORD_BYTES:
                raise ImportFormatError(
                    f"{self.name}, line {self.line_at(start)}",
                    f"a record is longer than {_size(MAX_RECORD_BYTES)}",
                )
            if not at_end and (error is not None or self._maybe_cut(value, end)):
                self.pos = start
                # Filling may drop the text before ``start``: positions are taken anew.
                at_end = not self._fill(max(CHUNK_BYTES, len(self.buf) - start))
                start = self.pos
                continue
            if error is not None:
                raise self.error(error.msg, error.pos)
            if too_deep(value):
                raise _too_deep(f"{self.name}, line {self.line_at(start)}")
            self.pos = end
            return value


def _json_document_records(opener: Opener, name: str) -> Iterator[tuple[str, Any]]:
    """A JSON array, a single object, or objects one after another (PRM800K's files)."""
    with opener() as fh:
        doc = _JsonDocument(_Utf8Chunks(fh, name), name)
        if doc.peek() == "[":
            doc.pos += 1
            count = 0
            if doc.peek() == "]":
                doc.pos += 1
            else:
                while True:
                    count += 1
                    yield f"{name}, record {count}", doc.value()
                    after = doc.peek()
                    if after == "]":
                        doc.pos += 1
                        break
                    if after != ",":
                        raise doc.error("Expecting ',' delimiter")
                    doc.pos += 1
                    doc.peek()  # raw_decode takes no leading white space
            if doc.peek() != "":
                raise doc.error("Extra data")
            return
        count = 0
        while doc.peek() != "":
            count += 1
            line = doc.line_at(doc.pos)
            yield f"{name}, record {count} (line {line})", doc.value()


def _parquet_records(path: Path, name: str) -> RecordSource:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ImportFormatError(name, f"unreadable parquet file ({exc})") from None

    def records() -> Iterator[tuple[str, Any]]:
        row = 0
        for batch in parquet.iter_batches(batch_size=2048):
            for record in batch.to_pylist():
                row += 1
                yield f"{name}, row {row}", record

    return RecordSource(name, records(), parquet.metadata.num_rows)
