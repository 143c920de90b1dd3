"""Large files are parsed in a second process (``scoring.formats.piped``) while the
importer writes: what it sends is what the in-process reader gives, text that COPY's
text format escapes included; a parsing process that dies fails the import with
nothing written, and an import that stops early leaves no parsing process behind.
(tests/annotator/test_import.py runs every import test both ways; the job tests kill
workers mid-import with the parsing process running.)"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from annotator import importing
from annotator.importing import import_file
from annotator.models import Annotation, Problem, Step, Trace
from scoring.formats.piped import ParserDied
from tests.workers import parsing_processes

pytestmark = pytest.mark.django_db

# COPY's text format gives these a meaning (escapes, NULL, the end of data), and \x01
# stands for the trace id in what the parsing process sends.
AWKWARD_STEPS = [
    "tab\there, newline\nthere, carriage return\r, backslash \\ and \\t spelt out",
    "\\N",
    "\\.",
    "\x01 and \\x01, \x02",
    "accents é, emoji 😀, a lone \\",
]


def write_records(path: Path, n: int, steps: list[str] | None = None) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            record = {
                "id": f"gsm8k-{i}",
                "problem": f"What is {i} + 1?",
                "steps": steps or [f"{i} + 1 = {i + 1}", f"The answer is {i + 1}."],
                "label": -1,
            }
            fh.write(json.dumps(record) + "\n")
    return path


def counts() -> tuple[int, int, int, int]:
    return (
        Problem.objects.count(),
        Trace.objects.count(),
        Step.objects.count(),
        Annotation.objects.count(),
    )


@pytest.mark.parametrize("piped", [False, True])
def test_steps_that_copy_s_text_format_escapes_are_stored_as_written(
    project, tmp_path, monkeypatch, piped
):
    monkeypatch.setattr(importing, "PIPED_MIN_BYTES", 0 if piped else 1 << 40)
    path = write_records(tmp_path / "awkward.jsonl", 3, AWKWARD_STEPS)

    summary = import_file(project, path)

    assert summary.traces == 3 and summary.steps == 3 * len(AWKWARD_STEPS)
    for trace in Trace.objects.filter(project=project):
        assert trace.num_steps == len(AWKWARD_STEPS)
        assert list(trace.steps.order_by("index").values_list("text", flat=True)) == AWKWARD_STEPS


def test_a_parsing_process_that_dies_fails_the_import_and_writes_nothing(
    project, tmp_path, monkeypatch
):
    monkeypatch.setattr(importing, "PIPED_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 50)
    path = write_records(tmp_path / "many.jsonl", 5000)
    killed = []

    def progress(done, total):
        if not killed:  # after the first chunk is written
            (pid,) = parsing_processes(os.getpid())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.raises(ParserDied, match="ended early"):
        import_file(project, path, progress=progress)

    assert killed and counts() == (0, 0, 0, 0)
    assert parsing_processes(os.getpid()) == []


def test_an_import_that_stops_early_stops_its_parsing_process(project, tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "PIPED_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 50)
    path = write_records(tmp_path / "many.jsonl", 5000)
    running = []

    class Cancelled(Exception):
        pass

    def progress(done, total):
        running.extend(parsing_processes(os.getpid()))
        raise Cancelled  # as a job's progress report does when the job is cancelled

    with pytest.raises(Cancelled):
        import_file(project, path, progress=progress)

    assert len(running) == 1
    assert parsing_processes(os.getpid()) == []
    assert not Path(f"/proc/{running[0]}").exists()  # reaped, not left a zombie
    assert counts() == (0, 0, 0, 0)


def test_a_bad_record_after_chunks_were_sent_names_its_line_and_writes_nothing(
    project, tmp_path, monkeypatch
):
    monkeypatch.setattr(importing, "PIPED_MIN_BYTES", 0)
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 50)
    path = write_records(tmp_path / "bad.jsonl", 1000)
    lines = path.read_text().splitlines()
    lines[700] = lines[700].replace('"label": -1', '"label": "two"')
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(importing.ImportFormatError, match="line 701, field 'label'"):
        import_file(project, path)

    assert counts() == (0, 0, 0, 0)
    assert parsing_processes(os.getpid()) == []
