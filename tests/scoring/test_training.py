"""Fine-tuning PRMs (``scoring.training``) on tiny models: tokenisation shared with the
adapters, a learnable task, LoRA and full, saved directories that score the same, resume."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scoring import training
from scoring.adapters import load_adapter
from scoring.adapters.base import load_tokenizer
from scoring.engine import score_traces
from scoring.formats import read_traces
from scoring.types import Trace
from tests.factories import PROCESSBENCH_GSM8K, synthetic_traces

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny base per kind, in the layout its adapter loads."""
    from scoring.tiny import (
        build_causal_lm,
        build_qwen_prm,
        build_token_classifier,
        mistral_tokenizer,
        qwen_tokenizer,
    )

    root = tmp_path_factory.mktemp("bases")
    return {
        "qwen-prm": build_qwen_prm(root / "qwen-prm", remote_code=False),
        "token-classification": build_token_classifier(root / "tc", qwen_tokenizer()),
        "math-shepherd": build_causal_lm(root / "ms", mistral_tokenizer(), "mistral"),
    }


@pytest.mark.parametrize("kind", training.KINDS)
def test_training_tokenisation_equals_the_adapters_encoding_on_processbench(
    kind: str, bases: dict[str, Path]
) -> None:
    """Training loads its tokenizer and encoder its own way (``load_tokenizer`` +
    ``tokenizer_adapter``); the scoring side is the adapter as ``python -m scoring score``
    loads it. Labels sit exactly at the judged steps' read-out positions."""
    traces = read_traces(PROCESSBENCH_GSM8K)
    assert len(traces) == 400
    scorer = load_adapter(kind, str(bases[kind]), device="cpu")
    encoder = training.tokenizer_adapter(
        kind, load_tokenizer(str(bases[kind])), step_separator="\n"
    )
    truncated = 0
    for trace in traces:
        example = training.encode_example(encoder, trace, truncate_after_first_error=False)
        encoded = scorer.encode(trace)
        assert example.input_ids == encoded.input_ids, trace.id
        targets = training.step_targets(trace)
        expected = {p: t for p, t in zip(encoded.positions, targets, strict=True) if t is not None}
        assert {i: y for i, y in enumerate(example.labels) if y != training.IGNORE} == expected

        cut = training.encode_example(encoder, trace, truncate_after_first_error=True)
        if trace.first_error_step not in (-1, len(trace.steps) - 1):
            truncated += 1
            prefix = scorer.encode(trace.prefix(trace.first_error_step + 1))
            assert cut.input_ids == prefix.input_ids
            assert cut.labels[prefix.positions[-1]] == 0
            assert len(cut.input_ids) < len(example.input_ids)
    assert truncated > 100


def _score(adapter, traces: list[Trace]) -> dict[str, list[float]]:
    return {r.trace_id: list(r.scores) for r in score_traces(adapter, traces, 4096)}


def test_training_learns_a_synthetic_task_and_the_saved_model_scores_the_same(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    kind = "token-classification"
    train_traces, eval_traces = synthetic_traces(96, seed=1), synthetic_traces(48, seed=2)
    untrained = training.evaluate_adapter(
        load_adapter(kind, str(bases[kind]), device="cpu"), eval_traces
    )
    losses: list[tuple[int, float]] = []
    config = training.TrainConfig(
        kind=kind,
        base=str(bases[kind]),
        output_dir=str(tmp_path / "out"),
        lr=1e-3,
        epochs=8,
        batch_tokens=256,
        logging_steps=4,
        device="cpu",
    )
    result = training.train(
        config,
        train_traces,
        eval_traces,
        on_log=lambda step, values: "loss" in values and losses.append((step, values["loss"])),
    )
    print(
        f"held-out ProcessBench F1: untrained {untrained['f1']:.1f}, trained {result.metrics['eval_f1']:.1f}; "
        f"step AUROC {untrained['step_auroc']:.3f} -> {result.metrics['eval_step_auroc']:.3f}"
    )
    first, last = [v for _, v in losses[:3]], [v for _, v in losses[-3:]]
    assert sum(last) / 3 < 0.8 * sum(first) / 3, losses
    assert result.metrics["eval_f1"] > untrained["f1"] + 25
    assert result.metrics["eval_step_auroc"] > 0.85

    # The saved directory through the CLI: the same scores as the model in memory.
    data = tmp_path / "eval.jsonl"
    data.write_text(
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
            for t in eval_traces
        )
    )
    out = tmp_path / "scores.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scoring",
            "score",
            "--adapter",
            kind,
            "--model",
            config.output_dir,
            "--input",
            str(data),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    saved = {r["id"]: r["scores"] for r in map(json.loads, out.read_text().splitlines())}
    in_memory = _score(
        training.tokenizer_adapter(kind, load_tokenizer(config.output_dir), result.model),
        eval_traces,
    )
    assert saved.keys() == in_memory.keys()
    for trace_id, scores in in_memory.items():
        assert saved[trace_id] == pytest.approx(scores, abs=1e-5)
    recomputed = training.evaluate_adapter(
        load_adapter(kind, config.output_dir, device="cpu"), eval_traces
    )
    assert recomputed["f1"] == pytest.approx(result.metrics["eval_f1"])


@pytest.mark.parametrize(
    ("kind", "lora_r"),
    [("qwen-prm", 4), ("math-shepherd", 4), ("token-classification", 4), ("math-shepherd", 0)],
)
def test_lora_and_full_training_save_a_directory_that_scores_like_the_model_in_memory(
    kind: str, lora_r: int, bases: dict[str, Path], tmp_path: Path
) -> None:
    traces = synthetic_traces(16, seed=3)
    config = training.TrainConfig(
        kind=kind,
        base=str(bases[kind]),
        output_dir=str(tmp_path / "out"),
        lora_r=lora_r,
        lr=1e-2,
        max_steps=4,
        batch_tokens=256,
        device="cpu",
    )
    result = training.train(config, traces, traces[:6])
    assert result.global_step == 4
    assert set(result.metrics) >= {"eval_f1", "eval_step_auroc"}

    saved = load_adapter(kind, config.output_dir, device="cpu")
    base = load_adapter(kind, str(bases[kind]), device="cpu")
    in_memory = training.tokenizer_adapter(kind, saved.tokenizer, result.model)
    scores = _score(in_memory, traces)
    assert _score(saved, traces) == pytest.approx(scores)
    before = _score(base, traces)
    assert any(before[t.id] != pytest.approx(scores[t.id], abs=1e-4) for t in traces)
    if lora_r:
        # merged: plain weights in the adapter's layout, no peft files left behind
        assert not (Path(config.output_dir) / "adapter_config.json").exists()
        assert not any("lora" in name for name, _ in saved.model.named_parameters())


def test_a_stopped_run_resumes_from_its_last_checkpoint_as_if_never_stopped(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    kind = "token-classification"
    traces = synthetic_traces(32, seed=4)

    def run(output: Path, stop_after: int | None) -> tuple[training.TrainResult, list]:
        log: list[tuple[int, float]] = []
        steps = itertools.count(1)  # should_stop is asked once after every step
        config = training.TrainConfig(
            kind=kind,
            base=str(bases[kind]),
            output_dir=str(output),
            lr=1e-3,
            max_steps=6,
            save_every=2,
            batch_tokens=256,
            device="cpu",
        )
        result = training.train(
            config,
            traces,
            on_log=lambda step, values: "loss" in values and log.append((step, values["loss"])),
            should_stop=(lambda: next(steps) >= stop_after) if stop_after else None,
        )
        return result, log

    whole, whole_log = run(tmp_path / "whole", None)
    stopped, first_log = run(tmp_path / "resumed", 3)
    assert stopped.model is None and stopped.global_step == 3
    assert not (tmp_path / "resumed" / "config.json").exists()  # no final model yet
    assert training.last_checkpoint(tmp_path / "resumed").endswith("checkpoint-2")
    # a checkpoint cut short by a kill while saving (no trainer state yet) is passed over
    partial = tmp_path / "resumed" / "checkpoints" / "checkpoint-3"
    partial.mkdir()
    (partial / "trainer_state.json").write_text('{"global_st')
    assert training.last_checkpoint(tmp_path / "resumed").endswith("checkpoint-2")
    resumed, second_log = run(tmp_path / "resumed", None)
    assert [step for step, _ in second_log] == [3, 4, 5, 6]  # from checkpoint-2 on
    assert second_log == pytest.approx(whole_log[2:])
    assert _score(
        load_adapter(kind, str(tmp_path / "resumed"), device="cpu"), traces
    ) == pytest.approx(_score(load_adapter(kind, str(tmp_path / "whole"), device="cpu"), traces))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("lora_r", [0, 4])
def test_bf16_training_with_gradient_checkpointing_on_cuda(
    lora_r: int, bases: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    kind = "qwen-prm"
    traces = synthetic_traces(32, seed=5)
    config = training.TrainConfig(
        kind=kind,
        base=str(bases[kind]),
        output_dir=str(tmp_path / "out"),
        lora_r=lora_r,
        lr=1e-3,
        max_steps=8,
        batch_tokens=512,
        device="cuda",
    )
    losses: list[float] = []
    result = training.train(
        config, traces, traces[:8], on_log=lambda _, v: "loss" in v and losses.append(v["loss"])
    )
    assert result.global_step == 8 and all(loss == loss for loss in losses)  # no NaN
    if not lora_r:  # bf16 weights (LoRA keeps its adapters in fp32 until merged)
        assert next(result.model.parameters()).dtype == torch.bfloat16
    saved = load_adapter(kind, config.output_dir, device="cuda")
    assert next(saved.model.parameters()).dtype == torch.bfloat16
    assert _score(saved, traces) == pytest.approx(
        _score(training.tokenizer_adapter(kind, saved.tokenizer, result.model), traces), abs=1e-2
    )


@pytest.mark.parametrize("kind", training.KINDS)
def test_the_class_the_loss_trains_is_the_score_the_adapter_reads(
    kind: str, bases: dict[str, Path]
) -> None:
    """softmax(pair_logits)[..., 1], what cross-entropy pushes towards 1 on a correct
    step, equals the adapter's score at every position (a swapped ``+``/``-`` or class
    index would train the model backwards)."""
    import torch

    from scoring.engine import pad_batch

    adapter = load_adapter(kind, str(bases[kind]), device="cpu")
    encoded = [adapter.encode(t) for t in synthetic_traces(4, seed=8)]
    input_ids, mask = pad_batch([e.input_ids for e in encoded], adapter.pad_id)
    pair = (adapter.good_id, adapter.bad_id) if kind == "math-shepherd" else None
    with torch.no_grad():
        trained = training.pair_logits(kind, adapter.model, input_ids, mask, pair).softmax(-1)[
            ..., 1
        ]
        scored = adapter.forward(input_ids, mask)
    assert trained.std() > 0.01  # not a constant that any pairing would match
    torch.testing.assert_close(trained, scored)
