"""Score files (``scoring/formats/scores.py``) from elsewhere: any bytes or any JSON
value on a line gives the scores or an ``ImportFormatError`` naming the file and the
line, never another exception (hypothesis), and an over-long line is refused unread."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.formats import ImportFormatError
from scoring.formats.files import MAX_RECORD_BYTES
from scoring.formats.scores import iter_scores, read_scores, write_scores
from scoring.types import StepScores

# The file and line, then the field where one is to blame.
NAMES_LINE_2 = re.compile(r"scores\.jsonl, line 2(, field '[^']*')?: ")
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
        assert NAMES_LINE_2.match(str(exc))
    else:
        assert "t-0" in scores


@FUZZ
@given(record=json_values | score_records)
def test_any_json_record_reads_as_numbers_or_names_the_line(tmp_path: Path, record) -> None:
    try:
        scores = read_second_line(tmp_path, json.dumps(record).encode())
    except ImportFormatError as exc:
        assert NAMES_LINE_2.match(str(exc))
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
        (
            b'{"id": "t-1", "scores": [1' + b"0" * 400 + b"]}",
            "an integer of 401 digits is out of range",
        ),
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
    assert NAMES_LINE_2.match(str(excinfo.value))
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


# What a probe of the app sent through its score-file uploads: each answered 500 or was
# stored and broke a page later. Each is refused with the file, line and field named.
MALFORMED = {
    "huge-integer": (b'{"id": "t-1", "scores": [1' + b"0" * 5000 + b"]}", "out of range"),
    "huge-integer-in-details": (
        b'{"id": "t-1", "scores": [], "details": {"n": 1' + b"0" * 30 + b"}}",
        "an integer of 31 digits is out of range",
    ),
    "nul-in-details": (
        b'{"id": "t-1", "scores": [], "details": {"note": "a\\u0000b"}}',
        "field 'details': holds a NUL character",
    ),
    "lone-surrogate": (
        b'{"id": "t-1", "scores": [], "details": {"note": "\\ud800"}}',
        "field 'details': holds a lone surrogate",
    ),
    "bad-utf8": (b'{"id": "t-1", "scores": [], "model": "\xc3\x28"}', "not UTF-8"),
    "deep-nesting": (
        b'{"id": "t-1", "scores": [], "details": {"x": ' + b"[" * 200 + b"]" * 200 + b"}}",
        "field 'details': is nested more than 64 levels deep",
    ),
    "infinity": (
        b'{"id": "t-1", "scores": [0.5, Infinity]}',
        "field 'scores': holds a non-finite number (inf)",
    ),
    "overflowing-float": (
        b'{"id": "t-1", "scores": [-1e999]}',
        "field 'scores': holds a non-finite number (-inf)",
    ),
    "nan-in-details": (
        b'{"id": "t-1", "scores": [], "details": {"p": NaN}}',
        "field 'details': holds a non-finite number (nan)",
    ),
    "score-beyond-a-real": (
        b'{"id": "t-1", "scores": [0.5, 1e39]}',
        "scores[1] is 1e+39, beyond a 4-byte float's range",
    ),
    "score-below-a-real": (
        b'{"id": "t-1", "scores": [1e-300]}',
        "scores[0] is 1e-300, beyond a 4-byte float's range",
    ),
    "details-not-an-object": (
        b'{"id": "t-1", "scores": [], "details": "x"}',
        "field 'details': must be an object",
    ),
}


@pytest.mark.parametrize(("line", "says"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_score_record_is_refused_with_a_named_error(
    tmp_path: Path, line: bytes, says: str
) -> None:
    with pytest.raises(ImportFormatError) as excinfo:
        read_second_line(tmp_path, line)
    assert NAMES_LINE_2.match(str(excinfo.value))
    assert says in str(excinfo.value)


def test_a_nan_score_means_no_verdict(tmp_path: Path) -> None:
    """``json.dumps`` writes a NaN score as ``NaN`` (our own writer does): it stays NaN."""
    read = read_second_line(tmp_path, b'{"id": "t-1", "scores": [NaN, 0.5]}')
    assert math.isnan(read["t-1"][0]) and read["t-1"][1] == 0.5


def test_an_id_seen_before_is_refused_naming_both_lines(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError) as excinfo:
        read_second_line(tmp_path, b'{"id": "t-0", "scores": [0.1]}')
    assert str(excinfo.value) == "scores.jsonl, line 2: id 't-0' appears twice (first on line 1)"


def test_an_integer_id_and_its_text_are_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_bytes(b'{"id": 7, "scores": []}\n{"id": "7", "scores": []}\n')
    with pytest.raises(ImportFormatError, match="line 2: id '7' appears twice"):
        read_scores(path)


class EndlessLine(io.RawIOBase):
    """A 300 MB line that exists only as it is read; counts the bytes handed out."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.handed_out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b" " * n
        self.left -= n
        self.handed_out += n
        return n


def test_a_300_mb_line_is_refused_after_reading_the_cap_only() -> None:
    raw = EndlessLine(300 * 1024 * 1024)
    with pytest.raises(
        ImportFormatError, match=r"^scores.jsonl, line 1: the line is longer than 16 MiB"
    ):
        list(iter_scores(io.BufferedReader(raw), "scores.jsonl"))
    # Streamed: what was read is the cap plus one buffer, never the line.
    assert raw.handed_out <= MAX_RECORD_BYTES + 2 * io.DEFAULT_BUFFER_SIZE


def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD)
    assert list(read_scores(path)) == ["t-0"]
