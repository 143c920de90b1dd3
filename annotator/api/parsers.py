"""The API's JSON parser: DRF's, with a 400 instead of a 500 for the bodies Python's
``json`` accepts but nothing downstream can hold (``scoring.strict_json``): nesting
deeper than the parser's stack, and numbers past a float (``1e999`` reads as infinity,
which PostgreSQL would store and no JSON answer could carry). ``NaN`` and ``Infinity``
are refused unless DRF's ``STRICT_JSON`` is turned off."""

from __future__ import annotations

import codecs
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.settings import api_settings

from scoring import strict_json


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return strict_json.loads(
                codecs.getreader(encoding)(stream), constants=not api_settings.STRICT_JSON
            )
        except strict_json.NotJSON as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
