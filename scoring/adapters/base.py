"""What every model adapter shares: encode a trace to tokens + read-out positions, run one
forward over a padded batch, read scores at those positions.

Right padding keeps each trace's positions unchanged, and since every PRM here is causal,
pads after the last real token cannot change the outputs before it: a batched forward
gives the same scores as scoring each trace alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scoring.types import Trace


@dataclass(frozen=True)
class Encoded:
    """One trace as model input.

    ``positions[i]`` is the token position whose output scores step i. ``response_start``
    is the first token the implicit PRM sums log-ratios from; its ``positions[i]`` is the
    last token summed into q_i, and ``response_start - 1`` means none (q_i = 0).
    """

    input_ids: tuple[int, ...]
    positions: tuple[int, ...]
    response_start: int = 0


CARD = "card"
PROCESSBENCH = "processbench"


def check_protocol(adapter: str, protocol: str, supported: tuple[str, ...]) -> str:
    """``protocol`` if ``adapter`` follows a reference for it, else a ValueError naming them.

    ``card``: the procedure the model's own card (or training code) publishes;
    ``processbench``: the one ProcessBench's script for that model uses.
    """
    if protocol not in supported:
        raise ValueError(
            f"{adapter}: unknown protocol {protocol!r}; choose one of {list(supported)}"
        )
    return protocol


class ModelAdapter:
    """Base class: subclasses set ``name``, implement ``encode``, ``forward`` and ``read``."""

    name = ""
    system_prompt: str | None = None
    protocol = CARD

    def __init__(self, model: Any, tokenizer: Any, model_name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = 0 if pad is None else pad

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, trace: Trace) -> Encoded:
        raise NotImplementedError

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        """Per-token outputs for a padded batch: (B, T) ids -> (B, T, ...) tensor."""
        raise NotImplementedError

    def read(self, output: Any, encoded: Encoded) -> tuple[list[float], list[float] | None]:
        """(scores, raw) of one trace from its row of ``forward``'s output, (T, ...)."""
        raise NotImplementedError

    def check_positions(self, encoded: Encoded, trace: Trace) -> Encoded:
        if len(encoded.positions) != len(trace.steps):
            raise ValueError(
                f"{self.name}: found {len(encoded.positions)} step read-outs for "
                f"{len(trace.steps)} steps in trace {trace.id!r} (does a step contain the separator?)"
            )
        return encoded


def load_tokenizer(path: str, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kwargs)


def resolve_device_dtype(device: str | None, dtype: Any) -> tuple[str, Any]:
    from scoring.device import choose_device, choose_dtype

    device = choose_device(device)
    if isinstance(dtype, str):
        import torch

        dtype = getattr(torch, dtype)
    return device, dtype or choose_dtype(device)


def gather_rows(values: Any, positions: tuple[int, ...]) -> list[float]:
    """values (T,) -> [values[p] for p in positions] as Python floats."""
    import torch

    index = torch.tensor(positions, dtype=torch.long, device=values.device)
    return values.index_select(0, index).float().tolist()
