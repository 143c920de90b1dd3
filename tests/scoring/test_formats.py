"""The format library: every real file scores through the CLI, writers and readers
round-trip, JSON documents stream, and nothing under scoring/ leans on the app."""

from __future__ import annotations

import ast
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scoring.formats.files as files
from scoring.formats import (
    REGISTRY,
    ExportTrace,
    ImportFormatError,
    ParseOptions,
    detect_format,
    iter_parsed,
    open_records,
    read_traces,
    write_parquet,
)
from tests.factories import DATA_DIR

ROOT = Path(__file__).resolve().parents[2]
FORMATS_DIR = ROOT / "scoring" / "formats"


def data_files() -> list[Path]:
    """Every data file in the shared folder, whatever its format; not its notes."""
    return sorted(
        path
        for path in DATA_DIR.rglob("*")
        if path.is_file() and not path.name.upper().startswith(("README", "LICENSE"))
    )


def test_the_shared_data_folder_holds_the_files_the_readme_lists() -> None:
    names = {path.relative_to(DATA_DIR).parts[0] for path in data_files()}
    assert names == {
        "big-bench-mistake",
        "gsm8k",
        "prm800k-examples",
        "prm800k-phase1-stepwise",
        "processbench-gsm8k",
    }


@pytest.mark.parametrize("path", data_files(), ids=lambda path: str(path.relative_to(DATA_DIR)))
def test_every_data_file_scores_one_record_per_trace_and_one_score_per_step(
    path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "scoring", "score", "--adapter", "arithmetic-check"]
        + ["--input", str(path), "--output", str(out), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    expected = [(trace.id, len(trace.steps)) for trace in read_traces(path)]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], len(r["scores"])) for r in written] == expected
    assert expected and all(n > 0 for _, n in expected)
    assert f"scored {len(expected)} traces" in done.stderr


def test_scoring_reads_processbench_splits_and_labels_as_the_importer_does() -> None:
    path = DATA_DIR / "processbench-gsm8k" / "gsm8k.json"
    records = json.loads(path.read_text())
    traces = read_traces(path)
    assert [t.id for t in traces] == [r["id"] for r in records]
    assert {t.split for t in traces} == {"gsm8k"}
    assert [t.first_error_step for t in traces] == [r["label"] for r in records]
    assert [t.final_answer_correct for t in traces] == [r["final_answer_correct"] for r in records]


def test_a_split_option_overrides_the_one_from_the_ids(tmp_path: Path) -> None:
    path = DATA_DIR / "processbench-gsm8k" / "gsm8k.json"
    assert {t.split for t in read_traces(path, split="held-out")} == {"held-out"}


# ---------------------------------------------------------------- round trips

TRACES = [
    ExportTrace(
        external_id="toy-1",
        problem="Ann has 3 apples and buys 4.\nHow many now?",
        steps=["She starts with 3.", "Then 3 + 4 = 8.", "So \\boxed{8}."],
        source="toy",
        reference_answer="7",
        generator="model-a",
        split="toy",
        final_answer="8",
        final_answer_correct=False,
        metadata={"note": "ü", "n": [1, 2]},
        is_gold=True,
        created_at="2026-01-02T03:04:05+00:00",
    ),
    ExportTrace(
        external_id="toy-2",
        problem="What is 5 * 12?",
        steps=["5 * 12 = 60.", "Четыре руки: the answer is 60."],
        split="toy",
        final_answer_correct=True,
    ),
]
LABELS = [(1, [1, -1, None]), (-1, [1, 0])]


def labelled_pairs():
    return [
        (trace, first_error, ratings)
        for trace, (first_error, ratings) in zip(TRACES, LABELS, strict=True)
    ]


def _read_back(fmt: str, records: list[dict], path: Path) -> list:
    """The records as a file in ``path`` (JSONL or parquet), read by the format's reader."""
    if path.suffix == ".parquet":
        write_parquet(records, path, fmt)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    source = open_records(path)
    return [t for _, _, traces in iter_parsed(source, fmt, ParseOptions()) for t in traces]


def _expected(fmt: str, steps: list[str], first_error: int, ratings: list) -> tuple:
    """What each format keeps: ProcessBench the first error only; TRL and
    Math-Shepherd the steps up to it, each rated; PRM800K every step, rated up to it."""
    judged = len(steps) if first_error == -1 else first_error + 1
    filled = [(-1 if i == first_error else 1) if r is None else r for i, r in enumerate(ratings)]
    if fmt == "processbench":
        return steps, first_error, None
    if fmt in ("trl", "math-shepherd"):
        flags = [1 if r >= 0 else -1 for r in filled[:judged]]
        return steps[:judged], first_error, flags
    if fmt == "prm800k":
        return steps, first_error, filled[:judged] + [None] * (len(steps) - judged)
    return steps, first_error, ratings


EXPORTED = [name for name, fmt in REGISTRY.items() if fmt.write is not None]


def test_the_exported_formats_are_the_five_stepwise_writes() -> None:
    assert sorted(EXPORTED) == ["jsonl", "math-shepherd", "prm800k", "processbench", "trl"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("fmt", EXPORTED)
def test_writing_then_reading_gives_back_the_steps_and_labels(
    fmt: str, suffix: str, tmp_path: Path
) -> None:
    write = REGISTRY[fmt].write
    records = [write(trace, first, ratings) for trace, first, ratings in labelled_pairs()]
    parsed = _read_back(fmt, records, tmp_path / f"export{suffix}")

    assert len(parsed) == len(TRACES)
    assert {detect_format(r, "r") for r in records} == {fmt}
    for got, (trace, first_error, ratings) in zip(parsed, labelled_pairs(), strict=True):
        steps, first, step_ratings = _expected(fmt, trace.steps, first_error, ratings)
        assert got.steps == steps
        assert got.label.first_error_step == first
        assert got.label.step_ratings == step_ratings
        assert got.problem == trace.problem.strip()


def test_the_jsonl_export_round_trips_every_field_and_unlabelled_traces(tmp_path: Path) -> None:
    write = REGISTRY["jsonl"].write
    records = [write(TRACES[0], None, None), write(TRACES[1], -1, [1, 0])]
    unlabelled, labelled = _read_back("jsonl", records, tmp_path / "export.parquet")
    assert unlabelled.label is None
    assert (labelled.label.first_error_step, labelled.label.step_ratings) == (-1, [1, 0])
    trace = TRACES[0]
    assert (unlabelled.external_id, unlabelled.generator, unlabelled.split) == (
        trace.external_id,
        trace.generator,
        trace.split,
    )
    assert (unlabelled.reference_answer, unlabelled.final_answer) == ("7", "8")
    assert unlabelled.final_answer_correct is False
    assert unlabelled.metadata == trace.metadata


# ---------------------------------------------------------------- streaming

RECORDS = [
    {"id": f"x-{i}", "n": i * 10**i, "text": "é☃𝄞" * i, "nested": [1, {"a": None}], "ok": True}
    for i in range(40)
]


@pytest.mark.parametrize("chunk_bytes", [1, 3, 64, files.CHUNK_BYTES])
def test_json_documents_stream_in_chunks_of_any_size(
    chunk_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk borders fall inside numbers, strings and multi-byte characters."""
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk_bytes)
    array = tmp_path / "array.json.gz"
    array.write_bytes(gzip.compress(b"\xef\xbb\xbf" + json.dumps(RECORDS, indent=1).encode()))
    concatenated = tmp_path / "objects.json"
    concatenated.write_text("\n".join(json.dumps(r, indent=2, ensure_ascii=False) for r in RECORDS))

    assert [r for _, r in open_records(array).records] == RECORDS
    scalars = tmp_path / "scalars.json"
    scalars.write_text('[1, 2.5e3, -30, true, null, "x", 12345678901234567890]')
    assert [r for _, r in open_records(scalars).records] == json.loads(scalars.read_text())
    wheres, records = zip(*open_records(concatenated).records, strict=True)
    assert list(records) == RECORDS
    lines_per_record = json.dumps(RECORDS[0], indent=2).count("\n") + 1
    assert wheres[2] == f"objects.json, record 3 (line {2 * lines_per_record + 1})"


@pytest.mark.parametrize("chunk_bytes", [1, 7, files.CHUNK_BYTES])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[\n{"a": 1},\n{"b",}\n]', "doc.json, line 3: malformed JSON (Expecting ':' delimiter)"),
        (b'[{"a": 1},\n]', "doc.json, line 2: malformed JSON (Expecting value)"),
        (b'[{"a": 1}\n{"b": 2}]', "doc.json, line 2: malformed JSON (Expecting ',' delimiter)"),
        (b'[{"a": 1}]\n\nx', "doc.json, line 3: malformed JSON (Extra data)"),
        (
            b'[{"a": "x"},\n{"b": "caf\xe9"}]',
            "doc.json, line 2: not valid UTF-8 (byte 0xe9 at column 11)",
        ),
        (b'{"a": "caf\xc3', "doc.json, line 1: not valid UTF-8 (byte 0xc3 at column 11)"),
    ],
)
def test_a_bad_json_document_names_the_line_at_any_chunk_size(
    chunk_bytes: int, content: bytes, message: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk_bytes)
    path = tmp_path / "doc.json"
    path.write_bytes(content)
    with pytest.raises(ImportFormatError) as excinfo:
        list(open_records(path).records)
    assert str(excinfo.value) == message


def test_a_json_record_over_the_cap_is_refused_before_the_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(files, "CHUNK_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"a": 1}, {"b": "x" * 5000}, {"c": 3}]))
    records = open_records(path).records
    assert next(records)[1] == {"a": 1}
    with pytest.raises(ImportFormatError, match=r"big.json, line 1: a record is longer than"):
        next(records)


# ---------------------------------------------------------------- what scoring/ imports


def test_no_module_of_the_format_library_imports_the_app() -> None:
    sources = [*FORMATS_DIR.glob("*.py"), ROOT / "scoring" / "labels.py"]
    assert len(sources) >= 10
    for source in sources:
        tree = ast.parse(source.read_text())
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        offending = [m for m in imported if m.split(".")[0] in ("annotator", "django", "celery")]
        assert offending == [], f"{source.name} imports {offending}"


def _loaded_after(code: str, modules: list[str], env: dict[str, str] | None = None) -> list[str]:
    probe = code + f"\nimport sys\nprint([m for m in {modules!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_the_django_importer_loads_without_the_labelling_queue() -> None:
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "annotator.settings"}
    code = "import django\ndjango.setup()\nimport annotator.importing\n"
    assert _loaded_after(code, ["annotator.importing", "annotator.queue"], env) == [
        "annotator.importing"
    ]


def test_auto_reads_labelled_jsonl_records_as_jsonl_and_keeps_answer_and_split(
    tmp_path: Path,
) -> None:
    record = {
        "id": "a-1",
        "problem": "What is 2+3?",
        "steps": ["2+3 = 5", "The answer is 5"],
        "answer": "5",
        "split": "dev",
        "label": 1,
    }
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert detect_format(record, "r") == "jsonl"
    [trace] = read_traces(path)
    assert (trace.reference_answer, trace.split, trace.first_error_step) == ("5", "dev", 1)


def test_auto_still_reads_processbench_records_as_processbench() -> None:
    path = DATA_DIR / "processbench-gsm8k" / "gsm8k.json"
    assert detect_format(json.loads(path.read_text())[0], "r") == "processbench"
