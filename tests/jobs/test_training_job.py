"""Training runs on a real worker process: a SIGKILLed worker's run is taken up by
another, continues from its newest checkpoint, and finishes with one curve point per
step; the trained model is registered as a scorer that scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from annotator import training
from annotator.importing import import_file
from annotator.labelsets import human_labels
from annotator.models import JobStatus, Scorer, TrainingPoint, TrainingRun
from tests.factories import synthetic_traces
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

STEPS, SAVE_EVERY = 90, 15


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    from scoring.tiny import build_token_classifier, qwen_tokenizer

    return build_token_classifier(tmp_path_factory.mktemp("tc-base"), qwen_tokenizer())


@pytest.fixture
def labelled_project(project, tmp_path):
    """64 labelled synthetic traces to train on and 16 held out (split ``eval``)."""
    path = tmp_path / "synthetic.jsonl"
    records = [
        {
            "id": t.id,
            "problem": t.problem,
            "steps": list(t.steps),
            "label": t.first_error_step,
            "split": split,
        }
        for split, traces in (("train", synthetic_traces(64, 1)), ("eval", synthetic_traces(16, 2)))
        for t in traces
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_file(project, path, "jsonl")
    assert len(human_labels(project)) == 80
    return project


def loss_steps(run: TrainingRun) -> list[int]:
    return list(
        TrainingPoint.objects.filter(run=run, name="loss")
        .order_by("step")
        .values_list("step", flat=True)
    )


def test_a_killed_training_run_resumes_from_its_checkpoint_and_registers_a_scorer(
    workers, labelled_project, tiny_classifier, users, settings, tmp_path
):
    settings.MODEL_DIR = tmp_path / "models"
    env = {"STEPWISE_MODEL_DIR": str(settings.MODEL_DIR)}
    # A base model on disk must sit inside the model directory.
    base = shutil.copytree(tiny_classifier, settings.MODEL_DIR / "base")
    first = workers("trainer-1", **env)
    run = training.start_training_run(
        labelled_project,
        users["owner"],
        kind="token-classification",
        base_model=str(base),
        eval_split="eval",
        options={
            "device": "cpu",
            "max_steps": STEPS,
            "save_every": SAVE_EVERY,
            "eval_every": 30,
            "batch_tokens": 256,
            "lr": 1e-3,
        },
    )
    assert run.queue == "default"
    checkpoints = Path(run.output_dir) / "checkpoints"
    wait_for(
        lambda: (checkpoints / f"checkpoint-{2 * SAVE_EVERY}" / "trainer_state.json").exists(),
        timeout=180,
    )
    first.kill()
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING and run.progress_done < STEPS
    logged_at_kill = loss_steps(run)

    workers("trainer-2", **env)
    done = wait_for(
        lambda: (r := TrainingRun.objects.get(pk=run.pk)).is_finished and r, timeout=240
    )

    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert (done.summary["train_traces"], done.summary["eval_traces"]) == (64, 16), done.summary
    resumed = int(done.summary["resumed_from"].removeprefix("checkpoint-"))
    assert resumed >= 2 * SAVE_EVERY and resumed % SAVE_EVERY == 0
    assert resumed < len(logged_at_kill) + 1 <= STEPS  # some steps were logged twice...
    assert loss_steps(done) == list(range(1, STEPS + 1))  # ...and each is drawn once
    f1 = TrainingPoint.objects.filter(run=done, name="eval_f1").values_list("step", flat=True)
    assert sorted(f1) == [30, 60, 90]
    assert done.progress_done == STEPS == done.summary["steps"]

    scorer = Scorer.objects.get(pk=done.scorer_id)
    assert (scorer.adapter, scorer.model, scorer.project) == (
        "token-classification",
        done.output_dir,
        labelled_project,
    )
    from scoring.adapters import load_adapter
    from scoring.training import evaluate_adapter

    figures = evaluate_adapter(
        load_adapter(scorer.adapter, scorer.model, device="cpu"), synthetic_traces(16, 2)
    )
    assert figures["f1"] == pytest.approx(done.summary["metrics"]["eval_f1"])
