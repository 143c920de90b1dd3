"""Registered scorers: checking a scorer's options, and loading its model on a worker.

A worker child loads a scorer's model the first time a run needs it and keeps it
for the next runs of the same scorer: reloading a 7B PRM costs minutes. At most
``SCORER_CACHE_SIZE`` models stay loaded per process (least recently used goes
first). Loading happens inside the task, in the pool child, never in the Celery
parent: CUDA cannot survive a fork.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from django.conf import settings

from scoring.options import (
    SCORER_RUN_OPTIONS,
    OptionError,
    check_model_location,
    check_scorer_backend,
    check_values,
)

# Options every scorer takes, whatever its adapter: how a run uses the scores (the
# loader never sees them). Their values' rules: ``scoring.options.SCORER_RUN_OPTIONS``.
RUN_OPTIONS = ("threshold", "batch_tokens")


def adapter_options(adapter: str) -> set[str]:
    """The keyword options ``adapter``'s loader accepts (``device``, ``dtype``, its own)."""
    from scoring.adapters import get_adapter

    cls = get_adapter(adapter)
    loader = cls.from_pretrained if hasattr(cls, "from_pretrained") else cls.__init__
    parameters = inspect.signature(loader).parameters
    return {name for name in parameters if name not in ("self", "cls", "path")}


def validate_scorer(adapter: str, model: str, options: dict[str, Any]) -> dict[str, str]:
    """Field -> message for every problem; empty when the scorer can be saved. A model
    is a hub id or a path inside ``MODEL_DIR``; option values follow the rules of
    ``scoring.options``."""
    from scoring.adapters import ADAPTERS, needs_model

    if adapter not in ADAPTERS:
        return {"adapter": f"unknown adapter {adapter!r}; choose one of {sorted(ADAPTERS)}"}
    errors: dict[str, str] = {}
    if needs_model(adapter) and not model:
        errors["model"] = f"the {adapter} adapter needs a model (a hub id or a path)"
    elif not needs_model(adapter) and model:
        errors["model"] = f"the {adapter} adapter uses no model"
    elif model:
        try:
            check_model_location(model, settings.MODEL_DIR)
        except OptionError as exc:
            errors["model"] = str(exc)
    if not isinstance(options, dict):
        return {**errors, "options": "options must be an object of name: value"}
    known = adapter_options(adapter) | set(RUN_OPTIONS)
    unknown = sorted(set(options) - known)
    if unknown:
        errors["options"] = (
            f"unknown option(s) {', '.join(unknown)} for {adapter}; known: {', '.join(sorted(known))}"
        )
    try:
        check_values(options, SCORER_RUN_OPTIONS)
        check_scorer_backend(options)
    except OptionError as exc:
        errors["options"] = str(exc)
    return errors


def model_location(model: str, revision: str) -> str:
    """Where to load ``model`` from: a path as it is, or a hub id at ``revision``
    resolved to its local snapshot (downloaded once into the hub cache)."""
    if not revision or Path(model).exists():
        return model
    from huggingface_hub import snapshot_download

    return snapshot_download(model, revision=revision)


_cache: OrderedDict[tuple, Any] = OrderedDict()
_cache_lock = threading.Lock()


def load_scorer(adapter: str, model: str, revision: str, options: dict[str, Any]) -> Any:
    """The loaded adapter, from this process's cache when a run of the same scorer
    loaded it before."""
    from scoring.adapters import load_adapter

    loader_options = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    key = (adapter, model, revision, tuple(sorted((k, repr(v)) for k, v in loader_options.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        while len(_cache) >= settings.SCORER_CACHE_SIZE:
            _cache.popitem(last=False)
            _free_accelerator_memory()
        loaded = load_adapter(adapter, model_location(model, revision) or None, **loader_options)
        _cache[key] = loaded
        return loaded


def _free_accelerator_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
