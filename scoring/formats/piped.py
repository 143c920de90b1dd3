"""Reading a file in a second process, so parsing overlaps writing.

An import spends about as much CPU reading and checking its records as the database
spends storing them. :func:`parsed_in_subprocess` runs :func:`iter_parsed` in a
child process (``python -m scoring.formats.piped``) that sends the parsed traces
back in chunks over a pipe, while the caller writes the chunk before. The pipe holds
at most what the child is blocked on writing, so memory stays flat in file size.

Each trace arrives with its steps already spelt as the lines of a PostgreSQL ``COPY``
in text format (``<trace id>\\t<index>\\t<text>``, text escaped), with the byte
``\\x01`` standing for the trace id, which only the writer knows: building a row per
step is the largest part of an import's work in Python, and here it is done by the
child with a few string operations per trace.

A bad record ends the child's output with the same :class:`ImportFormatError` the
in-process reader raises, after the chunks before it (the caller's transaction
rolls them back). If the caller dies, the child's next write fails on the closed
pipe and it exits; if the child dies, the caller gets :class:`ParserDied`.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import add
from pathlib import Path

from scoring.formats import iter_parsed, open_records
from scoring.formats.base import ImportFormatError, ParsedTrace, ParseOptions

# Stands for the trace id in a trace's COPY lines; an \x01 in a step is sent escaped.
TRACE_ID = b"\x01"


class ParserDied(RuntimeError):
    """The parsing process ended without finishing its output (killed, or a bug)."""


@dataclass
class Chunk:
    """Up to ``chunk_records`` records' traces. Their ``steps`` lists are empty:
    ``num_steps[i]`` and ``copy_steps[i]`` (the COPY lines, see the module's
    docstring) stand for ``traces[i]``'s."""

    fmt: str
    records: int
    traces: list[ParsedTrace]
    num_steps: list[int]
    copy_steps: list[bytes]


@dataclass
class PipedSource:
    name: str
    total: int | None
    chunks: Iterator[Chunk]


@contextmanager
def parsed_in_subprocess(
    path: str | Path,
    fmt: str,
    options: ParseOptions,
    *,
    display_name: str | None = None,
    chunk_records: int,
) -> Iterator[PipedSource]:
    """``path`` read by :func:`open_records` and :func:`iter_parsed` in a child
    process. Raises ``ImportFormatError`` as they do (on entering for a file that
    cannot be opened, else from ``chunks``). The child is killed on leaving early."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-m", "scoring.formats.piped"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        pickle.dump((str(path), fmt, options, display_name, chunk_records), child.stdin)
        child.stdin.close()
        kind, *head = _receive(child)
        if kind == "refused":
            raise ImportFormatError(*head)
        name, total = head
        yield PipedSource(name, total, _chunks(child))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def _receive(child: subprocess.Popen) -> tuple:
    try:
        return pickle.load(child.stdout)
    except (EOFError, pickle.UnpicklingError):  # no message, or a message cut short
        code = child.wait()
        raise ParserDied(f"the parsing process ended early (exit status {code})") from None


def _chunks(child: subprocess.Popen) -> Iterator[Chunk]:
    while True:
        kind, *body = _receive(child)
        if kind == "end":
            return
        if kind == "refused":
            raise ImportFormatError(*body)
        yield Chunk(*body)


# -- the child ------------------------------------------------------------------------------

_PREFIXES: list[str] = []  # "\x01\t0\t", "\n\x01\t1\t", ...


def copy_lines(steps: list[str]) -> bytes:
    """One trace's steps as COPY text lines, the trace id left as ``TRACE_ID``.

    >>> copy_lines(["a\\tb", "c\\\\"])
    b'\\x01\\t0\\ta\\\\tb\\n\\x01\\t1\\tc\\\\\\\\\\n'
    """
    while len(_PREFIXES) < len(steps):
        i = len(_PREFIXES)
        _PREFIXES.append(f"{'' if i == 0 else chr(10)}\x01\t{i}\t")
    # The steps hold no NUL (check_trace refuses it), so one escaping pass serves all.
    joined = (
        "\x00".join(steps)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\x01", "\\x01")
    )
    return ("".join(map(add, _PREFIXES, joined.split("\x00"))) + "\n").encode()


def _serve() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but messages on the pipe

    def send(message: tuple) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    path, fmt, options, display_name, chunk_records = pickle.load(sys.stdin.buffer)
    try:
        records = open_records(path, display_name)
        send(("source", records.name, records.total))
        parsed = iter_parsed(records, fmt, options)
        while chunk := list(islice(parsed, chunk_records)):
            traces = [trace for _, _, record_traces in chunk for trace in record_traces]
            num_steps = [len(trace.steps) for trace in traces]
            copy_steps = [copy_lines(trace.steps) for trace in traces]
            for trace in traces:
                trace.steps = []
            send(("chunk", chunk[0][0], len(chunk), traces, num_steps, copy_steps))
    except ImportFormatError as exc:
        send(("refused", exc.where, exc.message, exc.field))
        return
    send(("end",))


if __name__ == "__main__":
    try:
        _serve()
    except BrokenPipeError:  # the reader is gone (killed, or it stopped early)
        os._exit(1)
