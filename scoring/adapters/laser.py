"""``laser``: LaSeR last-token self-rewards, the policy as its own verifier.

``r_s = beta * (log pi(z_c | x, y, EOS) - c_ref)``: the policy's log-probability of a
pre-specified token z_c right after the solution's EOS, in one prefill of the policy
itself. Reference: ``RUCBM/LaSeR`` (arXiv 2510.14943), ``src/calculate_self_rewarding_scores.py``
(the branch ``self_rewarding_ref_constant < 0``, lines 140-198) as ``scripts/run_eval_math.sh``
(lines 68-83) calls it. We follow:

- the input (lines 152 and 58-66): the solution text, then ``tokenizer.eos_token``, then
  ``tokenizer.decode(z_c)``, as the assistant turn after the problem as user turn; the chat
  rendered with ``add_generation_prompt=False``, ``.strip()``ped, a trailing ``<|im_end|>``
  cut off and any empty ``<think>\\n\\n</think>\\n\\n`` block removed; tokenized with
  ``add_special_tokens=False``. The solution is the trace's steps joined by
  ``step_separator`` (``"\\n\\n"``, the inverse of the ``paragraphs`` splitter);
- the read-out (line 196): ``prompt_logprobs[-1][z_c]``, vLLM's log-probability of the last
  prompt token's id z_c given everything before it, i.e. ``log_softmax`` of the logits at
  the EOS just before z_c, at index z_c. That is also where training reads it
  (``verl/verl/workers/actor/dp_actor.py``, lines 117-131 put z_c right after the first EOS,
  lines 558-573 read its log-prob);
- the score (line 197): ``(logp - c_ref) * beta``;
- the defaults (``run_eval_math.sh`` lines 69-70 and 81-83; the training scripts
  ``verl/examples/grpo_trainer/run_qwen2_5_7b.sh`` lines 25-31 and ``run_octothinker_3b.sh``
  lines 26-32 agree): ``beta = 0.1`` (``--self_rewarding_ratio_coef``); z_c = 151652 for
  Qwen, 128002 for OctoThinker; c_ref = -23.0 for Qwen, -25.0 for OctoThinker. We name
  the family by the config's ``model_type`` (qwen2 and qwen3 share Qwen's vocabulary;
  OctoThinker is a Llama 3.2 model, so ``llama`` takes its defaults) and z_c by its token
  text, ``<|vision_start|>`` and ``<|reserved_special_token_0|>`` (ids 151652 and 128002
  in those tokenizers): a tokenizer without that token is an error, not a silent read of
  an unrelated id. Any other family needs ``z_c`` (an id or a token text) and ``c_ref``
  (estimate it with ``python -m scoring laser-cref``).

Where we differ, and why:

- the reference reads at the last token of its text, which is z_c only when the template
  adds nothing after the assistant content but ``<|im_end|>`` (Qwen's). With a template
  that ends the turn otherwise (Llama 3's ``<|eot_id|>``) its ``prompt_logprobs[-1][z_c]``
  would be read from the row that predicts that end-of-turn token, i.e. log pi(z_c | x, y,
  EOS, z_c); we cut the text right after z_c, so the read-out is always
  log pi(z_c | x, y, EOS) as the formula and the training code define it.
  With Qwen's template the two are the same token sequence and the same number;
- the reference scores only solutions with an extracted answer (lines 146-153) and gives
  the others 0.0; a scorer grades nothing, so it scores every trace (a caller reproducing
  the reference's "all" figures sets r_s = 0 for solutions with no answer);
- its ``Qwen3-4B`` line (143-144) appends an instruction to the problem when the model's
  path contains that name; the trace's problem is taken as it is.

Per-step interface: a LaSeR score is one per solution, so every step of a trace gets the
same r_s (``scores``) and the same log pi(z_c) (``raw``, what ``laser-cref`` summarises).
Then ``min``, ``last`` and ``mean`` aggregates are r_s itself (``product`` is not: do not
use it here), and ProcessBench's first error at ``tau`` is step 0 when r_s < tau, else none:
an outcome verifier locates no step, so only its solution-level verdict is meaningful.

The verdict (lines 331-338): a solution is judged correct when ``r_s > 0.5``, on r_s itself,
not on a sigmoid of it: training regresses r_s onto the 0/1 correctness reward with an MSE
loss (``dp_actor.py`` line 579), so 0.5 is the midpoint of its targets. r_s is not a
probability and can fall outside [0, 1]. ``evaluate --threshold 0.5`` on these scores gives
the same verdicts except at r_s exactly 0.5 (the reference says incorrect, a score below
tau is needed there to flag an error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scoring.adapters.base import Encoded, ModelAdapter, load_tokenizer, resolve_device_dtype
from scoring.types import Trace

DEFAULT_BETA = 0.1
THRESHOLD = 0.5
STEP_SEPARATOR = "\n\n"
# calculate_self_rewarding_scores.py lines 61-64: template fixes for Qwen's chat template
QWEN_END_OF_TURN = "<|im_end|>"
EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class FamilyDefaults:
    """The reference's z_c (as the token text its id has in that family's tokenizer) and c_ref."""

    token: str
    token_id: int
    c_ref: float


QWEN = FamilyDefaults("<|vision_start|>", 151652, -23.0)
OCTOTHINKER = FamilyDefaults("<|reserved_special_token_0|>", 128002, -25.0)
FAMILY_DEFAULTS: dict[str, FamilyDefaults] = {"qwen2": QWEN, "qwen3": QWEN, "llama": OCTOTHINKER}


def self_reward(logp: float, c_ref: float, beta: float = DEFAULT_BETA) -> float:
    """``r_s = beta * (logp - c_ref)`` (the reference's line 197).

    >>> round(self_reward(-13.0, c_ref=-23.0), 6)
    1.0
    """
    return (logp - c_ref) * beta


def verdict(r_s: float) -> bool:
    """The self-verification verdict: correct when ``r_s > 0.5`` (lines 331-338).

    >>> verdict(0.51), verdict(0.5)
    (True, False)
    """
    return r_s > THRESHOLD


def self_verification_f1(
    r_s: Sequence[float], correct: Sequence[bool]
) -> tuple[float, float, float]:
    """(accuracy on correct solutions, accuracy on incorrect ones, their harmonic mean), as
    lines 329-336 and 354-357: 0.0 for an empty class and for F1 when both are 0.

    >>> self_verification_f1([0.9, 0.2, 0.7, 0.1], [True, True, False, False])
    (0.5, 0.5, 0.5)
    """
    right = [verdict(s) for s, c in zip(r_s, correct, strict=True) if c]
    wrong = [not verdict(s) for s, c in zip(r_s, correct, strict=True) if not c]
    true_acc = sum(right) / len(right) if right else 0.0
    false_acc = sum(wrong) / len(wrong) if wrong else 0.0
    total = true_acc + false_acc
    return true_acc, false_acc, 2 * true_acc * false_acc / total if total > 0 else 0.0


def resolve_defaults(
    model_type: str, tokenizer: Any, z_c: int | str | None, c_ref: float | None
) -> tuple[int, float | None]:
    """(z_c's id, c_ref): the ones given, else the family's; a ValueError that says what to
    give when z_c has neither. c_ref is None when neither exists (the caller decides:
    scoring refuses, ``laser-cref`` needs none)."""
    family = FAMILY_DEFAULTS.get(model_type)
    if z_c is None:
        if family is None:
            raise ValueError(
                f"laser: no default z_c for model type {model_type!r} (defaults exist for "
                f"{sorted(FAMILY_DEFAULTS)}); give z_c=TOKEN_ID or z_c=TOKEN"
            )
        z_c = family.token
        if tokenizer.convert_tokens_to_ids(z_c) in (None, tokenizer.unk_token_id):
            raise ValueError(
                f"laser: model type {model_type!r} takes z_c {family.token} (id "
                f"{family.token_id} in its reference tokenizer), but this tokenizer has no such "
                "token; give z_c=TOKEN_ID or z_c=TOKEN"
            )
    if isinstance(z_c, str):
        token_id = tokenizer.convert_tokens_to_ids(z_c)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"laser: z_c {z_c!r} is not a token of this tokenizer")
    else:
        token_id = int(z_c)
        if not 0 <= token_id < len(tokenizer):
            raise ValueError(
                f"laser: z_c id {token_id} is outside the vocabulary (0..{len(tokenizer) - 1})"
            )
    if c_ref is None and family is not None:
        c_ref = family.c_ref
    return token_id, c_ref


class LaSeR(ModelAdapter):
    name = "laser"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        z_c: int,
        c_ref: float,
        model_name: str = "",
        beta: float = DEFAULT_BETA,
        step_separator: str = STEP_SEPARATOR,
    ) -> None:
        super().__init__(model, tokenizer, model_name)
        if tokenizer.eos_token is None:
            raise ValueError("laser: the tokenizer has no eos_token to append z_c after")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "laser: the tokenizer has no chat template (the reference renders the chat)"
            )
        self.z_c = z_c
        self.c_ref = c_ref
        self.beta = beta
        self.step_separator = step_separator
        # the reference appends decode(z_c) as text and tokenizes it back (line 135)
        self.z_c_text = tokenizer.decode([z_c])

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | None = None,
        dtype: Any = None,
        z_c: int | str | None = None,
        c_ref: float | None = None,
        beta: float = DEFAULT_BETA,
        step_separator: str = STEP_SEPARATOR,
    ) -> LaSeR:
        """``path``: the policy that generated the solutions. ``z_c`` (an id or a token
        text) and ``c_ref`` default per model family (see the module docstring)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        tokenizer = load_tokenizer(path)
        model_type = AutoConfig.from_pretrained(path).model_type
        token_id, c_ref = resolve_defaults(model_type, tokenizer, z_c, c_ref)
        if c_ref is None:
            raise ValueError(
                f"laser: no default c_ref for model type {model_type!r}; give c_ref=X "
                "(estimate it with `python -m scoring laser-cref`)"
            )
        device, dtype = resolve_device_dtype(device, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return cls(model, tokenizer, token_id, c_ref, path, beta, step_separator)

    def render(self, trace: Trace) -> str:
        """The reference's text (lines 58-64, 152), cut right after z_c."""
        solution = self.step_separator.join(trace.steps) + self.tokenizer.eos_token + self.z_c_text
        messages = [
            {"role": "user", "content": trace.problem},
            {"role": "assistant", "content": solution},
        ]
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=False, tokenize=False
        ).strip()
        text = text.removesuffix(QWEN_END_OF_TURN).replace(EMPTY_THINK, "")
        tail = self.tokenizer.eos_token + self.z_c_text
        end = text.rfind(tail)
        if end < 0:
            raise ValueError(
                f"laser: the chat template dropped the EOS + z_c after trace {trace.id!r}"
            )
        return text[: end + len(tail)]

    def encode(self, trace: Trace) -> Encoded:
        ids = self.tokenizer(self.render(trace), add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token)
        if len(ids) < 2 or ids[-1] != self.z_c or ids[-2] != eos:
            raise ValueError(
                f"laser: trace {trace.id!r} does not tokenize to ... EOS, z_c (z_c {self.z_c_text!r} "
                "is not one token after the EOS)"
            )
        # one read-out per step, all at the EOS: the score is one per solution
        return Encoded(tuple(ids), (len(ids) - 2,) * len(trace.steps))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # encode ends every row with EOS, z_c: the read-out is each row's last real token but
        # one. Logits only there (logits_to_keep), not (B, T, V) for a 150k vocabulary.
        at = (attention_mask.sum(1) - 2)[:, None]  # (B, 1)
        logits = self.model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=at
        ).logits.float()  # (B, 1, V)
        return logits.log_softmax(-1)[:, :, self.z_c]  # (B, 1): log pi(z_c | x, y, EOS)

    def read(self, output: torch.Tensor, encoded: Encoded) -> tuple[list[float], list[float]]:
        logp = float(output[0])
        n = len(encoded.positions)
        return [self_reward(logp, self.c_ref, self.beta)] * n, [logp] * n
