from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scoring.batching import pick_batch, plan_batches, run_with_oom_fallback
from scoring.engine import pad_batch, score_traces


def test_it_buckets_by_length_under_the_token_budget() -> None:
    lengths = [10, 300, 12, 290, 50, 11, 700]
    batches = plan_batches(lengths, batch_tokens=600)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [6]  # longer than the budget: alone
    for batch in batches[1:]:
        assert len(batch) * max(lengths[i] for i in batch) <= 600
    assert [1, 3] in batches  # the two long ones together, not with short ones


def test_it_caps_the_batch_size() -> None:
    assert plan_batches([1] * 5, batch_tokens=1000, max_batch_size=2) == [[0, 1], [2, 3], [4]]


def test_a_padding_bound_closes_batches_before_short_items_join_long_ones() -> None:
    lengths = [100, 97, 60, 58, 95, 30]
    unbounded = plan_batches(lengths, batch_tokens=10_000)
    assert unbounded == [[0, 1, 4, 2, 3, 5]]
    bounded = plan_batches(lengths, batch_tokens=10_000, max_padding=0.1)
    assert bounded == [[0, 1, 4], [2, 3], [5]]
    for batch in bounded:
        real = sum(lengths[i] for i in batch)
        assert len(batch) * max(lengths[i] for i in batch) <= 1.1 * real
    # the token budget still applies, and inf is no bound
    assert plan_batches([10] * 4, batch_tokens=20, max_padding=0.1) == [[0, 1], [2, 3]]
    assert plan_batches(lengths, 10_000, max_padding=float("inf")) == unbounded


def test_a_pass_takes_the_planned_batch_of_the_oldest_item() -> None:
    # the service's pool, oldest first: not the next arrivals, the similar lengths
    assert pick_batch([100, 5, 98, 7, 60], batch_tokens=200) == [0, 2]
    assert pick_batch([5, 100, 98, 7, 60], batch_tokens=200) == [0, 3, 4]
    # nothing to run (length 0) always goes along; an item over the budget goes alone
    assert pick_batch([900, 0, 40, 0], batch_tokens=300) == [0, 1, 3]
    assert pick_batch([0, 0, 0], batch_tokens=300, max_items=2) == [0, 1]
    assert pick_batch([10] * 6, batch_tokens=1000, max_items=4) == [0, 1, 2, 3]
    assert pick_batch([100, 97, 60, 58, 95], batch_tokens=10_000, max_padding=0.1) == [0, 1, 4]


@given(
    st.lists(st.integers(0, 400), min_size=1, max_size=40),
    st.integers(50, 2000),
    st.sampled_from([None, 0.0, 0.1, 0.5]),
    st.sampled_from([None, 0, 1, 3, 16]),
)
def test_a_picked_pass_holds_the_oldest_and_neighbouring_lengths_within_the_bounds(
    lengths: list[int], budget: int, max_padding: float | None, max_items: int | None
) -> None:
    picked = pick_batch(lengths, budget, max_padding, max_items)
    limit = len(lengths) if max_items is None else max(1, max_items)
    assert picked == sorted(set(picked)) and 1 <= len(picked) <= limit
    costly = [i for i in picked if lengths[i] > 0]
    waiting = [i for i, n in enumerate(lengths) if n > 0]
    zeros = [i for i, n in enumerate(lengths) if n == 0]
    assert [i for i in picked if lengths[i] == 0] == zeros[: limit - len(costly)]
    if not waiting:
        return
    assert waiting[0] in costly  # the oldest goes first
    ordered = sorted(waiting, key=lambda i: (-lengths[i], i))
    positions = sorted(ordered.index(i) for i in costly)
    assert positions == list(range(positions[0], positions[-1] + 1))  # neighbouring lengths
    padded = len(costly) * max(lengths[i] for i in costly)
    real = sum(lengths[i] for i in costly)
    if len(costly) > 1:
        assert padded <= budget
        assert max_padding is None or padded <= (1 + max_padding) * real


def test_it_halves_a_batch_on_out_of_memory() -> None:
    calls: list[list[int]] = []

    def run(batch: list[int]) -> int:
        calls.append(batch)
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return sum(batch)

    done = list(run_with_oom_fallback([1, 2, 3, 4, 5], run))
    assert done == [([1, 2], 3), ([3], 3), ([4, 5], 9)]
    assert calls[0] == [1, 2, 3, 4, 5]


def test_it_reraises_other_errors_and_single_item_ooms() -> None:
    def broken(batch: list[int]) -> int:
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        list(run_with_oom_fallback([1, 2], broken))

    def never_fits(batch: list[int]) -> int:
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError):
        list(run_with_oom_fallback([1, 2], never_fits))


def test_it_pads_on_the_right_with_a_mask() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_scores_do_not_depend_on_how_traces_are_batched(qwen_prm_dir, traces) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    together = [r.scores for r in score_traces(adapter, traces, batch_tokens=100_000)]
    one_by_one = [r.scores for r in score_traces(adapter, traces, batch_tokens=1)]
    for a, b in zip(together, one_by_one, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_encodings_made_before_are_scored_as_given(qwen_prm_dir, traces) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    alone = [r.scores for r in score_traces(adapter, traces)]
    encodings = [adapter.encode(t) for t in traces]
    given_ = [r.scores for r in score_traces(adapter, traces, encodings=encodings)]
    assert given_ == alone
    # the encodings, not the traces, are what the model reads
    swapped = [r.scores for r in score_traces(adapter, traces, encodings=encodings[::-1])]
    for a, b in zip(swapped, alone[::-1], strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_progress_reaches_the_total(qwen_prm_dir, traces) -> None:
    from scoring.adapters import load_adapter

    adapter = load_adapter("qwen-prm", str(qwen_prm_dir), device="cpu")
    seen: list[tuple[int, int]] = []
    results = list(
        score_traces(adapter, traces, batch_tokens=150, progress=lambda d, t: seen.append((d, t)))
    )
    assert len(results) == 3 and seen[-1] == (3, 3)
    assert all(r.n_tokens > 0 and r.seconds > 0 for r in results)


def test_device_comes_from_the_environment(monkeypatch) -> None:
    from scoring.device import choose_device, choose_dtype

    monkeypatch.setenv("STEPWISE_DEVICE", "cpu")
    assert choose_device() == "cpu"
    assert choose_device("cuda:1") == "cuda:1"
    assert choose_dtype("cpu") == torch.float32 and choose_dtype("cuda") == torch.bfloat16
