"""Sampling and verification run pages and the "Solve or verify" page: who may see and
start runs, cancel and retry through the pages, and the page's figures against
``scoring.curves`` computed here from the same stored rows."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from annotator import solve_or_verify
from annotator.models import JobStatus, SamplingRun
from annotator.solve_or_verify import pools_for
from scoring.curves import curves, measure_lambda, problem_estimates
from tests.factories import HTMX, solved_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(project, users):
    return solved_runs(project, users["owner"])


def test_members_who_see_model_scores_see_the_runs_and_no_one_else(
    client_for, project, users, runs
) -> None:
    sampling_run, check = runs
    pages = [
        reverse("solve-runs", args=[project.slug]),
        reverse("sampling-run", args=[project.slug, sampling_run.pk]),
        reverse("verification-run", args=[project.slug, check.pk]),
        reverse("solve-or-verify", args=[project.slug]) + f"?sampling={sampling_run.pk}",
        reverse("solve-or-verify-figure", args=[project.slug]) + f"?sampling={sampling_run.pk}",
    ]
    for url in pages:
        assert client_for(users["owner"]).get(url).status_code == 200, url
        assert client_for(users["reviewer"]).get(url).status_code == 200, url
        assert client_for(users["annotator"]).get(url).status_code == 404, url
        assert client_for(users["outsider"]).get(url).status_code == 404, url
        client_for(users["owner"]).logout()
        assert client_for(users["owner"]).get(url).status_code == 200
    client = client_for(users["outsider"])
    client.logout()
    assert client.get(pages[0]).status_code == 302  # to the login page


def test_only_staff_owners_start_runs_and_owners_cancel_and_retry(
    client_for, project, users, runs
) -> None:
    sampling_run, _ = runs
    url = reverse("solve-runs", args=[project.slug])
    form = {
        "completer": "openai:http://127.0.0.1:9/v1",
        "model": "m",
        "n": 4,
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 64,
        "name": "from-page",
    }
    assert client_for(users["owner"]).post(url, form).status_code == 403
    assert client_for(users["reviewer"]).post(url, form).status_code == 403
    users["owner"].is_staff = True
    users["owner"].save()
    client = client_for(users["owner"])
    page = client.get(url)
    assert b'id="sampling-form"' in page.content and b'id="verification-form"' in page.content
    assert client.post(url, {**form, "completer": "ftp://x"}).status_code == 400
    response = client.post(url, form)
    run = SamplingRun.objects.get(name="from-page")
    assert response.status_code == 302 and response.url.endswith(f"/solve/sampling/{run.pk}/")
    assert run.status == JobStatus.QUEUED and run.options["top_p"] == 0.95
    assert not run.labelling_queue  # by default, sampled solutions stay out of the queue
    client.post(url, {**form, "name": "queued-too", "labelling_queue": "on"})
    assert SamplingRun.objects.get(name="queued-too").labelling_queue
    status = client.get(reverse("sampling-run", args=[project.slug, run.pk]), **HTMX)
    assert b'id="sampling-run-status"' in status.content and b"<html" not in status.content

    cancel = reverse("sampling-cancel", args=[project.slug, run.pk])
    assert client.get(cancel).status_code == 405  # GET never changes state
    assert client_for(users["reviewer"]).post(cancel).status_code == 404
    client = client_for(users["owner"])
    client.post(cancel)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    client.post(reverse("sampling-retry", args=[project.slug, run.pk]))
    run.refresh_from_db()
    assert run.status == JobStatus.QUEUED

    verify = reverse("verification-start", args=[project.slug])
    response = client.post(
        verify,
        {
            "sampling_run": sampling_run.pk,
            "verifier": "genrm-base",
            "completer": "openai:http://127.0.0.1:9/v1",
            "model": "m",
            "v": 2,
            "per_problem": 4,
            "name": "check-from-page",
        },
    )
    assert response.status_code == 302
    check = sampling_run.verification_runs.get(name="check-from-page")
    assert check.options == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024, "chat": True}


def test_the_figure_shows_what_scoring_curves_computes_from_the_stored_rows(
    client_for, project, users, runs
) -> None:
    sampling_run, check = runs
    url = reverse("solve-or-verify-figure", args=[project.slug])
    response = client_for(users["reviewer"]).get(
        url, {"sampling": sampling_run.pk, "verification": check.pk, "lam": "0.5"}, **HTMX
    )
    assert response.status_code == 200
    figures = solve_or_verify.figures(sampling_run, check, lam=0.5)
    _, pools = pools_for(sampling_run, check)
    assert [len(p.samples) for p in pools] == [8] * 12 and {p.verified for p in pools} == {8}
    expected = curves(
        pools, sc_sizes=[1, 2, 4, 8], sizes=[1, 2, 4, 8], verification_counts=[1, 2, 4], lam=0.5
    )
    by_key = {(c.method, c.solutions, c.verifications): c for c in expected}
    drawn = {}
    for curve in figures.curves:
        v = int(curve.label.rsplit("= ", 1)[1]) if curve.method == "genrm" else 0
        for s, c, y, lo, hi, _ in curve.rows:
            drawn[(curve.method, s, v)] = (c, y)
            assert lo <= y + 1e-9 and y <= hi + 1e-9
    assert set(drawn) == set(by_key)
    for key, point in by_key.items():
        assert drawn[key] == pytest.approx((point.compute, 100 * point.success_rate))
    assert b"solve-chart" in response.content and b"Self-consistency" in response.content
    for curve in figures.curves:
        for _, _, y, lo, hi, _ in curve.rows:
            assert f'{y:.1f}</td><td class="figure">{lo:.1f}–{hi:.1f}' in response.text
    sc = [by_key[("sc", s, 0)].success_rate for s in (1, 2, 4, 8)]
    assert figures.sc_best == pytest.approx(100 * max(sc))
    # the compute-optimal frontier: every GenRM point cheaper than a frontier point solves
    # less, and the fits are least squares in log-log over the frontier
    genrm = [(k, v) for k, v in by_key.items() if k[0] == "genrm"]
    assert figures.frontier and b'id="solve-frontier"' in response.content
    for c, s, v, y in figures.frontier:
        assert y == pytest.approx(100 * by_key[("genrm", s, v)].success_rate)
        assert all(100 * p.success_rate < y + 1e-9 for _, p in genrm if p.compute < c)
    if len({c for c, *_ in figures.frontier}) > 1:
        log_c = np.log([c for c, *_ in figures.frontier])
        slope, intercept = np.polyfit(log_c, np.log([s for _, s, _, _ in figures.frontier]), 1)
        assert figures.s_fit == pytest.approx((np.exp(intercept), slope))
        slope, intercept = np.polyfit(log_c, np.log([v for _, _, v, _ in figures.frontier]), 1)
        assert figures.v_fit == pytest.approx((np.exp(intercept), slope))
    # lambda measured from the token counts when not given
    measured = solve_or_verify.figures(sampling_run, check)
    assert measured.lam_measured and measured.lam == pytest.approx(measure_lambda(pools))
    one = problem_estimates(pools[0], sc_sizes=[8])
    assert 0 <= one.majority[8] <= 1


def test_bad_choices_answer_400(client_for, project, users, runs) -> None:
    sampling_run, check = runs
    other, _ = solved_runs(project, users["owner"], problems=2, seed=1)
    url = reverse("solve-or-verify-figure", args=[project.slug])
    client = client_for(users["owner"])
    for query in (
        {},
        {"sampling": "x"},
        {"sampling": 10**6},
        {"sampling": other.pk, "verification": check.pk},
        {"sampling": sampling_run.pk, "lam": "-1"},
        {"sampling": sampling_run.pk, "rule": "vibes"},
    ):
        assert client.get(url, query).status_code == 400, query


@pytest.mark.django_db(transaction=True)  # the run's heartbeat reads on its own connection
def test_the_gsm8k_best_of_n_data_gives_sc_and_prm_curves(client_for, project, users, data_dir):
    """The shared GSM8K model solutions (several models' solution per problem), imported
    and scored by ``arithmetic-check`` as the demo does: SC and PRM best-of-N curves,
    equal to ``scoring.curves`` on pools built here from the traces."""
    from annotator import jobs, runs
    from annotator.importing import import_file
    from annotator.models import Scorer, ScoringRun, Trace, TraceScore

    import_file(project, data_dir / "gsm8k" / "example_model_solutions.jsonl", "gsm8k-solutions")
    scorer = Scorer.objects.create(name="arithmetic-check", adapter="arithmetic-check")
    run = runs.create_run(project, scorer, users["owner"], name="arith")
    jobs.execute(ScoringRun, run.pk, runs.run_scoring_job)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.error
    [source] = (
        Trace.objects.filter(project=project).order_by().values_list("source", flat=True).distinct()
    )
    response = client_for(users["reviewer"]).get(
        reverse("solve-or-verify-figure", args=[project.slug]),
        {"source": source, "scoring": run.pk},
        **HTMX,
    )
    assert response.status_code == 200 and b"solve-chart" in response.content
    cheaper = client_for(users["reviewer"]).get(
        reverse("solve-or-verify-figure", args=[project.slug]),
        {"source": source, "scoring": run.pk, "prm_lambda": "0.5"},
        **HTMX,
    )
    # the PRM's points at S (1 + 0.5): 1.5, 3, 6 solutions
    assert '<td class="figure">1.50</td>' in cheaper.text
    assert '<td class="figure">1.50</td>' not in response.text
    traces = Trace.objects.filter(project=project).exclude(generator="reference")
    found = solve_or_verify.figures(None, None, run, traces=traces)
    assert [c.method for c in found.curves] == ["sc", "prm", "prm-sc"]
    assert found.curves[0].solutions == found.curves[1].solutions == [1, 2, 4]
    assert found.curves[2].solutions == [1, 2, 4] and found.curves[2].error is None

    # Independently: each problem's solutions in id order, the min step score per trace.
    by_problem: dict[int, list] = {}
    for trace in traces.order_by("problem_id", "id"):
        by_problem.setdefault(trace.problem_id, []).append(trace)
    scores = dict(TraceScore.objects.filter(run=run).values_list("trace_id", "min_score"))
    assert len(by_problem) == found.problems > 1000
    from scoring.curves import Pool, Sample, expected_best_of
    from scoring.grading import normalise_answer

    pools, prm = [], []
    for solutions in by_problem.values():
        samples = []
        for t in solutions:
            answer = normalise_answer(t.final_answer) if t.final_answer else None
            samples.append(Sample(answer or None, bool(t.final_answer_correct) and bool(answer)))
        pools.append(Pool(tuple(samples)))
        prm.append([scores[t.pk] if scores[t.pk] is not None else float("-inf") for t in solutions])
    expected = curves(pools, sc_sizes=[1, 2, 4])
    assert found.curves[0].success == pytest.approx([100 * p.success_rate for p in expected])
    for s, y in zip([1, 2, 4], found.curves[1].success, strict=True):
        mean = sum(
            expected_best_of(
                score,
                [x.correct for x in pool.samples],
                [x.answer is not None for x in pool.samples],
                s,
            )
            for pool, score in zip(pools, prm, strict=True)
        ) / len(pools)
        assert y == pytest.approx(100 * mean)
    # Weighted SC by the same scores: every ordered draw of S solutions, each answer's
    # votes its solutions' scores (a null one votes 0), the first inserted of the best.
    import itertools
    from fractions import Fraction

    raw = [[scores[t.pk] for t in solutions] for solutions in by_problem.values()]
    for s, y in zip([1, 2, 4], found.curves[2].success, strict=True):
        total = 0.0
        for pool, weights in zip(pools, raw, strict=True):
            draws = list(itertools.permutations(range(len(pool.samples)), s))
            won = 0
            for drawn in draws:
                votes: dict[str, Fraction] = {}
                for i in drawn:
                    sample = pool.samples[i]
                    if sample.answer is not None:
                        w = Fraction(weights[i]) if weights[i] is not None else Fraction(0)
                        votes[sample.answer] = votes.get(sample.answer, Fraction(0)) + w
                if votes:
                    best = max(votes, key=votes.__getitem__)
                    won += next(x.correct for x in pool.samples if x.answer == best)
            total += won / len(draws)
        assert y == pytest.approx(100 * total / len(pools), abs=1e-9)
    assert "weighted SC" in response.text


def test_a_first_visit_shows_the_latest_finished_runs_or_a_best_of_n_source(
    client_for, project, users
) -> None:
    """No choice in the query: the latest finished sampling run with its verification run;
    without sampling runs, the imported source with several solutions per problem and the
    scoring run that scored it; with neither, the page asks."""
    from annotator.models import JobStatus, Scorer, ScoringRun, TraceScore
    from tests.factories import make_trace

    url = reverse("solve-or-verify", args=[project.slug])
    client = client_for(users["reviewer"])
    assert client.get(url).status_code == 200  # nothing to show yet
    # one solution per problem is no best-of-N source
    make_trace(project, ext="single", source="single")
    assert client.get(url).status_code == 200
    traces = []
    for p in range(3):
        first = make_trace(project, ext=f"bon-{p}-0", source="bon")
        traces.append(first)
        for j in (1, 2):
            other = make_trace(project, ext=f"bon-{p}-{j}", source="bon")
            other.problem = first.problem  # another solution of the same problem
            other.save(update_fields=["problem"])
            traces.append(other)
    scorer = Scorer.objects.create(name="arith", adapter="arithmetic-check")
    scoring = ScoringRun.objects.create(
        project=project, scorer=scorer, name="arith", status=JobStatus.DONE
    )
    ScoringRun.objects.create(project=project, scorer=scorer, name="other", status=JobStatus.DONE)
    TraceScore.objects.bulk_create(
        TraceScore(run=scoring, trace=t, step_scores=[1.0], min_score=1.0) for t in traces
    )
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == f"{url}?source=bon&scoring={scoring.pk}"
    sampling_run, check = solved_runs(project, users["owner"], problems=2)
    later, _ = solved_runs(project, users["owner"], problems=2, seed=1)
    later.status = JobStatus.RUNNING  # not finished: not shown first
    later.save(update_fields=["status"])
    response = client.get(url)
    assert response.url == f"{url}?sampling={sampling_run.pk}&verification={check.pk}"
    assert client.get(url, {"sampling": sampling_run.pk}).status_code == 200
