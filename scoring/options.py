"""The values a job's options may take: one set of rules for the command line
(``scoring/cli.py``) and the web app (``annotator/montecarlo.py``, ``training.py``,
``scorers.py``), checked before any work starts, so a negative timeout or ``lr="fast"``
is refused with its name instead of failing (or finishing) late on a worker.

Each rule names its option in the message: ``OptionError("timeout_s must be a number
greater than 0, not -1")``. Numbers must be finite; booleans are not numbers here
(``True`` is an ``int`` in Python, never a timeout).

>>> check_options({"timeout_s": 30, "retries": 2}, COMPLETER_OPTIONS)
>>> check_options({"lr": "fast"}, TRAIN_OPTIONS)
Traceback (most recent call last):
...
scoring.options.OptionError: lr must be a number, not 'fast'
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class OptionError(ValueError):
    """An option's value breaks its rule; the message names the option."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Number:
    """An int (``integer``) or a finite float within [``low``, ``high``]; ``above``: the
    low end is excluded; ``also``: extra values allowed (``max_steps=-1``: no limit)."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    above: bool = False
    also: tuple[float, ...] = ()

    def check(self, name: str, value: Any) -> None:
        kinds = (int,) if self.integer else (int, float)
        what = "a whole number" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise OptionError(f"{name} must be {what}, not {value!r}", name)
        if value in self.also:
            return
        if not math.isfinite(value):
            raise OptionError(f"{name} must be finite, not {value!r}", name)
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            bound = "greater than" if self.above else "at least"
            raise OptionError(f"{name} must be {what} {bound} {self.low:g}, not {value!r}", name)
        if self.high is not None and value > self.high:
            raise OptionError(f"{name} must be at most {self.high:g}, not {value!r}", name)


@dataclass(frozen=True)
class Text:
    """A string (``many``: or a list of strings) of at most ``longest`` characters,
    matching ``pattern`` when given."""

    longest: int = 10_000
    many: bool = False
    pattern: str = ""

    def check(self, name: str, value: Any) -> None:
        values = value if self.many and isinstance(value, list | tuple) else [value]
        for item in values:
            if not isinstance(item, str):
                raise OptionError(f"{name} must be text, not {item!r}", name)
            if len(item) > self.longest or "\x00" in item:
                raise OptionError(f"{name} must be text of at most {self.longest} characters", name)
            if self.pattern and not re.fullmatch(self.pattern, item):
                raise OptionError(f"{name} {item!r} is not valid", name)


@dataclass(frozen=True)
class Flag:
    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise OptionError(f"{name} must be true or false, not {value!r}", name)


Rule = Number | Text | Flag

SEED = Number(low=0, high=2**32 - 1, integer=True)
DEVICE = Text(longest=20, pattern=r"cpu|mps|cuda(:\d{1,2})?")

# ``scoring.completers.Sampling`` and the completers' own options (``load_completer``).
COMPLETER_OPTIONS: dict[str, Rule] = {
    "temperature": Number(low=0, high=2),
    "top_p": Number(low=0, high=1, above=True),
    "max_tokens": Number(low=1, high=32768, integer=True),
    "seed": SEED,
    "stop": Text(longest=200, many=True),
    "chat": Flag(),
    "max_in_flight": Number(low=1, high=1024, integer=True),
    "timeout_s": Number(low=0, high=3600, above=True),
    "retries": Number(low=0, high=20, integer=True),
    "device": DEVICE,
    "batch_size": Number(low=1, high=4096, integer=True),
    "template": Text(longest=20_000),
    # The command line's alone (a server's key; hf's dtype): the web app takes neither.
    "api_key": Text(longest=500),
    "backoff_s": Number(low=0, high=60),
    "dtype": Text(longest=20, pattern=r"auto|float32|float16|bfloat16"),
}

# ``scoring.training.TrainConfig`` fields a run may set.
TRAIN_OPTIONS: dict[str, Rule] = {
    "lora_r": Number(low=0, high=512, integer=True),
    "lora_alpha": Number(low=1, high=4096, integer=True),
    "epochs": Number(low=0, high=100, above=True),
    "lr": Number(low=0, high=1, above=True),
    "batch_tokens": Number(low=1, high=10_000_000, integer=True),
    "grad_accum": Number(low=1, high=1024, integer=True),
    "max_steps": Number(low=1, integer=True, also=(-1,)),  # -1: no limit
    "eval_every": Number(low=0, integer=True),  # 0: once per epoch
    "save_every": Number(low=0, integer=True),
    "logging_steps": Number(low=1, integer=True),
    "seed": SEED,
    "device": DEVICE,
    "truncate_after_first_error": Flag(),
    "step_separator": Text(longest=20),
}

# Rules for a scorer's options: how a run reads its scores (every scorer), its device,
# and where the forward pass runs (``backend=vllm`` with its ``url``, for the adapters
# scoring/adapters/vllm_pooling.py serves; other adapters refuse them as unknown).
SCORER_RUN_OPTIONS: dict[str, Rule] = {
    "threshold": Number(low=0, high=1),
    "batch_tokens": Number(low=1, high=10_000_000, integer=True),
    "device": DEVICE,
    "backend": Text(longest=10, pattern=r"local|vllm"),
    "url": Text(longest=2000),
}


def check_scorer_backend(options: Mapping[str, Any]) -> None:
    """A scorer on a vLLM pooling server names that server: an http(s) ``url`` that is
    not link-local (``check_server_url``); a local scorer takes no ``url``."""
    if options.get("backend") == "vllm":
        url = options.get("url")
        if not url:
            raise OptionError("backend=vllm needs the server's url", "url")
        try:
            check_server_url(url)
        except OptionError as exc:
            raise OptionError(str(exc), "url") from None
    elif "url" in options:
        raise OptionError("url is for backend=vllm only", "url")


def check_options(options: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Raise ``OptionError`` for the first option that is unknown or breaks its rule."""
    unknown = sorted(set(options) - set(rules))
    if unknown:
        raise OptionError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(rules))}",
            unknown[0],
        )
    for name, value in options.items():
        rules[name].check(name, value)


def check_values(options: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Like ``check_options``, for the options that have a rule (others pass): a
    scorer's adapter takes options of its own that only its loader knows."""
    for name, value in options.items():
        if name in rules:
            rules[name].check(name, value)


# A hub id: ``name`` or ``org/name`` of letters, digits, ``-``, ``_`` and ``.``, not
# starting with a dot (so never ``..``).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def check_model_location(model: str, model_dir: str | Path) -> None:
    """A model is a hub id or a path inside ``model_dir`` (where the workers keep
    models); anything else could make a worker load arbitrary files from its disk."""
    if HUB_ID.fullmatch(model) and ".." not in model:
        return
    if not model.startswith(("/", "~")) and "\x00" not in model:
        raise OptionError(
            f"the model {model!r} is neither a hub id (org/name) nor an absolute path", "model"
        )
    root = Path(model_dir).resolve()
    try:
        inside = Path(model).expanduser().resolve().is_relative_to(root)
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise OptionError(f"the model path must be inside {root}, not {model!r}", "model")


def check_server_url(url: str) -> None:
    """A completer's server: ``http``/``https`` with a host, and not a link-local
    address (``169.254.0.0/16``, ``fe80::/10``: cloud metadata services answer there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise OptionError(f"not a URL: {url!r}", "completer") from None
    if parts.scheme not in ("http", "https") or not host:
        raise OptionError(
            f"the server URL must be http:// or https:// with a host, not {url!r}", "completer"
        )
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        # A host of digits alone is an IPv4 address to the socket library.
        address = ipaddress.ip_address(int(host) if host.isdigit() else host)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address is not None and (address.is_link_local or address.is_unspecified):
        raise OptionError(f"the server URL may not point at {address}", "completer")


def check_completer(spec: str, model_dir: str | Path) -> None:
    """``openai:URL`` (``check_server_url``) or ``hf:MODEL`` (``check_model_location``)."""
    kind, sep, target = spec.partition(":")
    if kind not in ("openai", "hf") or not sep or not target:
        raise OptionError("the completer is openai:BASE_URL or hf:MODEL_PATH", "completer")
    if kind == "openai":
        check_server_url(target)
    else:
        try:
            check_model_location(target, model_dir)
        except OptionError as exc:
            raise OptionError(str(exc), "completer") from None
