"""The API's JSON parser: DRF's, with a 400 instead of a 500 for the bodies Python's
``json`` accepts but nothing downstream can hold: nesting deeper than the parser's
stack (``RecursionError``), and numbers past a float (``1e999`` reads as infinity,
which PostgreSQL would store and no JSON answer could carry). ``NaN`` and ``Infinity``
are refused by DRF's strict parsing already."""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream)
            return json.load(
                text,
                parse_float=_finite,
                parse_constant=_no_constants if api_settings.STRICT_JSON else None,
            )
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
