"""Reading the problem and the response out of a policy's chat-templated query."""

from __future__ import annotations

import pytest

from scoring.chat_queries import split_query, user_turn
from scoring.tiny import LLAMA3_CHAT_TEMPLATE, llama3_tokenizer, qwen_tokenizer

PROBLEM = "Janet has 3 apples and buys 4 more.\nHow many apples?"
RESPONSE = "She has 3 + 4 = 7 apples.\n\nThe answer is \\boxed{7}."


@pytest.mark.parametrize("make", [qwen_tokenizer, llama3_tokenizer])
def test_a_templated_query_gives_back_the_problem_and_the_response(make) -> None:
    policy = make()
    if policy.chat_template is None:
        policy.chat_template = LLAMA3_CHAT_TEMPLATE
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROBLEM}]
    prompt = policy.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = policy(text=prompt, add_special_tokens=False)["input_ids"]
    ids += policy(text=RESPONSE, add_special_tokens=False)["input_ids"] + [policy.eos_token_id]
    query = policy.decode(ids, skip_special_tokens=False)
    assert split_query(query, prompt) == (PROBLEM, RESPONSE)


def test_a_prompt_without_template_is_the_problem() -> None:
    assert split_query(PROBLEM + "\n" + RESPONSE + "</s>", PROBLEM) == (PROBLEM, RESPONSE)
    assert user_turn("<s>" + PROBLEM) == PROBLEM


def test_a_query_that_does_not_repeat_the_prompt_exactly_is_cut_after_the_assistant_header() -> (
    None
):
    prompt = f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
    query = f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n{RESPONSE}<|im_end|>"
    assert split_query(query, prompt + " ") == (PROBLEM, RESPONSE)
    with pytest.raises(ValueError, match="does not start with its prompt"):
        split_query("something else", prompt)


def test_the_last_user_turn_is_the_problem() -> None:
    prompt = (
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
        f"<|im_start|>user\n{PROBLEM}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert user_turn(prompt) == PROBLEM
