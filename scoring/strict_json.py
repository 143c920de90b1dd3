"""JSON as the standard reads it, for bodies sent by clients we do not control: Python's
``json`` also takes ``NaN`` and ``Infinity``, reads a number past a float (``1e999``)
as infinity, which nothing downstream can store or send back, and raises
``RecursionError``, not ``ValueError``, on nesting deeper than its stack. Here each of
these is a :class:`NotJSON` with a message fit for a 400 answer."""

from __future__ import annotations

import json
import math
from typing import IO, Any


class NotJSON(ValueError):
    """The body is not JSON that can be used; the message says why."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJSON(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value")


def loads(body: str | bytes | IO[str], *, constants: bool = False) -> Any:
    """The value of ``body`` (text, UTF-8 bytes or a text stream), or :class:`NotJSON`.
    ``constants``: take ``NaN`` and ``Infinity`` as Python does (numbers past a float
    are refused all the same)."""
    try:
        return json.loads(
            body.read() if hasattr(body, "read") else body,
            parse_float=_finite,
            parse_constant=None if constants else _no_constant,
        )
    except RecursionError:
        raise NotJSON("the body is nested too deeply") from None
    except NotJSON:
        raise
    except (ValueError, UnicodeDecodeError) as error:
        raise NotJSON(str(error)) from None
