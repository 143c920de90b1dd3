from __future__ import annotations

import threading

import pytest

from scoring.grading import answers_match, extract_answer, grade, last_boxed, normalise_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("So, Judy makes **\\boxed{$7455}** in one week.", "$7455"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("16 - 3 - 4 = 9\n9 * 2 = 18\nA: 18", "18"),
        ("Adding them, the answer is 42.", "42"),
        ("no answer here", None),
    ],
)
def test_it_extracts_the_final_answer(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


def test_it_reads_nested_braces_in_boxed() -> None:
    assert last_boxed("x \\boxed{\\frac{\\sqrt{3}}{2}} y") == "\\frac{\\sqrt{3}}{2}"


def test_it_normalises_for_exact_match() -> None:
    assert normalise_answer("$1,000.00") == "1000"
    assert normalise_answer("\\text{ 2.50 }") == "2.5"


@pytest.mark.parametrize(
    ("gold", "pred", "same"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", True),
        ("7425", "$7455", False),
        ("18", "18.0", True),
        ("3", None, False),
    ],
)
def test_it_compares_answers_with_math_verify(gold: str, pred: str | None, same: bool) -> None:
    assert answers_match(gold, pred) is same


def test_it_grades_against_a_gsm8k_reference_solution() -> None:
    gold = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18"
    assert grade("... so she makes \\boxed{18} dollars.", gold)
    assert not grade("The answer is 19.", gold)


def test_it_grades_off_the_main_thread_under_a_child_process_timeout() -> None:
    results: list[bool] = []
    thread = threading.Thread(
        target=lambda: results.append(answers_match("1/2", "0.5", timeout_s=60))
    )
    thread.start()
    thread.join()
    assert results == [True]
