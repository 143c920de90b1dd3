"""verl's side of the reward service: point ``custom_reward_function.path`` at this file.

verl (``volcengine/verl`` at commit b178a3cd) loads ``custom_reward_function.name`` from the
file at ``custom_reward_function.path`` and merges ``custom_reward_function.reward_kwargs``
into every call (``verl/trainer/ppo/reward.py`` lines 60-96), so ``url`` and ``token`` can be
given there (else ``$STEPWISE_REWARD_URL``, ``$STEPWISE_REWARD_TOKEN``):

- :func:`compute_score_batch` for the ``batch`` reward manager, which calls it once per
  batch as ``compute_score(data_sources=..., solution_strs=..., ground_truths=...,
  extra_infos=..., **reward_kwargs)`` with the responses decoded with
  ``skip_special_tokens=True`` (``verl/workers/reward_manager/batch.py`` lines 47-78) and puts
  each result's ``score`` at the response's last token (lines 98-110);
- :func:`compute_score` (async) for the reward loop, which awaits it once per rollout with
  ``data_source``, ``solution_str``, ``ground_truth``, ``extra_info``
  (``verl/experimental/reward_loop/reward_manager/naive.py`` lines 54-97); the service
  batches the concurrent calls;
- :class:`StepwiseDenseRewardManager`, a reward manager (``reward_manager.source=importlib``,
  ``reward_manager.module.path`` this file, ``reward_manager.name=StepwiseDenseRewardManager``;
  ``verl/trainer/ppo/reward.py`` lines 126-175, built with ``reward_model.reward_kwargs``
  as keywords, ``verl/experimental/one_step_off_policy/main_ppo.py`` lines 173-175) that
  writes each step's reward at that step's last response token instead of the whole return
  at the last token.

Dense rewards matter to the estimators that read rewards per token: GAE
(``verl/trainer/ppo/core_algos.py`` lines 249-254) and REINFORCE++ (lines 609-610) discount
and accumulate them token by token, so each step's reward reaches the tokens before it.
GRPO sums them (``token_level_rewards.sum(dim=-1)``, line 303), so under GRPO the dense
manager and the return at the last token train the same.

The problem comes from the dataset's ``extra_info`` (``question`` as verl's own preprocessing
writes it, ``examples/data_preprocess/gsm8k.py`` lines 78-83, or ``problem``); the dense
manager falls back on the user turn of the decoded prompt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from scoring.chat_queries import user_turn
from scoring.reward_clients.http import RewardClient

PROBLEM_KEYS = ("question", "problem")


def _problem(extra_info: Any) -> str | None:
    if isinstance(extra_info, dict):
        for key in PROBLEM_KEYS:
            if isinstance(extra_info.get(key), str):
                return extra_info[key]
    return None


def _item(
    solution_str: str, ground_truth: Any, extra_info: Any, problem: str | None = None
) -> dict:
    item: dict[str, Any] = {
        "prompt": problem if problem is not None else (_problem(extra_info) or ""),
        "response": solution_str,
        "ground_truth": None if ground_truth is None else str(ground_truth),
    }
    if isinstance(extra_info, dict) and isinstance(extra_info.get("index"), int | str):
        item["id"] = str(extra_info["index"])
    return item


def _result(answer: dict) -> dict[str, float]:
    """verl's dict form of a score: ``score`` is the reward, every other key lands in
    ``reward_extra_info`` (one list per key, so every result has the same keys, numbers)."""
    return {
        "score": answer["return"],
        "prm_min": min(answer["step_scores"]) if answer["step_scores"] else 0.0,
        "n_steps": float(len(answer["steps"])),
        "success": -1.0 if answer["success"] is None else float(answer["success"]),
    }


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any],
    url: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> list[dict[str, float]]:
    """One result per response, in order, from one request to the service."""
    items = [
        _item(solution, truth, extra)
        for solution, truth, extra in zip(solution_strs, ground_truths, extra_infos, strict=True)
    ]
    answer = RewardClient(url, token, client="verl").rewards(items)
    return [_result(a) for a in answer["items"]]


async def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    url: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """One rollout's result (the reward loop's per-rollout call)."""
    answer = await RewardClient(url, token, client="verl").arewards(
        [_item(solution_str, ground_truth, extra_info)]
    )
    return _result(answer["items"][0])


def step_token_positions(tokenizer: Any, ids: Sequence[int], ends: Sequence[int]) -> list[int]:
    """For each character offset in ``ends`` (into ``decode(ids, skip_special_tokens=True)``),
    the first token whose decoded prefix reaches it: the step's last token. A binary search
    per step over decoded prefixes, whose lengths grow with the prefix."""

    def reach(j: int) -> int:
        return len(tokenizer.decode(list(ids[: j + 1]), skip_special_tokens=True))

    positions = []
    low = 0
    for end in ends:
        lo, hi = low, len(ids) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if reach(mid) >= end:
                hi = mid
            else:
                lo = mid + 1
        positions.append(lo)
        low = lo
    return positions


class StepwiseDenseRewardManager:
    """A verl reward manager with per-step rewards. It has the constructor and call of
    verl's ``AbstractRewardManager`` (``verl/workers/reward_manager/abstract.py`` lines
    27-45) without importing verl, and reads the batch as verl's ``batch`` and ``naive``
    managers do (``batch.py`` lines 47-65 and 86-92, ``naive.py`` lines 62-79)."""

    def __init__(
        self,
        tokenizer: Any,
        num_examine: int = 0,
        compute_score: Any = None,
        reward_fn_key: str = "data_source",
        url: str | None = None,
        token: str | None = None,
        **reward_kwargs: Any,
    ) -> None:
        self.tokenizer = tokenizer
        self.num_examine = num_examine
        self.reward_fn_key = reward_fn_key
        self.client = RewardClient(url, token, client="verl")

    def __call__(self, data: Any, return_dict: bool = False) -> Any:
        import torch

        # TensorDict refuses `in` on itself: keys() as verl writes it (abstract.py line 64)
        if "rm_scores" in data.batch.keys():  # noqa: SIM118
            # abstract.py lines 64-72: rewards already computed in the rollout
            if return_dict:
                keys = data.meta_info.get("reward_extra_keys", [])
                return {
                    "reward_tensor": data.batch["rm_scores"],
                    "reward_extra_info": {key: data.non_tensor_batch[key] for key in keys},
                }
            return data.batch["rm_scores"]
        prompt_ids = data.batch["prompts"]
        response_ids = data.batch["responses"]
        attention_mask = data.batch["attention_mask"]
        prompt_len = prompt_ids.shape[-1]
        valid_response_lengths = attention_mask[:, prompt_len:].sum(dim=-1)
        valid_prompt_lengths = attention_mask[:, :prompt_len].sum(dim=-1)
        n = len(response_ids)
        extras = data.non_tensor_batch.get("extra_info", [{} for _ in range(n)])
        reward_infos = data.non_tensor_batch["reward_model"]
        responses, items = [], []
        for i in range(n):
            ids = response_ids[i][: int(valid_response_lengths[i])].tolist()
            responses.append(ids)
            problem = _problem(extras[i])
            if problem is None:
                valid = int(valid_prompt_lengths[i])
                prompt = prompt_ids[i][prompt_len - valid :].tolist()
                problem = user_turn(self.tokenizer.decode(prompt, skip_special_tokens=False))
            solution = self.tokenizer.decode(ids, skip_special_tokens=True)
            items.append(_item(solution, reward_infos[i].get("ground_truth"), extras[i], problem))
        answers = self.client.rewards(items) if items else {"items": []}
        reward_tensor = torch.zeros_like(response_ids, dtype=torch.float32)
        extra_info: dict[str, list[float]] = defaultdict(list)
        for i, answer in enumerate(answers["items"]):
            ids = responses[i]
            for key, value in _result(answer).items():
                extra_info[key].append(value)
            if not ids:
                continue
            if answer["step_ends"]:
                positions = step_token_positions(self.tokenizer, ids, answer["step_ends"])
                for position, reward in zip(positions, answer["step_rewards"], strict=True):
                    reward_tensor[i, position] += reward
            else:  # no steps (or steps without offsets): the return at the last token
                reward_tensor[i, len(ids) - 1] = answer["return"]
        data.batch["acc"] = torch.tensor(
            extra_info["score"], dtype=torch.float32, device=prompt_ids.device
        )
        if return_dict:
            return {"reward_tensor": reward_tensor, "reward_extra_info": extra_info}
        return reward_tensor
