"""What Python's ``json`` takes and nothing downstream can hold is refused, with a reason."""

from __future__ import annotations

import io

import pytest

from scoring import strict_json


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": 1e999}', "out of range"),
        ("[-1e400]", "out of range"),
        ("NaN", "NaN is not a JSON value"),
        ('{"x": Infinity}', "Infinity is not a JSON value"),
        ('{"x": 1', "Expecting"),
        (b"\xff\xfe\x00", "codec"),
    ],
)
def test_bodies_python_would_take_or_crash_on_are_refused(body, reason):
    with pytest.raises(strict_json.NotJSON, match=reason):
        strict_json.loads(body)


def test_json_reads_as_json_from_text_bytes_and_streams():
    body = '{"a": [1, 2.5, -3e10, null, true, "NaN"], "b": {"c": 18446744073709551616}}'
    expected = {"a": [1, 2.5, -3e10, None, True, "NaN"], "b": {"c": 2**64}}
    assert strict_json.loads(body) == expected
    assert strict_json.loads(body.encode()) == expected
    assert strict_json.loads(io.StringIO(body)) == expected


def test_constants_can_be_allowed_but_not_numbers_past_a_float():
    assert strict_json.loads("[NaN]", constants=True)[0] != 0
    with pytest.raises(strict_json.NotJSON, match="out of range"):
        strict_json.loads("[1e999]", constants=True)
