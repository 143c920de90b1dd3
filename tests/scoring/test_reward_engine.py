"""The reward engine in process: the rollout log's hand-off (a sink written in the test,
standing for ``annotator.rollouts.log_rollouts``)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from scoring.reward_engine import RewardEngine, RewardSettings, Rollout

RECORD_KEYS = {
    "key", "problem", "response", "steps", "step_scores", "step_rewards", "return", "success",
    "ground_truth", "transform", "transform_version", "training_step", "source", "protocol",
}  # fmt: skip


def test_rollouts_reach_the_log_in_batches_without_holding_answers_and_a_failed_write_is_retried(
    qwen_prm_dir: Path,
) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    opened = threading.Event()
    calls: list[list[dict]] = []
    failures = [ConnectionError("database away")]

    def sink(records: list[dict]) -> int:
        opened.wait(60)
        if failures:
            raise failures.pop()
        calls.append(list(records))
        return len(records)

    rollouts = [
        Rollout(
            problem=f"What is {i} + 1?",
            steps=(f"{i} + 1 = {i + 1}.", f"\\boxed{{{i + 1}}}"),
            training_step=7,
            client_id=str(i),
            protocol="trl",
        )
        for i in range(10)
    ]
    engine = RewardEngine(adapter, RewardSettings(transform="delta", source="test"), log=sink)

    async def run() -> list:
        await engine.start()
        answers = await asyncio.gather(*(engine.score([r]) for r in rollouts))
        assert not calls  # every answer came while the sink was still blocked
        opened.set()
        deadline = time.monotonic() + 60
        while sum(len(c) for c in calls) < len(rollouts) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await engine.close()
        return answers

    answers = asyncio.run(run())
    assert len(answers) == 10
    records = [r for call in calls for r in call]
    assert sorted(r["key"] for r in records) == sorted(r.key() for r in rollouts)
    assert len(calls) < len(rollouts)  # batched, not one write per rollout
    assert engine.metrics.log_errors == 1
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["transform"] == "delta" and record["transform_version"] == 1
        assert record["training_step"] == 7 and record["protocol"] == "trl"
        assert record["source"] == "test" and record["success"] is None
    # the same rollout sent again has the same key; another client id, another key
    assert rollouts[0].key() == Rollout(**{**rollouts[0].__dict__}).key()
    assert rollouts[0].key() != Rollout(**{**rollouts[0].__dict__, "client_id": "x"}).key()
