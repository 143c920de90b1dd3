"""A reward function for TRL's ``GRPOTrainer(reward_funcs=[...])``.

TRL 1.16 (``trl/trainer/grpo_trainer.py``, ``_calculate_rewards``) calls every custom reward
function with ``prompts``, ``completions`` and ``completion_ids`` (one per generation), every
other dataset column as a keyword list, ``trainer_state``, ``log_extra`` and ``log_metric``,
and awaits it on its own event loop when ``__call__`` is a coroutine
(``trl/trainer/utils.py`` ``is_async_callable``); it wants one float per completion.
Prompts and completions are strings, or lists of chat messages in the conversational format.

    from scoring.reward_clients.trl import StepwiseReward
    trainer = GRPOTrainer(model=..., reward_funcs=[StepwiseReward("http://127.0.0.1:8300")], ...)

The dataset's ``ground_truth`` column (``ground_truth_column``) gives the success term.
"""

from __future__ import annotations

from typing import Any

from scoring.reward_clients.http import RewardClient


def _text(value: Any, role: str) -> str:
    """A string prompt or completion as it is; in the conversational format, the content of
    the last message with ``role``."""
    if isinstance(value, str):
        return value
    for message in reversed(value):
        if message.get("role") == role:
            content = message.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                return "".join(part.get("text", "") for part in content)
            return content or ""
    return ""


class StepwiseReward:
    """An async callable returning each completion's return under the service's transform."""

    __name__ = "stepwise_reward"

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        ground_truth_column: str = "ground_truth",
        timeout_s: float = 180.0,
        retries: int = 10,
    ) -> None:
        self.client = RewardClient(url, token, client="trl", timeout_s=timeout_s, retries=retries)
        self.ground_truth_column = ground_truth_column

    async def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[Any] | None = None,
        trainer_state: Any = None,
        log_metric: Any = None,
        **columns: Any,
    ) -> list[float]:
        truths = columns.get(self.ground_truth_column) or [None] * len(prompts)
        step = getattr(trainer_state, "global_step", None)
        items = [
            {
                "prompt": _text(prompt, "user"),
                "response": _text(completion, "assistant"),
                "ground_truth": None if truth is None else str(truth),
            }
            for prompt, completion, truth in zip(prompts, completions, truths, strict=True)
        ]
        answer = await self.client.arewards(items, training_step=step)
        results = answer["items"]
        if log_metric is not None:
            graded = [r["success"] for r in results if r["success"] is not None]
            if graded:
                log_metric("stepwise/success", sum(graded) / len(graded))
            log_metric(
                "stepwise/steps", sum(len(r["steps"]) for r in results) / max(len(results), 1)
            )
        return [r["return"] for r in results]
