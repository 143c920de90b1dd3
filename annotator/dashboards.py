"""The figures of a project's dashboard. PostgreSQL finds the labelled traces (the
verdicts, with the filters) and sends each run's step scores for them (each trace's
array, ``TraceScore.step_scores``) per split as one binary string; numpy reduces those
to one ``scoring.metrics.TraceSummary`` per trace, to Mann-Whitney sums and to counts
per score bin (``scoring.step_arrays``), and ``scoring.metrics`` computes every number
from them, the same functions that ``python -m scoring evaluate`` runs on an export.
Best-of-N reads every solution's aggregates the same way and ``scoring.picks`` counts
the picks. The runs a request shows share one query. Nothing loops over steps or
problems in Python.

Without PostgreSQL (the embedded SQLite demo) each public function here hands over to
``annotator/dashboards_portable.py``, which computes the same figures in Python from the
rows, for projects of up to its ``MAX_TRACES`` traces (``unavailable`` says why a bigger
one is not shown).

The human label of a trace is its ``Verdict``, written here as SQL (``VERDICT_SQL``):
the newest adjudication, else the newest gold label, else the annotators' latest labels
when they all give the same first error.
"""

from __future__ import annotations

import gc
import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction

from annotator import charts, dashboards_portable, database
from annotator.filters import FILTER_FIELDS, TraceFilter
from annotator.models import (
    IMPORTER_PREFIX,
    REFERENCE_GENERATOR,
    MonteCarloRun,
    Project,
    ScoringRun,
)
from scoring import metrics, picks, step_arrays

T = TypeVar("T")
NO_SPLIT = "(no split)"
HISTOGRAM_BINS = 20
STEP_CLASSES = step_arrays.STEP_CLASSES

# One row per trace with a human verdict: (trace_id, label, split). Annotators' labels
# agree or give nothing (a hash aggregate); the rare reviewed ones override them. The
# trace's split comes along from the join that filters the traces, so that a run's
# figures need not join the project's traces a second time.
VERDICT_SQL = """
WITH labels AS (
  SELECT a.trace_id, t.split,
         CASE WHEN min(a.first_error_step) = max(a.first_error_step)
              THEN min(a.first_error_step) END AS label
    FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
   WHERE t.project_id = %(project)s {trace_filter} AND a.is_latest AND a.kind = 'label'
     AND a.first_error_step IS NOT NULL
   GROUP BY a.trace_id, t.split
), reviewed AS (
  SELECT DISTINCT ON (a.trace_id) a.trace_id, t.split, a.first_error_step AS label
    FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
   WHERE t.project_id = %(project)s {trace_filter} AND a.is_latest
     AND a.kind IN ('adjudication', 'gold') AND a.first_error_step IS NOT NULL
   ORDER BY a.trace_id, a.kind = 'adjudication' DESC, a.id DESC
)
SELECT coalesce(r.trace_id, l.trace_id) AS trace_id, coalesce(r.label, l.label) AS label,
       coalesce(r.split, l.split) AS split
  FROM labels l FULL JOIN reviewed r ON r.trace_id = l.trace_id
 WHERE coalesce(r.label, l.label) IS NOT NULL
"""

# A label set's first errors in place of the human verdicts (the filter "label set").
LABEL_SET_SQL = """
SELECT e.trace_id, e.first_error_step AS label, t.split
  FROM annotator_labelsetentry e JOIN annotator_trace t ON t.id = e.trace_id
 WHERE e.label_set_id = %(label_set)s AND t.project_id = %(project)s {trace_filter}
"""

# The labelled traces of a request, computed once and handed to each run's query.
LABELLED_SQL = """
SELECT v.trace_id, v.label, t.split
  FROM unnest(%(ids)s::bigint[], %(labels)s::int[]) AS v(trace_id, label)
  JOIN annotator_trace t ON t.id = v.trace_id
"""


@dataclass(frozen=True)
class Filters:
    """Which traces a dashboard covers (empty: all), and whose labels it compares the
    runs with: ``label_set``, a label set's id, or empty for the human verdicts."""

    split: str = ""
    generator: str = ""
    source: str = ""
    label_set: str = ""

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        """The filters of a query string, or ``BadParameter`` (``annotator/filters.py``
        parses the trace filters for every page)."""
        traces = TraceFilter.from_params(query)
        label_set = query.get("label_set", "")
        return cls(
            **{key: getattr(traces, key) for key in FILTER_FIELDS},
            label_set=label_set if label_set.isdigit() else "",
        )

    def sql(self) -> tuple[str, dict[str, str]]:
        """`` AND t.x = %(x)s`` for each filter set, and its parameters."""
        params = {key: getattr(self, key) for key in FILTER_FIELDS if getattr(self, key)}
        return "".join(f" AND t.{key} = %({key})s" for key in params), params


def in_sql() -> bool:
    """Whether the figures come from the queries here, PostgreSQL's
    (``database.has_analytics``); elsewhere (the embedded SQLite demo) from
    ``annotator/dashboards_portable.py``, in Python."""
    return database.has_analytics()


def unavailable(project: Project) -> str | None:
    """Why the dashboard cannot show ``project`` here, or None: the Python path serves
    projects up to ``dashboards_portable.MAX_TRACES`` traces."""
    return None if in_sql() else dashboards_portable.too_big(project)


def _verdict_cte(filters: Filters) -> tuple[str, dict[str, Any]]:
    """SQL for ``(trace_id, label)`` of the labelled traces: the human verdicts, or the
    entries of the filters' label set."""
    trace_filter, params = filters.sql()
    if filters.label_set:
        sql = LABEL_SET_SQL.format(trace_filter=trace_filter)
        return sql, {**params, "label_set": int(filters.label_set)}
    return VERDICT_SQL.format(trace_filter=trace_filter), params


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def verdicts(project: Project, filters: Filters = Filters()) -> dict[int, int]:
    """``{trace id: first error}`` for traces with a human verdict, or in the filters'
    label set."""
    if not in_sql():
        return dashboards_portable.verdicts(project, filters)
    cte, params = _verdict_cte(filters)
    return dict(_fetch(f"SELECT trace_id, label FROM ({cte}) v", {**params, "project": project.pk}))


# A finished run's scores never change, so its figures only change with the labels:
# they are cached under the run, the filters and the project's labels' version.
CACHE_SECONDS = 24 * 3600


def labels_version(project: Project) -> str:
    """Changes whenever a label of the project is added, replaced or removed (every
    change writes a new row or deletes one). Every dashboard request reads it: the
    annotations are joined in trace order with the narrow index of the project's
    traces rather than by hashing a scan of the wide trace table, which the planner
    picks at its default cost of a random page read (one for spinning disks): a third
    of the time at 100k traces. LOCAL ends with this transaction."""
    with transaction.atomic(), connection.cursor() as cursor:
        if database.has_transaction_settings():
            cursor.execute("SET LOCAL random_page_cost = 1.1")
        cursor.execute(
            """SELECT count(*), coalesce(max(a.id), 0) FROM annotator_annotation a
                 JOIN annotator_trace t ON t.id = a.trace_id WHERE t.project_id = %(project)s""",
            {"project": project.pk},
        )
        [(count, last)] = cursor.fetchall()
    return f"{count}-{last}"


def _cache_key(kind: str, run: ScoringRun, filters: Filters, version: str, extra: tuple) -> str:
    # A done run's scores never change; the traces it stored tell it from the same run
    # seen unfinished (``warm`` fills the cache before the run is marked done).
    raw = f"{kind}|{run.pk}|{run.progress_done}|{filters}|{version}|{extra}"
    return "dashboard:" + hashlib.sha256(raw.encode()).hexdigest()


def cached(
    kind: str,
    run: ScoringRun,
    filters: Filters,
    version: str,
    compute: Callable[[], T],
    *extra: Any,
) -> T:
    """``compute()``, or what it returned before for the same run, filters and labels."""
    return cache.get_or_set(_cache_key(kind, run, filters, version, extra), compute, CACHE_SECONDS)


def cached_runs(
    kind: str,
    runs: list[ScoringRun],
    filters: Filters,
    version: str,
    compute: Callable[[list[ScoringRun]], dict[int, T]],
    *extra: Any,
) -> dict[int, T]:
    """``{run id: value}`` as :func:`cached` keeps them, the runs not cached computed
    together by one ``compute(runs)`` (one query where the traces' side is shared)."""
    keys = {run.pk: _cache_key(kind, run, filters, version, extra) for run in runs}
    found = cache.get_many(list(keys.values()))
    missing = [run for run in runs if keys[run.pk] not in found]
    if missing:
        computed = {keys[pk]: value for pk, value in compute(missing).items()}
        cache.set_many(computed, CACHE_SECONDS)
        found.update(computed)
    return {run.pk: found[keys[run.pk]] for run in runs}


def _labelled_params(labels: dict[int, int]) -> dict[str, list[int]]:
    return {"ids": list(labels), "labels": list(labels.values())}


def _labelled(
    project: Project, filters: Filters, labels: dict[int, int] | None
) -> tuple[str, dict[str, Any]]:
    """SQL for ``(trace_id, label)`` and its parameters: the ``labels`` given, or the
    verdicts (or label set) computed inside the query that needs them, which saves a
    round trip and sending 20k ids back."""
    if labels is not None:
        return LABELLED_SQL, _labelled_params(labels)
    cte, params = _verdict_cte(filters)
    return cte, {**params, "project": project.pk}


# -- one run against the humans -------------------------------------------------------------


@dataclass
class RunFigures:
    """Everything the dashboard shows for one run at one threshold: small, since it is
    cached (no per-trace rows; unpickling 20k summaries cost 80 ms a run)."""

    run: ScoringRun
    tau: float
    labelled: int  # traces with a verdict that the run scored
    table: dict[str, metrics.ProcessBenchResult]
    auroc: dict[str, float]
    min_on_final: dict[str, float]
    sweep: list[tuple[float, metrics.ProcessBenchResult]]
    best_tau: float
    best: metrics.ProcessBenchResult | None
    confusion: dict[str, int]
    auroc_all: float  # the mean over splits (``mean_auroc``)
    min_on_final_all: float  # over every split
    histogram: dict[str, list[int]] = field(default_factory=dict)
    calibration: list[tuple[float, float, int]] = field(default_factory=list)
    roc: tuple[list[float], list[float]] = ([], [])


# Each run's labelled traces per split: their first errors, step counts and step scores
# (the ``TraceScore`` row's array, or for a row stored before that column, its steps'),
# the arrays in PostgreSQL's binary form (``array_send``) joined into one ``bytea`` that
# numpy reads without a Python object per step (``scoring.step_arrays`` reduces them).
# Reducing each array in SQL, one aggregate per trace, cost three times as much. The
# aggregates of a group see its rows in the same order, so the three line up.
STEPS_SQL = """
WITH v AS ({labelled}),
traces AS (
  SELECT ts.run_id, v.split, v.label,
         array_replace(coalesce(ts.step_scores,
                                (SELECT array_agg(s.score ORDER BY s.step_index)
                                   FROM annotator_stepscore s
                                  WHERE s.run_id = ts.run_id AND s.trace_id = ts.trace_id)),
                       NULL, 'NaN') AS scores
    FROM v
    JOIN annotator_tracescore ts ON ts.run_id = ANY(%(runs)s) AND ts.trace_id = v.trace_id
)
SELECT run_id, split, array_agg(label), array_agg(cardinality(scores)),
       string_agg(array_send(scores), ''::bytea)
  FROM traces WHERE cardinality(scores) > 0
 GROUP BY run_id, split
"""

FINE_BINS = 100  # ROC points; the histograms and calibration sum them into HISTOGRAM_BINS


@dataclass
class _RunRows:
    """One run's labelled traces reduced: summaries and Mann-Whitney sums per split,
    steps per class and fine score bin."""

    summaries: dict[str, list[metrics.TraceSummary]] = field(
        default_factory=lambda: defaultdict(list)
    )
    fine: dict[str, list[int]] = field(
        default_factory=lambda: {name: [0] * FINE_BINS for name in STEP_CLASSES}
    )
    u: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # per split


def _binary_float4_arrays(buffer: bytes, lengths: np.ndarray) -> np.ndarray:
    """The values of one-dimensional ``real[]`` arrays without NULLs in PostgreSQL's
    binary form (``array_send``), one after another: each is a header of five 4-byte
    words (dimensions, NULL flag, element type, size, lower bound), then per element
    its length word and its big-endian value."""
    words = np.frombuffer(buffer, dtype=">f4")
    sizes = 5 + 2 * lengths
    if int(sizes.sum()) != len(words):
        raise ValueError("the step score arrays are not what STEPS_SQL sends")
    firsts = np.cumsum(sizes) - sizes + 6  # each array's first value
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return words[np.repeat(firsts, lengths) + 2 * offsets].astype(np.float32)


def _run_rows(
    runs: list[ScoringRun],
    filters: Filters,
    labels: dict[int, int] | None,
    *,
    histogram: bool = True,
) -> dict[int, _RunRows]:
    """Each run's labelled traces (``STEPS_SQL``, one query for all runs) reduced per
    split by ``scoring.step_arrays``."""
    found = {run.pk: _RunRows() for run in runs}
    if not runs or labels == {}:
        return found
    if not in_sql():
        return dashboards_portable.run_rows(runs, filters, labels, histogram=histogram)
    labelled, params = _labelled(runs[0].project, filters, labels)
    with transaction.atomic(), connection.cursor() as cursor:
        # The groups' arrays outgrow the default 4 MB at 100k traces and would spill to
        # disk; the estimate of the old rows' fallback would switch JIT on (200 ms of
        # compiling for nothing). LOCAL ends with this transaction.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            STEPS_SQL.replace("{labelled}", labelled),
            {**params, "runs": [run.pk for run in runs]},
        )
        rows = cursor.fetchall()
    for run_id, split, trace_labels, lengths, buffer in rows:
        lengths = np.array(lengths, dtype=np.int64)
        reduced = step_arrays.reduce_traces(
            np.array(trace_labels, dtype=np.int64),
            lengths,
            _binary_float4_arrays(bytes(buffer), lengths),
            FINE_BINS if histogram else 0,
        )
        into = found[run_id]
        split = split or NO_SPLIT
        into.summaries[split].extend(reduced.summaries)
        into.u[split] = tuple(
            a + b
            for a, b in zip(
                into.u.get(split, (0, 0, 0)),
                (reduced.u2, reduced.positives, reduced.negatives),
                strict=True,
            )
        )
        for name, counts in zip(STEP_CLASSES, reduced.fine, strict=False):
            into.fine[name] = [a + b for a, b in zip(into.fine[name], counts, strict=True)]
    return found


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a run's figures are computed: their tens of
    thousands of per-trace tuples set off full collections over the whole process (60
    to 80 ms of a request) though they form no cycles, and are freed (by reference
    counting) before the collector would ever see them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _coarse(fine: list[int]) -> list[int]:
    per = FINE_BINS // HISTOGRAM_BINS
    return [sum(fine[i : i + per]) for i in range(0, FINE_BINS, per)]


def calibration(histogram: dict[str, list[int]]) -> list[tuple[float, float, int]]:
    """(bin centre, share of judged steps that are correct, judged steps) per non-empty
    bin: a calibrated PRM's points lie on the diagonal."""
    n = len(histogram["correct"])
    points = []
    for i, (good, bad) in enumerate(
        zip(histogram["correct"], histogram["first error"], strict=True)
    ):
        if good + bad:
            points.append(((i + 0.5) / n, good / (good + bad), good + bad))
    return points


def runs_figures(
    runs: list[ScoringRun],
    filters: Filters = Filters(),
    tau: float | None = None,
    labels: dict[int, int] | None = None,
    *,
    histogram: bool = True,
) -> dict[int, RunFigures]:
    """``{run id: figures}`` at ``tau`` (default: each run's threshold) from one query;
    ``labels``: ``{trace id: first error}`` to compare with, by default the verdicts
    (or the filters' label set), found by that same query. Without ``histogram``
    the step counts per score bin (the histogram, calibration and ROC charts) are left
    empty, which saves a pass over every labelled step."""
    if not runs:
        return {}
    with _gc_paused():
        found = _run_rows(runs, filters, labels, histogram=histogram)
        return {run.pk: _figures(run, found[run.pk], tau) for run in runs}


def run_figures(
    run: ScoringRun,
    filters: Filters = Filters(),
    tau: float | None = None,
    labels: dict[int, int] | None = None,
) -> RunFigures:
    """The run's figures at ``tau`` (default: the run's threshold)."""
    return runs_figures([run], filters, tau, labels)[run.pk]


def mean_auroc(auroc: dict[str, float]) -> float:
    """The mean of the splits' step AUROC (those with both classes), as ProcessBench
    averages F1 over its splits; NaN when none has both."""
    finite = [value for value in auroc.values() if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else math.nan


def _figures(run: ScoringRun, rows: _RunRows, tau: float | None) -> RunFigures:
    tau = run.threshold if tau is None else tau
    summaries, fine = dict(rows.summaries), rows.fine
    pooled = [s for split in summaries.values() for s in split]
    sweep = metrics.sweep_from_summaries(pooled) if pooled else []
    best_tau, best = metrics.best_from_sweep(sweep) if sweep else (math.nan, None)
    edges = [i / FINE_BINS for i in range(FINE_BINS)]
    histogram = {name: _coarse(counts) for name, counts in fine.items()}
    auroc = {split: metrics.auroc_from_u2(*rows.u.get(split, (0, 0, 0))) for split in summaries}
    return RunFigures(
        run=run,
        tau=tau,
        labelled=len(pooled),
        table=metrics.table_from_summaries(summaries, tau),
        auroc=auroc,
        min_on_final={
            split: metrics.min_on_final_from_summaries(split_rows)
            for split, split_rows in summaries.items()
        },
        sweep=sweep,
        best_tau=best_tau,
        best=best,
        confusion=metrics.first_error_confusion(pooled, tau),
        auroc_all=mean_auroc(auroc),
        min_on_final_all=metrics.min_on_final_from_summaries(pooled),
        histogram=histogram,
        calibration=calibration(histogram),
        # Exact ROC points at the fine bins' lower edges ("correct if score >= edge").
        roc=metrics.roc_points(
            zip(edges, fine["correct"], fine["first error"], strict=True), FINE_BINS
        ),
    )


def run_charts(figures: RunFigures) -> list[str]:
    """The run's charts as HTML (building a plotly figure costs tens of ms)."""
    run, sweep = figures.run, figures.sweep
    return [
        charts.embed(charts.score_histogram(figures.histogram), f"histogram-{run.pk}"),
        charts.embed(
            charts.threshold_sweep(
                [tau for tau, _ in sweep],
                [r.acc_err for _, r in sweep],
                [r.acc_cor for _, r in sweep],
                [r.f1 for _, r in sweep],
                figures.best_tau,
            ),
            f"sweep-{run.pk}",
        ),
        charts.embed(
            charts.roc_curve(*figures.roc, figures.auroc_all, auroc_name="mean split AUROC"),
            f"roc-{run.pk}",
        ),
        charts.embed(charts.calibration_curve(figures.calibration), f"calibration-{run.pk}"),
        charts.embed(charts.first_error_confusion(figures.confusion), f"confusion-{run.pk}"),
    ]


def warm(run: ScoringRun) -> None:
    """Compute and cache what the dashboard shows first for ``run`` (no filters, the
    run's threshold): its figures and charts, which the runs-side-by-side table also
    reads, and best-of-N. A run's first dashboard visit then reads the cache instead of
    aggregating every step score. ``run.progress_done`` must be what the run will be
    marked done with."""
    filters = Filters()
    version = labels_version(run.project)
    figures = cached("run", run, filters, version, lambda: run_figures(run, filters), None)
    # The runs side by side read the same figures (their histograms unused).
    cached("run-table", run, filters, version, lambda: figures, None)
    if figures.labelled:
        cached("charts", run, filters, version, lambda: run_charts(figures), None)
    cached("best-of-n", run, filters, version, lambda: best_of_n(run, filters))


# -- the humans' ceiling --------------------------------------------------------------------


@dataclass(frozen=True)
class HumanCeiling:
    """The humans' row: ``figures`` over every ordered pair of two verdicts on a trace
    (``pairs``), on ``traces`` traces: the traces the Agreement page compares too
    (``quality.collect_labels``: two or more latest labels with a verdict, imported
    ones included), within the dashboard's filters."""

    figures: metrics.ProcessBenchResult
    traces: int
    pairs: int


def human_ceiling(project: Project, filters: Filters = Filters()) -> HumanCeiling | None:
    """ProcessBench's figures of one annotator's first error taken as the prediction of
    another's, over every ordered pair of annotators on a trace (imported labels
    included): what a PRM could reach against labels that humans agree on this often."""
    trace_filter, params = filters.sql()
    rows = _fetch(
        f"""SELECT a.trace_id, a.first_error_step, b.first_error_step
              FROM annotator_annotation a
              JOIN annotator_annotation b ON b.trace_id = a.trace_id AND b.id <> a.id
              JOIN annotator_trace t ON t.id = a.trace_id
             WHERE t.project_id = %(project)s {trace_filter}
               AND a.is_latest AND b.is_latest AND a.kind = 'label' AND b.kind = 'label'
               AND a.first_error_step IS NOT NULL AND b.first_error_step IS NOT NULL""",
        {**params, "project": project.pk},
    )
    if not rows:
        return None
    return HumanCeiling(
        figures=metrics.processbench([a for _, a, _ in rows], [b for _, _, b in rows]),
        traces=len({trace for trace, _, _ in rows}),
        pairs=len(rows),
    )


# -- best-of-N ------------------------------------------------------------------------------


# Best-of-N: each problem's picks (``metrics.Picks``) among its model solutions that a
# run scored, counted by ``scoring.picks`` from arrays (the problems it cannot decide
# go through ``metrics.problem_picks``). A reference trace (the dataset's own solution,
# correct by definition) is no candidate, or every problem with one scores 100 on pass
# and majority (``scoring evaluate`` skips them alike). The arrays come in PostgreSQL's
# binary form (``array_send``), which numpy reads without a Python object per value;
# picking in SQL, with windows and groups over every solution, took 600 to 900 ms a run
# at 100k traces.
CANDIDATES_SQL = """
SELECT array_send(coalesce(array_agg(t.id), '{{}}')),
       array_send(coalesce(array_agg(t.problem_id), '{{}}')),
       array_send(coalesce(array_agg(t.final_answer_correct), '{{}}')),
       array_agg(nullif(t.final_answer, ''))
  FROM annotator_trace t
 WHERE t.project_id = %(project)s {trace_filter} AND t.final_answer_correct IS NOT NULL
   AND t.generator <> %(reference)s
"""
# Each run's aggregates per trace (NaN where unknown: such problems are left to
# ``_solutions``), the product as a sum of logs.
AGGREGATES_SQL = """
SELECT run_id, array_send(array_agg(trace_id)),
       array_send(array_agg(coalesce(min_score::float8, 'NaN'))),
       array_send(array_agg(coalesce(log_product, 'NaN'))),
       array_send(array_agg(coalesce(last_score::float8, 'NaN'))),
       array_send(array_agg(coalesce(mean_score, 'NaN')))
  FROM annotator_tracescore WHERE run_id = ANY(%(runs)s)
 GROUP BY run_id
"""


def _binary_array(buffer: bytes, dtype: str) -> np.ndarray:
    """A one-dimensional array without NULLs in PostgreSQL's binary form
    (``array_send``): a header (dimensions, NULL flag, element type, then per dimension
    its size and lower bound), then each element as its 4-byte length and its
    big-endian value."""
    if int.from_bytes(buffer[:4], "big") == 0:  # no dimensions: empty
        return np.zeros(0, dtype)
    element = np.dtype([("length", ">i4"), ("value", ">" + dtype)])
    return np.frombuffer(buffer, dtype=element, offset=20)["value"].astype(dtype)


def _products(log_products: np.ndarray) -> np.ndarray:
    """exp of each sum of logs; NaN where ``math.exp`` would overflow or the value is
    far from any score (such problems are left to ``_solutions``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        products = np.exp(np.where(np.abs(log_products) <= 700, log_products, np.nan))
    return np.where(log_products == -np.inf, 0.0, products)


def runs_best_of_n(
    runs: list[ScoringRun], filters: Filters = Filters(), labels: dict[int, int] | None = None
) -> dict[int, tuple[int, dict[str, float]]]:
    """``{run id: (problems, accuracy per selection rule)}`` over the problems with 2+
    solutions of known final-answer correctness that each run scored: the picks that
    ``scoring.picks`` counts from every solution's aggregates (``CANDIDATES_SQL`` and
    ``AGGREGATES_SQL``, one query each for all runs), and those that
    ``metrics.problem_picks`` finds for the problems it leaves (``_solutions``)."""
    if not runs:
        return {}
    project = runs[0].project
    if labels is None:
        labels = verdicts(project, filters)
    if not in_sql():
        return {run.pk: dashboards_portable.best_of_n(run, filters, labels) for run in runs}
    trace_filter, params = filters.sql()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            CANDIDATES_SQL.format(trace_filter=trace_filter),
            {**params, "project": project.pk, "reference": REFERENCE_GENERATOR},
        )
        [(ids, problems, correct, answers)] = cursor.fetchall()
        cursor.execute(AGGREGATES_SQL, {"runs": [run.pk for run in runs]})
        per_run = cursor.fetchall()
    ids, problems = _binary_array(bytes(ids), "i8"), _binary_array(bytes(problems), "i8")
    correct = _binary_array(bytes(correct), "?")
    answer_ids: dict[str, int] = {}
    answer = np.array(
        [-1 if a is None else answer_ids.setdefault(a, len(answer_ids)) for a in answers or []],
        dtype=np.int64,
    )
    order = np.lexsort((ids, problems))  # by problem, then trace: the first wins ties
    ids, problems, correct, answer = ids[order], problems[order], correct[order], answer[order]
    by_id = np.argsort(ids)
    labelled_ids = np.fromiter(labels, np.int64, len(labels))
    labelled_codes = np.where(
        np.fromiter(labels.values(), np.int64, len(labels)) == -1,
        picks.RIGHT_STEPS,
        picks.WRONG_STEP,
    )
    labelled = np.full(len(ids), picks.NOT_LABELLED)
    if len(labelled_ids):
        at = np.searchsorted(ids, labelled_ids, sorter=by_id).clip(max=len(ids) - 1)
        hit = ids[by_id[at]] == labelled_ids if len(ids) else np.zeros(len(at), bool)
        labelled[by_id[at[hit]]] = labelled_codes[hit]
    found = {}
    scored = {run_id: rest for run_id, *rest in per_run}
    for run in runs:
        values = np.full((len(ids), len(metrics.AGGREGATIONS)), np.nan)
        has = np.zeros(len(ids), bool)
        if run.pk in scored and len(ids):
            trace_ids, *columns = (bytes(b) for b in scored[run.pk])
            trace_ids = _binary_array(trace_ids, "i8")
            at = np.searchsorted(ids, trace_ids, sorter=by_id).clip(max=len(ids) - 1)
            hit = ids[by_id[at]] == trace_ids
            rows = by_id[at[hit]]
            has[rows] = True
            low, log_product, last, mean = (_binary_array(c, "f8")[hit] for c in columns)
            for k, column in enumerate((low, _products(log_product), last, mean)):
                values[rows, k] = column
        counted = picks.count_picks(
            problems[has], answer[has], correct[has], values[has], labelled[has]
        )
        if counted.undecided:
            for solutions in _solutions(run, filters, labels, counted.undecided):
                counted.picks[metrics.problem_picks(solutions)] += 1
        found[run.pk] = (
            sum(counted.picks.values()),
            metrics.best_of_n_from_picks(counted.picks),
        )
    return found


def best_of_n(
    run: ScoringRun, filters: Filters = Filters(), labels: dict[int, int] | None = None
) -> tuple[int, dict[str, float]]:
    """(problems, accuracy per selection rule) of one run: :func:`runs_best_of_n`."""
    return runs_best_of_n([run], filters, labels)[run.pk]


def _solutions(
    run: ScoringRun, filters: Filters, labels: dict[int, int], problem_ids: list[int]
) -> list[list[metrics.Solution]]:
    """The solutions of these problems, each problem's in trace order. Each solution's
    aggregates come from its ``TraceScore`` row (min, last, mean, the product as a sum
    of logs); only a row that does not know its mean or log product (stored before those
    columns, or with a negative score) has its steps aggregated here, the product then as
    a signed sum of logs, zero if a step is zero."""
    trace_filter, params = filters.sql()
    sql = f"""
    WITH grouped AS MATERIALIZED (
      SELECT t.id, t.problem_id, t.final_answer, t.final_answer_correct,
             ts.min_score, ts.last_score, ts.mean_score, ts.log_product
        FROM annotator_trace t
        JOIN annotator_tracescore ts ON ts.run_id = %(run)s AND ts.trace_id = t.id
       WHERE t.project_id = %(project)s {trace_filter} AND t.final_answer_correct IS NOT NULL
         AND t.generator <> %(reference)s AND t.problem_id = ANY(%(problems)s)
    ),
    steps AS (
      SELECT s.trace_id,
             bool_or(s.score = 0) AS has_zero,
             count(*) FILTER (WHERE s.score < 0) AS negatives,
             sum(ln(nullif(abs(s.score::float8), 0))) FILTER (WHERE s.score <> 'NaN') AS logs,
             avg(s.score::float8) FILTER (WHERE s.score <> 'NaN') AS mean
        FROM annotator_stepscore s
       WHERE s.run_id = %(run)s
         AND s.trace_id IN (SELECT id FROM grouped
                             WHERE mean_score IS NULL OR log_product IS NULL)
       GROUP BY s.trace_id
    )
    SELECT g.problem_id, g.id, g.final_answer, g.final_answer_correct, g.min_score,
           g.last_score, g.mean_score, g.log_product, st.mean, st.logs, st.has_zero,
           st.negatives
      FROM grouped g LEFT JOIN steps st ON st.trace_id = g.id
     ORDER BY g.problem_id, g.id
    """
    problems: dict[int, list[metrics.Solution]] = defaultdict(list)
    rows = _fetch(
        sql,
        {
            **params,
            "project": run.project_id,
            "run": run.pk,
            "problems": problem_ids,
            "reference": REFERENCE_GENERATOR,
        },
    )
    for row in rows:
        problem_id, trace_id, answer, correct, low, last, mean, logs = row[:8]
        step_mean, step_logs, has_zero, negatives = row[8:]
        if mean is None or logs is None:  # unknown on the row: the steps' aggregates
            mean = step_mean
            if has_zero:
                product = 0.0
            elif step_logs is None:
                product = math.nan
            else:
                product = (-1 if negatives % 2 else 1) * math.exp(step_logs)
        else:
            product = math.exp(logs)  # exp(-inf) is 0, exp(NaN) NaN
        problems[problem_id].append(
            metrics.Solution(
                answer=answer or None,
                correct=correct,
                scores={
                    name: math.nan if value is None else value
                    for name, value in (
                        ("min", low),
                        ("product", product),
                        ("last", last),
                        ("mean", mean),
                    )
                },
                first_error_step=labels.get(trace_id),
            )
        )
    return list(problems.values())


# -- annotation side ------------------------------------------------------------------------


def labels_per_day(project: Project) -> list[tuple[str, int]]:
    """(day, labels submitted in Stepwise that day), every version counted. Imported
    labels are not labelling work: their author is the importer's ``import-<format>``
    user (``importing.importer_user``), with or without the labeller's id."""
    if not in_sql():
        return dashboards_portable.labels_per_day(project)
    rows = _fetch(
        """SELECT date_trunc('day', a.created_at)::date, count(*)
             FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
             JOIN auth_user u ON u.id = a.annotator_id
            WHERE t.project_id = %(project)s AND a.kind = 'label'
              AND a.external_annotator = '' AND u.username NOT LIKE %(imported)s
            GROUP BY 1 ORDER BY 1""",
        {"project": project.pk, "imported": IMPORTER_PREFIX + "%"},
    )
    return [(day.isoformat(), n) for day, n in rows]


# -- disagreement ---------------------------------------------------------------------------


def disagreements(
    run: ScoringRun, filters: Filters = Filters(), *, limit: int = 50
) -> list[tuple[int, str, int, int, float]]:
    """Traces where the run's predicted first error (at its threshold) differs from the
    human one, strongest first: (trace id, external id, human, predicted, strength).
    Strength: how far below the threshold the run scores a step humans call correct
    (a false alarm), or how far above it the run scores the human first error (a miss)."""
    if not in_sql():
        return dashboards_portable.disagreements(run, filters, limit)
    cte, params = _verdict_cte(filters)
    # The score at the human first error from the trace's array (its steps' rows only
    # for a row stored before that column: looking each up cost half a second cold);
    # the traces' external ids for the rows shown only.
    sql = f"""
    WITH v AS ({cte}),
    strongest AS (
      SELECT v.trace_id, v.label, ts.predicted_first_error,
             CASE WHEN ts.predicted_first_error <> -1
                       AND (v.label = -1 OR ts.predicted_first_error < v.label)
                  THEN %(tau)s::float8 - ts.min_score
                  ELSE coalesce(CASE WHEN ts.step_scores IS NOT NULL
                                     THEN ts.step_scores[v.label + 1]
                                     ELSE (SELECT s.score FROM annotator_stepscore s
                                            WHERE s.run_id = ts.run_id
                                              AND s.trace_id = ts.trace_id
                                              AND s.step_index = v.label) END,
                                0) - %(tau)s::float8
             END AS strength
        FROM v
        JOIN annotator_tracescore ts ON ts.run_id = %(run)s AND ts.trace_id = v.trace_id
       WHERE v.label IS NOT NULL AND ts.predicted_first_error IS DISTINCT FROM v.label
       ORDER BY strength DESC NULLS LAST, v.trace_id
       LIMIT %(limit)s
    )
    SELECT x.trace_id, t.external_id, x.label, x.predicted_first_error, x.strength
      FROM strongest x JOIN annotator_trace t ON t.id = x.trace_id
     ORDER BY x.strength DESC NULLS LAST, x.trace_id
    """
    return _fetch(
        sql,
        {**params, "project": run.project_id, "run": run.pk, "tau": run.threshold, "limit": limit},
    )


def _apart(a: str, b: str) -> str:
    """SQL: how many steps apart two first errors are, "all correct" (-1) counting as an
    error just after the last step."""

    def position(x: str) -> str:
        return f"CASE WHEN {x} = -1 THEN t.num_steps ELSE {x} END"

    return f"abs({position(a)} - {position(b)})"


def run_pair_disagreements(
    run: ScoringRun, other: ScoringRun, filters: Filters = Filters(), *, limit: int = 50
) -> list[tuple[int, str, int, int, int]]:
    """Traces both runs scored where their predicted first errors (each at its own
    threshold) differ, furthest apart first: (trace id, external id, ``run``'s, ``other``'s,
    steps apart). Reads one row per trace and run, never the steps."""
    trace_filter, params = filters.sql()
    apart = _apart("a.predicted_first_error", "b.predicted_first_error")
    return _fetch(
        f"""SELECT t.id, t.external_id, a.predicted_first_error, b.predicted_first_error,
                   {apart} AS apart
              FROM annotator_tracescore a
              JOIN annotator_tracescore b ON b.run_id = %(other)s AND b.trace_id = a.trace_id
              JOIN annotator_trace t ON t.id = a.trace_id
             WHERE a.run_id = %(run)s AND t.project_id = %(project)s {trace_filter}
               AND a.predicted_first_error IS DISTINCT FROM b.predicted_first_error
             ORDER BY apart DESC NULLS LAST, t.id
             LIMIT %(limit)s""",
        {**params, "project": run.project_id, "run": run.pk, "other": other.pk, "limit": limit},
    )


def mc_disagreements(
    mc_run: MonteCarloRun, filters: Filters = Filters(), *, limit: int = 50
) -> list[tuple[int, str, int, int, int]]:
    """Traces where a Monte-Carlo run's first error differs from the human verdict,
    furthest apart first: (trace id, external id, human, Monte-Carlo, steps apart)."""
    if not in_sql():
        return dashboards_portable.mc_disagreements(mc_run, filters, limit)
    cte, params = _verdict_cte(filters)
    apart = _apart("v.label", "m.first_error")
    return _fetch(
        f"""WITH v AS ({cte})
            SELECT t.id, t.external_id, v.label, m.first_error, {apart} AS apart
              FROM v
              JOIN annotator_trace t ON t.id = v.trace_id
              JOIN annotator_tracemc m ON m.run_id = %(mc)s AND m.trace_id = t.id
             WHERE m.first_error IS DISTINCT FROM v.label
             ORDER BY apart DESC, t.id
             LIMIT %(limit)s""",
        {**params, "project": mc_run.project_id, "mc": mc_run.pk, "limit": limit},
    )


def neighbour_disagreements(
    project: Project, runs: list[ScoringRun], trace_id: int
) -> dict[int, tuple[int | None, int | None]]:
    """``{run id: (previous, next trace id)}`` where each run's predicted first error
    differs from the human verdict: one query for all runs."""
    if not runs:
        return {}
    if not in_sql():
        return dashboards_portable.neighbour_disagreements(project, runs, trace_id)
    cte, params = _verdict_cte(Filters())
    rows = _fetch(
        f"""WITH v AS ({cte})
            SELECT ts.run_id, max(v.trace_id) FILTER (WHERE v.trace_id < %(trace)s),
                   min(v.trace_id) FILTER (WHERE v.trace_id > %(trace)s)
              FROM v JOIN annotator_tracescore ts
                ON ts.trace_id = v.trace_id AND ts.run_id = ANY(%(runs)s)
             WHERE ts.predicted_first_error IS DISTINCT FROM v.label
             GROUP BY ts.run_id""",
        {**params, "project": project.pk, "runs": [r.pk for r in runs], "trace": trace_id},
    )
    found = {run_id: (previous, following) for run_id, previous, following in rows}
    return {run.pk: found.get(run.pk, (None, None)) for run in runs}
