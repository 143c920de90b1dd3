"""LaSeR on the "Solve or verify" page: a run of LaSeR self-rewards r_s (real-valued,
negative or above 1) over sampled solutions gives best-of-N and weighted SC on the
PRM's compute axis; past exact counting the weighted vote is a Monte-Carlo estimate,
shown with its standard error and within it of the reference's own draws simulated here."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from django.urls import reverse

from annotator import solve_or_verify
from annotator.models import JobStatus, SampledSolution, ScoringRun, TraceScore
from tests.factories import HTMX, solved_runs

pytestmark = pytest.mark.django_db


def laser_run(project, sampling_run, rng: random.Random) -> tuple[ScoringRun, dict[int, float]]:
    """A finished LaSeR scoring run as the scorer stores it: one r_s per solution, the
    same on every step (min = last = mean)."""
    run = ScoringRun.objects.create(
        project=project,
        name="laser-self",
        status=JobStatus.DONE,
        provenance={"adapter": "laser", "model": "policy", "revision": "", "options": {}},
    )
    scores = {}
    rows = []
    for solution in SampledSolution.objects.filter(run=sampling_run).select_related("trace"):
        r_s = round(rng.uniform(-0.8, 1.6), 4) if solution.trace.final_answer else 0.0
        scores[solution.trace_id] = r_s
        rows.append(
            TraceScore(
                run=run,
                trace=solution.trace,
                step_scores=[r_s] * solution.trace.num_steps,
                min_score=r_s,
                last_score=r_s,
                mean_score=r_s,
            )
        )
    TraceScore.objects.bulk_create(rows)
    return run, scores


def reference_vote(drawn, answers, correct, weights) -> float:
    """eval_utils:380-398 for one ordered draw; invalid answers (None) never win."""
    totals: dict[str, float] = {}
    for i in drawn:
        if answers[i] is not None:
            totals[answers[i]] = totals.get(answers[i], 0.0) + weights[i]
    if not totals:
        return 0.0
    best = max(totals, key=totals.__getitem__)
    return float(next(c for a, c in zip(answers, correct, strict=True) if a == best))


def test_laser_scores_give_best_of_n_and_weighted_sc_with_their_monte_carlo_error(
    client_for, project, users
) -> None:
    sampling_run, _ = solved_runs(project, users["owner"], problems=6, n=32, seed=4)
    run, scores = laser_run(project, sampling_run, random.Random(1))
    assert min(scores.values()) < 0 and max(scores.values()) > 1
    response = client_for(users["reviewer"]).get(
        reverse("solve-or-verify-figure", args=[project.slug]),
        {"sampling": sampling_run.pk, "scoring": run.pk},
        **HTMX,
    )
    assert response.status_code == 200
    assert "LaSeR laser-self best-of-N" in response.text
    assert "LaSeR laser-self weighted SC" in response.text
    found = solve_or_verify.figures(sampling_run, None, run)
    weighted = next(c for c in found.curves if c.method == "prm-sc")
    assert weighted.solutions == [1, 2, 4, 8, 16, 32]
    assert weighted.compute == [2.0 * s for s in weighted.solutions]
    # 32 solutions of real-valued weights: past exact counting at some S, so an error
    assert weighted.error is not None and max(weighted.error) > 0
    for _, _, y, _, _, err in weighted.rows:
        if err:
            assert f"{y:.1f} <span" in response.text and f"± {err:.2f}" in response.text

    # The reference's draws, simulated here from the stored rows: 4000 random S-subsets
    # per problem; the page's mean within 4 combined standard errors.
    sim = random.Random(2)
    problems: dict[int, list] = {}
    for solution in (
        SampledSolution.objects.filter(run=sampling_run)
        .order_by("problem_id", "index")
        .select_related("trace")
    ):
        problems.setdefault(solution.problem_id, []).append(solution.trace)
    for s, y, err in zip(weighted.solutions, weighted.success, weighted.error, strict=True):
        per_problem = []
        for traces in problems.values():
            answers = [t.final_answer.strip() or None for t in traces]
            correct = [bool(t.final_answer_correct) for t in traces]
            weights = [scores[t.pk] for t in traces]
            draws = 1 if s == len(traces) else 4000
            per_problem.append(
                [
                    reference_vote(sim.sample(range(len(traces)), s), answers, correct, weights)
                    for _ in range(draws)
                ]
            )
        theirs = 100 * float(np.mean([np.mean(p) for p in per_problem]))
        theirs_error = (
            100
            * math.sqrt(sum(np.var(p, ddof=1) / len(p) for p in per_problem if len(p) > 1))
            / len(per_problem)
        )
        assert abs(y - theirs) <= 4 * math.hypot(err, theirs_error) + 1e-9, s


def test_a_laser_run_shows_its_self_verification_f1_at_one_half(client_for, project, users) -> None:
    """The LaSeR repository's figures (``calculate_self_rewarding_scores.py`` lines
    304-373) recomputed here from the stored rows: judged correct when r_s > 0.5."""
    sampling_run, _ = solved_runs(project, users["owner"], problems=5, n=6, seed=2)
    run, scores = laser_run(project, sampling_run, random.Random(9))
    response = client_for(users["reviewer"]).get(
        reverse("solve-or-verify-figure", args=[project.slug]),
        {"sampling": sampling_run.pk, "scoring": run.pk},
        **HTMX,
    )
    assert 'id="solve-self-verification"' in response.text
    solutions = SampledSolution.objects.filter(run=sampling_run).select_related("trace")
    expected = {}
    for which, keep in (("solutions with an answer", True), ("all solutions", False)):
        right_hits = right = wrong_hits = wrong = 0
        for solution in solutions:
            answered = bool(solution.trace.final_answer)
            if keep and not answered:
                continue
            r_s = scores[solution.trace_id] if answered else 0.0
            if solution.trace.final_answer_correct:
                right += 1
                right_hits += r_s > 0.5
            else:
                wrong += 1
                wrong_hits += r_s <= 0.5
        true_acc, false_acc = right_hits / right, wrong_hits / wrong
        f1 = 2 * true_acc * false_acc / (true_acc + false_acc) if true_acc + false_acc else 0.0
        expected[which] = (right, wrong, 100 * true_acc, 100 * false_acc, 100 * f1)
    found = solve_or_verify.figures(sampling_run, None, run)
    assert [w.split(" (")[0] for w, _ in found.self_verification] == list(expected)
    for (_, row), (right, wrong, acc_right, acc_wrong, f1) in zip(
        found.self_verification, expected.values(), strict=True
    ):
        assert (row.n_correct, row.n_wrong) == (right, wrong)
        assert (row.acc_correct, row.acc_wrong, row.f1) == pytest.approx((acc_right, acc_wrong, f1))
        assert f'<td class="figure">{f1:.1f}</td></tr>' in response.text
    # a scorer that is not LaSeR shows no such table
    run.provenance = {"adapter": "qwen-prm"}
    run.save(update_fields=["provenance"])
    assert solve_or_verify.figures(sampling_run, None, run).self_verification == []


def test_the_trace_score_chart_takes_in_r_s_outside_zero_to_one() -> None:
    """The trace page's step-score chart keeps [0, 1] for probabilities and widens to a
    LaSeR run's r_s below 0 or above 1, rather than cutting the line off."""
    from annotator.charts import trace_scores

    probabilities = trace_scores({"prm": [0.9, 0.2, 1.0]}, None)
    assert list(probabilities.layout.yaxis.range) == [0, 1]
    laser = trace_scores({"prm": [0.9, 0.2], "laser": [-0.42, -0.42, float("nan")]}, 1)
    assert list(laser.layout.yaxis.range) == [-0.42, 1]
    above = trace_scores({"laser": [1.37]}, None)
    assert list(above.layout.yaxis.range) == [0, 1.37]
