"""Training throughput: ``scoring.training.train`` (Trainer, callbacks, checkpointing)
against a bare loop of forward / backward / optimizer step on the same batches and the
same model, measured in one run. Prints tokens/s of both and their ratio (aim >= 0.85x).

    .venv/bin/python bench/training.py [--traces 1024] [--hidden 128] [--layers 4]
        [--batch-tokens 2048] [--device cpu|cuda] [--lora-r 0] [--repeats 2]

Tokens are the real (unpadded) tokens of every batch in one epoch; both sides see the
same batches (``plan_training_batches``), the same loss and AdamW at the same lr.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring import training  # noqa: E402
from scoring.types import Trace  # noqa: E402


def traces(n: int, seed: int) -> list[Trace]:
    """Longer GSM8K-like traces: 3-8 steps of a sentence and an equation each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps = []
        n_steps = rng.randint(3, 8)
        first_error = rng.choice([-1, *range(n_steps)])
        for j in range(n_steps):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            c = a * b + (0 if first_error == -1 or j < first_error else rng.randint(1, 9))
            steps.append(f"Each box holds {a} eggs, so {b} boxes hold {a} * {b} = {c} eggs.")
        out.append(
            Trace("How many eggs are there?", tuple(steps), id=str(i), first_error_step=first_error)
        )
    return out


def bare_loop(config: training.TrainConfig, data: list[Trace]) -> tuple[float, int]:
    """Forward/backward/step over the same batches: (seconds, tokens)."""
    import torch

    from scoring.adapters.base import load_tokenizer

    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.base)
    encoder = training.tokenizer_adapter(config.kind, tokenizer)
    examples = [training.encode_example(encoder, t) for t in data if training.is_labelled(t)]
    plan = training.plan_training_batches(examples, config.batch_tokens, config.seed)
    collate = training.BatchCollator(encoder.pad_id)
    batches = [collate([[examples[i] for i in batch]]) for batch in plan]
    device = config.device or "cpu"
    dtype = torch.bfloat16 if config.bf16 else torch.float32  # as train() loads it
    model = training.load_model(config.kind, config.base, dtype)
    if config.lora_r:
        model = training.wrap_lora(config, model)
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)

    def step(batch: dict) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = training.pair_logits(
            config.kind, model, batch["input_ids"], batch["attention_mask"]
        )
        training.token_loss(logits, batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:  # warm-up, not timed
        step(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lora-r", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved; best of each")
    args = parser.parse_args()

    import torch

    from scoring.tiny import build_token_classifier, qwen_tokenizer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = traces(args.traces, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        base = build_token_classifier(
            Path(tmp) / "base", qwen_tokenizer(), hidden=args.hidden, layers=args.layers
        )
        config = training.TrainConfig(
            kind="token-classification",
            base=str(base),
            output_dir=str(Path(tmp) / "out"),
            lora_r=args.lora_r,
            lr=1e-4,
            epochs=1,
            batch_tokens=args.batch_tokens,
            logging_steps=10,
            device=args.device,
            bf16=args.device.startswith("cuda"),
            gradient_checkpointing=False,  # the bare loop has none either
        )
        # Interleaved repeats, best of each: other processes on a shared machine slow
        # whichever side happens to run beside them.
        bare_seconds, pipeline_seconds, end_to_end = math.inf, math.inf, math.inf
        for repeat in range(args.repeats):
            seconds, tokens = bare_loop(config, data)
            bare_seconds = min(bare_seconds, seconds)
            config.output_dir = str(Path(tmp) / f"out-{repeat}")
            started = time.perf_counter()
            result = training.train(config, data)
            end_to_end = min(end_to_end, time.perf_counter() - started)
            pipeline_seconds = min(pipeline_seconds, result.seconds)

    bare_rate = tokens / bare_seconds
    rate = result.train_tokens / pipeline_seconds
    print(
        f"model: Qwen2 token classifier, hidden {args.hidden}, {args.layers} layers; "
        f"{args.traces} traces, {tokens:,} tokens, batches <= {args.batch_tokens} tokens, "
        f"device {args.device}, {'LoRA r=' + str(args.lora_r) if args.lora_r else 'full'}"
    )
    print(f"bare loop (forward/backward/step)  {bare_rate:>10,.0f} tokens/s  ({bare_seconds:.2f}s)")
    print(
        f"scoring.training.train              {rate:>10,.0f} tokens/s  ({pipeline_seconds:.2f}s, "
        f"{result.global_step} steps)"
    )
    print(f"ratio pipeline / bare                {rate / bare_rate:>10.2f}x")
    print(f"end to end (tokenise, load, train, save)  {end_to_end:.2f}s")


if __name__ == "__main__":
    main()
