"""Scoring traces: one forward pass per trace, batched, bucketed, OOM-tolerant.

``score_traces`` is the entry point the Django app and the CLI use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from scoring.batching import plan_batches, run_with_oom_fallback
from scoring.types import StepScores, Trace

DEFAULT_BATCH_TOKENS = 16384
Progress = Callable[[int, int], None]  # (done, total)
# How often a long call asks ``check`` whether to stop: a job's check reads its cancel
# flag (one query), too much to ask per trace of a fast adapter, while a chunk of a
# slow one would otherwise run minutes past a cancel.
CHECK_EVERY_SECONDS = 1.0


class _Checks:
    """Calls ``check`` (which stops the scoring by raising) when at least ``every``
    seconds have passed since it last did; the first call always checks."""

    def __init__(self, check: Callable[[], None] | None, every: float):
        self.check = check
        self.every = every
        self.last: float | None = None

    def __call__(self) -> None:
        if self.check is None:
            return
        now = time.monotonic()
        if self.last is None or now - self.last >= self.every:
            self.last = now
            self.check()


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu"
) -> tuple[Any, Any]:
    """Right-pad token lists: -> input_ids (B, T), attention_mask (B, T)."""
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids.to(device), attention_mask.to(device)


def score_traces(
    adapter: Any,
    traces: Sequence[Trace],
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: Progress | None = None,
    check: Callable[[], None] | None = None,
    check_every: float = CHECK_EVERY_SECONDS,
    max_padding: float | None = None,
    encodings: Sequence[Any] | None = None,
) -> Iterator[StepScores]:
    """Per-step scores for each trace, yielded in input order.

    Model adapters score each trace with one forward pass, traces batched by length under
    ``batch_tokens`` padded tokens (and, with ``max_padding``, at most that share of
    padding: :func:`scoring.batching.plan_batches`); on out-of-memory a batch is split in
    halves and retried.
    Model-free adapters (``score_trace`` only) run trace by trace. A trace with no steps
    gets empty scores without reaching the adapter.

    ``check`` (a job's cancel check) is called before each trace a model-free adapter
    scores, each trace a model adapter encodes and each batch it runs, at most once per
    ``check_every`` seconds; it stops the scoring by raising. So a cancel is noticed
    within a trace or a batch, not only between the caller's chunks.

    ``encodings`` holds the model adapter's encodings made beforehand, one per trace (those
    with no steps are never read): the reward service encodes rollouts as they arrive, to
    choose by length which of them share a forward pass, and does not encode them twice.
    """
    total = len(traces)
    checkpoint = _Checks(check, check_every)
    if not hasattr(adapter, "encode"):
        for done, trace in enumerate(traces, start=1):
            checkpoint()
            start = time.perf_counter()
            result = adapter.score_trace(trace) if trace.steps else _no_steps(adapter, trace)
            yield _with_timing(result, time.perf_counter() - start, result.n_tokens)
            if progress:
                progress(done, total)
        return

    import torch

    # A trace with no steps has nothing to score: it gets empty scores here, and never
    # reaches an adapter's encode (which may reject it) so it cannot abort the run.
    results: dict[int, StepScores] = {
        i: _no_steps(adapter, trace) for i, trace in enumerate(traces) if not trace.steps
    }
    to_score = [i for i, trace in enumerate(traces) if trace.steps]
    encoded = {}
    for i in to_score:
        checkpoint()
        encoded[i] = adapter.encode(traces[i]) if encodings is None else encodings[i]
    lengths = {i: len(e.input_ids) for i, e in encoded.items()}
    next_out = 0
    done = len(results)

    def run(batch: list[int]) -> list[tuple[list[float], list[float] | None]]:
        input_ids, attention_mask = pad_batch(
            [encoded[i].input_ids for i in batch], adapter.pad_id, adapter.device
        )
        with torch.inference_mode():
            output = adapter.forward(input_ids, attention_mask)  # (B, T, ...)
            return [adapter.read(output[row], encoded[i]) for row, i in enumerate(batch)]

    def free_memory() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    if progress and done:
        progress(done, total)
    while next_out in results:
        yield results.pop(next_out)
        next_out += 1
    for planned in plan_batches(
        [lengths[i] for i in to_score], batch_tokens, max_padding=max_padding
    ):
        batch = [to_score[j] for j in planned]  # positions in to_score -> trace indices
        checkpoint()
        start = time.perf_counter()
        for sub_batch, rows in run_with_oom_fallback(batch, run, on_oom=free_memory):
            seconds = (time.perf_counter() - start) / len(sub_batch)
            for i, (scores, raw) in zip(sub_batch, rows, strict=True):
                results[i] = StepScores(
                    trace_id=traces[i].id,
                    scores=tuple(scores),
                    adapter=adapter.name,
                    model=adapter.model_name,
                    n_tokens=lengths[i],
                    seconds=seconds,
                    raw=tuple(raw) if raw is not None else None,
                )
            done += len(sub_batch)
            start = time.perf_counter()
        if progress:
            progress(done, total)
        while next_out in results:
            yield results.pop(next_out)
            next_out += 1


def score_by_prefixes(adapter: Any, trace: Trace) -> list[float]:
    """Scores the way several reference scripts compute them: one forward per prefix
    ``steps[:k]``, reading only the last step. O(steps^2) tokens; used to prove that
    :func:`score_traces` gives the same numbers. (Not for ``implicit-prm``, whose q_t runs
    into step t + 1 as in its reference script.)"""
    import torch

    scores: list[float] = []
    for k in range(1, len(trace.steps) + 1):
        enc = adapter.encode(trace.prefix(k))
        input_ids, attention_mask = pad_batch([enc.input_ids], adapter.pad_id, adapter.device)
        with torch.inference_mode():
            output = adapter.forward(input_ids, attention_mask)
        step_scores, _ = adapter.read(output[0], enc)
        scores.append(step_scores[-1])
    return scores


def _no_steps(adapter: Any, trace: Trace) -> StepScores:
    return StepScores(
        trace_id=trace.id, scores=(), adapter=adapter.name, model=getattr(adapter, "model_name", "")
    )


def _with_timing(result: StepScores, seconds: float, n_tokens: int) -> StepScores:
    from dataclasses import replace

    return replace(result, seconds=seconds, n_tokens=n_tokens)
