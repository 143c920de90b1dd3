"""The one encoding of a first error as per-step labels."""

from __future__ import annotations

from scoring.labels import ratings_from_first_error


def test_it_marks_the_steps_before_the_first_error_correct_and_leaves_later_ones_unjudged():
    assert ratings_from_first_error(1, 3) == [1, -1, None]
    assert ratings_from_first_error(0, 1) == [-1]
    assert ratings_from_first_error(-1, 2) == [1, 1]
    assert ratings_from_first_error(-1, 0) == []


def test_it_writes_the_values_a_caller_uses():
    assert ratings_from_first_error(1, 3, correct=True, wrong=False) == [True, False, None]
    assert ratings_from_first_error(2, 4, correct=1, wrong=0) == [1, 1, 0, None]
