"""The problem and the response inside a policy's chat-templated text.

OpenRLHF sends a reward server the *policy's* text, not the problem and the solution:
``SingleTurnAgentExecutor.execute`` (``openrlhf/utils/agent.py`` at commit 3c3be623, lines
211-213, 250 and 283) tokenizes the prompt, appends the generated tokens and decodes the
whole with ``skip_special_tokens=False``; the prompt is the dataset's input wrapped in the
policy's chat template when the trainer runs with ``--data.apply_chat_template``
(``openrlhf/datasets/prompts_dataset.py`` line 37, ``add_generation_prompt=True``). So the
query is the prompt, then the response, then the end-of-sequence token as text. A PRM needs
its *own* template around the problem and the steps, so :func:`split_query` takes the
prompt off the query, drops the special tokens, and reads the problem from the prompt's
last user turn (:func:`user_turn`).
"""

from __future__ import annotations

import re

# Special tokens as they appear in decoded text: <|im_end|>, <|endoftext|>, <|eot_id|> and
# every other <|...|> token (Qwen, Llama 3, Phi); DeepSeek's full-width <｜...｜> tokens;
# SentencePiece's </s>, <s>, <unk>, <pad>; Gemma's turn markers and <eos>/<bos>.
SPECIAL_TOKEN = re.compile(
    r"<\|[^<>|\s]{1,64}\|>|<｜[^<>｜]{1,64}｜>|</?s>|<unk>|<pad>|<eos>|<bos>"
    r"|<start_of_turn>|<end_of_turn>"
)

# The last user turn of the chat templates in use, most specific first. Each pattern's
# group is the turn's content.
USER_TURNS = (
    re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.S),  # ChatML: Qwen, many others
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S),
    re.compile(r"<start_of_turn>user\n(.*?)<end_of_turn>", re.S),  # Gemma
    re.compile(r"<｜User｜>(.*?)<｜Assistant｜>", re.S),  # DeepSeek-R1 distills
    re.compile(r"<\|user\|>\n?(.*?)(?:<\|end\|>|<\|assistant\|>)", re.S),  # Phi-3
    re.compile(r"\[INST\](.*?)\[/INST\]", re.S),  # Mistral, Llama 2
)


# Where the assistant's turn starts in each template above (the generation prompt).
ASSISTANT_HEADERS = (
    "<|im_start|>assistant\n",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<start_of_turn>model\n",
    "<｜Assistant｜>",
    "<|assistant|>\n",
    "[/INST]",
)


def strip_special_tokens(text: str) -> str:
    """``text`` without the special tokens a ``decode(..., skip_special_tokens=False)``
    leaves in it.

    >>> strip_special_tokens("The answer is 7.<|im_end|><|endoftext|>")
    'The answer is 7.'
    """
    return SPECIAL_TOKEN.sub("", text)


def user_turn(prompt: str) -> str:
    """The content of the prompt's last user turn, stripped; a prompt in no known template
    (the trainer applied none) is the problem itself, less any special tokens.

    >>> user_turn("<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nWhat is 3 + 4?"
    ...           "<|im_end|>\\n<|im_start|>assistant\\n")
    'What is 3 + 4?'
    >>> user_turn("What is 3 + 4?")
    'What is 3 + 4?'
    """
    for pattern in USER_TURNS:
        turns = pattern.findall(prompt)
        if turns:
            return turns[-1].strip()
    return strip_special_tokens(prompt).strip()


def split_query(query: str, prompt: str) -> tuple[str, str]:
    """(problem, response) from a query that starts with its prompt: the response is the
    rest of the query less special tokens (the EOS, padding), stripped; the problem is the
    prompt's user turn.

    A tokenizer whose decode does not give back the prompt's exact text (one that cleans up
    spaces, say) leaves a query that does not start with it; then the response starts after
    the prompt's assistant header, found after the user turn in the query. A ValueError
    when neither works.

    >>> split_query("<|im_start|>user\\nWhat is 3 + 4?<|im_end|>\\n<|im_start|>assistant\\n"
    ...             "3 + 4 = 7.<|im_end|>",
    ...             "<|im_start|>user\\nWhat is 3 + 4?<|im_end|>\\n<|im_start|>assistant\\n")
    ('What is 3 + 4?', '3 + 4 = 7.')
    >>> split_query("<|im_start|>user\\nWhat is 3+4 ?<|im_end|>\\n<|im_start|>assistant\\n7.<|im_end|>",
    ...             "<|im_start|>user\\nWhat is 3+4 ?<|im_end|>\\n<|im_start|>assistant\\n ")
    ('What is 3+4 ?', '7.')
    """
    problem = user_turn(prompt)
    if query.startswith(prompt):
        return problem, strip_special_tokens(query[len(prompt) :]).strip()
    for header in ASSISTANT_HEADERS:
        if header not in prompt:
            continue
        turn = query.find(problem)
        at = query.find(header, turn + len(problem)) if turn >= 0 else -1
        if at >= 0:
            return problem, strip_special_tokens(query[at + len(header) :]).strip()
    raise ValueError("does not start with its prompt")
