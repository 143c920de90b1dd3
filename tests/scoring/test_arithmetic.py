from __future__ import annotations

import json
import sys

import pytest

from scoring.arithmetic import ArithmeticCheck, false_claims, find_claims
from scoring.engine import score_traces
from scoring.types import Trace
from tests.factories import PROCESSBENCH_GSM8K


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        (
            "So 33 * 15 = 495 students and 495 * $15 = $7455.",
            [("33 * 15 = 495", True), ("495 * 15 = 7455", False)],
        ),
        ("\\(1/3 \\times 18 = 6\\) flamingos", [("1 / 3 * 18 = 6", True)]),
        ("33 classes * 15 students/class = 495 students", [("33 * 15 = 495", True)]),
        ("Janet sells <<16-3-4=9>>9 duck eggs", [("16-3-4 = 9", True)]),
        ("Then <<9*2=17>>17 dollars", [("9*2 = 17", False)]),
        ("\\frac{10}{3} = 3.33", [("( ( 10 ) / ( 3 ) ) = 3.33", True)]),
        ("2 x 3 = 7", [("2 * 3 = 7", False)]),
        (
            "5 - 8 = -3 and 1,000 + 500 = 1,500",
            [("5 - 8 = - 3", True), ("1000 + 500 = 1500", True)],
        ),
        ("2 \\cdot (3 + 4) = 15", [("2 * ( 3 + 4 ) = 15", False)]),
        ("0.6 * 100 = 60%", [("0.6 * 100 = 60%", True)]),
        (
            "7 * 70 - 40 = 470 - 40 = 430",
            [("7 * 70 - 40 = 470 - 40", False), ("470 - 40 = 430", True)],
        ),
    ],
)
def test_it_checks_arithmetic_claims(text: str, claims: list[tuple[str, bool]]) -> None:
    assert [(c.text, c.ok) for c in find_claims(text)] == claims


@pytest.mark.parametrize(
    "text",
    [
        "n - 5 = 10",  # algebra: the left operand is a variable
        "3 + 2x = 11",
        "\\[ x + 44 = 78 \\]\n\\[ x = 78 - 44 \\]",  # the x on the next line is not a unit
        "On Monday: 5 pairs = 5 * 2 = 10 shoes",  # a bare quantity before '=' is a label
        "Savings = 20% of $100,000 = 0.20 * $100,000 = $20,000.",
        "Total lines = 54 + 36 + 48 = 138 lines \\boxed{138}",
        "(2/3)x * $1.5 = $150",
        "(1 dozen) / (1/4 pound) = (48 croissants) / x pounds",
        "43/5 = 8 full pens with a remainder of 3",  # a count rounded down
    ],
)
def test_it_raises_no_false_alarm_on_what_it_cannot_read(text: str) -> None:
    assert false_claims(text) == []


def test_it_scores_steps_zero_only_where_a_claim_is_false() -> None:
    trace = Trace("q", ("3 + 4 = 7", "7 * 2 = 15, so 15 - 1 = 14", "The answer is 14."), id="x")
    [result] = score_traces(ArithmeticCheck(), [trace])
    assert result.scores == (1.0, 0.0, 1.0)
    assert result.details == {"false_claims": {1: ["7 * 2 = 15"]}}
    # step-local: scoring a prefix gives the prefix of the scores
    [prefix] = score_traces(ArithmeticCheck(), [trace.prefix(2)])
    assert prefix.scores == result.scores[:2]


def test_it_finds_the_labelled_slip_in_a_processbench_trace() -> None:
    records = {r["id"]: r for r in json.loads(PROCESSBENCH_GSM8K.read_text())}
    record = records["gsm8k-5"]  # 495 * $15 = $7455 (should be 7425), labelled step 2
    result = ArithmeticCheck().score_trace(Trace(record["problem"], record["steps"], id="gsm8k-5"))
    assert result.scores.index(0.0) == record["label"] == 2


def test_it_flags_no_step_of_any_all_correct_processbench_trace() -> None:
    records = json.loads(PROCESSBENCH_GSM8K.read_text())
    correct = [r for r in records if r["label"] == -1]
    flagged = [
        r["id"]
        for r in correct
        if 0.0 in ArithmeticCheck().score_trace(Trace(r["problem"], r["steps"])).scores
    ]
    assert len(correct) == 193
    assert flagged == []


LINE = "He buys 12 * 3 = 36 apples (at $2/apple), then 36 + 4 = 40 in all.\n"


def long_step(lines: int) -> str:
    return LINE * lines + "So 7 * 8 = 54 pears."


def test_a_400_kb_step_is_checked_whole() -> None:
    """A step of 400 KB (the probe's 417 KB step never finished): every claim in it is
    read, and the one false claim, at its very end, is found."""
    step = long_step(6000)
    assert len(step) > 400_000
    claims = find_claims(step)
    assert len(claims) == 2 * 6000 + 1
    assert [c.text for c in claims if not c.ok] == ["7 * 8 = 54"]


@pytest.mark.parametrize(
    "step",
    [
        "1+" * 200_000 + "1 = 200001",  # one run of 400 KB: a side too long to check
        "(" * 200_000 + "1" + ")" * 200_000 + " = 1",
        "(" * 200_000 + "1 + 1 = 2",  # unmatched: trimmed in one pass
        "1 + 1 = 2" + ")" * 200_000,
        "((9^64)^64)^64 = 1",  # a value of 250,000 digits, were it computed
        "2 = " * 100_000 + "2",  # 100,000 claims in one run
    ],
    ids=["long-sum", "deep-parens", "open-parens", "close-parens", "tower", "long-chain"],
)
def test_a_step_built_to_be_slow_is_read_in_bounded_work(step: str) -> None:
    assert all(claim.ok for claim in find_claims(step))


def opcodes_run(text: str) -> int:
    """Python bytecodes executed while checking ``text``: work, counted, not timed."""
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        find_claims(text)
    finally:
        sys.settrace(None)
    return count


def test_the_work_per_step_grows_linearly_with_its_length() -> None:
    """Four times the text, four times the bytecodes (a loop over the tokens before
    each token would make it sixteen). Together with the scan's construction (each
    token looks only at its list neighbours, no slices) and the caps on a claim
    (``MAX_SIDE_CHARS``, ``MAX_VALUE_BITS``), the work is linear in the step."""
    small, large = opcodes_run(long_step(100)), opcodes_run(long_step(400))
    assert 3.5 * small < large < 4.5 * small
