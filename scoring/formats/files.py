"""Opening a file once and streaming its records: JSON (an array, one object, or
objects one after another as PRM800K ships them), JSONL or parquet, each optionally
gzip-compressed, with or without a UTF-8 byte order mark.

Nothing is read whole: JSONL goes line by line, parquet batch by batch, and JSON
documents through an incremental decoder over 1 MiB chunks, so an upload's size
does not decide the memory it takes; one record is capped at
:data:`MAX_RECORD_BYTES`. Errors name the file and the line (or record, or row).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from scoring.formats.base import ImportFormatError

MAX_RECORD_BYTES = 16 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 1 << 20

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
    opener: Opener = partial(gzip.open, path, "rb") if compressed else partial(open, path, "rb")
    with opener() as fh:
        start = _first_non_space(fh)
        first_line = fh.readline(MAX_RECORD_BYTES + 1) if start == b"{" else b""
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
        one_object_per_line = False
    if one_object_per_line:
        total = None if compressed else _count_lines(path)
        return RecordSource(name, _jsonl_records(opener, name), total)
    return RecordSource(name, _json_document_records(opener, name), None)


def _first_non_space(fh: IO[bytes]) -> bytes:
    while True:
        ch = fh.read(1)
        if ch == b"":
            return b""
        if ch == b"\xef":  # UTF-8 byte order mark
            fh.read(2)
            continue
        if not ch.isspace():
            fh.seek(fh.tell() - 1)
            return ch


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
                raise ImportFormatError(
                    where, f"line is longer than {MAX_RECORD_BYTES // (1024 * 1024)} MiB"
                )
            if line_no == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                _decode(raw, where)  # a clearer message when the cause is the encoding
                raise ImportFormatError(where, f"malformed JSON ({exc})") from None
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
            while self.pos < len(self.buf) and self.buf[self.pos].isspace():
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
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
            if (len(self.buf) if error is not None else end) - start > MAX_RECORD_BYTES:
                raise ImportFormatError(
                    f"{self.name}, line {self.line_at(start)}",
                    f"a record is longer than {MAX_RECORD_BYTES // (1024 * 1024)} MiB",
                )
            if not at_end and (error is not None or self._maybe_cut(value, end)):
                self.pos = start
                # Filling may drop the text before ``start``: positions are taken anew.
                at_end = not self._fill(max(CHUNK_BYTES, len(self.buf) - start))
                start = self.pos
                continue
            if error is not None:
                raise self.error(error.msg, error.pos)
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
