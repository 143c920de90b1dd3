"""``python -m scoring train``: labelled files in any format in, a scorable directory out."""

from __future__ import annotations

import json
from pathlib import Path

from scoring.adapters import load_adapter
from scoring.cli import main
from tests.factories import synthetic_traces


def test_it_trains_from_processbench_and_jsonl_files_into_a_scorable_directory(
    tmp_path: Path, capsys
) -> None:
    from scoring.tiny import build_token_classifier, qwen_tokenizer

    base = build_token_classifier(tmp_path / "base", qwen_tokenizer())
    train = tmp_path / "train.json"
    train.write_text(
        json.dumps(
            [
                {
                    "id": t.id,
                    "generator": "synthetic",
                    "problem": t.problem,
                    "steps": list(t.steps),
                    "final_answer_correct": t.first_error_step == -1,
                    "label": t.first_error_step,
                }
                for t in synthetic_traces(24, seed=6)
            ]
        )
    )
    held_out = tmp_path / "eval.jsonl"
    held_out.write_text(
        "".join(
            json.dumps(
                {
                    "id": t.id,
                    "problem": t.problem,
                    "steps": list(t.steps),
                    "label": t.first_error_step,
                }
            )
            + "\n"
            for t in synthetic_traces(8, seed=7)
        )
    )
    out = tmp_path / "out"
    args = ["train", "--kind", "token-classification", "--base", str(base), "--train", str(train)]
    args += ["--eval", str(held_out), "--output", str(out), "--lora-r", "4", "--lr", "1e-2"]
    args += ["--max-steps", "3", "--batch-tokens", "256", "--device", "cpu", "--quiet"]
    assert main(args) == 0
    summary = capsys.readouterr().err
    assert "trained 3 steps on 24 traces" in summary
    assert "eval_f1" in summary and "eval_step_auroc" in summary
    adapter = load_adapter("token-classification", str(out), device="cpu")
    assert adapter.model.config.num_labels == 2


def test_it_refuses_a_file_without_labels(tmp_path: Path, capsys) -> None:
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text(json.dumps({"problem": "p", "steps": ["a"]}) + "\n")
    args = ["train", "--kind", "qwen-prm", "--base", "unused", "--train", str(unlabelled)]
    assert main([*args, "--output", str(tmp_path / "out")]) == 2
    assert "no labelled trace" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
