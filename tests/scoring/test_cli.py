from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.cli import build_parser, main, parse_option
from tests.factories import PROCESSBENCH_GSM8K

ROOT = Path(__file__).resolve().parents[2]


def test_it_scores_and_evaluates_processbench_with_arithmetic_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "arith.jsonl"
    assert (
        main(
            [
                "score",
                "--adapter",
                "arithmetic-check",
                "--input",
                str(PROCESSBENCH_GSM8K),
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 400
    gold = {r["id"]: r for r in json.loads(PROCESSBENCH_GSM8K.read_text())}
    assert all(len(r["scores"]) == len(gold[r["id"]]["steps"]) for r in records)

    capsys.readouterr()
    assert main(["evaluate", "--scores", str(out), "--gold", str(PROCESSBENCH_GSM8K)]) == 0
    table = capsys.readouterr().out
    header, row = table.splitlines()[1], table.splitlines()[2].split()
    assert header.split()[:6] == ["split", "n_err", "n_cor", "acc_err", "acc_cor", "F1"]
    assert row[:3] == ["gsm8k", "207", "193"]
    # recompute from the file: acc_cor is 100 because no correct trace has a false claim
    hits = sum(
        1
        for r in records
        if gold[r["id"]]["label"] != -1
        and 0.0 in r["scores"]
        and r["scores"].index(0.0) == gold[r["id"]]["label"]
    )
    assert float(row[3]) == round(100 * hits / 207, 1)
    assert float(row[4]) == 100.0


def test_it_tunes_the_threshold_on_a_split(tmp_path: Path, capsys) -> None:
    gold = tmp_path / "toy.jsonl"
    gold.write_text(
        "\n".join(
            json.dumps({"id": f"toy-{i}", "problem": "q", "steps": ["a", "b"], "label": label})
            for i, label in enumerate([1, -1])
        )
    )
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        json.dumps({"id": "toy-0", "scores": [0.8, 0.3]})
        + "\n"
        + json.dumps({"id": "toy-1", "scores": [0.9, 0.7]})
    )
    assert (
        main(["evaluate", "--scores", str(scores), "--gold", str(gold), "--threshold", "tune:toy"])
        == 0
    )
    out = capsys.readouterr().out
    assert "tau = 0.31 (tuned on toy)" in out
    assert out.splitlines()[2].split()[5] == "100.0"


def test_it_scores_with_a_model_adapter_from_the_command_line(
    tmp_path: Path, qwen_prm_dir: Path, traces
) -> None:
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text(
        "\n".join(
            json.dumps({"id": t.id, "problem": t.problem, "steps": list(t.steps)}) for t in traces
        )
    )
    out = tmp_path / "scores.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "scoring",
        "score",
        "--adapter",
        "qwen-prm",
        "--model",
        str(qwen_prm_dir),
    ]
    cmd += [
        "--input",
        str(traces_file),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--batch-tokens",
        "200",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["t-0", "t-1", "t-2"]
    assert [len(r["scores"]) for r in records] == [3, 2, 5]
    assert all(
        r["adapter"] == "qwen-prm" and r["n_tokens"] > 0 and r["seconds"] > 0 for r in records
    )
    assert "scored 3 traces" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"step_separator=\n\n", ("step_separator", "\n\n")),
        (r"step-separator='\n\n'", ("step_separator", "\n\n")),
        (r'step_token="\t"', ("step_token", "\t")),
        ("step_token=' ки'", ("step_token", " ки")),
        (r"step_token=\u043a\u0438 ки", ("step_token", "ки ки")),
        ("ref_model=/models/ref-1.5b", ("ref_model", "/models/ref-1.5b")),
        ("n=8", ("n", 8)),
        ("n='8'", ("n", "8")),
        ("beta=0.005", ("beta", 0.005)),
        ("trust_remote_code=true", ("trust_remote_code", True)),
    ],
)
def test_it_parses_adapter_options_with_escapes(text: str, expected: tuple) -> None:
    assert parse_option(text) == expected


@pytest.mark.parametrize("text", ["beta", "step_token=\\", "step_token='a'b'"])
def test_it_rejects_malformed_options(text: str, capsys) -> None:
    args = ["score", "--adapter", "qwen-prm", "--input", "x", "--output", "y", "--option", text]
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)
    assert "--option" in capsys.readouterr().err


def test_an_escaped_step_separator_reaches_the_adapter(tmp_path: Path, traces) -> None:
    from scoring.adapters.token_classification import TokenClassificationPRM
    from scoring.engine import score_traces
    from scoring.tiny import build_token_classifier, llama3_tokenizer

    model = build_token_classifier(tmp_path / "trl-prm", llama3_tokenizer())
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text(
        "\n".join(
            json.dumps({"id": t.id, "problem": t.problem, "steps": list(t.steps)}) for t in traces
        )
    )
    out = tmp_path / "scores.jsonl"
    args = ["score", "--adapter", "token-classification", "--model", str(model)]
    args += ["--input", str(traces_file), "--output", str(out), "--device", "cpu", "--quiet"]
    assert main([*args, "--option", r"step_separator=\n\n"]) == 0
    written = [json.loads(line)["scores"] for line in out.read_text().splitlines()]

    def scores_with(separator: str) -> list[list[float]]:
        adapter = TokenClassificationPRM.from_pretrained(
            str(model), device="cpu", step_separator=separator
        )
        return [list(r.scores) for r in score_traces(adapter, traces)]

    newlines, backslashes = scores_with("\n\n"), scores_with(r"\n\n")
    assert newlines != backslashes
    for got, expected in zip(written, newlines, strict=True):
        assert got == pytest.approx(expected, abs=1e-6)


def test_the_cli_reads_a_file_in_the_format_it_is_told(tmp_path: Path) -> None:
    """``--format`` picks the reader; a record of another format is an error naming
    the line and field, with no traceback."""
    path = tmp_path / "rows.jsonl"
    rows = [{"prompt": "2 + 2?", "completions": ["2 + 2 = 4", "So 4."], "labels": [True, True]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.jsonl"
    base = [sys.executable, "-m", "scoring", "score", "--adapter", "arithmetic-check"]
    base += ["--input", str(path), "--output", str(out), "--quiet"]
    done = subprocess.run([*base, "--format", "trl"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["scores"] == [1.0, 1.0]

    wrong = subprocess.run(
        [*base, "--format", "processbench"], capture_output=True, text=True, cwd=ROOT
    )
    assert wrong.returncode == 2
    assert "rows.jsonl, line 1, field 'id': missing" in wrong.stderr
    assert "Traceback" not in wrong.stderr
