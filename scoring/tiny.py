"""Tiny random-weight PRMs and tokenizers in the real formats, for tests and benchmarks.

Each builder writes a directory that loads through the same ``from_pretrained`` path users
take with real checkpoints: real special tokens (``<extra_0>``, ``<|im_start|>``, `` ки``,
``+``/``-``), real chat templates, real weight names. Needs torch, transformers, tokenizers.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scoring.types import Trace

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Llama 3.1's template reduced to what these PRMs exercise: BOS, the default system header
# with its dates, and one header + <|eot_id|> per turn.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{{ '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{ 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n<|eot_id|>' }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
LLAMA3_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
MISTRAL_SPECIAL = ["<unk>", "<s>", "</s>"]

# Qwen2's pre-tokenizer pattern (tokenizer.json of Qwen2/Qwen2.5)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_CORPUS = (
    "Janet has 3 apples and buys 4 more, so she has 3 + 4 = 7 apples.",
    "Each box holds 12 eggs, and 5 boxes hold 5 * 12 = 60 eggs.",
    "The answer is 42. Step 1: add the numbers. Step 2: divide by 2.",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "How many pens are left? 20 - 13 = 7 pens remain. The total is \\boxed{7}.",
    "She earns $15 per hour for 8 hours: 15 * 8 = 120 dollars.",
)


def train_tokenizer(
    special_tokens: Sequence[str],
    corpus: Sequence[str] = DEFAULT_CORPUS,
    style: str = "bytelevel",
    vocab_size: int = 400,
    bos_token: str | None = None,
    eos_token: str | None = None,
    pad_token: str | None = None,
    unk_token: str | None = None,
    add_bos: bool = False,
    chat_template: str | None = None,
) -> Any:
    """A BPE tokenizer trained on ``corpus``: byte-level (Llama 3 and, with GPT-2's split,
    Qwen), byte-level with Qwen2's own split (``qwen2``) or metaspace (SentencePiece-like,
    Mistral/Llama 2: ``"ки"`` encodes as ``"▁ки"``)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "qwen2":
        # Qwen2's own split: newlines join the punctuation before them (".\n") and runs of
        # newlines stay one piece ("\n\n"), so tokens can span a line break.
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "metaspace":
        tok = Tokenizer(models.BPE(unk_token=unk_token))
        # SentencePiece keeps "\n" as its own piece and prefixes "▁" only at the start.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split("\n", "isolated"),
                pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
            ]
        )
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        printable = {c for c in string.printable if not c.isspace()}
        alphabet = sorted((set("".join(corpus)) | printable | {"▁"}) - {" "})
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), initial_alphabet=alphabet
    )
    tok.train_from_iterator(list(corpus), trainer)
    if add_bos and bos_token:
        bos_id = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A $B",
            special_tokens=[(bos_token, bos_id)],
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


# Traces that catch a procedure reproduced only approximately: multi-line steps, a blank
# line inside a step, leading and trailing whitespace, empty and whitespace-only steps, a
# step that starts with a newline, a multi-line problem.
HARD_TRACES = (
    Trace(
        problem="Janet has 3 apples and buys 4 more.\nHow many apples?",
        steps=(
            "  She starts with 3 apples.",
            "She buys 4 more:\n3 + 4 = 7.\n",
            "",
            "The answer is \\boxed{7}.  ",
        ),
        id="hard-0",
    ),
    Trace(
        problem="What is 5 * 12?",
        steps=("5 * 12\n= 60 eggs.", "\n\\boxed{60}"),
        id="hard-1",
    ),
    Trace(
        problem="Each box holds 12 eggs. How many eggs do 5 boxes hold?",
        steps=(
            "Each box holds 12 eggs.\n\n5 boxes hold 5 * 12 = 60 eggs.",
            "   ",
            " The total is \\boxed{60}.",
        ),
        id="hard-2",
    ),
)


def _small_config(kind: str, vocab_size: int, hidden: int, layers: int, **extra: Any) -> Any:
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig, "mistral": MistralConfig}[kind]
    return cls(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        **extra,
    )


def qwen_tokenizer(
    corpus: Sequence[str] = DEFAULT_CORPUS,
    vocab_size: int = 400,
    bos_token: str | None = None,
    style: str = "bytelevel",
) -> Any:
    """Qwen2's layout: no BOS added by ``encode``; ``bos_token`` names one in the config
    only (Skywork's ``prepare_input`` prepends ``tokenizer.bos_token`` as text)."""
    return train_tokenizer(
        QWEN_SPECIAL,
        corpus,
        style=style,
        vocab_size=vocab_size,
        bos_token=bos_token,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE,
    )


# Multi-line text, so that the tokenizer learns tokens spanning a newline (".\n", "\n\n")
# as Qwen's has: encoding a multi-line step whole then differs from encoding it line by line.
MULTILINE_CORPUS = DEFAULT_CORPUS + tuple(
    f"Step {i}: {a} + {b} = {a + b}.\n\nSo we have {a + b}.\n{a} * {b} = {a * b}.\n\n"
    for i, (a, b) in enumerate([(3, 4), (5, 12), (20, 13), (15, 8), (7, 6), (60, 13)])
)


def skywork_tokenizer(corpus: Sequence[str] = MULTILINE_CORPUS, vocab_size: int = 400) -> Any:
    """A Qwen2 tokenizer (Qwen2's split) with ``bos_token`` set to ``<|endoftext|>``, which
    Skywork's ``prepare_input`` needs (it concatenates ``tokenizer.bos_token``)."""
    return qwen_tokenizer(corpus, vocab_size, bos_token="<|endoftext|>", style="qwen2")


def build_qwen_prm(
    directory: str | Path,
    hidden: int = 32,
    layers: int = 2,
    corpus: Sequence[str] = DEFAULT_CORPUS,
    vocab_size: int = 400,
    seed: int = 0,
    remote_code: bool = True,
) -> Path:
    """A Qwen2.5-Math-PRM-shaped checkpoint: ``model.*``, ``score.0.*``, ``score.2.*``,
    ``<extra_0>`` in the tokenizer, and (``remote_code``) a ``modeling_qwen2_rm.py`` +
    ``auto_map`` like the hub repository, for ``trust_remote_code`` loading."""
    import torch

    from scoring.adapters.qwen_prm import Qwen2ForProcessRewardModel

    directory = Path(directory)
    tokenizer = qwen_tokenizer(corpus, vocab_size)
    torch.manual_seed(seed)
    config = _small_config("qwen2", len(tokenizer), hidden, layers)
    model = Qwen2ForProcessRewardModel(config)
    _randomise(model, seed)
    if remote_code:
        model.config.auto_map = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if remote_code:
        (directory / "modeling_qwen2_rm.py").write_text(QWEN_REMOTE_CODE)
    return directory


# The hub repository's remote code, reduced to the parts that matter for inference.
QWEN_REMOTE_CODE = """
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import ModelOutput


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden_size, self.num_labels),
        )
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        logits = self.score(outputs[0])
        return ModelOutput(logits=logits)
"""


def _randomise(model: Any, seed: int, std: float = 1.0) -> None:
    """Large random weights: tiny default-initialised models give near-constant outputs,
    which would let a wrong read-out position pass an equality test."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                continue
            param.copy_(
                torch.randn(param.shape, generator=generator) * std / max(1, param.shape[-1]) ** 0.5
            )


def build_causal_lm(
    directory: str | Path,
    tokenizer: Any,
    kind: str = "qwen2",
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """A random causal LM of architecture ``kind`` (qwen2, llama, mistral) with ``tokenizer``."""
    import torch
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    torch.manual_seed(seed)
    config = _small_config(kind, len(tokenizer), hidden, layers)
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_config(config)
    _randomise(model, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def llama3_tokenizer(corpus: Sequence[str] = DEFAULT_CORPUS, vocab_size: int = 400) -> Any:
    """Byte-level BPE with Llama 3's special tokens; ``encode`` prepends ``<|begin_of_text|>``."""
    return train_tokenizer(
        LLAMA3_SPECIAL,
        corpus,
        vocab_size=vocab_size,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        add_bos=True,
        chat_template=LLAMA3_CHAT_TEMPLATE,
    )


SHEPHERD_CORPUS = (
    tuple(
        f"Step {i}: {a} + {b} = {a + b} ки\nStep {i + 1}: {a} * {b} = {a * b} ки +-"
        for i, (a, b) in enumerate([(3, 4), (5, 12), (20, 13), (15, 8), (7, 6)])
    )
    + DEFAULT_CORPUS
)


def mistral_tokenizer(corpus: Sequence[str] = SHEPHERD_CORPUS, vocab_size: int = 400) -> Any:
    """SentencePiece-like (metaspace) BPE with ``<s>`` BOS, like Mistral's; no pad token,
    as in math-shepherd-mistral-7b-prm (the adapter falls back to EOS for padding)."""
    return train_tokenizer(
        MISTRAL_SPECIAL,
        corpus,
        style="metaspace",
        vocab_size=vocab_size,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos=True,
    )


def build_token_classifier(
    directory: str | Path, tokenizer: Any, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A TRL-style PRM: ``AutoModelForTokenClassification`` (Qwen2 backbone), 2 labels."""
    import torch
    from transformers import AutoModelForTokenClassification

    directory = Path(directory)
    torch.manual_seed(seed)
    config = _small_config("qwen2", len(tokenizer), hidden, layers, num_labels=2)
    config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForTokenClassification.from_config(config)
    _randomise(model, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_value_head(
    directory: str | Path, tokenizer: Any, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A Skywork-PRM-shaped checkpoint: Qwen2 backbone ``model.*`` + ``v_head.summary.*``."""
    import torch

    from scoring.adapters.value_head import CausalLMWithValueHead

    directory = Path(directory)
    torch.manual_seed(seed)
    config = _small_config("qwen2", len(tokenizer), hidden, layers)
    model = CausalLMWithValueHead(config)
    _randomise(model, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
