"""The reward service's rollout journal: every rollout record on disk before its answer
goes out, so a rollout a trainer got a reward for reaches the rollout log even when the
service is killed before its writer got to it.

The journal is a directory of append-only segments (``000000000001.jsonl``, ...), one JSON
record a line. The service appends the records of the requests done at the same moment in
one write and one ``fdatasync`` (a group commit), and answers those requests after it;
its log writer then hands the records to the rollout log and reports them done, and a
segment whose records are all done (and which is no longer appended to) is deleted. A
restarted service replays the segments it finds: their records go to the log again, which
writes each rollout once whatever the repeats (keyed on ``record["key"]``), so a record
written just before the kill is not written twice. A line cut short by the kill belongs to
a request that was never answered; it is dropped (the client's retry brings the rollout).

One service per journal: the directory is locked (``flock``) while a service holds it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

SEGMENT_BYTES = 16 * 1024 * 1024
LOCK_NAME = "lock"
SUFFIX = ".jsonl"


class JournalInUse(RuntimeError):
    """Another live process holds the journal directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"the rollout journal {directory} is held by another running service: give each "
            "service a journal of its own (--log-journal)"
        )


class RolloutJournal:
    """The journal in ``directory`` (created if missing), locked for this process.

    :meth:`append` is called from one thread (the service's journal thread), :meth:`done`
    from another (the log writer); both are safe together."""

    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        import fcntl

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock_fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise JournalInUse(self.directory) from None
        self._mutex = threading.Lock()
        self._pending: dict[int, int] = {}  # segment -> records appended, not yet done
        self._found = sorted(
            int(p.name[: -len(SUFFIX)])
            for p in self.directory.glob(f"*{SUFFIX}")
            if p.name[: -len(SUFFIX)].isdigit()
        )
        self._current = (self._found[-1] if self._found else 0) + 1
        self._fd: int | None = None
        self._size = 0

    def replay(self) -> list[tuple[int, dict[str, Any]]]:
        """The records of the segments a previous service left, oldest first, each with its
        segment (to report :meth:`done`). A segment holding none is deleted at once."""
        out: list[tuple[int, dict[str, Any]]] = []
        for segment in self._found:
            records = read_segment(self._path(segment))
            with self._mutex:
                self._pending[segment] = len(records)
            out.extend((segment, record) for record in records)
            if not records:
                self._forget(segment)
        self._found = []
        return out

    def append(self, records: list[dict[str, Any]]) -> int:
        """Write ``records`` and sync them to disk; the segment they went to. An OSError
        (disk full, ...) leaves them unjournalled: their requests must not be answered."""
        data = "".join(json.dumps(record) + "\n" for record in records).encode()
        if self._fd is None or self._size >= self.segment_bytes:
            self._open_next()
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
        except OSError:
            # what went in may end in a cut line: later records go to a new segment
            self._size = self.segment_bytes
            raise
        self._size += len(data)
        with self._mutex:
            self._pending[self._current] = self._pending.get(self._current, 0) + len(records)
        return self._current

    def done(self, segment: int, count: int) -> None:
        """``count`` records of ``segment`` are in the log (or refused by it for good)."""
        with self._mutex:
            self._pending[segment] -= count
            finished = self._pending[segment] <= 0 and segment != self._active()
        if finished:
            self._forget(segment)

    def close(self) -> None:
        """Stop appending: the active segment goes once its records are done (now, when
        they are). The lock is released."""
        with self._mutex:
            segment, fd, self._fd = self._current, self._fd, None
            finished = self._pending.get(segment, 0) <= 0
        if fd is not None:
            os.close(fd)
            if finished:
                self._forget(segment)
        os.close(self._lock_fd)

    def _active(self) -> int | None:
        return self._current if self._fd is not None else None

    def _open_next(self) -> None:
        with self._mutex:
            previous, fd = self._current, self._fd
            if fd is not None:
                self._current += 1
            path = self._path(self._current)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._size = 0
            finished = fd is not None and self._pending.get(previous, 0) <= 0
        if fd is not None:
            os.close(fd)
            if finished:
                self._forget(previous)
        # the new file's name is on disk too, or a crash of the machine could lose it
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _forget(self, segment: int) -> None:
        with self._mutex:
            self._pending.pop(segment, None)
        self._path(segment).unlink(missing_ok=True)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{SUFFIX}"


def read_segment(path: Path) -> list[dict[str, Any]]:
    """A segment's records, up to the first line that is not a whole record (the one a
    kill cut short)."""
    records = []
    with open(path, "rb") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict):
                break
            records.append(record)
    return records
