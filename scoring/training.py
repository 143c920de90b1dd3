"""Fine-tuning a PRM on labelled traces (``../shared/docs/prm-formats.md`` section 6).

Token classification with a label only at each step's read-out position (everything else
-100) and cross-entropy over two classes, 1 = correct:

- ``qwen-prm``: a Qwen2.5-Math-PRM checkpoint (or any Qwen2 backbone, which gets a fresh
  2-layer head) continued at its ``<extra_0>`` positions;
- ``token-classification``: any causal LM with a 2-label token-classification head, TRL
  ``PRMTrainer`` style (label on each step's separator, ``tokenize_row``);
- ``math-shepherd``: a causal LM trained on the ``+``/``-`` logits at each `` ки``, the
  two logits the Math-Shepherd card reads (so the LM head's other rows are untouched by
  the loss).

Every trace is tokenised by the scoring adapter's own ``encode`` (:func:`encode_example`),
so the positions trained are the positions scored: training and scoring cannot drift.
The result is saved in the adapter's native layout (LoRA merged first), so
``python -m scoring score --adapter KIND --model DIR`` loads it.

``import scoring.training`` does not import torch; :func:`train` does.

>>> step_targets(Trace("p", ("a", "b", "c"), first_error_step=1))
[1, 0, None]
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.labels import ratings_from_first_error
from scoring.types import Trace

KINDS = ("qwen-prm", "token-classification", "math-shepherd")
IGNORE = -100  # torch's CrossEntropyLoss ignore_index
# The linear layers of Qwen2 / Llama / Mistral decoder blocks: "all linear layers" of the
# backbone, named explicitly so a classification head is never also a LoRA target.
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    """One training run. ``lora_r`` 0 = full fine-tune. ``lr`` None = the doc's defaults
    (LoRA 1e-4, full 2e-6). ``eval_every``/``save_every`` 0 = once per epoch.
    ``bf16`` and ``gradient_checkpointing`` None = on exactly when the device is CUDA."""

    kind: str
    base: str
    output_dir: str
    lora_r: int = 0
    lora_alpha: int | None = None  # default 2 * r
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    epochs: float = 1.0
    lr: float | None = None
    batch_tokens: int = 8192
    grad_accum: int = 1
    max_steps: int = -1
    warmup_steps: int = 0
    eval_every: int = 0
    save_every: int = 0
    save_total_limit: int = 2
    logging_steps: int = 1
    seed: int = 0
    truncate_after_first_error: bool = True
    step_separator: str = "\n"  # token-classification only
    device: str | None = None
    bf16: bool | None = None
    gradient_checkpointing: bool | None = None
    threshold: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)  # more TrainingArguments

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {list(KINDS)}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.lora_r else 2e-6


@dataclass(frozen=True)
class Example:
    """One trace as training input: ``labels[t]`` is 1/0 at a judged step's read-out
    position, -100 elsewhere."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    global_step: int
    train_loss: float
    seconds: float
    train_tokens: int
    metrics: dict[str, float]
    model: Any = None  # the trained model in memory (LoRA merged), None when stopped


# ---------------------------------------------------------------- data


def step_targets(trace: Trace) -> list[int | None]:
    """Per-step class (1 correct, 0 wrong) or None (not judged: after the first error).

    From ``first_error_step`` where known, else from ``step_labels``.

    >>> step_targets(Trace("p", ("a", "b"), first_error_step=-1))
    [1, 1]
    >>> step_targets(Trace("p", ("a", "b"), step_labels=(True, None)))
    [1, None]
    """
    n = len(trace.steps)
    if trace.first_error_step is not None:
        return ratings_from_first_error(trace.first_error_step, n, correct=1, wrong=0)
    if trace.step_labels is not None:
        return [None if label is None else int(label) for label in trace.step_labels]
    return [None] * n


def is_labelled(trace: Trace) -> bool:
    return bool(trace.steps) and any(t is not None for t in step_targets(trace))


def encode_example(adapter: Any, trace: Trace, truncate_after_first_error: bool = True) -> Example:
    """``adapter.encode(trace)`` with each judged step's class at its read-out position.

    With ``truncate_after_first_error`` the trace is cut after its first wrong step first
    (steps after it carry no judgement, and TRL's ``train_on_last_step_only``-free default
    keeps them unlabelled anyway; cutting saves their tokens).

    >>> # adapter.encode -> ids (5, 6, 7, 8), positions (1, 3); targets [1, 0]
    >>> # -> labels (-100, 1, -100, 0)
    """
    targets = step_targets(trace)
    if truncate_after_first_error and 0 in targets:
        keep = targets.index(0) + 1
        trace = trace.prefix(keep)
        targets = targets[:keep]
    encoded = adapter.encode(trace)
    labels = [IGNORE] * len(encoded.input_ids)
    for position, target in zip(encoded.positions, targets, strict=True):
        if target is not None:
            labels[position] = target
    return Example(tuple(encoded.input_ids), tuple(labels))


def tokenizer_adapter(
    kind: str, tokenizer: Any, model: Any = None, step_separator: str = "\n"
) -> Any:
    """The scoring adapter of ``kind`` around ``tokenizer`` (and ``model``, None while only
    encoding): its ``encode`` is the one tokenisation both training and scoring use."""
    from scoring.adapters import get_adapter

    cls = get_adapter(kind)
    if kind == "token-classification":
        return cls(model, tokenizer, step_separator=step_separator)
    return cls(model, tokenizer)


def plan_training_batches(
    examples: Sequence[Example], batch_tokens: int, seed: int = 0
) -> list[list[int]]:
    """Length-bucketed batches of example indices under ``batch_tokens`` padded tokens
    (:func:`scoring.batching.plan_batches`), in a seeded random order so that an epoch does
    not run longest first; the Trainer shuffles them again each epoch."""
    from scoring.batching import plan_batches

    batches = plan_batches([len(e.input_ids) for e in examples], batch_tokens)
    random.Random(seed).shuffle(batches)
    return batches


class BatchCollator:
    """Trainer items are whole pre-planned batches: ``[[Example, ...]]`` -> padded tensors
    ``input_ids``/``attention_mask``/``labels`` (B, T), right-padded (labels with -100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[list[Example]]) -> dict[str, Any]:
        import torch

        (batch,) = items  # per_device_train_batch_size is 1 batch
        width = max(len(e.input_ids) for e in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for row, example in enumerate(batch):
            n = len(example.input_ids)
            input_ids[row, :n] = torch.tensor(example.input_ids)
            attention_mask[row, :n] = 1
            labels[row, :n] = torch.tensor(example.labels)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ---------------------------------------------------------------- model


def load_model(kind: str, base: str, dtype: Any = None) -> Any:
    """The trainable model of ``kind`` from ``base`` in the class its adapter loads."""
    if kind == "qwen-prm":
        from scoring.adapters.qwen_prm import Qwen2ForProcessRewardModel

        return Qwen2ForProcessRewardModel.from_pretrained(base, dtype=dtype)
    if kind == "token-classification":
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(base, num_labels=2, dtype=dtype)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def head_modules(kind: str, model: Any) -> list[str]:
    """The classification head, trained fully under LoRA (``modules_to_save``); the
    Math-Shepherd read-out is the LM head, left as it is."""
    if kind == "math-shepherd":
        return []
    return [name for name in ("score", "classifier") if hasattr(model, name)]


def wrap_lora(config: TrainConfig, model: Any, checkpointing: bool = False) -> Any:
    """``model`` with LoRA adapters of rank ``config.lora_r`` on ``config.lora_targets``
    and its classification head trained in full (``modules_to_save``)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha or 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        modules_to_save=head_modules(config.kind, model) or None,
    )
    if checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input
    return get_peft_model(model, lora)


def pair_logits(
    kind: str, model: Any, input_ids: Any, attention_mask: Any, pair: tuple[int, int] | None = None
) -> Any:
    """(B, T) ids -> (B, T, 2) logits, index 1 = correct: the logits whose softmax the
    ``kind`` adapter reads (``math-shepherd``: the LM's ``[-, +]`` logits)."""
    output = model(input_ids=input_ids, attention_mask=attention_mask)
    logits = output[0] if isinstance(output, tuple) else output.logits
    if kind == "math-shepherd":
        good, bad = pair
        return logits[..., [bad, good]]  # (B, T, 2)
    return logits  # (B, T, 2)


def token_loss(logits: Any, labels: Any) -> Any:
    """Mean cross-entropy over the labelled positions: (B, T, 2), (B, T) -> scalar."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


# ---------------------------------------------------------------- evaluation


def evaluate_adapter(
    adapter: Any, traces: Sequence[Trace], batch_tokens: int = 8192, threshold: float = 0.5
) -> dict[str, float]:
    """The ProcessBench metric per split and averaged (``scoring.metrics``) at
    ``threshold``, plus step AUROC, for ``adapter`` over labelled ``traces``, scored by
    the same engine as ``python -m scoring score``."""
    from collections import defaultdict

    from scoring.engine import score_traces
    from scoring.metrics import processbench_table, step_auroc

    labelled = [t for t in traces if t.first_error_step is not None and t.steps]
    scores: dict[str, list[list[float]]] = defaultdict(list)
    labels: dict[str, list[int]] = defaultdict(list)
    all_scores: list[list[float]] = []
    all_steps: list[list[bool | None]] = []
    for trace, result in zip(labelled, score_traces(adapter, labelled, batch_tokens), strict=True):
        split = trace.split or "eval"
        scores[split].append(list(result.scores))
        labels[split].append(trace.first_error_step)
        all_scores.append(list(result.scores))
        all_steps.append(
            ratings_from_first_error(
                trace.first_error_step, len(trace.steps), correct=True, wrong=False
            )
        )
    table = processbench_table(scores, labels, threshold)
    metrics = {f"f1_{split}": row.f1 for split, row in table.items() if split != "average"}
    average = table.get("average")
    metrics["f1"] = average.f1 if average else math.nan
    metrics["acc_err"] = average.acc_err if average else math.nan
    metrics["acc_cor"] = average.acc_cor if average else math.nan
    metrics["step_auroc"] = step_auroc(all_scores, all_steps)
    return metrics


# ---------------------------------------------------------------- training


Callback = Callable[[int, dict[str, float]], None]  # (global step, logged values)


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` under ``output_dir/checkpoints``, or None.

    ``Trainer`` writes ``trainer_state.json`` last, and deletes older checkpoints only
    after it: a worker killed while saving leaves a newest folder without a readable
    state, which is skipped for the one before it (``get_last_checkpoint`` would pick it).
    """
    import json

    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in folder.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit()
    ]
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return str(path)
    return None


def train(
    config: TrainConfig,
    train_traces: Sequence[Trace],
    eval_traces: Sequence[Trace] = (),
    on_log: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    resume: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Fine-tune ``config.base`` on ``train_traces``; evaluate on ``eval_traces`` every
    epoch (or ``eval_every`` steps); checkpoint under ``output_dir/checkpoints`` and, with
    ``resume``, continue from the newest one (optimizer, scheduler, RNG and data order, as
    ``Trainer`` restores them); save the model in the adapter's layout in ``output_dir``.

    ``on_log(step, values)`` sees every logged loss and evaluation as it happens;
    ``should_stop()`` is asked after every step (a cancelled job): training then stops
    without saving a final model. ``on_step(step, max_steps)`` reports progress after
    every step; an exception it raises (a job cancelled or taken over) ends training there.
    """
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from scoring.adapters.base import load_tokenizer
    from scoring.device import choose_device

    set_seed(config.seed)
    device = choose_device(config.device)
    cuda = device.startswith("cuda")
    bf16 = cuda if config.bf16 is None else config.bf16
    checkpointing = cuda if config.gradient_checkpointing is None else config.gradient_checkpointing
    tokenizer = load_tokenizer(config.base)
    encoder = tokenizer_adapter(config.kind, tokenizer, step_separator=config.step_separator)
    examples = [
        encode_example(encoder, t, config.truncate_after_first_error)
        for t in train_traces
        if is_labelled(t)
    ]
    if not examples:
        raise ValueError("no labelled training traces")
    batches = [
        [examples[i] for i in batch]
        for batch in plan_training_batches(examples, config.batch_tokens, config.seed)
    ]
    train_tokens = sum(len(e.input_ids) for e in examples)

    # bf16 weights on CUDA (LoRA adapters stay fp32: peft upcasts them), fp32 on CPU.
    model = load_model(config.kind, config.base, torch.bfloat16 if bf16 else torch.float32)
    if tokenizer.pad_token_id is None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.eos_token_id
    pair = (encoder.good_id, encoder.bad_id) if config.kind == "math-shepherd" else None
    if config.lora_r:
        model = wrap_lora(config, model, checkpointing)
    scorer = tokenizer_adapter(config.kind, tokenizer, model, config.step_separator)
    scorer.model_name = config.output_dir

    has_eval = any(t.first_error_step is not None for t in eval_traces)
    per_epoch = max(1, math.ceil(len(batches) / config.grad_accum))

    def strategy(every: int) -> dict[str, Any]:
        return (
            {"strategy": "steps", "steps": every}
            if every
            else {"strategy": "epoch", "steps": per_epoch}
        )

    evaluation = strategy(config.eval_every) if has_eval else {"strategy": "no", "steps": None}
    saving = strategy(config.save_every)
    args = TrainingArguments(
        output_dir=str(Path(config.output_dir) / CHECKPOINTS),
        per_device_train_batch_size=1,  # one pre-planned token-budget batch per item
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="linear",
        bf16=bf16,
        gradient_checkpointing=checkpointing,
        logging_steps=config.logging_steps,
        eval_strategy=evaluation["strategy"],
        eval_steps=evaluation["steps"],
        save_strategy=saving["strategy"],
        save_steps=saving["steps"],
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        use_cpu=not cuda,
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=not progress,
        dataloader_pin_memory=cuda,
        **config.extra,
    )

    evaluated: dict[str, Any] = {}  # the last evaluation: its step and metrics

    class PRMTrainer(Trainer):
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs.pop("labels")
            logits = pair_logits(
                config.kind, model, inputs["input_ids"], inputs["attention_mask"], pair
            )
            loss = token_loss(logits, labels)
            return (loss, logits) if return_outputs else loss

        def evaluate(
            self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
        ) -> dict[str, float]:
            self.model.eval()
            metrics = {
                f"{metric_key_prefix}_{key}": value
                for key, value in evaluate_adapter(
                    scorer, eval_traces, config.batch_tokens, config.threshold
                ).items()
            }
            self.model.train()
            evaluated.update(step=self.state.global_step, metrics=metrics)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(
                self.args, self.state, self.control, metrics
            )
            return metrics

    class Hooks(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
        ) -> None:
            if on_log and logs:
                on_log(
                    state.global_step,
                    {k: float(v) for k, v in logs.items() if isinstance(v, int | float)},
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if on_step:
                on_step(state.global_step, state.max_steps)
            if should_stop and should_stop():
                control.should_training_stop = True
                control.should_save = False

    trainer = PRMTrainer(
        model=model,
        args=args,
        train_dataset=batches,
        eval_dataset=list(eval_traces) if has_eval else None,
        data_collator=BatchCollator(scorer.pad_id),
        callbacks=[Hooks()],
    )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # it prints every log line
    # The loss above is a mean per batch: let the Trainer divide by the accumulation steps.
    trainer.model_accepts_loss_kwargs = False
    started = time.perf_counter()
    checkpoint = last_checkpoint(config.output_dir) if resume else None
    output = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started
    if should_stop and should_stop():
        return TrainResult(
            config.output_dir,
            trainer.state.global_step,
            output.training_loss,
            seconds,
            train_tokens,
            {},
        )
    metrics: dict[str, float] = {}
    if has_eval:
        # The schedule usually evaluated the last step already: do not log it twice.
        if evaluated.get("step") != trainer.state.global_step:
            trainer.evaluate()
        metrics = evaluated["metrics"]
    model = save_model(trainer.model, tokenizer, config.output_dir)
    return TrainResult(
        config.output_dir,
        trainer.state.global_step,
        output.training_loss,
        seconds,
        train_tokens,
        metrics,
        model,
    )


def save_model(model: Any, tokenizer: Any, output_dir: str | Path) -> Any:
    """The model in its adapter's native layout: LoRA merged into the base weights (the
    head's trained copy included), then ``save_pretrained`` with the tokenizer. Returns
    the saved (merged) model."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return model.eval()
