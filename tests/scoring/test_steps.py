from __future__ import annotations

import pytest

from scoring.steps import SPLITTERS, join_steps, split_steps

STEPS = ["Add 3 and 4: 3 + 4 = 7.", "Multiply by 2:\tgives 14", "So the answer is \\boxed{14}."]


@pytest.mark.parametrize("how", sorted(SPLITTERS))
def test_it_round_trips_clean_steps(how: str) -> None:
    assert split_steps(join_steps(STEPS, how), how) == STEPS


def test_it_splits_paragraphs_on_blank_lines_with_spaces() -> None:
    assert split_steps("a\n \nb\n\n\n c ", "paragraphs") == ["a", "b", "c"]


def test_it_keeps_single_newlines_inside_a_paragraph() -> None:
    assert split_steps("a\nb\n\nc") == ["a\nb", "c"]


def test_it_splits_lines_and_drops_empty_ones() -> None:
    assert split_steps("a\n\n  b\n", "lines") == ["a", "b"]


def test_it_splits_step_markers_and_keeps_a_preamble() -> None:
    text = "Let us think.\nStep 1: add\nstep 2. multiply\nSTEP 10: done"
    assert split_steps(text, "step-markers") == ["Let us think.", "add", "multiply", "done"]


def test_it_splits_math_shepherd_text_on_ki_tags() -> None:
    text = "Step 1: 3 + 4 = 7 ки\nStep 2: 7 * 2 = 14 ки\nThe answer is: 14 ки"
    assert split_steps(text, "shepherd") == [
        "Step 1: 3 + 4 = 7",
        "Step 2: 7 * 2 = 14",
        "The answer is: 14",
    ]


def test_it_joins_shepherd_steps_with_a_tag_after_each() -> None:
    assert join_steps(["a", "b"], "shepherd") == "a ки\nb ки\n"


def test_it_rejects_an_unknown_splitter() -> None:
    with pytest.raises(ValueError, match="unknown step splitter"):
        split_steps("a", "sentences")
    with pytest.raises(ValueError, match="unknown step splitter"):
        join_steps(["a"], "sentences")
