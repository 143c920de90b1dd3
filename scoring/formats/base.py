"""What every format module shares: the parsed and exported records, the error, the
field readers and the checks against a store's limits.

The format modules import from here, and :mod:`scoring.formats` re-exports the
public names, so the modules never import the package that registers them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Any

# PRM records nest a handful of levels (PRM800K: label.steps[].completions[].rating);
# far deeper input is an attack on the recursive decoders and checks (json, orjson,
# ``_check_json`` below), and is refused by name before it reaches their limits.
MAX_DEPTH = 64


class ImportFormatError(ValueError):
    """Bad input, with enough context for the user to find and fix it."""

    def __init__(self, where: str, message: str, field: str | None = None):
        self.where = where
        self.field = field
        self.message = message
        prefix = f"{where}, field '{field}'" if field else where
        super().__init__(f"{prefix}: {message}")


@dataclass
class ParsedLabel:
    first_error_step: int | None
    step_ratings: list[int | None] | None = None
    gave_up: bool = False
    bad_problem: bool = False
    external_annotator: str = ""
    seconds_spent: float | None = None


@dataclass
class ParsedTrace:
    problem: str
    steps: list[str]
    external_id: str
    reference_answer: str = ""
    reference_solution: str = ""
    generator: str = ""
    split: str = ""
    final_answer: str = ""
    final_answer_correct: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    label: ParsedLabel | None = None


@dataclass(frozen=True)
class Limits:
    """What the store behind a reader can hold, in characters. With limits, every
    parsed trace is checked (:func:`check_trace`) and a split made up from a file
    name or id prefix is cut to fit; without them (scoring a file) nothing is."""

    external_id: int
    generator: int
    split: int
    external_annotator: int


@dataclass(frozen=True)
class ParseOptions:
    split: str = ""
    step_splitter: str = "paragraphs"
    default_split: str = ""  # from the file name, for formats whose records carry none
    limits: Limits | None = None


@dataclass(frozen=True)
class ExportTrace:
    """A stored trace as the writers need it: plain values, no database rows."""

    external_id: str
    problem: str
    steps: list[str]
    source: str = ""
    reference_answer: str = ""
    generator: str = ""
    split: str = ""
    final_answer: str = ""
    final_answer_correct: bool | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    is_gold: bool = False
    created_at: str = ""  # ISO 8601; PRM800K's ``timestamp``


def too_deep(value: Any) -> bool:
    """Whether ``value`` nests deeper than :data:`MAX_DEPTH` (a record is level 1)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# ---------------------------------------------------------------- field helpers


def require(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise ImportFormatError(where, f"expected a JSON object, got {type(record).__name__}")
    if key not in record or record[key] is None:
        raise ImportFormatError(where, "missing", field=key)
    return record[key]


def text(record: dict, key: str, where: str, *, required: bool = True) -> str:
    if not required and record.get(key) is None:
        return ""
    value = require(record, key, where)
    if not isinstance(value, str):
        raise ImportFormatError(where, f"expected a string, got {type(value).__name__}", field=key)
    if required and not value.strip():
        raise ImportFormatError(where, "is empty", field=key)
    return value


def string_list(record: dict, key: str, where: str) -> list[str]:
    """A list of strings, possibly empty, possibly holding empty strings."""
    value = require(record, key, where)
    if not isinstance(value, list):
        raise ImportFormatError(
            where, f"expected a list of strings, got {type(value).__name__}", field=key
        )
    # The steps are looked at one by one only when one is wrong: this check, the empty
    # steps' and check_trace's were a third of the time a million-step file took to parse.
    if not all(map(isinstance, value, repeat(str))):
        for i, step in enumerate(value):
            if not isinstance(step, str):
                raise ImportFormatError(
                    where, f"step {i} is {type(step).__name__}, not a string", field=key
                )
    return value


def no_empty_steps(steps: list[str], where: str, key: str) -> None:
    if "" in map(str.strip, steps):
        for i, step in enumerate(steps):
            if not step.strip():
                raise ImportFormatError(where, f"step {i} is empty", field=key)


def steps_of(record: dict, key: str, where: str) -> list[str]:
    value = string_list(record, key, where)
    if not value:
        raise ImportFormatError(where, "has no steps", field=key)
    no_empty_steps(value, where, key)
    return value


def json_object(record: dict, key: str, where: str, *, required: bool = True) -> dict:
    """``record[key]`` as a dict; ``{}`` when an optional one is absent.

    Parquet has no free-form nested type, so parquet files (our own exports among
    them) carry nested objects such as PRM800K's ``question`` and ``label`` or the
    ``metadata`` of the jsonl format as JSON text: a string holding a JSON object
    is decoded, so those files import as their JSONL twins do."""
    if not required and record.get(key) is None:
        return {}
    value = json_text_object(require(record, key, where), where, key)
    if not isinstance(value, dict):
        raise ImportFormatError(where, f"expected an object, got {type(value).__name__}", field=key)
    return value


def json_text_object(value: Any, where: str, key: str) -> Any:
    """``value`` decoded when it is a string holding a JSON object, else unchanged."""
    if not (isinstance(value, str) and value.lstrip().startswith("{")):
        return value
    too_deep_error = ImportFormatError(
        where, f"holds JSON text nested more than {MAX_DEPTH} levels deep", field=key
    )
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            where, f"holds malformed JSON text ({exc.msg})", field=key
        ) from None
    except RecursionError:
        raise too_deep_error from None
    if too_deep(decoded):
        raise too_deep_error
    return decoded


def first_error(value: Any, num_steps: int, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImportFormatError(
            where, f"expected an integer, got {type(value).__name__}", field=key
        )
    if not -1 <= value < num_steps:
        raise ImportFormatError(
            where, f"{value} is out of range: use -1 (all correct) or 0..{num_steps - 1}", field=key
        )
    return value


def optional_bool(record: dict, key: str, where: str) -> bool | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ImportFormatError(where, f"expected true or false, got {value!r}", field=key)
    return value


def content_id(*parts: str) -> str:
    """A stable id for records that carry none, so re-imports are idempotent.

    ``surrogatepass``: a lone surrogate must not crash the hash before
    :func:`check_trace` can name the record and field that holds it."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:24]


def str_id(record: dict, key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ImportFormatError(
            where, f"expected a string or integer id, got {type(value).__name__}", field=key
        )
    return str(value)


def derived_split(name: str, limits: Limits | None = None) -> str:
    """A split made up from a file name or an id prefix, cut to fit the store's split
    column. (A split the user or the record gives is checked instead: see check_trace.)"""
    return name[: limits.split] if limits is not None else name


def truncated(steps: list[str], first_error_step: int) -> tuple[list[str], list[bool]]:
    """Steps up to the first error with a correctness flag each: later steps carry no
    judgement in first-error data, so the per-step formats end a trace there."""
    if first_error_step == -1:
        return steps, [True] * len(steps)
    k = first_error_step
    return steps[: k + 1], [True] * k + [False]


# ---------------------------------------------------------------- what a store takes

_TEXT_FIELDS = (
    "problem",
    "external_id",
    "reference_answer",
    "reference_solution",
    "generator",
    "split",
    "final_answer",
)
_text_fields = attrgetter(*_TEXT_FIELDS)
_LENGTH_FIELDS = ("external_id", "generator", "split")
# PostgreSQL text cannot hold NUL; a lone surrogate is not Unicode and cannot be encoded.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_trace(trace: ParsedTrace, where: str, limits: Limits) -> None:
    """Refuse what the store would reject mid-write, naming the trace's field
    (``steps[3]``, ``metadata.note``...): text PostgreSQL cannot store, and values
    longer than ``limits``."""
    # One scan of all the text; the field is looked for only when something is wrong.
    texts = _text_fields(trace)
    if _unstorable("".join(texts)) or _unstorable("".join(trace.steps)):
        for name, value in zip(_TEXT_FIELDS, texts, strict=True):
            _check_text(value, where, name)
        for i, step in enumerate(trace.steps):
            _check_text(step, where, f"steps[{i}]")
    if trace.metadata:
        _check_json(trace.metadata, where, "metadata")
    if (
        len(trace.external_id) > limits.external_id
        or len(trace.generator) > limits.generator
        or len(trace.split) > limits.split
    ):
        for name in _LENGTH_FIELDS:
            check_length(getattr(trace, name), getattr(limits, name), where, name)
    if trace.label is not None and (annotator := trace.label.external_annotator):
        _check_text(annotator, where, "external_annotator")
        check_length(annotator, limits.external_annotator, where, "external_annotator")


def _unstorable(value: str) -> bool:
    # ASCII text (known without a scan) can hold no surrogate, and a NUL is found by
    # memchr. Other text holds a lone surrogate exactly when it cannot be encoded: the
    # encoder finds one five times as fast as the pattern does (a third of ProcessBench's
    # traces hold some non-ASCII text).
    if "\x00" in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(value: str, where: str, field: str) -> None:
    match = _UNSTORABLE.search(value)
    if match is None:
        return
    char = match.group()
    what = (
        "a NUL character (\\u0000), which the database cannot store"
        if char == "\x00"
        else f"a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode"
    )
    raise ImportFormatError(where, f"contains {what}", field=field)


def _check_json(value: Any, where: str, field: str) -> None:
    if isinstance(value, str):
        _check_text(value, where, field)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), where, f"{field} (a key)")
            _check_json(item, where, f"{field}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, where, f"{field}[{i}]")


def check_length(value: str, limit: int, where: str, field: str) -> None:
    if len(value) > limit:
        raise ImportFormatError(
            where, f"is {len(value)} characters long; at most {limit} fit", field=field
        )
