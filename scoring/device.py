"""Device and dtype, chosen in one place.

``STEPWISE_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ...) overrides the default, which is
CUDA when available. bf16 on CUDA, fp32 on CPU (CPU bf16 matmuls are slow and lossy).
Nothing here touches CUDA at import time: CUDA is not fork-safe and a Celery parent
process must never initialise it.
"""

from __future__ import annotations

import os
from typing import Any


def choose_device(requested: str | None = None) -> str:
    """``requested`` if given, else ``$STEPWISE_DEVICE``, else ``cuda`` if available, else ``cpu``."""
    if requested:
        return requested
    env = os.environ.get("STEPWISE_DEVICE", "").strip()
    if env:
        return env
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_dtype(device: str) -> Any:
    """The torch dtype for ``device``: bf16 on CUDA, fp32 elsewhere."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32
