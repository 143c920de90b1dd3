"""``implicit-prm`` against both of ImplicitPRM's procedures, re-implemented here line by
line on tiny policy/reference pairs with Qwen's and with Llama 3's chat template:
``eval/prm_eval_utils.py``'s ``implicit_prm_data_collator`` + ``get_reward`` (w/ ref,
constant beta, accumulative; the EurusPRM model card's snippet is the same lines without
the Llama-3 ones) for ``protocol=card``, and ``eval/processbench.py``'s
``build_item_tensors`` + ``inference`` for ``protocol=processbench``."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from scoring.engine import score_traces
from scoring.tiny import HARD_TRACES

TOL = 1e-4
COEF = 0.5  # large, so that q differs visibly between read-out positions


@pytest.fixture(scope="module", params=["qwen", "llama"])
def pair(request, tmp_path_factory, qwen_lm_dirs):
    from scoring.tiny import build_causal_lm, llama3_tokenizer

    if request.param == "qwen":
        return qwen_lm_dirs
    tokenizer = llama3_tokenizer()
    policy = build_causal_lm(tmp_path_factory.mktemp("lpolicy"), tokenizer, "llama", seed=1)
    ref = build_causal_lm(tmp_path_factory.mktemp("lref"), tokenizer, "llama", seed=2)
    return policy, ref


@pytest.fixture(scope="module")
def loaded(pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy, ref = pair
    return (
        AutoTokenizer.from_pretrained(policy),
        AutoModelForCausalLM.from_pretrained(policy).eval(),
        AutoModelForCausalLM.from_pretrained(ref).eval(),
    )


def _collator(d, tokenizer):
    """prm_eval_utils.py's implicit_prm_data_collator for one example (type implicit_prm)."""
    input_ids = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": d["query"]},
            {"role": "assistant", "content": "\n\n".join(d["answer"])},
        ],
        tokenize=True,
        add_generation_prompt=False,
        return_dict=False,
    )
    cur_special_ids = []
    for step_num in range(0, len(d["answer"]) + 1):
        conv = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": d["query"]},
                {"role": "assistant", "content": "\n\n".join(d["answer"][:step_num])},
            ],
            tokenize=False,
            add_generation_prompt=False,
        )
        conv = conv.strip()
        if step_num != len(d["answer"]) and conv.endswith(
            "<|start_header_id|>assistant<|end_header_id|>"
        ):
            conv = conv[: -len("<|start_header_id|>assistant<|end_header_id|>")]
        if step_num != len(d["answer"]) and conv.endswith("<|eot_id|>"):
            conv = conv[: -len("<|eot_id|>")]
        if step_num != 0 and step_num != len(d["answer"]):
            conv += "\n\n"
        currect_ids = tokenizer.encode(conv, add_special_tokens=False)
        cur_special_ids.append(len(currect_ids) - 2)
    label_mask = torch.tensor(
        [0] * cur_special_ids[0] + [1] * (len(input_ids) - cur_special_ids[0])
    )
    inputs = pad_sequence(
        [torch.tensor(input_ids)], padding_value=tokenizer.pad_token_id, batch_first=True
    )
    return {
        "input_ids": inputs,
        "attention_mask": (inputs != tokenizer.pad_token_id).int(),
        "labels": pad_sequence([torch.tensor(input_ids)], padding_value=-100, batch_first=True),
        "label_mask": label_mask[None],
        "special_tokens": torch.tensor([cur_special_ids]),
    }


def _get_logps(model, inputs):
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    labels = inputs["labels"][:, 1:].clone().long()
    logits = logits[:, :-1, :]
    labels[labels == -100] = 0
    per_token_logps = torch.gather(
        logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)
    ).squeeze(2)
    loss_mask = labels != -100
    return per_token_logps * loss_mask


def _prm_eval_utils_q(tokenizer, model, ref_model, problem, steps) -> list[float]:
    inputs = _collator({"query": problem, "answer": steps}, tokenizer)
    with torch.no_grad():
        per_token_logps = _get_logps(model, inputs)
        ref_per_token_logps = _get_logps(ref_model, inputs)
    cur_index = torch.where(inputs["special_tokens"] == -100, 0, inputs["special_tokens"])
    raw_reward = per_token_logps - ref_per_token_logps
    raw_reward = raw_reward * inputs["label_mask"][:, 1:]
    beta_reward = COEF * raw_reward  # compute_beta "constant", then coef
    beta_reward = beta_reward.cumsum(-1)
    beta_reward = beta_reward.gather(dim=-1, index=cur_index[:, 1:])
    return beta_reward[0].tolist()  # "accumulative"


def _processbench_q(tokenizer, model, ref_model, problem, steps) -> list[float]:
    """processbench.py: Step prefixes, build_item_tensors, then inference's read-out."""
    item = {"query": problem, "answer": [f"Step {i + 1}: " + step for i, step in enumerate(steps)]}
    input_ids = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": item["query"]},
            {"role": "assistant", "content": "\n\n".join(item["answer"])},
        ],
        tokenize=True,
        add_generation_prompt=False,
        return_tensors="pt",
        return_dict=False,
    ).squeeze(0)
    attention_mask = input_ids != tokenizer.pad_token_id
    step_last_tokens = []
    for step_num in range(len(item["answer"]) + 1):
        conv = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": item["query"]},
                {"role": "assistant", "content": "\n\n".join(item["answer"][:step_num])},
            ],
            tokenize=False,
            add_generation_prompt=False,
        ).strip()
        if step_num != 0 and step_num != len(item["answer"]):
            conv += "\n\n"
        conv_ids = tokenizer.encode(conv, add_special_tokens=False)
        step_last_tokens.append(len(conv_ids) - 2)
    labels = input_ids.clone()

    def get_logps(m):
        with torch.no_grad():
            logits = m(input_ids=input_ids[None], attention_mask=attention_mask[None]).logits
        shift_logits = logits[:, :-1, :]
        shift_labels = labels[None][:, 1:].clone().long()
        shift_labels[shift_labels == -100] = 0
        return torch.gather(
            shift_logits.log_softmax(-1), dim=2, index=shift_labels.unsqueeze(2)
        ).squeeze(2)

    raw_reward = get_logps(model) - get_logps(ref_model)
    seq_len = input_ids.shape[0]
    mask = torch.zeros(seq_len - 1, dtype=torch.float)
    mask[step_last_tokens[0] :] = 1.0
    csum = (COEF * raw_reward[0] * mask).cumsum(dim=-1)
    gather_indices = torch.clamp(torch.tensor(step_last_tokens[1:]), 0, seq_len - 2)
    return csum.gather(dim=-1, index=gather_indices).tolist()


@pytest.mark.parametrize(
    ("protocol", "reference"), [("card", _prm_eval_utils_q), ("processbench", _processbench_q)]
)
def test_implicit_prm_reproduces_its_reference(pair, loaded, traces, protocol, reference) -> None:
    from scoring.adapters import load_adapter

    policy, ref = pair
    adapter = load_adapter(
        "implicit-prm", str(policy), ref_model=str(ref), device="cpu", beta=COEF, protocol=protocol
    )
    batch = [*traces, *HARD_TRACES]
    results = list(score_traces(adapter, batch, batch_tokens=100_000))
    for trace, result in zip(batch, results, strict=True):
        expected = reference(*loaded, trace.problem, list(trace.steps))
        assert len(result.raw) == len(expected) == len(trace.steps)
        assert max(abs(a - b) for a, b in zip(result.raw, expected, strict=True)) <= TOL
        sigmoid = [1 / (1 + torch.exp(torch.tensor(-q)).item()) for q in expected]
        assert max(abs(a - b) for a, b in zip(result.scores, sigmoid, strict=True)) <= TOL
    spread = [q for r in results for q in r.raw]
    assert max(spread) - min(spread) > 1e-2


def test_the_protocols_differ(pair, traces) -> None:
    from scoring.adapters import load_adapter

    policy, ref = pair
    q = {
        protocol: list(
            score_traces(
                load_adapter(
                    "implicit-prm",
                    str(policy),
                    ref_model=str(ref),
                    device="cpu",
                    beta=COEF,
                    protocol=protocol,
                ),
                [traces[0]],
            )
        )[0].raw
        for protocol in ("card", "processbench")
    }
    assert max(abs(a - b) for a, b in zip(q["card"], q["processbench"], strict=True)) > 1e-3
