"""A long call of ``score_traces`` notices a cancel within a trace or a batch: its
``check`` runs before each trace (model-free adapters), each trace encoded and each
batch (model adapters), not only between the caller's chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.arithmetic import ArithmeticCheck
from scoring.engine import score_traces
from scoring.types import Trace


class Cancelled(Exception):
    pass


class CancelAfter:
    """A cancel check that lets ``calls`` checks pass, then stops the work."""

    def __init__(self, calls: int) -> None:
        self.left = calls
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls > self.left:
            raise Cancelled


def some_traces(n: int) -> list[Trace]:
    return [
        Trace(problem="p", steps=(f"{i} + 1 = {i + 1}", "2 * 3 = 6"), id=str(i)) for i in range(n)
    ]


def test_a_model_free_chunk_stops_at_the_next_trace_after_a_cancel() -> None:
    check = CancelAfter(3)
    scored = []
    with pytest.raises(Cancelled):
        for result in score_traces(ArithmeticCheck(), some_traces(10), check=check, check_every=0):
            scored.append(result.trace_id)
    assert scored == ["0", "1", "2"]


def test_checks_are_spaced_by_the_interval() -> None:
    """A fast adapter does not pay a query per trace: within one interval, one check."""
    check = CancelAfter(1000)
    results = list(score_traces(ArithmeticCheck(), some_traces(50), check=check, check_every=3600))
    assert len(results) == 50 and check.calls == 1


def test_a_model_chunk_stops_while_encoding_or_between_batches(qwen_prm_dir: Path) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    traces = some_traces(6)
    # Every trace encoded, then the first batch checked: the second batch is refused.
    check = CancelAfter(len(traces) + 1)
    scored = []
    with pytest.raises(Cancelled):
        for result in score_traces(adapter, traces, batch_tokens=1, check=check, check_every=0):
            scored.append(result.trace_id)
    assert scored == ["0"]
    # And a cancel during encoding stops before any forward pass.
    early = CancelAfter(2)
    with pytest.raises(Cancelled):
        list(score_traces(adapter, traces, check=early, check_every=0))
    assert early.calls == 3
