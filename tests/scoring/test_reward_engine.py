"""The reward engine in process: the rollout log's hand-off (a sink written in the test,
standing for ``annotator.rollouts.log_rollouts``), and requests sharing forward passes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from scoring.reward_engine import RewardEngine, RewardSettings, Rollout
from tests.scoring.reward_servers import run_coroutine

RECORD_KEYS = {
    "key", "problem", "response", "steps", "step_scores", "step_rewards", "return", "success",
    "ground_truth", "transform", "transform_version", "success_weight", "training_step", "source",
    "protocol",
}  # fmt: skip


def test_rollouts_reach_the_log_in_batches_through_an_outage_and_a_refused_record_is_dropped(
    qwen_prm_dir: Path,
) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    down = threading.Event()
    down.set()
    calls: list[list[dict]] = []

    def sink(records: list[dict]) -> int:
        if down.is_set():
            raise ConnectionError("database away")
        if any("poison" in r["problem"] for r in records):
            raise ValueError("cannot store this record")
        calls.append(list(records))
        return len(records)

    rollouts = [
        Rollout(
            problem=f"What is {i} + 1?" + (" poison" if i == 3 else ""),
            steps=(f"{i} + 1 = {i + 1}.", f"\\boxed{{{i + 1}}}"),
            training_step=7,
            client_id=str(i),
            protocol="trl",
        )
        for i in range(10)
    ]
    engine = RewardEngine(adapter, RewardSettings(transform="delta", source="test"), log=sink)

    async def until(condition, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert condition()

    async def run() -> list:
        await engine.start()
        answers = await asyncio.gather(*(engine.score([r]) for r in rollouts))
        # every answer came while the log was down; the log kept its records
        await until(lambda: engine.metrics.log_errors >= 1)
        assert not calls
        down.clear()
        await until(lambda: sum(len(c) for c in calls) == len(rollouts) - 1)
        await engine.close()
        return answers

    answers = run_coroutine(run())
    assert len(answers) == 10
    records = [r for call in calls for r in call]
    assert sorted(r["key"] for r in records) == sorted(
        r.key() for i, r in enumerate(rollouts) if i != 3
    )
    assert engine.metrics.log_dropped == 1
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["transform"] == "delta" and record["transform_version"] == 1
        assert record["training_step"] == 7 and record["protocol"] == "trl"
        assert record["source"] == "test" and record["success"] is None
    # the same rollout sent again has the same key; another client id, another key
    assert rollouts[0].key() == Rollout(**{**rollouts[0].__dict__}).key()
    assert rollouts[0].key() != Rollout(**{**rollouts[0].__dict__, "client_id": "x"}).key()


def test_the_log_writes_in_batches(qwen_prm_dir: Path) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    calls: list[int] = []
    engine = RewardEngine(
        adapter, RewardSettings(), log=lambda records: calls.append(len(records)) or len(records)
    )
    rollouts = [Rollout(problem=f"q{i}", steps=("a", "b")) for i in range(20)]

    async def run() -> None:
        await engine.start()
        await asyncio.gather(*(engine.score([r]) for r in rollouts))
        await engine.close()  # writes what is queued

    run_coroutine(run())
    assert sum(calls) == 20
    assert len(calls) < 20


def test_with_a_journal_answered_rollouts_the_log_missed_reach_it_after_a_restart(
    qwen_prm_dir: Path, tmp_path: Path
) -> None:
    from scoring.adapters import load_adapter
    from scoring.rollout_journal import RolloutJournal

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    written: list[dict] = []

    def away(records: list[dict]) -> int:
        raise ConnectionError("database away")

    def sink(records: list[dict]) -> int:
        before = len(written)
        for record in records:  # once per key, as log_rollouts
            if record["key"] not in {w["key"] for w in written}:
                written.append(record)
        return len(written) - before

    rollouts = [Rollout(problem=f"q{i}", steps=("a", "b"), client_id=str(i)) for i in range(12)]

    async def serve(log, some: list[Rollout]) -> RewardEngine:
        engine = RewardEngine(adapter, RewardSettings(), log=log, journal=RolloutJournal(tmp_path))
        await engine.start()
        await asyncio.gather(*(engine.score([r]) for r in some))
        return engine

    async def run() -> None:
        first = await serve(away, rollouts[:8])
        # every answer waited for its record on disk; the requests done together shared syncs
        assert 1 <= first.metrics.journal_syncs <= 8
        first.log.close(timeout_s=0.5)  # the log never came back: the records stay journalled
        second = await serve(sink, rollouts[4:])  # a retry of four, four new
        assert second.metrics.replayed == 8
        await second.close()

    run_coroutine(run())
    assert sorted(r["key"] for r in written) == sorted(r.key() for r in rollouts)
    assert not list(tmp_path.glob("*.jsonl"))  # all done: the journal is empty


def test_requests_split_over_passes_each_get_the_scores_of_their_own_rollouts(
    qwen_prm_dir: Path,
) -> None:
    """Requests of several rollouts each (one with no steps), of mixed lengths, under a
    budget that fits a few rollouts a pass: each request gets, in its order, the scores
    ``score_traces`` gives its rollouts alone; a request the adapter cannot encode gets a
    ModelError and the others their scores."""
    from scoring.adapters import load_adapter
    from scoring.engine import score_traces
    from scoring.reward_engine import ModelError
    from scoring.types import Trace

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    requests = [
        [
            Rollout(problem=f"What is {i} + {j}?", steps=tuple(f"step {k}." for k in range(n)))
            for j, n in enumerate((1 + i % 5, 9 - i % 4, 0, 2 + i % 3))
        ]
        for i in range(12)
    ]
    bad = [Rollout(problem="p", steps=("a <extra_0> b",))]  # more read-outs than steps
    longest = max(
        len(adapter.encode(Trace(problem=r.problem, steps=r.steps)).input_ids)
        for rollouts in requests
        for r in rollouts
        if r.steps
    )
    engine = RewardEngine(adapter, RewardSettings(batch_tokens=4 * longest))

    async def run() -> list:
        await engine.start()
        answers = await asyncio.gather(
            *(engine.score(r) for r in [*requests[:6], bad, *requests[6:]]),
            return_exceptions=True,
        )
        await engine.close()
        return answers

    answers = run_coroutine(run())
    assert isinstance(answers[6], ModelError)
    for rollouts, rewards in zip(requests, answers[:6] + answers[7:], strict=True):
        traces = [Trace(problem=r.problem, steps=r.steps) for r in rollouts]
        assert [reward.rollout for reward in rewards] == rollouts
        for reward, alone in zip(rewards, score_traces(adapter, traces), strict=True):
            assert reward.step_scores == pytest.approx(alone.scores, abs=1e-5)
    assert engine.metrics.rollouts == sum(len(r) for r in requests)
    # no pass over the budget: as many passes at least as budgets the tokens fill
    assert engine.metrics.batch_items.count >= engine.metrics.tokens / (4 * longest) > 2
