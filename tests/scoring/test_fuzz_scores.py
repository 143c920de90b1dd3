"""Score files (``scoring/formats/scores.py``) from elsewhere: any bytes or any JSON
value on a line gives the scores or an ``ImportFormatError`` naming the file and the
line, never another exception (hypothesis), and an over-long line is refused unread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.formats import ImportFormatError
from scoring.formats.files import MAX_RECORD_BYTES
from scoring.formats.scores import read_scores, write_scores
from scoring.types import StepScores

GOOD = b'{"id": "t-0", "scores": [0.5, null, 1]}\n'
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
score_records = st.fixed_dictionaries(
    {"id": json_values, "scores": json_values | st.lists(json_values, max_size=4)}
)


def read_second_line(tmp_path: Path, line: bytes) -> dict[str, list[float]]:
    path = tmp_path / "scores.jsonl"
    path.write_bytes(GOOD + line + b"\n")
    return read_scores(path)


@FUZZ
@given(line=st.binary(max_size=200))
def test_any_bytes_read_or_name_the_file_and_line(tmp_path: Path, line: bytes) -> None:
    try:
        scores = read_second_line(tmp_path, line.replace(b"\n", b" "))
    except ImportFormatError as exc:
        assert str(exc).startswith("scores.jsonl, line 2: ")
    else:
        assert "t-0" in scores


@FUZZ
@given(record=json_values | score_records)
def test_any_json_record_reads_as_numbers_or_names_the_line(tmp_path: Path, record) -> None:
    try:
        scores = read_second_line(tmp_path, json.dumps(record).encode())
    except ImportFormatError as exc:
        assert str(exc).startswith("scores.jsonl, line 2: ")
    else:
        for values in scores.values():
            assert all(isinstance(value, float) for value in values)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"id": "t-1", "scores": [0.5, "0.7"]}', "scores[1] must be a number or null"),
        (b'{"id": "t-1", "scores": [true]}', "scores[0] must be a number or null"),
        (b'{"id": "t-1", "scores": 0.5}', "scores must be a list"),
        (b'{"id": ["t-1"], "scores": []}', "id must be a string or an integer"),
        (b'{"id": "t-1", "scores": [1' + b"0" * 400 + b"]}", "scores[0] is out of range"),
        (b'{"id": "t-1"}', "expected a score record"),
        (b'{"id": "t-1", "scores": [0.5,', "malformed JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["text", "bool", "not-a-list", "list-id", "huge", "no-scores", "cut", "latin", "deep"],
)
def test_a_bad_record_is_named_by_file_and_line(tmp_path: Path, line: bytes, says: str) -> None:
    with pytest.raises(ImportFormatError) as excinfo:
        read_second_line(tmp_path, line)
    assert str(excinfo.value).startswith("scores.jsonl, line 2: ")
    assert says in str(excinfo.value)


def test_a_line_longer_than_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    with open(path, "wb") as fh:
        fh.write(GOOD)
        fh.write(b'{"id": "t-1", "scores": [' + b" " * MAX_RECORD_BYTES + b"]}\n")
    with pytest.raises(
        ImportFormatError, match=r"^scores.jsonl, line 2: the line is longer than 16 MiB"
    ):
        read_scores(path)


def test_scores_written_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    written = [StepScores("a", (0.25, math.nan, 1.0)), StepScores("b", ())]
    assert list(write_scores(path, written)) == written
    read = read_scores(path)
    assert read["a"][0] == 0.25 and math.isnan(read["a"][1]) and read["a"][2] == 1.0
    assert read == {"a": read["a"], "b": []}
