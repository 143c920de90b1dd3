"""Sampling and verification runs on real worker processes against the scripted
OpenAI-compatible server process (``tests/scoring/mc_server.py``, log-probabilities
included): solutions graded and counted, verifications with the server's verdicts and
p(yes)/p(no), and a SIGKILLed worker's run finished by another with every (solution,
verification) stored once."""

from __future__ import annotations

import math

import pytest

from annotator.models import (
    JobStatus,
    SampledSolution,
    SamplingRun,
    SolutionVerification,
    Trace,
    VerificationRun,
)
from annotator.sampling import start_sampling_run
from annotator.verification import start_verification_run
from tests.factories import make_trace
from tests.scoring import mc_server
from tests.workers import wait_for

pytestmark = [pytest.mark.jobs, pytest.mark.django_db(transaction=True)]

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 1}


@pytest.fixture(scope="module")
def server():
    # A per-request delay, so that a run lasts long enough to kill a worker in it.
    process, url = mc_server.spawn(delay=0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


def problems(project, count: int) -> dict[int, int]:
    """``count`` problems "VARIED What is A + B?" (one trace each); {problem id: sum}."""
    sums = {}
    for i in range(count):
        a, b = 3 + i, 11 * i
        trace = make_trace(
            project,
            ext=f"seed-{i}",
            problem_text=f"VARIED What is {a} + {b}?",
            reference_answer=str(a + b),
        )
        sums[trace.problem_id] = a + b
    return sums


def finished(model, run_id: int):
    run = model.objects.get(pk=run_id)
    return run if run.is_finished else None


def sample(project, users, server, n: int, name: str, **options) -> SamplingRun:
    return start_sampling_run(
        project,
        users["owner"],
        completer=f"openai:{server}",
        model="m",
        n=n,
        options={**SAMPLING, **options},
        name=name,
    )


def verify(project, users, server, sampling_run, v: int, name: str, **kwargs) -> VerificationRun:
    return start_verification_run(
        project,
        users["owner"],
        sampling_run=sampling_run,
        completer=f"openai:{server}",
        model="m",
        v=v,
        name=name,
        **kwargs,
    )


def test_solutions_are_graded_and_verified_with_the_server_s_log_probabilities(
    workers, project, users, server
) -> None:
    sums = problems(project, 4)
    workers("solve")
    run = sample(project, users, server, 6, "solve")
    assert run.queue == "default"
    done = wait_for(lambda: finished(SamplingRun, run.pk), timeout=120)
    assert done.status == JobStatus.DONE, done.error
    rows = SampledSolution.objects.filter(run=done).select_related("trace")
    assert rows.count() == 24 == done.solutions
    for row in rows:
        right = sums[row.problem_id]
        expected = right + 1 if row.index % 3 == 2 else right  # the server's VARIED pattern
        text = f"Adding up gives {expected}. The answer is \\boxed{{{expected}}}."
        assert row.trace.final_answer == str(expected)
        assert row.trace.final_answer_correct is (expected == right)
        assert row.trace.generator == "m" and row.trace.source == done.source
        assert row.trace.step_texts == [text]
        assert row.tokens == len(mc_server.tokens_of(text))
    assert done.tokens == sum(r.tokens for r in rows)

    genrm = verify(project, users, server, done, 5, "genrm", per_problem=4)
    critic = verify(
        project, users, server, done, 2, "critic", verifier="processbench-critic", per_problem=3
    )
    assert genrm.options == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024, "chat": True}
    for job in (genrm, critic):
        job = wait_for(lambda job=job: finished(VerificationRun, job.pk), timeout=120)
        assert job.status == JobStatus.DONE, job.error

    stored = SolutionVerification.objects.filter(run=genrm).select_related("solution__trace")
    assert stored.count() == 4 * 4 * 5
    assert {s.solution.index for s in stored} == {0, 1, 2, 3}
    for s in stored:
        right = s.solution.trace.final_answer_correct
        says_yes = (not right) if s.index % 4 == 3 else right
        assert s.verdict is says_yes, s.text
        if says_yes:
            assert s.p_yes == pytest.approx(0.9) and s.p_no is None  # logprobs=1: the sampled
        else:
            assert s.p_no == pytest.approx(0.8) and s.p_yes is None
        word = "Yes" if says_yes else "No"
        verdict = f"**{word}**" if s.index % 5 == 4 else word
        assert s.text.endswith(f"(Yes/No)? {verdict}")
        assert s.tokens == len(mc_server.tokens_of(s.text))
    critiques = SolutionVerification.objects.filter(run=critic).select_related("solution__trace")
    assert critiques.count() == 4 * 3 * 2
    for s in critiques:
        assert s.verdict is s.solution.trace.final_answer_correct
        assert s.p_yes is None and s.p_no is None and s.tokens > 0


def test_a_killed_worker_s_runs_are_finished_with_each_solution_and_verification_once(
    workers, project, users, server
) -> None:
    sums = problems(project, 30)
    first = workers("first")
    run = sample(project, users, server, 4, "killed", max_in_flight=1)
    wait_for(lambda: SampledSolution.objects.filter(run=run).count() >= 5 * 4, timeout=120)
    first.kill()
    stored_at_kill = SampledSolution.objects.filter(run=run).count()
    assert stored_at_kill < 30 * 4

    second = workers("second")
    done = wait_for(lambda: finished(SamplingRun, run.pk), timeout=120)
    assert done.status == JobStatus.DONE, done.error
    assert done.attempts == 2
    assert done.summary["resumed_at"] >= stored_at_kill // 4
    keys = sorted(SampledSolution.objects.filter(run=done).values_list("problem_id", "index"))
    assert keys == sorted((p, j) for p in sums for j in range(4))
    assert Trace.objects.filter(source=done.source).count() == 30 * 4

    check = verify(project, users, server, done, 3, "verify-killed", options={"max_in_flight": 2})
    wait_for(lambda: SolutionVerification.objects.filter(run=check).count() >= 10 * 3, timeout=120)
    second.kill()
    verified_at_kill = SolutionVerification.objects.filter(run=check).count()
    assert verified_at_kill < 120 * 3

    workers("third")
    finished_check = wait_for(lambda: finished(VerificationRun, check.pk), timeout=120)
    assert finished_check.status == JobStatus.DONE, finished_check.error
    assert finished_check.attempts == 2
    rows = list(SolutionVerification.objects.filter(run=check).values_list("solution_id", "index"))
    solutions = SampledSolution.objects.filter(run=done).values_list("pk", flat=True)
    assert sorted(rows) == sorted((s, k) for s in solutions for k in range(3))
    assert finished_check.verifications == 360
    assert not math.isnan(finished_check.tokens) and finished_check.tokens > 0


def minerva(answer: str) -> str:
    return f"We compute.\n\nFinal Answer: The final answer is ${answer}$. I hope it is correct."


def reference_layout(root) -> tuple:
    """``samples/{i}.yaml`` and ``verifications/problem_{i}/solution_{j}.yaml`` as the
    reference's ``save_yaml`` writes them: boxed and numeric gold answers, an invalid
    answer, a -1 probability, a p(yes) of 0.0 and a verification without a verdict."""
    import yaml

    samples, checks = root / "samples", root / "verifications"
    samples.mkdir(parents=True)
    problems = [
        (
            "What is half of one?",
            "$\\boxed{\\frac{1}{2}}$",
            ["\\frac{1}{2}", "0.5", None, "\\frac13"],
        ),
        ("What is 3 * 4?", 12.0, ["12", "x = 12", "13"]),
        ("What is 2 + 2?", 4, ["4", "5", "4", "4"]),
    ]
    for i, (question, gold, answers) in enumerate(problems):
        texts = [minerva(a) if a is not None else "no final answer line" for a in answers]
        record = {
            "prompt": "Problem: ...",
            "question": question,
            "samples": texts,
            "gt_answer": gold,
        }
        (samples / f"{i}.yaml").write_text(yaml.dump(record, sort_keys=True))
        for j in range(2):
            folder = checks / f"problem_{i}"
            folder.mkdir(parents=True, exist_ok=True)
            items = [
                {
                    "p(yes)": 0.9 - 0.3 * j,
                    "p(no)": 0.1,
                    "verification": "Is the answer correct (Yes/No)? Yes",
                },
                {
                    "p(yes)": -1,
                    "p(no)": 0.25 * (i + 1),
                    "verification": "Is the answer correct (Yes/No)? No",
                },
                {"p(yes)": 0.0, "p(no)": -1, "verification": "unclear"},
            ]
            (folder / f"solution_{j}.yaml").write_text(
                yaml.dump({"prompt": "Verify ...", "verifications": items}, sort_keys=True)
            )
    return samples, checks


def test_the_reference_layout_imports_into_runs_that_give_its_own_pools(
    workers, project, users, settings
) -> None:
    from annotator.solve_or_verify import pools_for
    from scoring.formats.sc_genrm import read_pools

    root = settings.MODEL_DIR / f"sc-genrm-{project.pk}"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    samples, checks = reference_layout(root)
    workers("import")
    run = start_sampling_run(
        project, users["owner"], completer=f"sc-genrm:{samples}", n=256, name="imported"
    )
    done = wait_for(lambda: finished(SamplingRun, run.pk), timeout=60)
    assert done.status == JobStatus.DONE, done.error
    assert done.solutions == 11 and done.tokens == 0
    check = start_verification_run(
        project,
        users["owner"],
        sampling_run=done,
        completer=f"sc-genrm:{checks}",
        v=2,
        name="imported-checks",
    )
    checked = wait_for(lambda: finished(VerificationRun, check.pk), timeout=60)
    assert checked.status == JobStatus.DONE, checked.error
    assert checked.verifications == 3 * 2 * 2

    _, pools = pools_for(done, checked)
    assert pools == read_pools(samples, checks, max_verifications=2)
    first = SampledSolution.objects.get(run=done, problem__text="What is 3 * 4?", index=1)
    assert first.trace.final_answer == "12" and first.trace.final_answer_correct
    assert first.problem.reference_answer == "12"
    texts = SolutionVerification.objects.filter(run=checked, solution=first).order_by("index")
    assert [(t.p_yes, t.p_no, t.verdict) for t in texts] == [
        (pytest.approx(0.6), 0.1, True),
        (None, 0.5, False),
    ]


def test_an_import_outside_the_model_folder_is_refused(project, users, tmp_path) -> None:
    from annotator.jobs import RunError
    from annotator.sampling import create_sampling_run

    with pytest.raises(RunError, match="inside"):
        create_sampling_run(project, users["owner"], completer=f"sc-genrm:{tmp_path}", n=4)
    with pytest.raises(RunError, match="top_p, max_tokens missing"):
        create_sampling_run(
            project,
            users["owner"],
            completer="openai:http://127.0.0.1:9/v1",
            model="m",
            n=4,
            options={"temperature": 1.0},
        )


def test_a_cancelled_run_stops_between_chunks_and_a_retry_finishes_it_once(
    workers, project, users, server
) -> None:
    from annotator import jobs

    sums = problems(project, 20)
    workers("cancel")
    run = sample(project, users, server, 3, "cancelled", max_in_flight=1)
    wait_for(lambda: SampledSolution.objects.filter(run=run).count() >= 3 * 3, timeout=120)
    jobs.cancel(SamplingRun.objects.get(pk=run.pk))
    stopped = wait_for(lambda: finished(SamplingRun, run.pk), timeout=60)
    assert stopped.status == JobStatus.CANCELLED
    kept = SampledSolution.objects.filter(run=run).count()
    assert 9 <= kept < 60 and kept % 3 == 0  # whole problems only

    jobs.retry(stopped)
    done = wait_for(lambda: finished(SamplingRun, run.pk), timeout=120)
    assert done.status == JobStatus.DONE, done.error
    assert done.summary["resumed_at"] == kept // 3
    keys = sorted(SampledSolution.objects.filter(run=done).values_list("problem_id", "index"))
    assert keys == sorted((p, j) for p in sums for j in range(3))
