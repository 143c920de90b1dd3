"""What a project that hides its reference answers hides with them.

``Membership.sees_reference_answer`` says whether a member sees the answer. Where it
does not, the member sees nothing that gives it away either: no reference trace (a
GSM8K reference solution, ``generator="reference"``, ends in the answer) and no
final-answer correctness (it is the final answer compared with the reference).
Every page and endpoint that shows a trace asks here.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from annotator.models import Membership, Trace

REFERENCE_GENERATOR = "reference"  # scoring/formats/gsm8k.py's reference traces


def visible_traces(membership: Membership, traces: QuerySet[Trace]) -> QuerySet[Trace]:
    if membership.sees_reference_answer():
        return traces
    return traces.exclude(generator=REFERENCE_GENERATOR)


def check_trace_visible(membership: Membership, trace: Trace) -> None:
    """404 (as for a trace that does not exist) when ``trace`` is hidden from the member."""
    if trace.generator == REFERENCE_GENERATOR and not membership.sees_reference_answer():
        raise Http404("No such trace")
