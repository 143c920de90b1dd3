"""The dashboard's figures computed in Python from plain rows, for a database without
PostgreSQL's arrays and aggregates (the embedded SQLite demo), and as the dashboard
bench's baseline (``bench/dashboard.py``). Every number comes from the rows that
``annotator/dashboards.py`` reduces in SQL, handed to the same ``scoring.metrics``
functions: each labelled trace's step scores become a ``metrics.TraceSummary``, the
steps' scores per class the Mann-Whitney counts and the histogram, each solution's
stored aggregates a ``metrics.Solution``.

It reads every labelled trace's step scores and every candidate solution of the
project into memory, so the dashboard offers it up to :data:`MAX_TRACES` traces (the
demo holds under 6,000); a bigger project on SQLite gets a message naming the limit.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from annotator import database
from annotator.filters import FILTER_FIELDS
from annotator.models import (
    IMPORTER_PREFIX,
    REFERENCE_GENERATOR,
    Annotation,
    LabelSetEntry,
    MonteCarloRun,
    Project,
    ScoringRun,
    StepScore,
    Trace,
    TraceMC,
    TraceScore,
)
from scoring import metrics

if TYPE_CHECKING:
    from annotator.dashboards import Filters, RunFigures, _RunRows

# The largest project the Python path serves: the figures of one run read every
# labelled trace's scores and best-of-N every scored solution (about a second at this
# size on a laptop); PostgreSQL's path has no such limit.
MAX_TRACES = 20_000


def too_big(project: Project) -> str | None:
    """A message when ``project`` has more traces than the Python path serves."""
    count = Trace.objects.filter(project=project).count()
    if count <= MAX_TRACES:
        return None
    return (
        f"This project has {count:,} traces. Without PostgreSQL the dashboard computes its "
        f"figures in Python for projects of up to {MAX_TRACES:,} traces: run Stepwise on "
        "PostgreSQL (DATABASE_URL) for this one."
    )


def _traces(project: Project, filters: Filters):
    """The project's traces within the filters."""
    chosen = {key: getattr(filters, key) for key in FILTER_FIELDS if getattr(filters, key)}
    return Trace.objects.filter(project=project, **chosen)


def verdicts(project: Project, filters: Filters) -> dict[int, int]:
    """``{trace id: first error}``: the human verdicts (``Verdict.resolve``, the rule
    ``dashboards.VERDICT_SQL`` writes in SQL) or the filters' label set's entries."""
    traces = _traces(project, filters)
    if filters.label_set:
        return dict(
            LabelSetEntry.objects.filter(
                label_set_id=int(filters.label_set), trace__in=traces
            ).values_list("trace_id", "first_error_step")
        )
    found = Annotation.objects.filter(trace__in=traces).verdicts()
    return {pk: v.first_error_step for pk, v in found.items() if v.is_labelled}


def _as_stored(values: list[float]) -> list[float]:
    """Scores as the database holds them: psycopg reads a PostgreSQL ``real`` as the
    shortest decimal that names it (0.0029297 for 3/1024), which this gives back as
    that 4-byte float exactly, as the SQL path computes with it; SQLite's are doubles."""
    if not database.has_arrays() or not values:
        return values
    return list(struct.unpack(f"{len(values)}f", struct.pack(f"{len(values)}f", *values)))


def _step_scores(run_ids: list[int], trace_ids: Iterable[int]) -> dict[tuple[int, int], list]:
    """``{(run id, trace id): step scores}``: each ``TraceScore`` row's array, or for a
    row stored before that column, its ``StepScore`` rows."""
    found: dict[tuple[int, int], list] = {}
    missing: dict[int, list[int]] = defaultdict(list)
    ids = list(trace_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for run_id, trace_id, scores in TraceScore.objects.filter(
            run_id__in=run_ids, trace_id__in=chunk
        ).values_list("run_id", "trace_id", "step_scores"):
            if scores is None:
                missing[run_id].append(trace_id)
            else:
                found[run_id, trace_id] = _as_stored(
                    [math.nan if s is None else float(s) for s in scores]
                )
    for run_id, trace_ids_missing in missing.items():
        steps: dict[int, list[float]] = defaultdict(list)
        for trace_id, score in (
            StepScore.objects.filter(run_id=run_id, trace_id__in=trace_ids_missing)
            .order_by("trace_id", "step_index")
            .values_list("trace_id", "score")
        ):
            steps[trace_id].append(math.nan if score is None else score)
        for trace_id in trace_ids_missing:
            found[run_id, trace_id] = _as_stored(steps.get(trace_id, []))
    return found


def _bucket(score: float, bins: int) -> int:
    """``greatest(1, least(bins, width_bucket(score, 0, 1, bins)))``, 1-based."""
    return max(1, min(bins, math.floor(score * bins) + 1))


def run_rows(
    runs: list[ScoringRun],
    filters: Filters,
    labels: dict[int, int] | None,
    *,
    histogram: bool = True,
) -> dict[int, _RunRows]:
    """What ``dashboards._run_rows`` returns for each run, from the rows: each labelled
    trace's summary per split, the Mann-Whitney sums per split over the judged steps
    (the correct ones before the first error, and the first error), and the steps per
    class and fine score bin."""
    from annotator.dashboards import FINE_BINS, NO_SPLIT, STEP_CLASSES, _RunRows

    found = {run.pk: _RunRows() for run in runs}
    if not runs:
        return found
    project = runs[0].project
    traces = Trace.objects.filter(project=project)  # ``labels`` given: those traces
    if labels is None:
        labels = verdicts(project, filters)
        traces = _traces(project, filters)
    splits = {
        pk: split for pk, split in traces.values_list("pk", "split").iterator() if pk in labels
    }
    scores = _step_scores([run.pk for run in runs], splits)
    counts: dict[tuple[int, str], dict[float, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for (run_id, trace_id), values in scores.items():
        if not values:
            continue
        label = labels[trace_id]
        split = splits[trace_id] or NO_SPLIT
        into = found[run_id]
        into.summaries[split].append(metrics.summarize(values, label))
        per_score = counts[run_id, split]
        for index, score in enumerate(values):
            if math.isnan(score):
                continue
            cls = 0 if label == -1 or index < label else 1 if index == label else 2
            if cls < 2:
                per_score[score][cls] += 1
            if histogram:
                into.fine[STEP_CLASSES[cls]][_bucket(score, FINE_BINS) - 1] += 1
    for (run_id, split), per_score in counts.items():
        found[run_id].u[split] = metrics.mann_whitney_u2(
            (score, pos, neg) for score, (pos, neg) in per_score.items()
        )
    return found


def runs_figures(
    runs: list[ScoringRun],
    filters: Filters,
    tau: float | None = None,
    labels: dict[int, int] | None = None,
    *,
    histogram: bool = True,
) -> dict[int, RunFigures]:
    """``dashboards.runs_figures`` by this path on any database (the bench's baseline)."""
    from annotator.dashboards import _figures

    found = run_rows(runs, filters, labels, histogram=histogram)
    return {run.pk: _figures(run, found[run.pk], tau) for run in runs}


def solutions(
    run: ScoringRun, filters: Filters, labels: dict[int, int]
) -> list[list[metrics.Solution]]:
    """Each problem's candidate solutions that ``run`` scored, in trace order, for
    the problems with two or more: model traces (no reference solution) of known
    final-answer correctness, their aggregates from the ``TraceScore`` row (those
    not stored on it from the steps, as ``dashboards._solutions`` does)."""
    rows = (
        TraceScore.objects.filter(
            run=run,
            trace__in=_traces(run.project, filters)
            .filter(final_answer_correct__isnull=False)
            .exclude(generator=REFERENCE_GENERATOR),
        )
        .order_by("trace__problem_id", "trace_id")
        .values_list(
            "trace__problem_id",
            "trace_id",
            "trace__final_answer",
            "trace__final_answer_correct",
            "min_score",
            "last_score",
            "mean_score",
            "log_product",
        )
    )
    problems: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        problems[row[0]].append(row[1:])
    candidates = [of_problem for of_problem in problems.values() if len(of_problem) >= 2]
    # A row that does not know its mean or log product (stored before those columns,
    # or with a negative score) has its steps aggregated.
    missing = [row[0] for of_problem in candidates for row in of_problem if None in row[5:7]]
    steps_of = _step_scores([run.pk], missing) if missing else {}
    return [
        [_solution(run.pk, row, steps_of, labels) for row in of_problem]
        for of_problem in candidates
    ]


def _solution(
    run_id: int, row: tuple, steps_of: dict[tuple[int, int], list], labels: dict[int, int]
) -> metrics.Solution:
    trace_id, answer, correct, low, last, mean, logs = row
    low, last = (None if v is None else _as_stored([v])[0] for v in (low, last))
    if mean is None or logs is None:
        computed = metrics.solution_aggregates(steps_of.get((run_id, trace_id), []))
        mean, product = computed["mean"], computed["product"]
    else:
        product = math.exp(logs)  # exp(-inf) is 0, exp(NaN) NaN
    return metrics.Solution(
        answer=answer or None,
        correct=correct,
        scores={
            name: math.nan if value is None else value
            for name, value in (("min", low), ("product", product), ("last", last), ("mean", mean))
        },
        first_error_step=labels.get(trace_id),
    )


def best_of_n(
    run: ScoringRun, filters: Filters, labels: dict[int, int] | None
) -> tuple[int, dict[str, float]]:
    """(problems, accuracy per selection rule): ``metrics.best_of_n_from_aggregates``."""
    if labels is None:
        labels = verdicts(run.project, filters)
    problems = solutions(run, filters, labels)
    return len(problems), metrics.best_of_n_from_aggregates(problems)


# -- annotation side and disagreements ------------------------------------------------------


def labels_per_day(project: Project) -> list[tuple[str, int]]:
    """``dashboards.labels_per_day`` from the rows: labels given in Stepwise (not by an
    import) per UTC day."""
    days: dict[str, int] = defaultdict(int)
    for created in (
        Annotation.objects.filter(trace__project=project, kind="label", external_annotator="")
        .exclude(annotator__username__startswith=IMPORTER_PREFIX)
        .values_list("created_at", flat=True)
    ):
        days[created.date().isoformat()] += 1
    return sorted(days.items())


def _desc_nulls_last(value: float | None) -> tuple[int, float]:
    """A sort key for PostgreSQL's ``DESC NULLS LAST``: NaN above every number."""
    if value is None:
        return (2, 0.0)
    if math.isnan(value):
        return (0, 0.0)
    return (1, -value)


def disagreements(
    run: ScoringRun, filters: Filters, limit: int
) -> list[tuple[int, str, int, int, float]]:
    """``dashboards.disagreements`` from the rows."""
    labels = verdicts(run.project, filters)
    scores = _step_scores([run.pk], labels)
    rows: list[tuple] = []
    for trace_id, external_id, predicted, low in TraceScore.objects.filter(
        run=run, trace__in=_traces(run.project, filters)
    ).values_list("trace_id", "trace__external_id", "predicted_first_error", "min_score"):
        label = labels.get(trace_id)
        if label is None or predicted == label:
            continue
        low = None if low is None else _as_stored([low])[0]
        if predicted is not None and predicted != -1 and (label == -1 or predicted < label):
            strength = None if low is None else run.threshold - low
        else:
            values = scores.get((run.pk, trace_id), [])
            strength = (values[label] if 0 <= label < len(values) else 0.0) - run.threshold
        rows.append((trace_id, external_id, label, predicted, strength))
    rows.sort(key=lambda row: (_desc_nulls_last(row[4]), row[0]))
    return rows[:limit]


def _position(first_error: int | None, num_steps: int) -> int | None:
    """A first error's step, "all correct" (-1) just after the last step."""
    if first_error is None:
        return None
    return num_steps if first_error == -1 else first_error


def mc_disagreements(
    mc_run: MonteCarloRun, filters: Filters, limit: int
) -> list[tuple[int, str, int, int, int]]:
    """``dashboards.mc_disagreements`` from the rows."""
    labels = verdicts(mc_run.project, filters)
    rows = []
    for trace_id, external_id, first_error, num_steps in TraceMC.objects.filter(
        run=mc_run, trace__in=_traces(mc_run.project, filters)
    ).values_list("trace_id", "trace__external_id", "first_error", "trace__num_steps"):
        label = labels.get(trace_id)
        if label is None or first_error == label:
            continue
        a, b = _position(label, num_steps), _position(first_error, num_steps)
        apart = None if a is None or b is None else abs(a - b)
        rows.append((trace_id, external_id, label, first_error, apart))
    # ``ORDER BY apart DESC``: PostgreSQL puts nulls first when descending.
    rows.sort(key=lambda row: (row[4] is not None, -(row[4] or 0), row[0]))
    return rows[:limit]


def neighbour_disagreements(
    project: Project, runs: list[ScoringRun], trace_id: int
) -> dict[int, tuple[int | None, int | None]]:
    """``dashboards.neighbour_disagreements`` from the rows."""
    from annotator.dashboards import Filters

    labels = verdicts(project, Filters())
    found: dict[int, tuple[int | None, int | None]] = {}
    predicted: dict[int, dict[int, int | None]] = defaultdict(dict)
    for run_id, other, first_error in TraceScore.objects.filter(run__in=runs).values_list(
        "run_id", "trace_id", "predicted_first_error"
    ):
        if other in labels:
            predicted[run_id][other] = first_error
    for run in runs:
        differ = [t for t, p in predicted[run.pk].items() if p != labels[t]]
        before = [t for t in differ if t < trace_id]
        after = [t for t in differ if t > trace_id]
        found[run.pk] = (max(before, default=None), min(after, default=None))
    return found
