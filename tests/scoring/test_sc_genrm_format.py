"""Reading the layout of ``nishadsinghi/sc-genrm-scaling`` into curve pools."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scoring.curves import Verification
from scoring.formats import ImportFormatError, sc_genrm
from scoring.formats.sc_genrm import (
    normalize_final_answer,
    predicted_answer,
    read_pools,
    reference_answer,
    text_verdict,
)


def solution(answer: str) -> str:
    """A solution in the 4-shot Minerva format the reference samples."""
    return f"We compute.\nFinal Answer: The final answer is ${answer}$. I hope it is correct."


def verification(p_yes: float, p_no: float, verdict: str) -> dict:
    return {
        "p(yes)": p_yes,
        "p(no)": p_no,
        "verification": f"Let's check.\nIs the answer correct (Yes/No)? {verdict}",
    }


def write_layout(
    root: Path, problems: list[dict], verifications: dict[tuple[int, int], list[dict]]
) -> tuple[Path, Path]:
    """``samples/{i}.yaml`` and ``verifications/problem_{i}/solution_{j}.yaml``, written
    with ``yaml.dump`` as the reference's ``save_yaml`` writes them."""
    samples_dir, verifications_dir = root / "samples", root / "verifications"
    samples_dir.mkdir(parents=True)
    verifications_dir.mkdir()
    for i, problem in enumerate(problems):
        record = {"prompt": "Problem: ...", "question": f"question {i}", **problem}
        (samples_dir / f"{i}.yaml").write_text(yaml.dump(record, sort_keys=True))
    for (i, j), items in verifications.items():
        folder = verifications_dir / f"problem_{i}"
        folder.mkdir(exist_ok=True)
        record = {"prompt": "Verify ...", "verifications": items}
        (folder / f"solution_{j}.yaml").write_text(yaml.dump(record, sort_keys=True))
    return samples_dir, verifications_dir


def two_problems(root: Path) -> tuple[Path, Path]:
    problems = [
        {
            # MATH: boxed text; 0.5 is math-equivalent to the gold 1/2, "1/3" is not
            "gt_answer": "So the answer is $\\boxed{\\frac{1}{2}}$.",
            "samples": [
                solution("\\frac{1}{2}"),
                solution("0.5"),
                "no final answer line",
                solution("\\frac13"),
            ],
        },
        # AMC: a float, written as a number
        {"gt_answer": 12.0, "samples": [solution("12"), solution("x = 12"), solution("")]},
    ]
    verifications = {
        (0, 0): [verification(0.9, 0.1, "Yes"), verification(-1, 0.25, "No")],
        (0, 1): [verification(-1, -1, "**No**"), verification(0.0, 0.7, "yes")],
        (1, 0): [verification(0.8, -1, "Yes"), verification(0.6, 0.4, "unclear")],
    }
    return write_layout(root, problems, verifications)


def test_it_reads_the_reference_layout_into_pools(tmp_path: Path) -> None:
    pools = read_pools(*two_problems(tmp_path))
    assert [len(p.samples) for p in pools] == [4, 3]
    assert [p.verified for p in pools] == [2, 1]
    first, second = pools
    assert [s.answer for s in first.samples] == ["\\frac{1}{2}", "0.5", None, "\\frac{1}{3}"]
    assert [s.correct for s in first.samples] == [True, True, False, False]
    # "x = 12" keeps what follows the "=", and "" is invalid: None
    assert [s.answer for s in second.samples] == ["12", "12", None]
    assert [s.correct for s in second.samples] == [True, True, False]
    assert first.samples[0].verifications == (
        Verification(0.9, 0.1, True),
        Verification(None, 0.25, False),
    )
    assert first.samples[1].verifications == (
        Verification(None, None, False),
        Verification(0.0, 0.7, True),
    )
    assert second.samples[0].verifications[1] == Verification(0.6, 0.4, None)
    assert first.samples[2].verifications == ()


def test_without_verifications_every_samples_file_is_a_problem(tmp_path: Path) -> None:
    samples_dir, _ = two_problems(tmp_path)
    pools = read_pools(samples_dir)
    assert [len(p.samples) for p in pools] == [4, 3]
    assert [p.verified for p in pools] == [0, 0]


def test_the_problems_are_the_verification_folders_as_the_reference_counts_them(
    tmp_path: Path,
) -> None:
    samples_dir, verifications_dir = two_problems(tmp_path)
    (samples_dir / "2.yaml").write_text(yaml.dump({"gt_answer": 3, "samples": [solution("3")]}))
    assert len(read_pools(samples_dir, verifications_dir)) == 2
    assert len(read_pools(samples_dir)) == 3


def test_the_caps_keep_the_first_samples_verified_samples_and_verifications(
    tmp_path: Path,
) -> None:
    pools = read_pools(*two_problems(tmp_path), max_samples=2, max_verified=1, max_verifications=1)
    assert [len(p.samples) for p in pools] == [2, 2]
    assert [p.verified for p in pools] == [1, 1]
    assert [len(p.samples[0].verifications) for p in pools] == [1, 1]
    # fewer samples than verified ones: the verified ones past the cap go with them
    pools = read_pools(*two_problems(tmp_path / "again"), max_samples=1)
    assert [(len(p.samples), p.verified) for p in pools] == [(1, 1), (1, 1)]


def test_the_answer_styles_read_answers_as_the_reference_does() -> None:
    text = "so $\\boxed{7}$ apples.\nThe final answer is: 7 apples. I hope it is correct."
    assert predicted_answer(text, "minerva") is None  # no "Final Answer:" line
    # "7 apples", its trailing "es" in the rstrip's character set, then its space removed
    assert predicted_answer(text, "llama70b") == "7appl"
    assert predicted_answer(text, "hendrycks") == "7"
    # llama70b's rstrip takes a character set: a trailing "pi" goes with it
    assert predicted_answer("The final answer is 2\\pi", "llama70b") == "2\\"
    assert predicted_answer("\\boxed{}", "hendrycks") is None
    with pytest.raises(ValueError, match="answer style"):
        predicted_answer(text, "gsm8k")


def test_it_normalises_as_lm_evals_minerva_normaliser() -> None:
    assert normalize_final_answer("$x = 10,000$ dollars") == "10000"
    assert normalize_final_answer("\\text{(A)}") == "(A)"
    assert normalize_final_answer("\\dfrac{1}{2}") == "\\dfrac{1}{2}"
    assert normalize_final_answer("\\sqrt2") == "\\sqrt{2}"
    assert normalize_final_answer("90^\\circ") == "90"
    assert normalize_final_answer("1,2") == "12"  # a list of digits loses its commas too


def test_the_reference_answer_is_unboxed_or_loses_a_trailing_point_zero() -> None:
    assert reference_answer("$\\boxed{10,000}$") == "10000"
    assert reference_answer(12.0) == "12"
    assert reference_answer(7) == "7"
    assert reference_answer("3.0") == "3"
    assert reference_answer("2.50") == "2.50"
    with pytest.raises(ImportFormatError, match="gt_answer"):
        reference_answer("\\boxed{1")
    with pytest.raises(ImportFormatError, match="gt_answer"):
        reference_answer(["1"])


def test_the_text_verdict_follows_the_references_regex_and_fallback() -> None:
    assert text_verdict("Is the answer correct (Yes/No)? \\boxed{Yes}") is True
    assert text_verdict("Is the solution correct? **No**") is False
    assert text_verdict("Is the answer correct (Yes/No)? Not quite") is False  # "no" in "not"
    # the question must be on the last line; otherwise the status phrases decide
    assert text_verdict("Is the answer correct (Yes/No)? Yes\nThanks") is None
    assert text_verdict("Assessment: correct, solution status: incorrect") is False
    assert text_verdict("Final assessment: [CORRECT]") is True
    assert text_verdict("") is None


# ---------------------------------------------------------------- malformed input


def refused(tmp_path: Path, match: str, **options) -> ImportFormatError:
    with pytest.raises(ImportFormatError, match=match) as caught:
        read_pools(tmp_path / "samples", tmp_path / "verifications", **options)
    return caught.value


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"samples": [solution("1")]}, "gt_answer"),
        ({"gt_answer": 1, "samples": "text"}, "samples"),
        ({"gt_answer": 1, "samples": []}, "samples"),
        ({"gt_answer": 1, "samples": [solution("1"), 7]}, r"samples\[1\]"),
        ({"gt_answer": "\\boxed{1", "samples": [solution("1")]}, "gt_answer"),
        ({"gt_answer": {"a": 1}, "samples": [solution("1")]}, "gt_answer"),
    ],
)
def test_a_malformed_samples_file_is_refused_by_name_and_field(
    tmp_path: Path, content: dict, field: str
) -> None:
    two_problems(tmp_path)
    (tmp_path / "samples" / "1.yaml").write_text(yaml.dump(content))
    error = refused(tmp_path, f"1.yaml, field '{field}'")
    assert error.where.endswith("samples/1.yaml")


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ({"p(yes)": 1.5, "p(no)": -1, "verification": "Yes"}, "p(yes)", "not a probability"),
        ({"p(yes)": -0.5, "p(no)": -1, "verification": "Yes"}, "p(yes)", "not a probability"),
        ({"p(yes)": ".nan", "p(no)": -1, "verification": "Yes"}, "p(yes)", "number"),
        ({"p(yes)": 0.5, "p(no)": True, "verification": "Yes"}, "p(no)", "number"),
        ({"p(yes)": 0.5, "verification": "Yes"}, "p(no)", "missing"),
        ({"p(yes)": 0.5, "p(no)": 0.5, "verification": None}, "verification", "text"),
    ],
)
def test_a_malformed_verification_is_refused_by_file_and_field(
    tmp_path: Path, item: dict, field: str, message: str
) -> None:
    two_problems(tmp_path)
    path = tmp_path / "verifications" / "problem_0" / "solution_1.yaml"
    path.write_text(yaml.dump({"verifications": [verification(0.5, 0.5, "Yes"), item]}))
    error = refused(tmp_path, message)
    assert error.where == str(path)
    assert error.field == f"verifications[1].{field}"


def test_a_nan_probability_is_refused(tmp_path: Path) -> None:
    two_problems(tmp_path)
    path = tmp_path / "verifications" / "problem_1" / "solution_0.yaml"
    path.write_text("verifications:\n- {p(yes): .nan, p(no): -1, verification: 'Yes'}\n")
    error = refused(tmp_path, "not a probability")
    assert error.where == str(path)


def test_a_yaml_syntax_error_is_named_with_its_line(tmp_path: Path) -> None:
    two_problems(tmp_path)
    path = tmp_path / "verifications" / "problem_0" / "solution_0.yaml"
    path.write_text("verifications:\n- p(yes): 0.5\n  p(no): [unclosed\n")
    error = refused(tmp_path, "malformed YAML")
    assert error.where.startswith(f"{path}, line ")


def test_bytes_that_are_not_utf8_are_refused_by_name(tmp_path: Path) -> None:
    two_problems(tmp_path)
    path = tmp_path / "samples" / "0.yaml"
    path.write_bytes(b"gt_answer: 1\nsamples: ['\xff']\n")
    assert refused(tmp_path, "malformed YAML").where.startswith(str(path))


def test_yaml_that_builds_python_objects_is_refused(tmp_path: Path) -> None:
    two_problems(tmp_path)
    path = tmp_path / "samples" / "0.yaml"
    path.write_text("!!python/object/apply:os.system ['true']\n")
    assert refused(tmp_path, "malformed YAML").where.startswith(str(path))


def test_deep_nesting_is_refused_by_name(tmp_path: Path) -> None:
    two_problems(tmp_path)
    path = tmp_path / "samples" / "1.yaml"
    path.write_text("gt_answer: 1\nsamples: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert refused(tmp_path, "malformed YAML").where.startswith(str(path))


def test_a_file_over_the_size_cap_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_problems(tmp_path)
    monkeypatch.setattr(sc_genrm, "MAX_VERIFICATIONS_FILE_BYTES", 64)
    error = refused(tmp_path, "at most 64 are read per file")
    assert error.where.endswith("problem_0/solution_0.yaml")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    two_problems(tmp_path)
    (tmp_path / "verifications" / "problem_1" / "solution_0.yaml").write_text("- 1\n- 2\n")
    refused(tmp_path, "solution_0.yaml: expected a mapping, got list")


def test_gaps_in_the_numbering_are_named(tmp_path: Path) -> None:
    two_problems(tmp_path)
    (tmp_path / "verifications" / "problem_0" / "solution_1.yaml").rename(
        tmp_path / "verifications" / "problem_0" / "solution_2.yaml"
    )
    refused(tmp_path, "solution_1.yaml is missing")
    (tmp_path / "samples" / "1.yaml").rename(tmp_path / "samples" / "5.yaml")
    refused(tmp_path, "^[^:]*: 1.yaml is missing")


def test_verifications_of_problems_or_solutions_that_are_not_sampled_are_refused(
    tmp_path: Path,
) -> None:
    samples_dir, verifications_dir = two_problems(tmp_path)
    folder = verifications_dir / "problem_1"
    for j in (1, 2, 3):
        (folder / f"solution_{j}.yaml").write_text(
            yaml.dump({"verifications": [verification(0.5, 0.5, "Yes")]})
        )
    error = refused(tmp_path, "verifies a solution beyond the 3")
    assert error.where.endswith("problem_1/solution_3.yaml")
    (folder / "solution_3.yaml").unlink()
    (verifications_dir / "problem_2").mkdir()
    error = refused(tmp_path, "has no samples file")
    assert error.where.endswith("problem_2")


def test_missing_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="is not a directory"):
        read_pools(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFormatError, match="holds no samples files"):
        read_pools(tmp_path / "empty")
