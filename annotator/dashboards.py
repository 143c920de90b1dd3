"""The figures of a project's dashboard: PostgreSQL reduces a run's step scores to one
row per labelled trace (``scoring.metrics.TraceSummary``) or to counts per score, and
``scoring.metrics`` computes every number from those rows, the same functions that
``python -m scoring evaluate`` runs on an export. No view loops over steps.

The human label of a trace is its ``Verdict``, written here as SQL (``VERDICT_SQL``):
the newest adjudication, else the newest gold label, else the annotators' latest labels
when they all give the same first error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connection, transaction

from annotator import charts
from annotator.models import MonteCarloRun, Project, ScoringRun
from scoring import metrics

T = TypeVar("T")
FILTER_KEYS = ("split", "generator", "source")
NO_SPLIT = "(no split)"
HISTOGRAM_BINS = 20
STEP_CLASSES = ("correct", "first error", "after first error")

# One row per trace with a human verdict: (trace_id, label). Annotators' labels agree
# or give nothing (a hash aggregate); the rare reviewed ones override them.
VERDICT_SQL = """
WITH labels AS (
  SELECT a.trace_id,
         CASE WHEN min(a.first_error_step) = max(a.first_error_step)
              THEN min(a.first_error_step) END AS label
    FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
   WHERE t.project_id = %(project)s {trace_filter} AND a.is_latest AND a.kind = 'label'
     AND a.first_error_step IS NOT NULL
   GROUP BY a.trace_id
), reviewed AS (
  SELECT DISTINCT ON (a.trace_id) a.trace_id, a.first_error_step AS label
    FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
   WHERE t.project_id = %(project)s {trace_filter} AND a.is_latest
     AND a.kind IN ('adjudication', 'gold') AND a.first_error_step IS NOT NULL
   ORDER BY a.trace_id, a.kind = 'adjudication' DESC, a.id DESC
)
SELECT coalesce(r.trace_id, l.trace_id) AS trace_id, coalesce(r.label, l.label) AS label
  FROM labels l FULL JOIN reviewed r ON r.trace_id = l.trace_id
 WHERE coalesce(r.label, l.label) IS NOT NULL
"""

# The labelled traces of a request, computed once and handed to each run's query.
LABELLED_SQL = "SELECT * FROM unnest(%(ids)s::bigint[], %(labels)s::int[]) AS v(trace_id, label)"


@dataclass(frozen=True)
class Filters:
    """Which traces a dashboard covers (empty: all)."""

    split: str = ""
    generator: str = ""
    source: str = ""

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        return cls(**{key: query.get(key, "") for key in FILTER_KEYS})

    def sql(self) -> tuple[str, dict[str, str]]:
        """`` AND t.x = %(x)s`` for each filter set, and its parameters."""
        params = {key: getattr(self, key) for key in FILTER_KEYS if getattr(self, key)}
        return "".join(f" AND t.{key} = %({key})s" for key in params), params


def available() -> bool:
    """The queries here are PostgreSQL's (``FILTER``, ``width_bucket``, ``array_agg``);
    the embedded SQLite demo shows the trace pages' scores but no dashboard."""
    return connection.vendor == "postgresql"


def _verdict_cte(filters: Filters) -> tuple[str, dict[str, Any]]:
    trace_filter, params = filters.sql()
    return VERDICT_SQL.format(trace_filter=trace_filter), params


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def verdicts(project: Project, filters: Filters = Filters()) -> dict[int, int]:
    """``{trace id: human first error}`` for traces with a verdict."""
    cte, params = _verdict_cte(filters)
    return dict(_fetch(cte, {**params, "project": project.pk}))


# A finished run's scores never change, so its figures only change with the labels:
# they are cached under the run, the filters and the project's labels' version.
CACHE_SECONDS = 24 * 3600


def labels_version(project: Project) -> str:
    """Changes whenever a label of the project is added, replaced or removed (every
    change writes a new row or deletes one)."""
    [(count, last)] = _fetch(
        """SELECT count(*), coalesce(max(a.id), 0) FROM annotator_annotation a
             JOIN annotator_trace t ON t.id = a.trace_id WHERE t.project_id = %(project)s""",
        {"project": project.pk},
    )
    return f"{count}-{last}"


def cached(
    kind: str,
    run: ScoringRun,
    filters: Filters,
    version: str,
    compute: Callable[[], T],
    *extra: Any,
) -> T:
    """``compute()``, or what it returned before for the same run, filters and labels."""
    import hashlib

    # A done run's scores never change; the traces it stored tell it from the same run
    # seen unfinished (``warm`` fills the cache before the run is marked done).
    raw = f"{kind}|{run.pk}|{run.progress_done}|{filters}|{version}|{extra}"
    key = "dashboard:" + hashlib.sha256(raw.encode()).hexdigest()
    return cache.get_or_set(key, compute, CACHE_SECONDS)


def _labelled_params(labels: dict[int, int]) -> dict[str, list[int]]:
    return {"ids": list(labels), "labels": list(labels.values())}


# -- one run against the humans -------------------------------------------------------------


@dataclass
class RunFigures:
    """Everything the dashboard shows for one run at one threshold."""

    run: ScoringRun
    tau: float
    summaries: dict[str, list[metrics.TraceSummary]]
    table: dict[str, metrics.ProcessBenchResult]
    auroc: dict[str, float]
    min_on_final: dict[str, float]
    sweep: list[tuple[float, metrics.ProcessBenchResult]]
    best_tau: float
    best: metrics.ProcessBenchResult | None
    confusion: dict[str, int]
    auroc_all: float
    histogram: dict[str, list[int]] = field(default_factory=dict)
    calibration: list[tuple[float, float, int]] = field(default_factory=list)
    roc: tuple[list[float], list[float]] = ([], [])

    @property
    def labelled(self) -> int:
        return sum(len(rows) for rows in self.summaries.values())


# One pass over the run's labelled steps (materialized once), three aggregates: a
# TraceSummary row per trace ("S"), step counts per class and fine score bin ("H"),
# and per split the Mann-Whitney sum 2U with the class sizes ("U", for AUROC).
# NaN scores count as -inf in a minimum and +inf at the first error, as
# ``metrics.summarize`` treats them.
RUN_SQL = f"""
WITH v AS ({LABELLED_SQL}),
steps AS MATERIALIZED (
  SELECT t.id AS trace_id, t.split, t.num_steps, v.label, s.step_index, s.score,
         CASE WHEN s.score = 'NaN' THEN '-Infinity'::real ELSE s.score END AS low
    FROM v
    JOIN annotator_trace t ON t.id = v.trace_id
    JOIN annotator_stepscore s ON s.run_id = %(run)s AND s.trace_id = v.trace_id
),
judged AS (
  SELECT split, score,
         CASE WHEN label = -1 OR step_index < label THEN 0
              WHEN step_index = label THEN 1 ELSE 2 END AS cls
    FROM steps WHERE score <> 'NaN'
),
per_score AS (
  SELECT split, score, count(*) FILTER (WHERE cls = 0) AS pos,
         count(*) FILTER (WHERE cls = 1) AS neg
    FROM judged WHERE cls < 2 GROUP BY split, score
)
SELECT 'S', split, label, before::float8, at::float8, after::float8, last::float8,
       before_last::float8
  FROM (SELECT trace_id, split, label,
          coalesce(min(low) FILTER (WHERE label = -1 OR step_index < label), 'Infinity') AS before,
          CASE WHEN label = -1 THEN 'Infinity'::real
               ELSE coalesce(max(CASE WHEN score = 'NaN' THEN 'Infinity'::real ELSE score END)
                             FILTER (WHERE step_index = label), 'Infinity') END AS at,
          coalesce(min(low) FILTER (WHERE label <> -1 AND step_index > label),
                   'Infinity') AS after,
          CASE WHEN num_steps >= 2
               THEN max(score) FILTER (WHERE step_index = num_steps - 1) ELSE 'NaN' END AS last,
          CASE WHEN num_steps >= 2
               THEN min(low) FILTER (WHERE step_index < num_steps - 1)
               ELSE 'NaN' END AS before_last
          FROM steps GROUP BY trace_id, split, label, num_steps) x
UNION ALL
SELECT 'H', NULL, cls, bucket::float8, n::float8, NULL, NULL, NULL
  FROM (SELECT cls, greatest(1, least({{bins}}, width_bucket(score, 0, 1, {{bins}}))) AS bucket,
               count(*) AS n
          FROM judged GROUP BY 1, 2) h
UNION ALL
SELECT 'U', split, NULL, sum(pos * (2 * below + neg))::float8, sum(pos)::float8,
       sum(neg)::float8, NULL, NULL
  FROM (SELECT split, pos, neg,
               coalesce(sum(neg) OVER (PARTITION BY split ORDER BY score
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
               AS below
          FROM per_score) u
 GROUP BY split
"""
FINE_BINS = 100  # ROC points; the histograms and calibration sum them into HISTOGRAM_BINS


def _run_rows(
    run: ScoringRun, labels: dict[int, int]
) -> tuple[
    dict[str, list[metrics.TraceSummary]], dict[str, list[int]], dict[str, tuple[int, int, int]]
]:
    """(summaries per split, counts per class and fine bin, (2U, pos, neg) per split)."""
    summaries: dict[str, list[metrics.TraceSummary]] = defaultdict(list)
    fine = {name: [0] * FINE_BINS for name in STEP_CLASSES}
    u: dict[str, tuple[int, int, int]] = {}
    if not labels:
        return {}, fine, u
    with transaction.atomic(), connection.cursor() as cursor:
        # The per-score counts of a run at 100k traces outgrow the default 4 MB and
        # spill to disk (a third of the query's time at 20k labelled traces); LOCAL
        # ends with this transaction.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(
            RUN_SQL.replace("{bins}", str(FINE_BINS)),
            {**_labelled_params(labels), "run": run.pk},
        )
        rows = cursor.fetchall()
    for kind, split, label, a, b, c, d, e in rows:
        if kind == "S":
            summaries[split or NO_SPLIT].append(metrics.TraceSummary(label, a, b, c, d, e))
        elif kind == "H":
            fine[STEP_CLASSES[label]][int(a) - 1] += int(b)
        else:
            u[split or NO_SPLIT] = (int(a), int(b), int(c))
    return dict(summaries), fine, u


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


def run_figures(
    run: ScoringRun,
    filters: Filters = Filters(),
    tau: float | None = None,
    labels: dict[int, int] | None = None,
) -> RunFigures:
    """The run's figures at ``tau`` (default: the run's threshold); ``labels``: the
    verdicts when the caller has them already (several runs in one request)."""
    tau = run.threshold if tau is None else tau
    labels = verdicts(run.project, filters) if labels is None else labels
    summaries, fine, u = _run_rows(run, labels)
    pooled = [s for rows in summaries.values() for s in rows]
    sweep = metrics.sweep_from_summaries(pooled) if pooled else []
    best_tau, best = metrics.best_from_sweep(sweep) if sweep else (math.nan, None)
    u2, n_pos, n_neg = (sum(x[i] for x in u.values()) for i in range(3))
    edges = [i / FINE_BINS for i in range(FINE_BINS)]
    return RunFigures(
        run=run,
        tau=tau,
        summaries=summaries,
        table=metrics.table_from_summaries(summaries, tau),
        auroc={split: metrics.auroc_from_u2(*u.get(split, (0, 0, 0))) for split in summaries},
        min_on_final={
            split: metrics.min_on_final_from_summaries(rows) for split, rows in summaries.items()
        },
        sweep=sweep,
        best_tau=best_tau,
        best=best,
        confusion=metrics.first_error_confusion(pooled, tau),
        auroc_all=metrics.auroc_from_u2(u2, n_pos, n_neg),
        histogram={name: _coarse(counts) for name, counts in fine.items()},
        calibration=calibration({name: _coarse(counts) for name, counts in fine.items()}),
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
        charts.embed(charts.roc_curve(*figures.roc, figures.auroc_all), f"roc-{run.pk}"),
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
    labels = verdicts(run.project, filters)
    figures = cached(
        "run", run, filters, version, lambda: run_figures(run, filters, None, labels), None
    )
    if figures.labelled:
        cached("charts", run, filters, version, lambda: run_charts(figures), None)
    cached("best-of-n", run, filters, version, lambda: best_of_n(run, filters, labels))


# -- the humans' ceiling --------------------------------------------------------------------


def human_ceiling(
    project: Project, filters: Filters = Filters()
) -> metrics.ProcessBenchResult | None:
    """ProcessBench's figures of one annotator's first error taken as the prediction of
    another's, over every ordered pair of annotators on a trace (imported labels
    included): what a PRM could reach against labels that humans agree on this often."""
    trace_filter, params = filters.sql()
    rows = _fetch(
        f"""SELECT a.first_error_step, b.first_error_step
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
    return metrics.processbench([a for a, _ in rows], [b for _, b in rows])


# -- best-of-N ------------------------------------------------------------------------------


def best_of_n(
    run: ScoringRun, filters: Filters = Filters(), labels: dict[int, int] | None = None
) -> tuple[int, dict[str, float]]:
    """(problems, accuracy per selection rule) over the problems with 2+ solutions of
    known final-answer correctness that the run scored. Each solution's aggregates come
    from its ``TraceScore`` row (min, last, mean, the product as a sum of logs); only a
    row that does not know its mean or log product (stored before those columns, or with
    a negative score) has its steps aggregated here, the product then as a signed sum of
    logs, zero if a step is zero. They are compared at ``metrics.AGGREGATE_DIGITS``
    digits, so the order of summation does not matter."""
    labels = verdicts(run.project, filters) if labels is None else labels
    trace_filter, params = filters.sql()
    sql = f"""
    WITH solutions AS MATERIALIZED (
      SELECT t.id, t.problem_id, t.final_answer, t.final_answer_correct,
             ts.min_score, ts.last_score, ts.mean_score, ts.log_product
        FROM annotator_trace t
        JOIN annotator_tracescore ts ON ts.run_id = %(run)s AND ts.trace_id = t.id
       WHERE t.project_id = %(project)s {trace_filter} AND t.final_answer_correct IS NOT NULL
    ),
    grouped AS MATERIALIZED (
      SELECT x.* FROM solutions x
       WHERE x.problem_id IN (SELECT problem_id FROM solutions GROUP BY problem_id
                               HAVING count(*) >= 2)
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
    for row in _fetch(sql, {**params, "project": run.project_id, "run": run.pk}):
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
    groups = list(problems.values())
    return len(groups), metrics.best_of_n_from_aggregates(groups)


# -- annotation side ------------------------------------------------------------------------


def labels_per_day(project: Project) -> list[tuple[str, int]]:
    """(day, labels submitted in Stepwise that day), every version counted."""
    rows = _fetch(
        """SELECT date_trunc('day', a.created_at)::date, count(*)
             FROM annotator_annotation a JOIN annotator_trace t ON t.id = a.trace_id
            WHERE t.project_id = %(project)s AND a.kind = 'label' AND a.annotator_id IS NOT NULL
              AND a.external_annotator = ''
            GROUP BY 1 ORDER BY 1""",
        {"project": project.pk},
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
    cte, params = _verdict_cte(filters)
    sql = f"""
    WITH v AS ({cte})
    SELECT t.id, t.external_id, v.label, ts.predicted_first_error,
           CASE WHEN ts.predicted_first_error <> -1
                     AND (v.label = -1 OR ts.predicted_first_error < v.label)
                THEN %(tau)s - ts.min_score
                ELSE coalesce((SELECT s.score FROM annotator_stepscore s
                                WHERE s.run_id = ts.run_id AND s.trace_id = t.id
                                  AND s.step_index = v.label), 0) - %(tau)s END AS strength
      FROM v
      JOIN annotator_trace t ON t.id = v.trace_id
      JOIN annotator_tracescore ts ON ts.run_id = %(run)s AND ts.trace_id = t.id
     WHERE v.label IS NOT NULL AND ts.predicted_first_error IS DISTINCT FROM v.label
     ORDER BY strength DESC NULLS LAST, t.id
     LIMIT %(limit)s
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
