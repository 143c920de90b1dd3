"""PRM adapters, selected by name. Modules load lazily so ``import scoring`` stays torch-free.

>>> sorted(ADAPTERS)[:2]
['arithmetic-check', 'implicit-prm']
"""

from __future__ import annotations

import importlib
from typing import Any

ADAPTERS: dict[str, str] = {
    "qwen-prm": "scoring.adapters.qwen_prm:QwenPRM",
    "math-shepherd": "scoring.adapters.math_shepherd:MathShepherd",
    "rlhflow": "scoring.adapters.rlhflow:RLHFlow",
    "token-classification": "scoring.adapters.token_classification:TokenClassificationPRM",
    "implicit-prm": "scoring.adapters.implicit_prm:ImplicitPRM",
    "value-head": "scoring.adapters.value_head:ValueHeadPRM",
    "llm-critic": "scoring.adapters.llm_critic:LLMCritic",
    "laser": "scoring.adapters.laser:LaSeR",
    "arithmetic-check": "scoring.arithmetic:ArithmeticCheck",
}
# The adapters that load no model (no ``from_pretrained``): named here so that asking
# does not import an adapter's module (and torch with it) in a web process.
MODEL_FREE: frozenset[str] = frozenset({"arithmetic-check"})


def needs_model(name: str) -> bool:
    """Whether adapter ``name`` loads a model (a hub id or a path) to score with.

    >>> needs_model("qwen-prm"), needs_model("arithmetic-check")
    (True, False)
    """
    return name not in MODEL_FREE


def get_adapter(name: str) -> Any:
    """The adapter class registered as ``name``."""
    try:
        module_name, class_name = ADAPTERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; choose one of {sorted(ADAPTERS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def load_adapter(name: str, model: str | None = None, **options: Any) -> Any:
    """An adapter instance: ``from_pretrained(model, **options)`` for model adapters, the
    bare class for model-free ones (``arithmetic-check``)."""
    cls = get_adapter(name)
    if needs_model(name):
        if not model:
            raise ValueError(f"adapter {name!r} needs --model")
        return cls.from_pretrained(model, **options)
    return cls(**options)
