"""Length-bucketed batches under a token budget, and a smaller batch on out-of-memory.

The engine knows nothing about tokenization: it sees lengths and a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

R = TypeVar("R")


def plan_batches(
    lengths: Sequence[int],
    batch_tokens: int,
    max_batch_size: int | None = None,
    max_padding: float | None = None,
) -> list[list[int]]:
    """Group item indices into batches whose padded size (size x longest) fits ``batch_tokens``.

    Items are sorted longest first so each batch holds similar lengths and padding stays
    small; an item longer than the budget gets a batch of its own. With ``max_padding``
    a batch also closes before its padding tokens would pass that share of its real ones
    (0.1: at most 10% more tokens than the items hold), which matters when few items are
    spread over many lengths (the reward service's requests of the moment).

    >>> plan_batches([5, 100, 7, 98], batch_tokens=200)
    [[1, 3], [2, 0]]
    >>> plan_batches([60, 100, 98], batch_tokens=1000, max_padding=0.1)
    [[1, 2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0  # tokens the current batch's items hold
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        padded = (len(current) + 1) * longest
        full = max_batch_size is not None and len(current) >= max_batch_size
        wasteful = max_padding is not None and padded > (1 + max_padding) * (real + lengths[index])
        if current and (full or padded > batch_tokens or wasteful):
            batches.append(current)
            current = []
            real = 0
        current.append(index)
        real += lengths[index]
    if current:
        batches.append(current)
    return batches


def pick_batch(
    lengths: Sequence[int],
    batch_tokens: int,
    max_padding: float | None = None,
    max_items: int | None = None,
) -> list[int]:
    """One forward pass's items out of those waiting, ``lengths`` in arrival order: of the
    batches :func:`plan_batches` makes of them all, the one that holds the oldest item.
    Items of length 0 (nothing to run) go along, up to ``max_items`` in all. Indices in
    arrival order.

    A service that runs its waiting requests as they came packs whatever lengths they
    have together; cut from everything waiting by length, a pass pads far less, and with
    the oldest item in it none waits for ever.

    >>> pick_batch([100, 5, 98, 7, 60], batch_tokens=200)
    [0, 2]
    >>> pick_batch([7, 100, 0, 5, 98], batch_tokens=250)
    [0, 2, 3]
    """
    limit = len(lengths) if max_items is None else max(1, max_items)
    free = [i for i, n in enumerate(lengths) if n == 0]
    waiting = [i for i, n in enumerate(lengths) if n > 0]
    if not waiting:
        return free[:limit]
    plan = plan_batches([lengths[i] for i in waiting], batch_tokens, limit, max_padding)
    batch = next(b for b in plan if 0 in b)  # position 0: the oldest waiting
    return sorted([waiting[j] for j in batch] + free[: limit - len(batch)])


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA (and MPS/CPU allocator) out-of-memory errors, whatever their class."""
    return "out of memory" in str(error).lower() or type(error).__name__ == "OutOfMemoryError"


def run_with_oom_fallback(
    batch: list[int], run: Callable[[list[int]], R], on_oom: Callable[[], None] | None = None
) -> Iterator[tuple[list[int], R]]:
    """Yield ``(sub_batch, run(sub_batch))``, halving the batch on out-of-memory.

    A single item that still does not fit re-raises: there is nothing smaller to try.
    """
    pending = [batch]
    while pending:
        current = pending.pop(0)
        try:
            result = run(current)
        except Exception as error:  # torch.OutOfMemoryError subclasses RuntimeError
            if not is_out_of_memory(error) or len(current) == 1:
                raise
            if on_oom is not None:
                on_oom()
            half = len(current) // 2
            pending[:0] = [current[:half], current[half:]]
            continue
        yield current, result
