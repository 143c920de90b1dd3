"""Files built to hurt the reader (compression bombs, truncated gzip, a long first
line, deep nesting) are refused with an error naming the limit and the line, after a
bounded amount of work; and random or malformed input to any reader gives an
``ImportFormatError`` naming where, never another exception (hypothesis)."""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.formats import (
    FORMATS,
    ImportFormatError,
    ParseOptions,
    files,
    iter_parsed,
    open_records,
)
from scoring.steps import SPLITTERS, join_steps, split_steps

MiB = 1024 * 1024


def read_all(path: Path) -> list:
    return [record for _, record in open_records(path).records]


def spaces_bomb(path: Path, opening: bytes, spaces: int, closing: bytes) -> Path:
    """A gzip of ``opening`` + ``spaces`` spaces + ``closing``, compressed chunk by chunk
    so the test never holds the whole text."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    with open(path, "wb") as fh:
        fh.write(compressor.compress(opening))
        block = b" " * MiB
        for _ in range(spaces // MiB):
            fh.write(compressor.compress(block))
        fh.write(compressor.compress(closing))
        fh.write(compressor.flush())
    return path


def test_a_gzip_bomb_inside_a_json_array_is_refused_by_its_ratio(tmp_path: Path) -> None:
    """``[`` + 64 MiB of spaces + ``]``: about 64 KB compressed (a 1000x ratio); the
    reader stops after its 16 MiB allowance instead of decompressing it all."""
    bomb = spaces_bomb(tmp_path / "bomb.json.gz", b"[", 64 * MiB, b"]")
    assert bomb.stat().st_size < MiB
    with pytest.raises(ImportFormatError) as excinfo:
        read_all(bomb)
    message = str(excinfo.value)
    assert message.startswith("bomb.json.gz: decompresses to more than 100 times its size")
    assert "compression bomb" in message


def test_a_gzip_bomb_is_measured_by_the_bytes_read_so_far_not_the_file(tmp_path: Path) -> None:
    """A bomb followed by 2 MiB of incompressible padding: measured against the whole
    file, the bomb could give 200 MiB of text before the ratio caught it (a 7 MB upload
    cost a worker 15 minutes); measured against what was read, it is refused once past
    the 16 MiB allowance."""
    bomb = spaces_bomb(tmp_path / "padded.json.gz", b"[", 64 * MiB, b"]")
    with open(bomb, "ab") as fh:  # a second gzip member: random bytes do not compress
        fh.write(gzip.compress(random.Random(7).randbytes(2 * MiB)))
    assert bomb.stat().st_size > 2 * MiB  # 100x that is more than the bomb's 64 MiB
    with pytest.raises(ImportFormatError) as excinfo:
        read_all(bomb)
    message = str(excinfo.value)
    assert "refused as a compression bomb" in message
    given = int(re.search(r"bytes gave (\d+) and counting", message).group(1))
    assert given < files.RATIO_CHECKED_AFTER_BYTES + 2 * files.CHUNK_BYTES


def test_a_gzip_bomb_of_leading_white_space_is_refused(tmp_path: Path) -> None:
    """The first-character sniff once read a gzip byte by byte (70 s for 100 MiB)."""
    bomb = spaces_bomb(tmp_path / "lead.jsonl.gz", b"", 40 * MiB, b'{"a": 1}\n')
    with pytest.raises(ImportFormatError, match=r"^lead.jsonl.gz: decompresses to more than 100"):
        open_records(bomb)


def test_a_file_that_decompresses_past_the_size_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "MAX_DECOMPRESSED_BYTES", 4000)
    path = tmp_path / "big.jsonl.gz"
    rows = [json.dumps({"problem": f"p{i}", "steps": ["a", "b"]}) for i in range(200)]
    path.write_bytes(gzip.compress("\n".join(rows).encode()))
    with pytest.raises(ImportFormatError, match=r"^big.jsonl.gz: decompresses to more than 4000"):
        read_all(path)


def test_leading_white_space_over_the_cap_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(files, "CHUNK_BYTES", 100)
    path = tmp_path / "blank.json"
    path.write_bytes(b" " * 5000 + b"[]")
    with pytest.raises(ImportFormatError, match=r"starts with more than 1000 bytes of white space"):
        open_records(path)


def test_a_truncated_gzip_names_the_cause(tmp_path: Path) -> None:
    whole = gzip.compress(b"\n".join(b'{"problem": "p", "steps": ["a"]}' for _ in range(500)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImportFormatError, match=r"^cut.jsonl.gz: the gzip data ends early"):
        read_all(path)


def test_damaged_gzip_data_names_the_cause(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(b'[{"a": 1}, {"b": 2}]' * 50))
    whole[20:40] = b"\xff" * 20
    path = tmp_path / "bad.json.gz"
    path.write_bytes(bytes(whole))
    with pytest.raises(ImportFormatError, match=r"^bad.json.gz: damaged gzip data"):
        read_all(path)


def test_a_long_first_line_is_refused_as_a_long_line(tmp_path: Path, monkeypatch) -> None:
    """A first line over the cap used to send the file to the whole-document reader."""
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 1000)
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"problem": "p", "steps": ["x" * 5000]}) + '\n{"a": 1}\n')
    with pytest.raises(ImportFormatError) as excinfo:
        read_all(path)
    assert str(excinfo.value) == "long.jsonl, line 1: line is longer than 1000 bytes"


@pytest.mark.parametrize("levels", [65, 100_000])
@pytest.mark.parametrize(
    ("name", "layout"),
    [("deep.jsonl", "{} \n"), ("deep.json", "[{}]"), ("objects.json", '{"a": 1}\n\n{}')],
)
def test_deep_nesting_is_refused_naming_the_limit_and_line(
    tmp_path: Path, levels: int, name: str, layout: str
) -> None:
    """Past the cap, and far past the decoders' own recursion limits (which gave
    "maximum recursion depth exceeded" with no line)."""
    deep = '{"problem": "p", "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
    path = tmp_path / name
    path.write_text(layout.replace("{}", deep))
    line = 3 if name == "objects.json" else 1
    with pytest.raises(ImportFormatError) as excinfo:
        read_all(path)
    assert str(excinfo.value) == f"{name}, line {line}: a record is nested more than 64 levels deep"


def test_nesting_up_to_the_cap_is_read(tmp_path: Path) -> None:
    value: object = 1
    for _ in range(63):
        value = [value]
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"x": value}) + "\n")
    assert read_all(path) == [{"x": value}]


# ---------------------------------------------------------------- hypothesis

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Records shaped like each format's, with fields missing, mistyped or random.
FIELD_NAMES = [
    "id", "problem", "question", "prompt", "steps", "solution", "completions", "labels",
    "label", "generator", "final_answer_correct", "input", "target", "answer",
    "mistake_index", "instruction", "responses", "next_response", "rating", "metadata",
    "step_ratings", "ground_truth", "split",
]  # fmt: skip
RECORDS = st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=8) | JSON_VALUES
PROFILE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def parse_everything(path: Path, fmt: str) -> None:
    options = ParseOptions(step_splitter="paragraphs")
    for _ in iter_parsed(open_records(path), fmt, options):
        pass


@PROFILE
@given(
    records=st.lists(RECORDS, min_size=1, max_size=4),
    fmt=st.sampled_from(["auto", *FORMATS]),
    layout=st.sampled_from(["jsonl", "array", "objects", "gzip"]),
)
def test_random_records_parse_or_fail_with_a_named_error(
    tmp_path_factory: pytest.TempPathFactory, records: list, fmt: str, layout: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"input.{layout}"
    if layout == "array":
        path.write_text(json.dumps(records))
    elif layout == "objects":
        path.write_text("\n".join(json.dumps(r, indent=1) for r in records))
    else:
        text = "\n".join(json.dumps(r) for r in records).encode()
        path.write_bytes(gzip.compress(text) if layout == "gzip" else text)
    try:
        parse_everything(path, fmt)
    except ImportFormatError as exc:
        assert exc.where.startswith(f"input.{layout}")


@PROFILE
@given(content=st.binary(max_size=300), compress=st.booleans(), cut=st.integers(0, 400))
def test_random_bytes_fail_with_a_named_error(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, compress: bool, cut: int
) -> None:
    """Random bytes, also after a plausible opening and gzipped then cut anywhere."""
    for data in (content, b'{"problem": "p", "steps": ["' + content, b"[" + content):
        blob = gzip.compress(data)[:cut] if compress else data
        path = tmp_path_factory.mktemp("bytes") / "input.json"
        path.write_bytes(blob)
        try:
            parse_everything(path, "auto")
        except ImportFormatError as exc:
            assert exc.where.startswith("input.json")


@PROFILE
@given(text=st.text(), splitter=st.sampled_from(sorted(SPLITTERS)))
def test_step_splitters_keep_the_text_and_give_no_empty_steps(text: str, splitter: str) -> None:
    steps = split_steps(text, splitter)
    assert all(step.strip() for step in steps)
    # Splitting never invents text: every step's non-space characters come from the
    # input, in order.
    kept = "".join("".join(step.split()) for step in steps)
    source = iter("".join(text.split()))
    assert all(char in source for char in kept)


CLEAN_STEPS = st.lists(
    st.text(alphabet="abc xyz0123456789+-=.,()", min_size=1).map(str.strip).filter(bool),
    min_size=1,
    max_size=6,
)


@PROFILE
@given(steps=CLEAN_STEPS, splitter=st.sampled_from(sorted(SPLITTERS)))
def test_splitting_joined_steps_gives_them_back(steps: list[str], splitter: str) -> None:
    assert split_steps(join_steps(steps, splitter), splitter) == steps


@pytest.mark.parametrize("levels", [100, 100_000])
def test_deep_json_text_in_a_parquet_cell_is_refused(tmp_path: Path, levels: int) -> None:
    """Parquet carries nested objects as JSON text, decoded by the format readers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    deep = '{"a": ' + "[" * levels + "]" * levels + "}"
    path = tmp_path / "deep.parquet"
    table = pa.table({"problem": ["p"], "steps": [["a", "b"]], "metadata": [deep]})
    pq.write_table(table, path)
    with pytest.raises(ImportFormatError) as excinfo:
        parse_everything(path, "jsonl")
    assert str(excinfo.value) == (
        "deep.parquet, row 1, field 'metadata': holds JSON text nested more than 64 levels deep"
    )
