"""``manage.py serve_rewards``: a registered scorer served as a real process on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from annotator.models import Scorer
from scoring.types import Trace
from tests.scoring.reward_servers import ServiceProcess, free_port, kill_under_load
from tests.workers import ROOT, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

TRACE = Trace(
    problem="Janet has 3 apples and buys 4 more. How many apples?",
    steps=(
        "She starts with 3 apples.",
        "She buys 4 more, so 3 + 4 = 7.",
        "The answer is \\boxed{7}.",
    ),
)


def serve_rewards(port: int, *args: str) -> list[str]:
    return [sys.executable, "manage.py", "serve_rewards", "--port", str(port), *args]


@pytest.fixture
def scorer(tiny_qwen_prm: Path) -> Scorer:
    return Scorer.objects.create(
        name="tiny-prm",
        adapter="qwen-prm",
        model=str(tiny_qwen_prm),
        options={"device": "cpu", "threshold": 0.03},
    )


def reference_scores(model: Path) -> list[float]:
    from scoring.adapters import load_adapter
    from scoring.engine import score_traces

    [result] = score_traces(load_adapter("qwen-prm", str(model), device="cpu"), [TRACE])
    return list(result.scores)


def test_it_serves_a_registered_scorer_with_its_threshold(scorer, tmp_path: Path) -> None:
    port = free_port()
    argv = serve_rewards(port, "--scorer", scorer.name, "--transform", "clip", "--eta", "0.5")
    with ServiceProcess(argv, port, env=worker_env(), log=tmp_path / "log") as service:
        answer = httpx.post(
            f"{service.url}/v1/rewards",
            json={"items": [{"prompt": TRACE.problem, "steps": list(TRACE.steps)}]},
            timeout=60,
        ).json()
    want = reference_scores(Path(scorer.model))
    item = answer["items"][0]
    assert answer["transform"] == "clip/v1"
    assert all(abs(a - b) <= 1e-5 for a, b in zip(item["step_scores"], want, strict=True))
    assert item["step_rewards"] == pytest.approx([min(s - 0.5, 0.0) for s in want], abs=1e-5)
    below = [i for i, s in enumerate(want) if s < 0.03]  # the scorer's own threshold
    assert item["first_error_step"] == (below[0] if below else -1)


def test_it_refuses_an_unknown_scorer_or_project(scorer) -> None:
    for args, message in (
        (["--scorer", "nope"], "no scorer named 'nope'"),
        (["--scorer", scorer.name, "--log-project", "nope"], "no project with slug 'nope'"),
    ):
        done = subprocess.run(
            serve_rewards(free_port(), *args),
            cwd=ROOT,
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0
        assert message in done.stderr


def test_two_hundred_rollouts_sent_twice_become_two_hundred_traces(
    scorer, project, tmp_path: Path
) -> None:
    from annotator.models import Trace as StoredTrace
    from tests.workers import wait_for

    port = free_port()
    argv = serve_rewards(port, "--scorer", scorer.name, "--log-project", project.slug)
    var = tmp_path / "var"  # the journal's default place is under the var dir
    env = worker_env(STEPWISE_VAR_DIR=str(var))
    with ServiceProcess(argv, port, env=env, log=tmp_path / "log") as service:

        def send(first: int) -> None:
            items = [
                {"prompt": f"What is {i} + 1?", "response": f"{i} + 1 = {i + 1}.", "id": str(i)}
                for i in range(first, first + 10)
            ]
            for _ in range(2):  # a client's retry of the same request
                answer = httpx.post(f"{service.url}/v1/rewards", json={"items": items}, timeout=60)
                assert answer.status_code == 200

        threads = [threading.Thread(target=send, args=(first,)) for first in range(0, 200, 10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(lambda: StoredTrace.objects.filter(project=project).count() >= 200, timeout=60)
        assert list((var / "reward-journals" / project.slug).glob("*.jsonl"))
    assert StoredTrace.objects.filter(project=project).count() == 200
    # a clean stop leaves the journal empty: everything in it reached the project
    assert not list((var / "reward-journals" / project.slug).glob("*.jsonl"))


def test_after_a_sigkill_under_load_every_answered_rollout_is_in_the_project_once(
    scorer, project, tmp_path: Path
) -> None:
    from annotator.models import Trace as StoredTrace
    from scoring.reward_engine import Rollout
    from tests.workers import wait_for

    port = free_port()
    journal = tmp_path / "journal"
    argv = serve_rewards(
        port, "--scorer", scorer.name, "--log-project", project.slug,
        "--log-journal", str(journal), "--no-batching",
    )  # fmt: skip
    service = ServiceProcess(argv, port, env=worker_env(), log=tmp_path / "log").start()
    n = 90

    def item(i: int) -> dict:
        return {"prompt": f"What is {i} + 1?", "response": f"{i} + 1 = {i + 1}.", "id": str(i)}

    try:
        kill_under_load(service, [item(i) for i in range(n)], answered_before_kill=15)
        wait_for(lambda: StoredTrace.objects.filter(project=project).count() >= n, timeout=60)
    finally:
        service.stop()
    stored = list(StoredTrace.objects.filter(project=project).values_list("external_id", flat=True))
    assert len(stored) == n  # none twice
    assert set(stored) == {
        Rollout(
            problem=it["prompt"],
            steps=(it["response"],),
            response=it["response"],
            client_id=it["id"],
        ).key()
        for it in map(item, range(n))
    }
