"""Label sets: named per-trace first errors taken from one source and frozen, for exports
(``export_dataset --labels SET``) and training.

Sources (``LabelSetSource``):

- ``human``: each trace's ``Verdict`` (a reviewer's, else agreeing annotators');
  ``params["reviewed_only"]`` keeps only reviewers' verdicts. Disagreements are left out.
- ``mc-hard``: a Monte-Carlo run's hard labels: the first step from which no rollout
  reached the answer (Math-Shepherd's ``y_HE``; OmegaPRM's binary search finds the same).
- ``mc-soft``: the first step whose Monte-Carlo value is below ``params["threshold"]``.
- ``scoring``: a scoring run's first step scored below ``params["threshold"]`` (the run's
  own threshold by default); a trace with a step the scorer gave no verdict on is left out.
- ``grounded``: a grounded run's step labels (GroundedPRM): the traces its finished trees
  brought in (``annotator.grounded_paths``) whose path passes the released consistency
  filter, each step's label the sign of its fused value (``scoring.grounded.paths``), the
  first step labelled wrong the first error. ``params["run"]`` names the run.
- ``consensus``: traces where two label sets give the same first error (Qwen2.5-Math-PRM's
  consensus filtering of MC and LLM-judge labels, Zhang et al. 2025, arXiv:2501.07301,
  section 3); ``summary`` counts what was kept, dropped (both labelled, they disagree) and
  unmatched (in one set only), and the agreement (kept / both labelled).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from annotator.models import (
    Annotation,
    GroundedPath,
    GroundedRun,
    LabelSet,
    LabelSetEntry,
    LabelSetSource,
    MonteCarloRun,
    Project,
    ScoringRun,
    StepScore,
    Trace,
    TraceMC,
    Verdict,
)
from scoring.labels import ratings_from_first_error
from scoring.montecarlo import first_error_at_threshold

# Label names export_dataset already takes; a set may not shadow them.
RESERVED_NAMES = ("human", "adjudicated")

Labels = dict[int, tuple[int, list[int | None] | None]]  # trace id -> (first error, ratings)


class LabelSetError(ValueError):
    """A label set cannot be made as asked; the message says why."""


def human_labels(project: Project, reviewed_only: bool = False) -> Labels:
    verdicts = Annotation.objects.filter(trace__project=project).verdicts(
        reviewed_only=reviewed_only
    )
    return {
        trace_id: (verdict.first_error_step, verdict.step_ratings)
        for trace_id, verdict in verdicts.items()
        if verdict.is_labelled
    }


def _unknown(what: str, name: Any, queryset) -> LabelSetError:
    """The refusal of a name the project lacks, naming the ones it has."""
    names = ", ".join(queryset.order_by("name").values_list("name", flat=True))
    return LabelSetError(f"no {what} named {name!r}; this project's: {names or 'none yet'}")


def _mc_run(project: Project, params: dict[str, Any]) -> MonteCarloRun:
    try:
        return MonteCarloRun.objects.get(project=project, name=str(params.get("run")))
    except MonteCarloRun.DoesNotExist:
        raise _unknown("Monte-Carlo run", params.get("run"), project.mc_runs) from None


def mc_labels(project: Project, params: dict[str, Any], soft: bool) -> Labels:
    run = _mc_run(project, params)
    threshold = _threshold(params) if soft else None
    labels: Labels = {}
    for trace_id, mc, n_steps_known in TraceMC.objects.filter(run=run).values_list(
        "trace_id", "mc", "hard"
    ):
        n_steps = len(n_steps_known)
        if soft:
            first_error = first_error_at_threshold(mc, threshold)
        else:
            first_error = next((i for i, ok in enumerate(n_steps_known) if ok is False), -1)
        labels[trace_id] = (first_error, ratings_from_first_error(first_error, n_steps))
    return labels


def scoring_labels(project: Project, params: dict[str, Any]) -> Labels:
    try:
        run = ScoringRun.objects.get(project=project, name=str(params.get("run")))
    except ScoringRun.DoesNotExist:
        raise _unknown("scoring run", params.get("run"), project.scoring_runs) from None
    threshold = _threshold(params) if "threshold" in params else run.threshold
    scores: dict[int, list[float]] = {}
    for trace_id, score in (
        StepScore.objects.filter(run=run)
        .order_by("trace_id", "step_index")
        .values_list("trace_id", "score")
        .iterator(chunk_size=20000)
    ):
        scores.setdefault(trace_id, []).append(score)
    labels: Labels = {}
    for trace_id, values in scores.items():
        if any(math.isnan(v) for v in values):
            continue  # no verdict on some step: no label
        first_error = next((i for i, v in enumerate(values) if v < threshold), -1)
        labels[trace_id] = (first_error, ratings_from_first_error(first_error, len(values)))
    return labels


def grounded_labels(project: Project, params: dict[str, Any]) -> Labels:
    try:
        run = GroundedRun.objects.get(project=project, name=str(params.get("run")))
    except GroundedRun.DoesNotExist:
        raise LabelSetError(f"no grounded run named {params.get('run')!r}") from None
    paths = GroundedPath.objects.filter(run=run, consistent=True)
    if not GroundedPath.objects.filter(run=run).exists():
        raise LabelSetError(
            f"grounded run {run.name!r} has brought no paths in yet (it does when it finishes)"
        )
    labels: Labels = {}
    for trace_id, scores in paths.values_list("trace_id", "scores").iterator(chunk_size=5000):
        first_error = next((i for i, s in enumerate(scores) if s < 0), -1)
        labels[trace_id] = (first_error, ratings_from_first_error(first_error, len(scores)))
    return labels


def set_labels(label_set: LabelSet) -> Labels:
    return {
        trace_id: (first_error, ratings)
        for trace_id, first_error, ratings in LabelSetEntry.objects.filter(
            label_set=label_set
        ).values_list("trace_id", "first_error_step", "step_ratings")
    }


def consensus(a: Labels, b: Labels) -> tuple[Labels, dict[str, Any]]:
    """The traces where ``a`` and ``b`` give the same first error (``a``'s ratings kept),
    and the counts.

    >>> kept, counts = consensus({1: (0, None), 2: (-1, None), 3: (1, None)}, {1: (0, None), 2: (1, None)})
    >>> sorted(kept), counts["dropped"], counts["unmatched"], counts["agreement"]
    ([1], 1, 1, 0.5)
    """
    both = a.keys() & b.keys()
    kept = {t: a[t] for t in both if a[t][0] == b[t][0]}
    counts = {
        "traces": len(kept),
        "kept": len(kept),
        "dropped": len(both) - len(kept),
        "unmatched": len(a.keys() ^ b.keys()),
        "agreement": len(kept) / len(both) if both else None,
    }
    return kept, counts


def _threshold(params: dict[str, Any]) -> float:
    try:
        return float(params["threshold"])
    except (KeyError, TypeError, ValueError):
        raise LabelSetError("this source needs a numeric threshold") from None


def named_set(project: Project, name: Any) -> LabelSet:
    """The project's label set ``name``; ``LabelSetError`` naming the project's sets."""
    try:
        return LabelSet.objects.get(project=project, name=str(name))
    except LabelSet.DoesNotExist:
        raise _unknown("label set", name, project.label_sets) from None


def create_label_set(
    project: Project, name: str, source: str, params: dict[str, Any] | None = None, user=None
) -> LabelSet:
    """Compute the labels from ``source`` and store them as set ``name``."""
    params = dict(params or {})
    if not name or name in RESERVED_NAMES:
        raise LabelSetError(
            f"choose a name other than {' or '.join(RESERVED_NAMES)}: "
            "exports already use those for the people's labels"
        )
    if LabelSet.objects.filter(project=project, name=name).exists():
        raise LabelSetError(f"this project already has a label set named {name!r}")
    summary: dict[str, Any] = {}
    if source == LabelSetSource.HUMAN:
        labels = human_labels(project, bool(params.get("reviewed_only")))
    elif source in (LabelSetSource.MC_HARD, LabelSetSource.MC_SOFT):
        labels = mc_labels(project, params, soft=source == LabelSetSource.MC_SOFT)
    elif source == LabelSetSource.SCORING:
        labels = scoring_labels(project, params)
    elif source == LabelSetSource.GROUNDED:
        labels = grounded_labels(project, params)
    elif source == LabelSetSource.CONSENSUS:
        first, second = named_set(project, params.get("a")), named_set(project, params.get("b"))
        labels, summary = consensus(set_labels(first), set_labels(second))
    else:
        raise LabelSetError(f"unknown source {source!r}; choose one of {LabelSetSource.values}")
    summary.setdefault("traces", len(labels))
    summary["all_correct"] = sum(1 for first_error, _ in labels.values() if first_error == -1)
    with transaction.atomic():
        label_set = LabelSet.objects.create(
            project=project,
            name=name,
            source=source,
            params=params,
            summary=summary,
            created_by=user,
        )
        LabelSetEntry.objects.bulk_create(
            (
                LabelSetEntry(
                    label_set=label_set, trace_id=t, first_error_step=fe, step_ratings=ratings
                )
                for t, (fe, ratings) in labels.items()
            ),
            batch_size=5000,
        )
    return label_set


def describe_params(label_set: LabelSet) -> str:
    """How the set was made, in words, for its Source column ("run mc, threshold 0.5").

    A false ``reviewed_only`` says nothing (it is the default), so it is left out.
    """
    params = label_set.params
    parts = []
    if params.get("reviewed_only"):
        parts.append("reviewers' verdicts only")
    if "run" in params:
        parts.append(f"run {params['run']}")
    if "threshold" in params:
        parts.append(f"threshold {params['threshold']}")
    if "a" in params or "b" in params:
        parts.append(f"sets {params.get('a')} and {params.get('b')}")
    return ", ".join(parts)


def label_set_named(project: Project, name: str) -> LabelSet:
    """The set ``export_dataset --labels NAME`` means; ``ValueError`` naming the choices."""
    found = LabelSet.objects.filter(project=project, name=name).first()
    if found is None:
        names = list(LabelSet.objects.filter(project=project).values_list("name", flat=True))
        raise LabelSetError(
            f"unknown labels {name!r}: use human, adjudicated or a label set ({', '.join(names) or 'none yet'})"
        )
    return found


def verdicts_in_set(label_set: LabelSet, traces: Iterable[Trace]) -> dict[int, Verdict]:
    """``{trace id: Verdict}`` for a chunk of traces, from the set (one query)."""
    ids = [trace.pk for trace in traces]
    return {
        trace_id: Verdict(first_error, ratings, kind=f"label-set:{label_set.name}")
        for trace_id, first_error, ratings in LabelSetEntry.objects.filter(
            label_set=label_set, trace_id__in=ids
        ).values_list("trace_id", "first_error_step", "step_ratings")
    }
