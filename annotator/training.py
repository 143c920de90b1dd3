"""Training runs: fine-tune a PRM on a project's labels on a worker (``scoring.training``),
store the loss and evaluation curves as they come, register the result as a scorer.

Labels come from a label set, or from the human verdicts (agreed or adjudicated) when no
set is named. Traces of ``eval_split`` are held out for the ProcessBench metric; the
others train. A run taken up again after a dead worker continues from its newest
checkpoint (``scoring.training`` restores optimizer, scheduler, RNG and data order), and
the steps it logs again overwrite their points, so the curve never holds a step twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from annotator import jobs
from annotator.jobs import RunError
from annotator.labelsets import human_labels, set_labels
from annotator.models import LabelSet, Project, Scorer, Trace, TrainingPoint, TrainingRun
from scoring.options import TRAIN_OPTIONS, OptionError, check_model_location, check_values
from scoring.types import Trace as ScoringTrace

KINDS = ("qwen-prm", "token-classification", "math-shepherd")  # scoring.training.KINDS
# The TrainConfig fields a run may set (their values: ``scoring.options``).
OPTION_KEYS = (
    "lora_r",
    "lora_alpha",
    "epochs",
    "lr",
    "batch_tokens",
    "grad_accum",
    "max_steps",
    "eval_every",
    "save_every",
    "logging_steps",
    "seed",
    "device",
    "truncate_after_first_error",
    "step_separator",
)


def create_training_run(
    project: Project,
    user,
    *,
    kind: str,
    base_model: str,
    label_set: LabelSet | None = None,
    eval_split: str = "",
    options: dict[str, Any] | None = None,
    name: str = "",
) -> TrainingRun:
    """A queued run row (not yet sent); ``RunError`` says what is wrong with the request."""
    options = options or {}
    check_training_request(kind, base_model, options)
    if label_set is not None and label_set.project_id != project.pk:
        raise RunError("the label set belongs to another project")
    name = name or f"train-{TrainingRun.objects.filter(project=project).count() + 1}"
    if TrainingRun.objects.filter(project=project, name=name).exists():
        raise RunError(f"this project already has a training run named {name!r}")
    scorer_name = scorer_name_for(project, name)
    if len(scorer_name) > Scorer._meta.get_field("name").max_length:
        raise RunError(
            f"the finished model would be registered as the scorer {scorer_name!r}, longer "
            "than a scorer's name may be: choose a shorter run name"
        )
    if Scorer.objects.filter(name=scorer_name).exists():
        raise RunError(
            f"a scorer named {scorer_name!r} exists already, and the finished model is "
            "registered under that name: choose another run name"
        )
    labels = _labels(project, label_set)
    if not labels:
        raise RunError("there are no labels to train on")
    held_out = (
        set(
            Trace.objects.filter(pk__in=list(labels), split=eval_split).values_list("pk", flat=True)
        )
        if eval_split
        else set()
    )
    if eval_split and not held_out:
        # Without this the run would train on everything and register a scorer whose
        # held-out F1 is blank, with nothing saying why.
        splits = sorted(
            set(Trace.objects.filter(pk__in=list(labels)).values_list("split", flat=True))
        )
        raise RunError(
            f"eval_split {eval_split!r}: no labelled trace is in this split "
            f"(the labelled traces' splits: {', '.join(map(repr, splits))})",
            field="eval_split",
        )
    if len(held_out) == len(labels):
        raise RunError(
            f"every labelled trace is in the evaluation split {eval_split!r}", field="eval_split"
        )
    return TrainingRun.objects.create(
        project=project,
        name=name,
        kind=kind,
        base_model=base_model,
        label_set=label_set,
        eval_split=eval_split,
        options=options,
        created_by=user,
        queue="default" if options.get("device") == "cpu" else "gpu",
        max_attempts=settings.JOB_MAX_ATTEMPTS,
        output_dir=str(Path(settings.MODEL_DIR) / project.slug / name),
    )


def check_training_request(kind: str, base_model: str, options: dict[str, Any]) -> None:
    """``RunError`` naming what is wrong with a run's kind, base model or options: the
    rules of ``scoring.options`` (the command line's), and a base model that is a hub
    id or a path inside ``MODEL_DIR``. ``create_training_run`` calls it; a form or
    serializer may call it to refuse early."""
    if kind not in KINDS:
        raise RunError(f"kind is one of {list(KINDS)}")
    if not base_model:
        raise RunError("name the base model (a hub id or a path on the workers' disk)")
    if not isinstance(options, dict):
        raise RunError("options must be an object of name: value")
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RunError(f"unknown option(s) {unknown}; use {list(OPTION_KEYS)}")
    try:
        check_model_location(base_model, settings.MODEL_DIR)
    except OptionError as exc:
        raise RunError(str(exc), field="base_model") from None
    try:
        check_values(options, TRAIN_OPTIONS)
    except OptionError as exc:
        raise RunError(str(exc), field=exc.name) from None


def scorer_name_for(project: Project, run_name: str) -> str:
    """The name a run's finished model is registered under."""
    return f"{project.slug}-{run_name}"


def register_scorer(run: TrainingRun) -> Scorer:
    """Register the run's finished model as a new scorer of its project, or raise
    ``JobRefused`` when the name is taken: a run never replaces a scorer (runs of
    other projects may be using it). A run taken up again after it registered (its
    worker died before it could finish the job) keeps the scorer it made."""
    with transaction.atomic():
        done = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if done.scorer_id is not None:
            return Scorer.objects.get(pk=done.scorer_id)
        name = scorer_name_for(run.project, run.name)
        try:
            with transaction.atomic():
                scorer = Scorer.objects.create(
                    name=name,
                    project=run.project,
                    adapter=run.kind,
                    model=run.output_dir,
                    options={"device": "cpu"} if run.options.get("device") == "cpu" else {},
                    created_by=run.created_by,
                )
        except IntegrityError:
            raise jobs.JobRefused(
                f"the model is trained and saved in {run.output_dir}, but a scorer named "
                f"{name!r} exists already, so it was not registered (a run never replaces "
                "a scorer); a staff member can register it under another name"
            ) from None
        TrainingRun.objects.filter(pk=run.pk).update(scorer=scorer)
    return scorer


def start_training_run(project: Project, user, **kwargs: Any) -> TrainingRun:
    """Create a run and send it to its queue; ``EnqueueError`` when the broker is down."""
    return jobs.enqueue(create_training_run(project, user, **kwargs))


def _labels(project: Project, label_set: LabelSet | None) -> dict[int, tuple[int, Any]]:
    return set_labels(label_set) if label_set is not None else human_labels(project)


def training_traces(run: TrainingRun) -> tuple[list[ScoringTrace], list[ScoringTrace]]:
    """(train, eval) traces with their first errors, as ``scoring`` takes them."""
    labels = _labels(run.project, run.label_set)
    train: list[ScoringTrace] = []
    held_out: list[ScoringTrace] = []
    rows = Trace.objects.filter(pk__in=list(labels)).select_related("problem")
    for trace in rows.with_steps():
        first_error, _ = labels[trace.pk]
        item = ScoringTrace(
            problem=trace.problem.text,
            steps=tuple(trace.step_texts),
            id=str(trace.pk),
            split=trace.split,
            first_error_step=first_error,
        )
        (held_out if run.eval_split and trace.split == run.eval_split else train).append(item)
    return train, held_out


def store_points(run: TrainingRun, step: int, values: dict[str, float]) -> None:
    """Upsert one log line's values at ``step`` (NaN stored as null; the epoch is not a
    curve)."""
    rows = [
        TrainingPoint(run=run, name=name, step=step, value=value if math.isfinite(value) else None)
        for name, value in values.items()
        if name != "epoch"
    ]
    TrainingPoint.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["run", "name", "step"],
        update_fields=["value"],
    )


def run_training_job(run: TrainingRun, context: jobs.JobContext | None = None) -> dict[str, Any]:
    """Train, resuming from the newest checkpoint if there is one; register the model
    as a new scorer of the project."""
    from scoring.training import TrainConfig, last_checkpoint, train

    train_traces, eval_traces = training_traces(run)
    if not train_traces:
        raise jobs.JobRefused("no labelled traces outside the evaluation split")
    resumed_from = last_checkpoint(run.output_dir)
    config = TrainConfig(
        kind=run.kind, base=run.base_model, output_dir=run.output_dir, **run.options
    )

    def on_step(step: int, total: int) -> None:
        if context:
            context.progress(step, total)  # raises when cancelled or taken over

    try:
        result = train(
            config,
            train_traces,
            eval_traces,
            on_log=lambda step, values: store_points(run, step, values),
            on_step=on_step,
        )
    except (OSError, ValueError) as exc:  # a wrong path or hub id, no usable labels
        raise jobs.JobRefused(f"could not train {run.base_model}: {exc}") from exc
    scorer = register_scorer(run)
    return {
        "steps": result.global_step,
        "train_loss": result.train_loss,
        "train_traces": len(train_traces),
        "eval_traces": len(eval_traces),
        "metrics": {k: v if math.isfinite(v) else None for k, v in result.metrics.items()},
        "resumed_from": Path(resumed_from).name if resumed_from else None,
        "scorer": scorer.name,
    }


def curves(run: TrainingRun) -> dict[str, list[tuple[int, float | None]]]:
    """Every logged series of the run, by name, in step order."""
    series: dict[str, list[tuple[int, float | None]]] = {}
    for name, step, value in run.points.order_by("name", "step").values_list(
        "name", "step", "value"
    ):
        series.setdefault(name, []).append((step, value))
    return series
