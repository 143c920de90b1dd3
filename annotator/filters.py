"""What a request asks for, checked at the edge: the trace filters (``split``,
``generator``, ``source``, ``labelled``) that the project page, exports and dashboards
take, parsed once, and free text (review comments, adjudication notes).

PostgreSQL refuses a NUL byte in text, in a comparison as in a row, so a NUL that
reached a query answered 500. Here it answers 400 naming the field
(``BadParameter``), as the API's serializers do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from annotator.models import LABELLED_CHOICES, Membership, Trace, TraceQuerySet

FILTER_FIELDS = ("split", "generator", "source")


class BadParameter(ValueError):
    """A request parameter that cannot be used; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field} {problem}")


def text_param(params: Mapping[str, str], field: str, *, max_length: int | None = None) -> str:
    """``params[field]`` (``""`` when absent), or ``BadParameter`` for a NUL byte or
    more than ``max_length`` characters.

    >>> text_param({"split": "a\\x00"}, "split")
    Traceback (most recent call last):
    annotator.filters.BadParameter: split must not contain NUL bytes
    """
    value = params.get(field) or ""
    if "\x00" in value:
        raise BadParameter(field, "must not contain NUL bytes")
    if max_length is not None and len(value) > max_length:
        raise BadParameter(field, f"is at most {max_length} characters")
    return value


@dataclass(frozen=True)
class TraceFilter:
    """Which traces a request asks for; an empty value: any. ``labelled`` is ``yes``,
    ``no`` or empty (another value is ignored, as the menus never send one)."""

    split: str = ""
    generator: str = ""
    source: str = ""
    labelled: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TraceFilter:
        """The filter of a query string, or ``BadParameter``. A value longer than its
        column could match nothing: it is refused as the export always refused it."""
        values = {
            field: text_param(params, field, max_length=Trace._meta.get_field(field).max_length)
            for field in FILTER_FIELDS
        }
        labelled = params.get("labelled") or ""
        return cls(**values, labelled=labelled if labelled in LABELLED_CHOICES else "")

    def apply(self, traces: TraceQuerySet, membership: Membership) -> TraceQuerySet:
        """``traces`` narrowed to the filter, ``labelled`` as far as the member sees labels."""
        return traces.selected(
            split=self.split,
            generator=self.generator,
            source=self.source,
            labelled=self.labelled,
            seen_by=membership,
        )


def bad_parameter_is_400(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view's answer, or 400 with ``BadParameter``'s message (the field named)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except BadParameter as exc:
            return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")

    return wrapped
