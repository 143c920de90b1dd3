"""The reward service as a real process on loopback, and its trainers' clients.

Every protocol's numbers are checked against ``python -m scoring score`` on the same traces
(tiny real-layout Qwen-PRM) and the transform applied to those scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from scoring.rewards import apply_transform, grade_success
from scoring.types import Trace
from tests.scoring.reward_servers import (
    ROOT,
    ServiceProcess,
    free_port,
    kill_under_load,
    run_coroutine,
    scoring_serve,
)

ETA = 0.5
TRANSFORM = ["--transform", "clip-delta", "--eta", str(ETA), "--success-weight", "2"]

# (trace, ground truth): right, wrong, none; steps as a policy writes them, one paragraph each.
ROLLOUTS = [
    (
        Trace(
            problem="Janet has 3 apples and buys 4 more. How many apples?",
            steps=(
                "She starts with 3 apples.",
                "She buys 4 more, so 3 + 4 = 7.",
                "The answer is \\boxed{7}.",
            ),
            id="r-0",
        ),
        "7",
    ),
    (Trace(problem="What is 5 * 12?", steps=("5 * 12 = 60 eggs.", "\\boxed{60}"), id="r-1"), "61"),
    (
        Trace(
            problem="Each box holds 12 eggs. How many eggs do 5 boxes hold, minus 13?",
            steps=(
                "Each box holds 12 eggs.",
                "5 boxes hold 5 * 12 = 60 eggs.",
                "Then 60 - 13 = 47.",
                "The total is \\boxed{47}.",
            ),
            id="r-2",
        ),
        None,
    ),
]


def response(trace: Trace) -> str:
    return "\n\n".join(trace.steps)


@pytest.fixture(scope="module")
def cli_scores(tmp_path_factory, qwen_prm_dir: Path) -> dict[str, list[float]]:
    """``python -m scoring score`` on the rollouts' traces: id -> step scores."""
    folder = tmp_path_factory.mktemp("cli")
    traces = folder / "traces.jsonl"
    traces.write_text(
        "".join(
            json.dumps({"id": t.id, "problem": t.problem, "steps": list(t.steps)}) + "\n"
            for t, _ in ROLLOUTS
        )
    )
    out = folder / "scores.jsonl"
    subprocess.run(
        [
            sys.executable, "-m", "scoring", "score", "--adapter", "qwen-prm",
            "--model", str(qwen_prm_dir), "--device", "cpu", "--input", str(traces),
            "--output", str(out), "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )  # fmt: skip
    return {r["id"]: r["scores"] for r in map(json.loads, out.read_text().splitlines())}


@pytest.fixture(scope="module")
def expected(cli_scores) -> list[dict]:
    """Per rollout: the CLI's step scores, and the clip-delta rewards and return on them
    with the success the project's grading gives."""
    out = []
    for trace, truth in ROLLOUTS:
        success = grade_success(response(trace), truth)
        rewards = apply_transform(
            "clip-delta", cli_scores[trace.id], eta=ETA, success=success, success_weight=2.0
        )
        out.append(
            {
                "scores": cli_scores[trace.id],
                "rewards": list(rewards.rewards),
                "return": rewards.total,
                "success": success,
            }
        )
    assert [e["success"] for e in out] == [True, False, None]
    return out


@pytest.fixture(scope="module")
def service(tmp_path_factory, qwen_prm_dir: Path):
    folder = tmp_path_factory.mktemp("service")
    port = free_port()
    argv = scoring_serve(qwen_prm_dir, port, *TRANSFORM, "--log-jsonl", str(folder / "log.jsonl"))
    with ServiceProcess(argv, port, log=folder / "service.log") as process:
        process.rollout_log = folder / "log.jsonl"
        yield process


def metric_values(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
    }


def wait_logged(service, timeout: float = 30) -> None:
    """Until the rollout log has taken every scored rollout (it writes from a thread)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values = metric_values(service.url)
        if (
            values["stepwise_reward_rollouts_logged_total"]
            >= values["stepwise_reward_rollouts_total"]
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the rollout log did not catch up")


def native(url: str, items: list[dict], **body) -> dict:
    answer = httpx.post(f"{url}/v1/rewards", json={"items": items, **body}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-5 for x, y in zip(a, b, strict=True))


def test_native_steps_and_responses_score_as_the_score_command(service, expected) -> None:
    by_steps = native(
        service.url,
        [{"prompt": t.problem, "steps": list(t.steps), "ground_truth": g} for t, g in ROLLOUTS],
    )
    by_text = native(
        service.url,
        [{"prompt": t.problem, "response": response(t), "ground_truth": g} for t, g in ROLLOUTS],
    )
    assert by_steps["transform"] == by_text["transform"] == "clip-delta/v1"
    for answer in (by_steps, by_text):
        for item, (trace, _), want in zip(answer["items"], ROLLOUTS, expected, strict=True):
            assert item["steps"] == list(trace.steps)
            assert close(item["step_scores"], want["scores"])
            assert close(item["step_rewards"], want["rewards"])
            assert abs(item["return"] - want["return"]) <= 1e-5
            assert item["success"] == want["success"]
            below = [i for i, s in enumerate(want["scores"]) if s < 0.5]
            assert item["first_error_step"] == (below[0] if below else -1)
    # the offsets returned with a response end each step inside it
    for item, (trace, _) in zip(by_text["items"], ROLLOUTS, strict=True):
        text = response(trace)
        assert [
            text[:end][-len(step) :]
            for step, end in zip(trace.steps, item["step_ends"], strict=True)
        ] == list(trace.steps)


def openrlhf_request(problem: str, answer: str, label: str | None) -> dict:
    """The request OpenRLHF's trainer sends for one rollout, built with its own lines:
    ``prompts_dataset.py`` line 37 (the policy's chat template, generation prompt on),
    ``agent.py`` lines 211-213 (prompt ids without special tokens), 250 (prompt + action
    ids; the action ends with the policy's EOS as vLLM returns it), 283 (decode with
    special tokens kept) and 332-336 (the payload); ``label`` is "" without a label key
    (``prompts_dataset.py`` line 44)."""
    from scoring.tiny import qwen_tokenizer

    policy = qwen_tokenizer()
    chat = [{"role": "user", "content": problem}]
    prompt = policy.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    prompt_token_ids = policy(text=prompt, add_special_tokens=False)["input_ids"]
    action_token_ids = policy(text=answer, add_special_tokens=False)["input_ids"] + [
        policy.eos_token_id
    ]
    observation_token_ids = prompt_token_ids + action_token_ids
    query = policy.decode(observation_token_ids, skip_special_tokens=False)
    assert query.endswith("<|im_end|>") and query.startswith("<|im_start|>system")
    return {"query": [query], "prompts": [prompt], "labels": ["" if label is None else label]}


def test_openrlhf_request_gets_the_native_rewards(service, expected) -> None:
    natives = native(
        service.url,
        [{"prompt": t.problem, "response": response(t), "ground_truth": g} for t, g in ROLLOUTS],
    )["items"]
    for (trace, truth), want, item in zip(ROLLOUTS, expected, natives, strict=True):
        # agent.py lines 338-344: aiohttp's session.post(url, json=data), one sample each
        answer = httpx.post(
            f"{service.url}/get_reward",
            json=openrlhf_request(trace.problem, response(trace), truth),
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["rewards"] == body["scores"]
        # equal to the native answer and to the CLI's, up to batch padding's rounding
        assert close(body["rewards"], [item["return"]])
        assert close(body["rewards"], [want["return"]])
        logs = body["extra_logs"]
        assert logs["transform/clip-delta/v1"] == [1.0]
        assert logs["n_steps"] == [float(len(trace.steps))]
        assert logs["success"] == [{True: 1.0, False: 0.0, None: -1.0}[want["success"]]]
        # samples_generator.py lines 293-297: torch.tensor([value]) of every value
        assert all(isinstance(v, float) for values in logs.values() for v in values)


def test_a_request_batch_of_several_queries_of_openrlhf(service, expected) -> None:
    requests = [openrlhf_request(t.problem, response(t), g) for t, g in ROLLOUTS]
    merged = {key: [r[key][0] for r in requests] for key in ("query", "prompts", "labels")}
    body = httpx.post(f"{service.url}/get_reward", json=merged, timeout=60).json()
    assert close(body["rewards"], [e["return"] for e in expected])


def test_trl_reward_function_returns_the_native_returns(service, expected) -> None:
    from scoring.reward_clients.trl import StepwiseReward

    reward = StepwiseReward(service.url)
    # TRL's conversational format for two rollouts, its standard one for the third
    prompts = [[{"role": "user", "content": t.problem}] for t, _ in ROLLOUTS[:2]]
    completions = [[{"role": "assistant", "content": response(t)}] for t, _ in ROLLOUTS[:2]]
    prompts.append(ROLLOUTS[2][0].problem)
    completions.append(response(ROLLOUTS[2][0]))
    metrics = {}
    returns = run_coroutine(
        reward(
            prompts=prompts,
            completions=completions,
            completion_ids=None,
            ground_truth=[g for _, g in ROLLOUTS],
            trainer_state=SimpleNamespace(global_step=3),
            log_metric=metrics.__setitem__,
        )
    )
    assert close(returns, [e["return"] for e in expected])
    assert metrics["stepwise/success"] == 0.5


def test_grpo_trainer_runs_two_steps_on_the_stepwise_reward(service, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from scoring.reward_clients.trl import StepwiseReward
    from scoring.tiny import build_causal_lm, qwen_tokenizer

    policy = build_causal_lm(tmp_path / "policy", qwen_tokenizer(), "qwen2", seed=1)
    dataset = Dataset.from_list(
        [
            {"prompt": f"What is {a} + {b}?", "ground_truth": str(a + b)}
            for a, b in [(3, 4), (5, 12), (20, 13), (15, 8)]
        ]
    )
    config = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=12,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(policy),
        reward_funcs=[StepwiseReward(service.url)],
        args=config,
        train_dataset=dataset,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    wait_logged(service)
    logged = [e for e in trainer.state.log_history if "rewards/stepwise_reward/mean" in e]
    assert len(logged) == 2
    # the service logged the trainer's rollouts with their training steps (0 and 1)
    records = [json.loads(line) for line in service.rollout_log.read_text().splitlines()]
    trl = [r for r in records if r["protocol"] == "trl" and r["training_step"] in (0, 1)]
    assert {r["training_step"] for r in trl} == {0, 1}
    for step in (0, 1):
        mean = sum(r["return"] for r in trl if r["training_step"] == step) / sum(
            1 for r in trl if r["training_step"] == step
        )
        assert abs(mean - logged[step]["rewards/stepwise_reward/mean"]) <= 1e-5


class DataProto:
    """The parts of verl's ``DataProto`` its reward managers read: ``batch`` (tensors),
    ``non_tensor_batch`` (numpy object arrays), ``meta_info``, ``len``."""

    def __init__(self, batch: dict, non_tensor_batch: dict) -> None:
        self.batch = batch
        self.non_tensor_batch = non_tensor_batch
        self.meta_info: dict = {}

    def __len__(self) -> int:
        return len(self.batch["responses"])


def verl_batch(tokenizer, prompt_width: int = 48, response_width: int = 64) -> DataProto:
    """A rollout batch laid out as verl's: prompts left-padded, responses right-padded,
    ``attention_mask`` over both; ``reward_model.ground_truth`` and ``extra_info`` per
    row as ``examples/data_preprocess/gsm8k.py`` lines 70-83 write them."""
    import numpy as np
    import torch

    pad = tokenizer.pad_token_id
    prompts, responses, masks = [], [], []
    for trace, _ in ROLLOUTS:
        chat = [{"role": "user", "content": trace.problem}]
        p = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"][-prompt_width:]
        r_ids = tokenizer(response(trace), add_special_tokens=False)["input_ids"]
        r_ids = (r_ids + [tokenizer.eos_token_id])[:response_width]
        prompts.append([pad] * (prompt_width - len(p_ids)) + p_ids)
        responses.append(r_ids + [pad] * (response_width - len(r_ids)))
        masks.append(
            [0] * (prompt_width - len(p_ids))
            + [1] * len(p_ids)
            + [1] * len(r_ids)
            + [0] * (response_width - len(r_ids))
        )
    return DataProto(
        {
            "prompts": torch.tensor(prompts),
            "responses": torch.tensor(responses),
            "attention_mask": torch.tensor(masks),
        },
        {
            "data_source": np.array(["openai/gsm8k"] * len(ROLLOUTS), dtype=object),
            "reward_model": np.array(
                [{"style": "rule", "ground_truth": g} for _, g in ROLLOUTS], dtype=object
            ),
            "extra_info": np.array(
                [
                    {"split": "train", "index": i, "question": t.problem}
                    for i, (t, _) in enumerate(ROLLOUTS)
                ],
                dtype=object,
            ),
        },
    )


def test_verl_compute_score_batch_through_the_batch_managers_lines(
    service, expected, monkeypatch
) -> None:
    """verl does not install on CPU here (``pip install --dry-run verl==0.9.1`` pulls ray,
    wandb and replaces transformers); the batch reward manager's lines that call
    ``compute_score_batch`` are re-implemented from ``verl/workers/reward_manager/batch.py``
    (commit b178a3cd) lines 47-78 (verify) and 86-110 (the reward at the last token)."""
    import torch

    from scoring.reward_clients import verl
    from scoring.tiny import qwen_tokenizer

    monkeypatch.setenv("STEPWISE_REWARD_URL", service.url)
    tokenizer = qwen_tokenizer()
    data = verl_batch(tokenizer)
    compute_score = verl.compute_score_batch  # reward.py line 94: partial with no kwargs
    # batch.py verify(), lines 48-76
    prompt_ids = data.batch["prompts"]
    response_ids = data.batch["responses"]
    attention_mask = data.batch["attention_mask"]
    prompt_len = prompt_ids.shape[-1]
    valid_response_lengths = attention_mask[:, prompt_len:].sum(dim=-1)
    responses_str = []
    for i in range(len(data)):
        valid_len = valid_response_lengths[i]
        valid_response_ids = response_ids[i][:valid_len]
        response_str = tokenizer.decode(valid_response_ids, skip_special_tokens=True)
        responses_str.append(response_str)
    ground_truths = [
        item.get("ground_truth", None) for item in data.non_tensor_batch["reward_model"]
    ]
    data_sources = data.non_tensor_batch["data_source"]
    rollout_reward_scores = data.non_tensor_batch.get(
        "reward_scores", [{} for _ in range(len(data))]
    )
    extras = data.non_tensor_batch.get("extra_info", [{} for _ in range(len(data))])
    for i in range(len(data)):
        extras[i]["rollout_reward_scores"] = rollout_reward_scores[i]
    scores = compute_score(
        data_sources=data_sources,
        solution_strs=responses_str,
        ground_truths=ground_truths,
        extra_infos=extras,
    )
    # batch.py __call__, lines 86-110
    reward_tensor = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
    for i in range(len(data)):
        length = valid_response_lengths[i].item()
        score = scores[i]
        reward = score["score"] if isinstance(score, dict) else score
        reward_tensor[i, length - 1] = reward
    assert close(reward_tensor.sum(dim=-1).tolist(), [e["return"] for e in expected])
    assert [s["success"] for s in scores] == [1.0, 0.0, -1.0]
    assert set(scores[0]) == set(scores[2])  # one list per key in reward_extra_info

    # the reward loop's per-rollout call, naive.py lines 66-73
    one = run_coroutine(
        verl.compute_score(
            data_source="openai/gsm8k",
            solution_str=responses_str[0],
            ground_truth=ground_truths[0],
            extra_info=extras[0],
        )
    )
    assert abs(one["score"] - expected[0]["return"]) <= 1e-5


def test_verl_dense_manager_puts_each_step_reward_at_its_last_token(
    service, expected, monkeypatch
) -> None:
    from scoring.reward_clients.verl import StepwiseDenseRewardManager
    from scoring.tiny import qwen_tokenizer

    monkeypatch.setenv("STEPWISE_REWARD_URL", service.url)
    tokenizer = qwen_tokenizer()
    data = verl_batch(tokenizer)
    # reward.py lines 169-175: how verl builds a manager that is no RewardManagerBase
    manager = StepwiseDenseRewardManager(
        tokenizer=tokenizer, num_examine=0, compute_score=None, reward_fn_key="data_source"
    )
    out = manager(data, return_dict=True)
    tensor = out["reward_tensor"]
    assert close(tensor.sum(dim=-1).tolist(), [e["return"] for e in expected])
    assert close(out["reward_extra_info"]["score"], [e["return"] for e in expected])
    prompt_len = data.batch["prompts"].shape[-1]
    for i, (trace, _) in enumerate(ROLLOUTS):
        ids = data.batch["responses"][i][: int(data.batch["attention_mask"][i, prompt_len:].sum())]
        text, ends, position = response(trace), [], 0
        for step in trace.steps:
            position = text.find(step, position) + len(step)
            ends.append(position)

        def reach(j: int, ids=ids) -> int:
            return len(tokenizer.decode(ids[: j + 1].tolist(), skip_special_tokens=True))

        # each step's reward on the first token whose text completes the step
        want: dict[int, float] = {}
        for end, reward in zip(ends, expected[i]["rewards"], strict=True):
            last = next(j for j in range(len(ids)) if reach(j) >= end)
            want[last] = want.get(last, 0.0) + reward
        assert len(want) == len(trace.steps)
        for j in range(tensor.shape[1]):
            assert abs(float(tensor[i, j]) - want.get(j, 0.0)) <= 1e-5, (i, j)


def test_bad_requests_get_400_naming_the_field(service) -> None:
    cases = [
        ({"items": [{"prompt": 3, "response": "x"}]}, "items[0].prompt"),
        ({"items": [{"prompt": "p"}]}, "items[0]"),
        ({"items": [{"prompt": "p", "steps": ["a", 2]}]}, "items[0].steps"),
        ({"items": "x"}, "items"),
        ({"items": [], "training_step": -1}, "training_step"),
        ({"items": [], "client": "openrlhf"}, "client"),
    ]
    for body, field in cases:
        answer = httpx.post(f"{service.url}/v1/rewards", json=body, timeout=30)
        assert (answer.status_code, answer.json()["field"]) == (400, field), body
    hostile = (
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,  # past the parser's stack
        b'{"items": [], "training_step": 1e999}',  # a number past a float
        b'{"items": [], "training_step": NaN}',
        b'{"items": [{"prompt": "p", "response": "x", "ground_truth": Infinity}]}',
    )
    for body in hostile:
        for path in ("/v1/rewards", "/get_reward"):
            answer = httpx.post(f"{service.url}{path}", content=body, timeout=30)
            assert (answer.status_code, answer.json()["field"]) == (400, "body"), body[:80]
    query = openrlhf_request("What is 2 + 2?", "4", None)
    query["prompts"] = ["another prompt"]
    answer = httpx.post(f"{service.url}/get_reward", json=query, timeout=30)
    assert (answer.status_code, answer.json()["field"]) == (400, "query[0]")
    query["prompts"] = []
    answer = httpx.post(f"{service.url}/get_reward", json=query, timeout=30)
    assert (answer.status_code, answer.json()["field"]) == (400, "prompts")


def test_a_model_error_is_a_500_and_batched_neighbours_still_get_answers(service, expected) -> None:
    """A step holding the PRM's own separator makes the adapter fail (more read-outs than
    steps): that request gets a 500, the requests batched with it their rewards."""
    bad = {"items": [{"prompt": "p", "steps": ["a <extra_0> b"]}]}
    good = {"items": [{"prompt": ROLLOUTS[0][0].problem, "steps": list(ROLLOUTS[0][0].steps)}]}
    answers: dict[int, httpx.Response] = {}

    def post(i: int, body: dict) -> None:
        answers[i] = httpx.post(f"{service.url}/v1/rewards", json=body, timeout=60)

    threads = [threading.Thread(target=post, args=(i, bad if i % 2 else good)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answer in answers.items():
        if i % 2:
            assert answer.status_code == 500
            assert "model error" in answer.json()["error"]
        else:
            assert answer.status_code == 200
            assert close(answer.json()["items"][0]["step_scores"], expected[0]["scores"])
    assert httpx.get(f"{service.url}/health", timeout=10).status_code == 200


def test_concurrent_requests_share_model_calls_and_metrics_count_them(service, expected) -> None:
    def batches() -> tuple[float, float]:
        values = metric_values(service.url)
        return values["stepwise_reward_batch_rollouts_count"], values[
            "stepwise_reward_rollouts_total"
        ]

    calls_before, rollouts_before = batches()
    answers: list[dict] = [{}] * 32

    def post(i: int) -> None:
        trace, _ = ROLLOUTS[i % 3]
        answers[i] = native(service.url, [{"prompt": trace.problem, "steps": list(trace.steps)}])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, answer in enumerate(answers):
        assert close(answer["items"][0]["step_scores"], expected[i % 3]["scores"])
    calls_after, rollouts_after = batches()
    assert rollouts_after - rollouts_before == 32
    assert calls_after - calls_before < 32  # some requests shared a model call
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    for name in (
        'stepwise_reward_requests_total{endpoint="v1/rewards",status="200"}',
        "stepwise_reward_request_seconds_bucket",
        "stepwise_reward_tokens_total",
        "stepwise_reward_tokens_per_second",
    ):
        assert name in text


def test_a_model_on_a_cpu_gets_a_padding_bound_by_default(qwen_prm_dir: Path) -> None:
    from scoring.adapters import load_adapter
    from scoring.reward_service import default_max_padding

    assert default_max_padding(load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")) == 0.1
    for device, bound in (("cuda:0", None), ("cuda", None), ("mps", None), ("cpu", 0.1)):
        assert default_max_padding(SimpleNamespace(device=device)) == bound
    assert default_max_padding(SimpleNamespace()) is None  # a model-free scorer


def test_caps_on_body_and_items(tmp_path: Path, qwen_prm_dir: Path) -> None:
    port = free_port()
    argv = scoring_serve(qwen_prm_dir, port, "--max-body-bytes", "2000", "--max-items", "2")
    with ServiceProcess(argv, port, log=tmp_path / "log") as service:
        items = [{"prompt": "p", "steps": ["a"]}] * 3
        answer = httpx.post(f"{service.url}/v1/rewards", json={"items": items}, timeout=30)
        assert (answer.status_code, answer.json()["field"]) == (400, "items")
        big = {"items": [{"prompt": "p" * 3000, "steps": ["a"]}]}
        answer = httpx.post(f"{service.url}/v1/rewards", json=big, timeout=30)
        assert (answer.status_code, answer.json()["field"]) == (413, "body")
        answer = httpx.post(f"{service.url}/v1/rewards", json={"items": items[:2]}, timeout=30)
        assert answer.status_code == 200


def test_a_token_guards_every_path_but_health(tmp_path: Path, qwen_prm_dir: Path) -> None:
    port = free_port()
    argv = scoring_serve(qwen_prm_dir, port, "--token", "s3cret")
    body = {"items": [{"prompt": "p", "steps": ["a"]}]}
    with ServiceProcess(argv, port, log=tmp_path / "log") as service:
        url = service.url
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        answer = httpx.post(f"{url}/v1/rewards", json=body, timeout=30)
        assert (answer.status_code, answer.json()["field"]) == (401, "authorization")
        wrong = {"Authorization": "Bearer nope"}
        assert (
            httpx.post(f"{url}/v1/rewards", json=body, headers=wrong, timeout=30).status_code == 401
        )
        assert httpx.post(f"{url}/t/nope/v1/rewards", json=body, timeout=30).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert (
            httpx.post(f"{url}/v1/rewards", json=body, headers=right, timeout=30).status_code == 200
        )
        # OpenRLHF's --remote_rm_url carries no header: the token rides in the path
        query = openrlhf_request("What is 2 + 2?", "4", None)
        assert httpx.post(f"{url}/t/s3cret/get_reward", json=query, timeout=30).status_code == 200
        assert httpx.get(f"{url}/t/s3cret/metrics", timeout=10).status_code == 200


def test_it_refuses_to_bind_beyond_loopback_without_a_token(qwen_prm_dir: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "STEPWISE_REWARD_TOKEN"}
    done = subprocess.run(
        scoring_serve(qwen_prm_dir, free_port(), "--host", "0.0.0.0"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--token" in done.stderr


def test_after_a_sigkill_under_load_retries_get_answers_and_every_answered_rollout_is_logged_once(
    tmp_path: Path, qwen_prm_dir: Path, expected
) -> None:
    from scoring.reward_engine import Rollout

    port = free_port()
    log = tmp_path / "rollouts.jsonl"
    # batching off: the load lasts long enough to be cut in the middle
    argv = scoring_serve(qwen_prm_dir, port, *TRANSFORM, "--log-jsonl", str(log), "--no-batching")
    service = ServiceProcess(argv, port, log=tmp_path / "service.log").start()
    n = 120

    def item(i: int) -> dict:
        trace, truth = ROLLOUTS[i % 3]
        return {
            "prompt": trace.problem,
            "steps": list(trace.steps),
            "ground_truth": truth,
            "id": f"c{i}",
        }

    down: list[int] = []

    def while_down(answered: int) -> None:
        down.append(answered)
        # the rollouts answered before the kill are on disk, in the journal
        assert list((tmp_path / "rollouts.jsonl.journal").glob("*.jsonl"))

    try:
        answers = kill_under_load(
            service, [item(i) for i in range(n)], answered_before_kill=20, while_down=while_down
        )
        replayed = metric_values(service.url)["stepwise_reward_rollouts_replayed_total"]
        assert replayed >= down[0]
    finally:
        service.stop()  # a clean stop: what is queued is written, the journal emptied
    for i, answer in answers.items():
        assert abs(answer["items"][0]["return"] - expected[i % 3]["return"]) <= 1e-5
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines()]
    assert len(keys) == len(set(keys))  # nothing twice
    # every answered rollout is there, those answered just before the kill included
    want = {
        Rollout(
            problem=it["prompt"],
            steps=tuple(it["steps"]),
            ground_truth=it["ground_truth"],
            client_id=it["id"],
        ).key()
        for it in map(item, range(n))
    }
    assert set(keys) == want
    assert not list((tmp_path / "rollouts.jsonl.journal").glob("*.jsonl"))


def test_a_second_service_on_the_same_journal_is_refused(tmp_path: Path, qwen_prm_dir: Path):
    journal = tmp_path / "journal"
    first = scoring_serve(
        qwen_prm_dir, free_port(), "--log-jsonl", str(tmp_path / "a.jsonl"),
        "--log-journal", str(journal),
    )  # fmt: skip
    with ServiceProcess(first, int(first[first.index("--port") + 1]), log=tmp_path / "log"):
        done = subprocess.run(
            scoring_serve(
                qwen_prm_dir,
                free_port(),
                "--log-jsonl",
                str(tmp_path / "b.jsonl"),
                "--log-journal",
                str(journal),
            ),  # fmt: skip
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    assert "held by another running service" in done.stderr
