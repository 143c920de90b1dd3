"""``python -m scoring curves`` as a user runs it, on data in the reference's layout.

The expected numbers are worked out by hand in the comments (exact mode): best-of-S weighs
the i-th best score by C(N-i-1, S-1)/C(N, S) (times the reference's N/(N + 1e-9) quirk,
hence ``approx``), and a vote's tie goes to the answer drawn first.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from scoring.curves import curves
from scoring.formats.sc_genrm import read_pools
from tests.scoring.test_sc_genrm_format import solution, verification, write_layout

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "scoring", "curves", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    problems = [
        # gold 5; answers 5, 5, 7, invalid
        {
            "gt_answer": "$\\boxed{5}$",
            "samples": [solution("5"), solution("5"), solution("7"), "gave up"],
        },
        # gold 3; answers 3, 4, 4, 3
        {"gt_answer": 3, "samples": [solution(a) for a in ("3", "4", "4", "3")]},
    ]
    verifications = {
        # hybrid scores at V=1 / V=2: 0.9 / 0.8 (right), 0.2 / 0.3 (right), 0.95 / 0.9 (wrong)
        (0, 0): [verification(0.9, 0.1, "Yes"), verification(0.7, 0.3, "Yes")],
        (0, 1): [verification(0.2, 0.8, "No"), verification(0.4, 0.6, "No")],
        (0, 2): [verification(0.95, 0.05, "Yes"), verification(0.85, -1, "Yes")],
        # 0.6 / 0.6 (right), 0.1 / 0.3 (wrong: the second verdict is 1 - p(no))
        (1, 0): [verification(0.6, 0.4, "Yes"), verification(0.6, 0.4, "Yes")],
        (1, 1): [verification(0.1, 0.9, "No"), verification(-1, 0.5, "No")],
    }
    return write_layout(tmp_path, problems, verifications)


def points(path: Path) -> dict[tuple[str, int, int], dict]:
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
    else:
        with open(path, newline="") as fh:
            rows = [
                {
                    "method": r["method"],
                    "solutions": int(r["solutions"]),
                    "verifications": int(r["verifications"]),
                    "compute": float(r["compute"]),
                    "success_rate": float(r["success_rate"]),
                }
                for r in csv.DictReader(fh)
            ]
    assert all(
        set(r) == {"method", "solutions", "verifications", "compute", "success_rate"} for r in rows
    )
    return {(r["method"], r["solutions"], r["verifications"]): r for r in rows}


def test_it_writes_sc_and_genrm_curves_as_json(data, tmp_path: Path) -> None:
    samples, verifications = data
    out = tmp_path / "curves.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), "--lambda", "2",
        "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 problems" in result.stderr
    got = points(out)
    # default sizes: powers of two up to the smallest pool (4), verified count (2), V (2)
    assert sorted(got) == [
        ("genrm", 1, 1), ("genrm", 1, 2), ("genrm", 2, 1), ("genrm", 2, 2),
        ("sc", 1, 0), ("sc", 2, 0), ("sc", 4, 0),
    ]  # fmt: skip
    # SC, problem 0 (5, 5, 7, invalid): S=1 1/2; S=2 (5,5) + 2 x (5,inv) win, 2 x (5,7)
    # ties half: 4/6; S=4 5 wins: 1. Problem 1 (3, 4, 4, 3): 1/2 at every S.
    assert got[("sc", 1, 0)]["success_rate"] == pytest.approx(0.5)
    assert got[("sc", 2, 0)]["success_rate"] == pytest.approx((4 / 6 + 0.5) / 2)
    assert got[("sc", 4, 0)]["success_rate"] == pytest.approx(0.75)
    # best-of-S over the verified: problem 0 ranks 7 (wrong), 5, 5 at both V: S=1 2/3,
    # S=2 the best of a random pair is right only when the 7 is not in it: 1/3.
    # Problem 1 ranks 3 (right) over 4: S=1 1/2, S=2 1.
    for v in (1, 2):
        assert got[("genrm", 1, v)]["success_rate"] == pytest.approx((2 / 3 + 1 / 2) / 2)
        assert got[("genrm", 2, v)]["success_rate"] == pytest.approx((1 / 3 + 1) / 2)
    # C = S * (1 + lambda * V), lambda = 2
    assert [got[("genrm", s, v)]["compute"] for s, v in ((1, 1), (2, 1), (1, 2), (2, 2))] == [
        3.0,
        6.0,
        5.0,
        10.0,
    ]
    assert [got[("sc", s, 0)]["compute"] for s in (1, 2, 4)] == [1.0, 2.0, 4.0]


def test_csv_holds_the_same_rows_as_json(data, tmp_path: Path) -> None:
    samples, verifications = data
    common = ["--samples", str(samples), "--verifications", str(verifications), "--lambda", "1"]
    common += ["--s", "1,2", "--v", "1", "--sc", "1,4"]
    assert run(*common, "--output", str(tmp_path / "a.json")).returncode == 0
    assert run(*common, "--output", str(tmp_path / "a.csv")).returncode == 0
    as_json, as_csv = points(tmp_path / "a.json"), points(tmp_path / "a.csv")
    assert sorted(as_json) == [("genrm", 1, 1), ("genrm", 2, 1), ("sc", 1, 0), ("sc", 4, 0)]
    assert as_csv == as_json


def test_replay_mode_writes_the_replayed_curves(data, tmp_path: Path) -> None:
    samples, verifications = data
    out = tmp_path / "replay.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), "--lambda", "1",
        "--mode", "replay", "--rule", "text", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = curves(
        read_pools(samples, verifications),
        sc_sizes=[1, 2, 4],
        sizes=[1, 2],
        verification_counts=[1, 2],
        rule="text",
        mode="replay",
        lam=1.0,
    )
    assert json.loads(out.read_text()) == [asdict(p) for p in expected]


def test_sc_alone_needs_no_verifications_nor_lambda(data, tmp_path: Path) -> None:
    samples, _ = data
    out = tmp_path / "sc.csv"
    result = run("--samples", str(samples), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(points(out)) == [("sc", 1, 0), ("sc", 2, 0), ("sc", 4, 0)]


def test_prm_best_of_n_comes_from_a_score_file(data, tmp_path: Path) -> None:
    samples, verifications = data
    prm = tmp_path / "prm.jsonl"
    step_scores = {
        # problem 0: min scores 0.9 (5, right), 0.1 (5), 0.5 (7), 0.95 (invalid: counts 0)
        "0/0": [0.95, 0.9], "0/1": [0.1], "0/2": [0.5, 0.7], "0/3": [0.95],
        # problem 1: 0.2 (3, right), 0.8 (4), 0.3 (4), 0.1 (3)
        "1/0": [0.2], "1/1": [0.8], "1/2": [0.3], "1/3": [0.1],
    }  # fmt: skip
    prm.write_text(
        "".join(json.dumps({"id": k, "scores": v}) + "\n" for k, v in step_scores.items())
    )
    out = tmp_path / "prm.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), "--lambda", "1",
        "--prm-scores", str(prm), "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = points(out)
    # S=4: problem 0's best is right, problem 1's wrong; S=1: half right in each
    assert got[("prm", 4, 0)]["success_rate"] == pytest.approx(0.5)
    assert got[("prm", 1, 0)]["success_rate"] == pytest.approx(0.5)
    assert got[("prm", 4, 0)]["compute"] == 8.0  # one prefill per solution: S * (1 + 1)

    prm.write_text(json.dumps({"id": "9/0", "scores": [0.5]}) + "\n")
    result = run("--samples", str(samples), "--prm-scores", str(prm), "--output", str(out))
    assert result.returncode == 2
    assert "prm.jsonl, field 'id'" in result.stderr and "'9/0'" in result.stderr


def test_laser_weighted_sc_comes_from_the_same_score_file(data, tmp_path: Path) -> None:
    """LaSeR's r_s as votes, negative and above 1: a negative total still beats an
    invalid answer (the reference's -1 sentinel would not), best-of-N ranks them as given."""
    samples, _ = data
    prm = tmp_path / "laser.jsonl"
    r_s = {
        # problem 0 (gold 5): 5 gets -1.2, 7 gets -1.5, the invalid one 1.2
        "0/0": [-0.6], "0/1": [-0.6], "0/2": [-1.5], "0/3": [1.2],
        # problem 1 (gold 3): 3 gets 1.3 - 0.2 = 1.1, 4 gets 0.9
        "1/0": [1.3], "1/1": [0.4], "1/2": [0.5], "1/3": [-0.2],
    }  # fmt: skip
    prm.write_text("".join(json.dumps({"id": k, "scores": v}) + "\n" for k, v in r_s.items()))
    out = tmp_path / "laser.csv"
    result = run(
        "--samples", str(samples), "--prm-scores", str(prm), "--prm-weighted",
        "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = points(out)
    # S=4: 5 beats 7 in problem 0, 3 beats 4 in problem 1
    assert got[("prm-sc", 4, 0)]["success_rate"] == pytest.approx(1.0)
    assert got[("prm-sc", 4, 0)]["compute"] == 8.0
    # S=1: the drawn answer, right for 2 of 4 in each problem
    assert got[("prm-sc", 1, 0)]["success_rate"] == pytest.approx(0.5)
    # best-of-4 takes the invalid answer (scored 0, above the valid ones) in problem 0
    assert got[("prm", 4, 0)]["success_rate"] == pytest.approx(0.5)
    refused = run("--samples", str(samples), "--prm-weighted", "--output", str(out))
    assert refused.returncode == 2 and "--prm-weighted needs --prm-scores" in refused.stderr


def test_reference_data_without_token_counts_asks_for_lambda(data, tmp_path: Path) -> None:
    samples, verifications = data
    out = tmp_path / "out.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), "--output", str(out)
    )
    assert result.returncode == 2
    assert "token counts" in result.stderr and "--lambda 1 for GenRM-Base" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lambda", "abc"], "expected a number or 'measured'"),
        (["--lambda", "-1"], "lambda must be a finite number >= 0"),
        (["--s", "1,x"], "expected comma-separated integers"),
        (["--v", "0"], "expected distinct integers >= 1"),
        (["--s", "8", "--lambda", "1"], "S must be in 1..3"),
        (["--v", "4", "--lambda", "1"], "V=4 but a verified sample has only 2 verifications"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    data, tmp_path: Path, args: list[str], message: str
) -> None:
    samples, verifications = data
    out = tmp_path / "out.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), *args,
        "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()


def test_an_output_that_is_neither_json_nor_csv_is_refused(data, tmp_path: Path) -> None:
    samples, _ = data
    result = run("--samples", str(samples), "--output", str(tmp_path / "out.txt"))
    assert result.returncode == 2
    assert "out.txt: name a .json or .csv file" in result.stderr


def test_verification_counts_need_verifications(data, tmp_path: Path) -> None:
    samples, _ = data
    result = run("--samples", str(samples), "--v", "1", "--output", str(tmp_path / "o.json"))
    assert result.returncode == 2
    assert "--v needs --verifications" in result.stderr


def test_a_malformed_file_is_named_with_its_field(data, tmp_path: Path) -> None:
    samples, verifications = data
    bad = verifications / "problem_1" / "solution_0.yaml"
    bad.write_text("verifications:\n- {p(yes): 2, p(no): -1, verification: 'Yes'}\n")
    out = tmp_path / "out.json"
    result = run(
        "--samples", str(samples), "--verifications", str(verifications), "--lambda", "1",
        "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{bad}, field 'verifications[0].p(yes)': 2 is not a probability" in result.stderr
    assert not out.exists()


def test_a_missing_samples_folder_is_named(tmp_path: Path) -> None:
    result = run("--samples", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o.json"))
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere'}: is not a directory" in result.stderr
