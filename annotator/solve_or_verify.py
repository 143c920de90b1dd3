"""Solve or verify: sampled solutions and their verifications as
:class:`scoring.curves.Pool` s, one per problem, and the figures of the page that sets
self-consistency, GenRM best-of-N and a PRM's best-of-N on one compute axis.

Each problem's samples are its solutions in index order: the answer (None where none was
written), its correctness and token count; the verified ones carry their
verifications in index order. An answer from a completer run is normalised by the
project's grading (``scoring.grading.normalise_answer``), so votes group answers that
differ in spacing or thousands separators; an imported run's answers are the
reference's normalised strings already and are kept as they are. Only a prefix of a
problem's solutions counts as verified, each with all V verifications (a run still
going, or one that failed midway, leaves the rest unverified), as the reference's
layout has them. Imported best-of-N traces (:func:`trace_pools`) make pools too, without
verifications.

:func:`figures` computes every point with ``scoring.curves``' exact expectations (a
scoring run's weighted SC, past exact counting, with its Monte-Carlo estimate and that
estimate's standard error) and a percentile bootstrap over problems (the per-problem
values are computed once and resampled, 200 times by default, with a fixed seed so a
page shows the same interval on every load).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db.models import QuerySet

from annotator.models import (
    SampledSolution,
    SamplingRun,
    ScoringRun,
    SolutionVerification,
    Trace,
    TraceScore,
    VerificationRun,
)
from annotator.sampling import is_import
from scoring.curves import Pool, Sample, Verification
from scoring.grading import normalise_answer
from scoring.metrics import SelfVerification


def _answer(text: str, imported: bool) -> str | None:
    answer = text if imported else normalise_answer(text) if text else ""
    return None if answer == "" or "invalidanswer" in answer else answer


def pools_for(
    sampling_run: SamplingRun, verification_run: VerificationRun | None = None
) -> tuple[list[int], list[Pool]]:
    """``(problem ids, pools)`` in problem order."""
    imported = is_import(sampling_run.completer)
    verifications: dict[int, list[Verification]] = defaultdict(list)
    if verification_run is not None:
        if verification_run.sampling_run_id != sampling_run.pk:
            raise ValueError("the verification run verifies another sampling run")
        rows = (
            SolutionVerification.objects.filter(run=verification_run)
            .order_by("solution_id", "index")
            .values_list("solution_id", "p_yes", "p_no", "verdict", "tokens")
            .iterator(chunk_size=5000)
        )
        for solution_id, p_yes, p_no, verdict, tokens in rows:
            verifications[solution_id].append(Verification(p_yes, p_no, verdict, tokens))
    full = verification_run.v if verification_run is not None else 0
    problems: list[int] = []
    samples: dict[int, list[Sample]] = {}
    rows = (
        SampledSolution.objects.filter(run=sampling_run)
        .order_by("problem_id", "index")
        .values_list(
            "pk", "problem_id", "tokens", "trace__final_answer", "trace__final_answer_correct"
        )
        .iterator(chunk_size=5000)
    )
    for pk, problem_id, tokens, final_answer, correct in rows:
        if problem_id not in samples:
            problems.append(problem_id)
            samples[problem_id] = []
        pool = samples[problem_id]
        answer = _answer(final_answer, imported)
        mine = verifications.get(pk, [])
        prefix = all(s.verifications for s in pool)
        verified = tuple(mine) if len(mine) >= full and mine and prefix else ()
        pool.append(Sample(answer, bool(correct) and answer is not None, tokens, verified))
    return problems, [Pool(tuple(samples[p])) for p in problems]


# -- the page's figures ------------------------------------------------------------------

AGGREGATES = ("min_score", "last_score", "mean_score")
BOOTSTRAP_SEED = 0


def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, ... up to ``limit``, and ``limit`` itself.

    >>> powers_of_two(6)
    [1, 2, 4, 6]
    """
    sizes = [1 << k for k in range(limit.bit_length()) if 1 << k <= limit]
    return sizes if sizes[-1] == limit else [*sizes, limit]


def sampled_traces(sampling_run: SamplingRun) -> dict[int, list[int]]:
    """``{problem id: its solutions' trace ids in index order}``."""
    traces: dict[int, list[int]] = defaultdict(list)
    for problem_id, trace_id in (
        SampledSolution.objects.filter(run=sampling_run)
        .order_by("problem_id", "index")
        .values_list("problem_id", "trace_id")
    ):
        traces[problem_id].append(trace_id)
    return traces


def trace_pools(traces: QuerySet[Trace]) -> tuple[list[int], list[Pool], dict[int, list[int]]]:
    """Imported solutions as pools (best-of-N files: several solutions per problem):
    ``traces`` grouped by problem in id order, each with its final answer (normalised by
    the project's grading) and correctness (unknown counts as wrong), no token counts
    and no verifications; (problem ids, pools, {problem id: trace ids})."""
    samples: dict[int, list[Sample]] = {}
    ids: dict[int, list[int]] = defaultdict(list)
    rows = traces.order_by("problem_id", "id").values_list(
        "pk", "problem_id", "final_answer", "final_answer_correct"
    )
    for pk, problem_id, final_answer, correct in rows.iterator(chunk_size=5000):
        answer = _answer(final_answer, imported=False)
        samples.setdefault(problem_id, []).append(
            Sample(answer, bool(correct) and answer is not None)
        )
        ids[problem_id].append(pk)
    problems = list(samples)
    return problems, [Pool(tuple(samples[p])) for p in problems], ids


def prm_scores_for(
    problems: Sequence[int],
    traces: dict[int, list[int]],
    scoring_run: ScoringRun,
    aggregate: str,
) -> list[list[float]]:
    """Per problem, the scoring run's aggregate score of each solution (``traces``: their
    trace ids in pool order), up to the first solution it did not score (NaN where the
    aggregate is null)."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate is one of {AGGREGATES}")
    wanted = [t for p in problems for t in traces[p]]
    by_trace: dict[int, float | None] = {}
    for start in range(0, len(wanted), 5000):
        by_trace.update(
            TraceScore.objects.filter(
                run=scoring_run, trace_id__in=wanted[start : start + 5000]
            ).values_list("trace_id", aggregate)
        )
    out = []
    for problem_id in problems:
        scores = []
        for trace_id in traces[problem_id]:
            if trace_id not in by_trace:
                break
            value = by_trace[trace_id]
            scores.append(float("nan") if value is None else float(value))
        out.append(scores)
    return out


def is_laser(scoring_run: ScoringRun) -> bool:
    """Whether the run's scores are LaSeR self-rewards r_s (its frozen adapter)."""
    adapter = (scoring_run.provenance or {}).get("adapter")
    if adapter is None and scoring_run.scorer_id is not None:
        adapter = scoring_run.scorer.adapter
    return adapter == "laser"


def _scores_label(scoring_run: ScoringRun) -> str:
    """A scoring run's name on the page; a LaSeR run says so (its scores are r_s)."""
    return f"LaSeR {scoring_run.name}" if is_laser(scoring_run) else scoring_run.name


def self_verification(
    pools: Sequence[Pool], scores: Sequence[Sequence[float]]
) -> list[tuple[str, SelfVerification]]:
    """LaSeR's two tables (``calculate_self_rewarding_scores.py`` lines 304-373): over the
    scored solutions with an answer ("filtered" there), and over all of them with r_s = 0
    for a solution without one (lines 146-153 score only those with an answer). A
    solution the scorer left without a score (NaN) counts as judged incorrect."""
    from scoring.metrics import self_verification as figures_of

    with_answer: tuple[list[float], list[bool]] = ([], [])
    every: tuple[list[float], list[bool]] = ([], [])
    for pool, values in zip(pools, scores, strict=True):
        for sample, value in zip(pool.samples, values, strict=False):
            if sample.answer is not None:
                with_answer[0].append(value)
                with_answer[1].append(sample.correct)
            every[0].append(value if sample.answer is not None else 0.0)
            every[1].append(sample.correct)
    out = []
    if with_answer[0]:
        out.append(("solutions with an answer", figures_of(*with_answer)))
    if every[0]:
        out.append(("all solutions (no answer: r_s = 0)", figures_of(*every)))
    return out


@dataclass(frozen=True)
class Curve:
    """One method's points: compute, success rate and its bootstrap interval (percent)."""

    method: str
    label: str
    solutions: list[int]
    compute: list[float]
    success: list[float]
    low: list[float]
    high: list[float]
    # Monte-Carlo standard error of each point (percent), where a weighted vote was past
    # exact counting for some problem; None for exact curves.
    error: list[float] | None = None

    @property
    def rows(self) -> list[tuple[int, float, float, float, float, float]]:
        errors = self.error or [0.0] * len(self.solutions)
        return list(
            zip(
                self.solutions,
                self.compute,
                self.success,
                self.low,
                self.high,
                errors,
                strict=True,
            )
        )


@dataclass(frozen=True)
class Figures:
    problems: int
    lam: float
    lam_measured: bool
    curves: list[Curve]
    crossover: float | None  # GenRM's compute where it first reaches SC's best
    sc_compute: float  # SC's compute at its best
    sc_best: float
    # The compute-optimal GenRM settings: (compute, S, V, solved %) of each point that
    # solves more than every cheaper one, and the log-log fits S_opt = a C^b, V_opt = a C^b
    # over them as (a, b), None with fewer than two budgets.
    frontier: list[tuple[float, int, int, float]] = field(default_factory=list)
    s_fit: tuple[float, float] | None = None
    v_fit: tuple[float, float] | None = None
    # A LaSeR run's self-verification at r_s > 0.5 against the graded answers, as the
    # LaSeR repository prints it: (which solutions, figures), see :func:`self_verification`.
    self_verification: list[tuple[str, SelfVerification]] = field(default_factory=list)


def compute_optimal(
    points: Sequence[tuple[float, int, int, float]],
) -> tuple[
    list[tuple[float, int, int, float]], tuple[float, float] | None, tuple[float, float] | None
]:
    """The frontier of ``(compute, S, V, success)`` points (each solving more than every
    cheaper point; of equal computes the better) and least-squares fits of
    ``log S = log a + b log C`` and likewise for V over it.

    >>> frontier, s_fit, v_fit = compute_optimal(
    ...     [(2, 1, 1, 10.0), (4, 2, 1, 20.0), (3, 1, 2, 5.0), (8, 2, 3, 30.0)])
    >>> [p[:3] for p in frontier], [round(x, 3) for x in s_fit]
    ([(2, 1, 1), (4, 2, 1), (8, 2, 3)], [0.794, 0.5])
    """
    frontier: list[tuple[float, int, int, float]] = []
    for point in sorted(points, key=lambda p: (p[0], -p[3])):
        if not frontier or point[3] > frontier[-1][3]:
            frontier.append(point)
    budgets = {p[0] for p in frontier}
    if len(budgets) < 2:
        return frontier, None, None
    log_c = np.log([p[0] for p in frontier])

    def fit(values: list[int]) -> tuple[float, float]:
        slope, intercept = np.polyfit(log_c, np.log(values), 1)
        return float(np.exp(intercept)), float(slope)

    return frontier, fit([p[1] for p in frontier]), fit([p[2] for p in frontier])


def _interval(per_problem: np.ndarray, resamples: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % percentile bootstrap interval over problems, in percent."""
    means = per_problem[resamples].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return 100 * float(per_problem.mean()), 100 * float(low), 100 * float(high)


def figures(
    sampling_run: SamplingRun | None,
    verification_run: VerificationRun | None = None,
    scoring_run: ScoringRun | None = None,
    *,
    traces: QuerySet[Trace] | None = None,
    lam: float | None = None,
    rule: str = "hybrid",
    aggregate: str = "min_score",
    prm_lambda: float = 1.0,
    bootstrap: int = 200,
) -> Figures:
    """SC at each S, GenRM best-of-S at each V (exact expectations, ``scoring.curves``),
    PRM best-of-N from a scoring run over the solutions, on ``C = S (1 + lambda V)``;
    each point's 95 % interval from ``bootstrap`` resamples of the problems. The
    solutions are a sampling run's, or, without one, imported ``traces``
    (:func:`trace_pools`)."""
    from scoring.curves import (
        expected_best_of,
        measure_lambda,
        problem_estimates,
        score_weighted_sc,
    )

    if sampling_run is not None:
        problems, pools = pools_for(sampling_run, verification_run)
        by_problem = sampled_traces(sampling_run) if scoring_run is not None else {}
    elif traces is not None and verification_run is None:
        problems, pools, by_problem = trace_pools(traces)
    else:
        raise ValueError("give a sampling run (with its verification run), or traces")
    if not pools:
        raise ValueError("no solutions here yet")
    sc_sizes = powers_of_two(min(len(p.samples) for p in pools))
    verified = min(p.verified for p in pools) if verification_run is not None else 0
    sizes = powers_of_two(verified) if verified else []
    counts = powers_of_two(verification_run.v) if sizes else []
    measured = False
    if lam is None:
        try:
            lam = measure_lambda(pools) if sizes else 1.0
            measured = bool(sizes)
        except ValueError:  # no token counts (an import): the reference's GenRM-Base lambda
            lam = 1.0
    estimates = [
        problem_estimates(
            pool,
            sc_sizes=sc_sizes,
            sizes=sizes,
            verification_counts=counts,
            rule=rule,
            mode="exact",
        )
        for pool in pools
    ]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resamples = rng.integers(0, len(pools), size=(max(bootstrap, 1), len(pools)))

    def curve(method: str, label: str, keys: list, values: Callable, cost: Callable) -> Curve:
        points = [_interval(np.array([values(e, k) for e in estimates]), resamples) for k in keys]
        return Curve(
            method,
            label,
            [k if isinstance(k, int) else k[0] for k in keys],
            [cost(k) for k in keys],
            [p[0] for p in points],
            [p[1] for p in points],
            [p[2] for p in points],
        )

    out = [
        curve("sc", "Self-consistency", sc_sizes, lambda e, s: e.majority[s], lambda s: float(s))
    ]
    for v in counts:
        keys = [(s, v) for s in sizes]
        out.append(
            curve(
                "genrm",
                f"{verification_run.get_verifier_display().split(' (')[0]}, V = {v}",
                keys,
                lambda e, k: e.best_of[k],
                lambda k: float(k[0] * (1 + lam * k[1])),
            )
        )
    if scoring_run is not None:
        scores = prm_scores_for(problems, by_problem, scoring_run, aggregate)
        scored = min(len(s) for s in scores)
        if scored:
            prm_sizes = powers_of_two(scored)
            per = {
                s: [
                    expected_best_of(
                        [(-math.inf if math.isnan(x) else x) for x in score[:scored]],
                        [x.correct for x in pool.samples[:scored]],
                        [x.answer is not None for x in pool.samples[:scored]],
                        s,
                    )
                    for pool, score in zip(pools, scores, strict=True)
                ]
                for s in prm_sizes
            }
            points = [_interval(np.array(per[s]), resamples) for s in prm_sizes]
            name = _scores_label(scoring_run)
            prm_compute = [float(s * (1 + prm_lambda)) for s in prm_sizes]
            out.append(
                Curve(
                    "prm",
                    f"{name} best-of-N",
                    prm_sizes,
                    prm_compute,
                    [p[0] for p in points],
                    [p[1] for p in points],
                    [p[2] for p in points],
                )
            )
            votes = [
                score_weighted_sc(pool, score[:scored], prm_sizes)
                for pool, score in zip(pools, scores, strict=True)
            ]
            points = [
                _interval(np.array([v[s].value for v in votes]), resamples) for s in prm_sizes
            ]
            # the mean's Monte-Carlo error: the problems' errors are independent
            errors = [
                100 * math.sqrt(sum(v[s].error ** 2 for v in votes)) / len(votes) for s in prm_sizes
            ]
            out.append(
                Curve(
                    "prm-sc",
                    f"{name} weighted SC",
                    prm_sizes,
                    prm_compute,
                    [p[0] for p in points],
                    [p[1] for p in points],
                    [p[2] for p in points],
                    errors if any(errors) else None,
                )
            )
    checked = (
        self_verification(pools, scores)
        if scoring_run is not None and is_laser(scoring_run)
        else []
    )
    sc = out[0]
    best = max(sc.success)
    sc_compute = sc.compute[sc.success.index(best)]
    reaching = [
        c
        for line in out
        if line.method == "genrm"
        for c, y in zip(line.compute, line.success, strict=True)
        if y >= best - 1e-9
    ]
    genrm = [
        (c, k, int(line.label.rsplit("= ", 1)[1]), y)
        for line in out
        if line.method == "genrm"
        for k, c, y in zip(line.solutions, line.compute, line.success, strict=True)
    ]
    frontier, s_fit, v_fit = compute_optimal(genrm)
    return Figures(
        len(pools),
        lam,
        measured,
        out,
        min(reaching) if reaching else None,
        sc_compute,
        best,
        frontier,
        s_fit,
        v_fit,
        checked,
    )
