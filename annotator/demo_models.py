"""The demo's models, offline: a tiny random-weight PRM in the real Qwen2.5-Math-PRM
layout and a tiny causal LM (``scoring.tiny``), built inside ``MODEL_DIR``; a training
run that fine-tunes the PRM on the ProcessBench labels, a scoring run of the random
PRM, then one of the fine-tuned PRM, and a short Monte-Carlo run with the tiny LM as
an ``hf:`` completer. Every run is a real job on the demo's worker, on the CPU, with
sizes that keep ``make demo`` quick; nothing reaches beyond the machine.

``setup_demo --models`` builds the models and queues the first three runs (the worker starts
after it, and takes them up); ``setup_demo --follow`` waits for the training run and
queues the fine-tuned scorer's run. Idempotent: runs that exist are not queued again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from annotator import jobs, montecarlo, runs, training
from annotator.models import (
    FINISHED_STATUSES,
    Job,
    JobStatus,
    MonteCarloRun,
    Project,
    Scorer,
    ScoringRun,
    TrainingRun,
)

# Scorers have no description field, so the names say it: a demo model, random weights.
RANDOM_SCORER = "demo-tiny-qwen-prm-random"
# Registers its model as the scorer gsm8k-demo-demo-tiny-qwen-prm-finetuned.
TRAINING_RUN = "demo-tiny-qwen-prm-finetuned"
MC_RUN = "demo-mc-tiny-lm"
PROCESSBENCH_SPLIT = "gsm8k"  # the ProcessBench traces: the labelled ones
MC_TRACES = 3
# Tiny on purpose: the worker finishes all of it in seconds on a laptop CPU.
TRAIN_OPTIONS = {
    "device": "cpu",
    "max_steps": 12,
    "logging_steps": 1,
    "batch_tokens": 2048,
    "lr": 1e-3,
    "seed": 0,
}
MC_OPTIONS = {"device": "cpu", "temperature": 1.0, "max_tokens": 16, "seed": 0}

Log = Callable[[str], None]


def model_paths() -> tuple[Path, Path]:
    """(the tiny PRM, the tiny causal LM), inside ``MODEL_DIR`` where runs may load them."""
    root = Path(settings.MODEL_DIR) / "demo"
    return root / "tiny-qwen-prm", root / "tiny-causal-lm"


def build_models() -> tuple[Path, Path]:
    """Build the two tiny models unless they are on disk already (seconds, no network)."""
    from scoring.tiny import build_causal_lm, build_qwen_prm, qwen_tokenizer

    prm, lm = model_paths()
    if not (prm / "config.json").exists():
        # Without the hub repository's remote code: the adapter's own class loads it.
        build_qwen_prm(prm, remote_code=False)
    if not (lm / "config.json").exists():
        build_causal_lm(lm, qwen_tokenizer())
    return prm, lm


def queue_model_runs(project: Project, user, log: Log) -> None:
    """Register the random PRM and queue the training, its scoring run and the
    Monte-Carlo run. A broker that does not answer fails them, said in the log."""
    prm, lm = build_models()
    scorer, _ = Scorer.objects.get_or_create(
        name=RANDOM_SCORER,
        defaults={
            "adapter": "qwen-prm",
            "model": str(prm),
            "options": {"device": "cpu"},
            "created_by": user,
        },
    )
    try:
        if not TrainingRun.objects.filter(project=project, name=TRAINING_RUN).exists():
            training.start_training_run(
                project,
                user,
                kind="qwen-prm",
                base_model=str(prm),
                options=TRAIN_OPTIONS,
                name=TRAINING_RUN,
            )
            log(f"queued the training run {TRAINING_RUN} (tiny PRM on the ProcessBench labels)")
        if not ScoringRun.objects.filter(project=project, name=RANDOM_SCORER).exists():
            runs.start_run(
                project, scorer, user, selection={"split": PROCESSBENCH_SPLIT}, name=RANDOM_SCORER
            )
            log(f"queued the scoring run {RANDOM_SCORER}")
        if not MonteCarloRun.objects.filter(project=project, name=MC_RUN).exists():
            ids = list(
                montecarlo.mc_traces(project, {})
                .exclude(split=PROCESSBENCH_SPLIT)
                .order_by("id")
                .values_list("id", flat=True)[:MC_TRACES]
            ) or list(montecarlo.mc_traces(project, {}).values_list("id", flat=True)[:MC_TRACES])
            montecarlo.start_mc_run(
                project,
                user,
                completer=f"hf:{lm}",
                n=2,
                options=MC_OPTIONS,
                selection={"ids": ids},
                keep_rollouts=True,
                name=MC_RUN,
            )
            log(f"queued the Monte-Carlo run {MC_RUN} on {len(ids)} traces")
    except (jobs.EnqueueError, jobs.RunError) as exc:
        # A broker that does not answer, or demo data without reference answers: the
        # rest of the demo stands without these runs.
        log(f"the demo's model runs were not all queued: {exc}")


def follow_training(project: Project, user, log: Log, timeout: float = 900) -> bool:
    """Wait for the demo's training run, then queue a scoring run of the scorer it
    registered; then wait for every demo model run to finish. True when all are done,
    or when there is nothing to follow (the demo was set up without its models)."""
    run = TrainingRun.objects.filter(project=project, name=TRAINING_RUN).first()
    if run is None:
        return True
    deadline = time.monotonic() + timeout
    run = _wait(TrainingRun, run.pk, deadline)
    if run.status != JobStatus.DONE or run.scorer is None:
        log(f"the training run {run.name} ended {run.status}: {run.error or 'timed out'}")
        return False
    scorer = run.scorer
    if not ScoringRun.objects.filter(project=project, name=scorer.name).exists():
        try:
            runs.start_run(
                project, scorer, user, selection={"split": PROCESSBENCH_SPLIT}, name=scorer.name
            )
        except jobs.EnqueueError as exc:
            log(f"the fine-tuned scorer's run was not queued: {exc}")
            return False
        log(f"training done; queued the scoring run {scorer.name}")
    done = True
    for model, name in (
        (ScoringRun, RANDOM_SCORER),
        (ScoringRun, scorer.name),
        (MonteCarloRun, MC_RUN),
    ):
        job = model.objects.filter(project=project, name=name).first()
        if job is None:
            done = False
            continue
        job = _wait(model, job.pk, deadline)
        log(f"{model._meta.verbose_name} {name}: {job.status}")
        done = done and job.status == JobStatus.DONE
    return done


def _wait(model: type[Job], pk: int, deadline: float) -> Job:
    """The job once it has finished, or as it is at ``deadline``."""
    while True:
        job = model.objects.get(pk=pk)
        if job.status in FINISHED_STATUSES or time.monotonic() > deadline:
            return job
        time.sleep(1)
