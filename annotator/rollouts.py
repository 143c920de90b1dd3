"""Rollouts an RL trainer had scored by the reward service, kept as traces, and what the
Rewards page reads from them.

``log_rollouts`` is what ``manage.py serve_rewards --log-project SLUG`` calls with each
batch it scored. Every rollout becomes a trace of the project, written by the importer's
path (``importing.write_traces``: one transaction, the project's import lock, problems
found again by their text), so a rollout is labelled, exported and scored like any
imported trace. A rollout's ``key`` is the trace's ``external_id``: a retried request
carries the same keys and writes nothing new, however many times it is sent and from
however many processes at once.

The reward a trainer got is ``Trace.metadata["rollout"]``:

- ``transform``, ``transform_version``: the refinement that made the rewards, so rollouts
  logged before a correction stay told apart from those after it;
- ``step_scores`` (the PRM's, in [0, 1]), ``step_rewards`` (one per step, the success term
  in the last), ``return`` (their sum), ``success`` (the graded final answer; None without
  a ground truth), ``success_weight`` and ``prm_return``: the return without the success
  term, ``return - success_weight`` for a right answer, what the PRM alone gave;
- ``training_step`` (when the trainer sent one), ``protocol`` (the client's: openrlhf,
  verl, trl, native);
- ``response_chars``: the response's length in characters;
- ``repeated_steps``: how many steps repeat an earlier step of the same rollout
  (:func:`repeated_steps`), the step farming that PRM rewards invite (Gao et al., arXiv
  2410.15115).

Counted once at write time, these two are plain numbers the page aggregates in SQL.
The final answer written in the response (``scoring.grading.extract_answer``) is the
trace's ``final_answer``, ``success`` its ``final_answer_correct``, and a ground truth the
problem's reference answer.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Avg,
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    Max,
    Min,
    Q,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Floor, Least

from annotator import database
from annotator.importing import write_traces
from annotator.models import Project, Trace, TraceQuerySet
from scoring.formats import ParsedTrace
from scoring.grading import extract_answer

SOURCE_FORMAT = "rollout"
EXTERNAL_ID_MAX_LENGTH: int = Trace._meta.get_field("external_id").max_length
# The transforms' own default (``scoring.rewards``), for a record that does not say.
DEFAULT_SUCCESS_WEIGHT = 1.0


class UnknownProject(LookupError):
    """``log_rollouts`` was given a slug no project has."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"no project has the slug {slug!r}: create it before logging rollouts")


class BadRollout(ValueError):
    """A record that cannot be stored; the message names its key and field."""


# -- writing ---------------------------------------------------------------------------------

# "Step 3:", "3.", "3)" at a step's start: the same step written again gets a new number.
_STEP_NUMBER = re.compile(r"^\s*(?:step\s*\d+\s*[:.)]?|\d+\s*[.)])\s*", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?"


def normalised_step(text: str) -> str:
    """A step's text as two near-duplicate steps share it: Unicode NFKC, case folded,
    without a leading step number ("Step 3:", "3."), without any whitespace and without
    trailing sentence punctuation.

    >>> normalised_step("Step 2:  So 2 + 3 = 5.") == normalised_step("step 7: so 2+3=5")
    True
    >>> normalised_step("2 + 3 = 5") == normalised_step("2 - 3 = 5")
    False
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _STEP_NUMBER.sub("", text, count=1)
    return "".join(text.split()).rstrip(_TRAILING_PUNCTUATION)


def repeated_steps(steps: Sequence[str]) -> int:
    """How many steps repeat an earlier step of the same rollout: their
    :func:`normalised_step` texts are equal (steps empty once normalised never count).

    >>> repeated_steps(["x = 2.", "So y = 4", "x = 2", "So y = 4."])
    2
    """
    seen: set[str] = set()
    repeats = 0
    for step in steps:
        key = normalised_step(step)
        if not key:
            continue
        if key in seen:
            repeats += 1
        seen.add(key)
    return repeats


def log_rollouts(project_slug: str, records: list[dict]) -> int:
    """Store scored rollouts as traces of project ``project_slug``; how many were new.

    One transaction per call. A record whose ``key`` the project holds already (from the
    same ``source``) is skipped, as is a repeat within ``records``: a retried request
    writes nothing twice. Raises ``UnknownProject`` for a slug no project has and
    ``BadRollout`` (nothing written) for a record that cannot be stored.

    Each record: ``key``, ``problem``, ``response``, ``steps``, ``step_scores``,
    ``step_rewards``, ``return``, ``success`` (bool or None), ``ground_truth`` (str or
    None; a number is taken as its text), ``transform``, ``transform_version``,
    ``training_step`` (int or None), ``source`` (e.g. ``"reward-service:qwen-prm"``, at
    most 64 characters), ``protocol``, and optionally ``success_weight`` (default 1.0,
    the transforms' default), which ``prm_return`` takes off a right answer's return.
    """
    project = Project.objects.filter(slug=project_slug).first()
    if project is None:
        raise UnknownProject(project_slug)
    by_source: dict[str, list[ParsedTrace]] = {}
    for record in records:
        trace = _parsed(record)
        by_source.setdefault(_text(record, "source", limit=None), []).append(trace)
    written = 0
    with transaction.atomic():
        for source, traces in by_source.items():
            written += write_traces(project, traces, source=source, fmt=SOURCE_FORMAT).traces
    return written


def _parsed(record: Mapping[str, Any]) -> ParsedTrace:
    key = _text(record, "key", limit=EXTERNAL_ID_MAX_LENGTH)
    if not key:
        raise BadRollout("a rollout's key is empty")
    where = f"rollout {key!r}"
    steps = record.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise BadRollout(f"{where}: steps must be a non-empty list of strings")
    if any("\x00" in step for step in steps):
        raise BadRollout(f"{where}: steps holds a NUL byte")
    ground_truth = record.get("ground_truth")
    if isinstance(ground_truth, int | float) and not isinstance(ground_truth, bool):
        ground_truth = str(ground_truth)  # a numeric answer, as some datasets give it
    if ground_truth is not None:
        ground_truth = _text(
            {"ground_truth": ground_truth}, "ground_truth", limit=None, where=where
        )
    step_scores = _numbers(record, "step_scores", len(steps), where)
    step_rewards = _numbers(record, "step_rewards", len(steps), where)
    total = _number(record, "return", where)
    weight = _number({"w": record.get("success_weight", DEFAULT_SUCCESS_WEIGHT)}, "w", where)
    success = record.get("success")
    if success is not None and not isinstance(success, bool):
        raise BadRollout(f"{where}: success must be true, false or null")
    training_step = record.get("training_step")
    if training_step is not None and (
        isinstance(training_step, bool) or not isinstance(training_step, int)
    ):
        raise BadRollout(f"{where}: training_step must be an integer or null")
    version = record.get("transform_version")
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise BadRollout(f"{where}: transform_version must be an integer or a string")
    response = _text(record, "response", limit=None, where=where)
    return ParsedTrace(
        problem=_text(record, "problem", limit=None, where=where),
        steps=steps,
        external_id=key,
        reference_answer=ground_truth or "",
        final_answer=extract_answer(response) or "",
        final_answer_correct=success,
        metadata={
            "rollout": {
                "transform": _text(record, "transform", limit=None, where=where),
                "transform_version": version,
                "step_scores": step_scores,
                "step_rewards": step_rewards,
                "return": total,
                "success": success,
                "success_weight": weight,
                "prm_return": total - weight if success else total,
                "training_step": training_step,
                "protocol": _text(record, "protocol", limit=None, where=where),
                "response_chars": len(response),
                "repeated_steps": repeated_steps(steps),
            }
        },
    )


def _text(record: Mapping[str, Any], field: str, *, limit: int | None, where: str = "") -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise BadRollout(f"{where or 'a rollout'}: {field} must be a string")
    if "\x00" in value:
        raise BadRollout(f"{where or 'a rollout'}: {field} holds a NUL byte")
    if limit is not None and len(value) > limit:
        raise BadRollout(f"{where or 'a rollout'}: {field} is longer than {limit} characters")
    return value


def _number(record: Mapping[str, Any], field: str, where: str) -> float:
    value = record.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRollout(f"{where}: {field} must be a finite number")
    return float(value)


def _numbers(record: Mapping[str, Any], field: str, length: int, where: str) -> list[float]:
    values = record.get(field)
    if not isinstance(values, list) or len(values) != length:
        raise BadRollout(f"{where}: {field} must be a list of {length} numbers, one per step")
    return [_number({field: v}, field, where) for v in values]


# -- reading, for the Rewards page ----------------------------------------------------------

SUSPECTS_SHOWN = 50
RETURN_BINS = 20
LENGTH_BINS = 20
_R = "metadata__rollout__"


@contextmanager
def reading() -> Iterator[None]:
    """One transaction for a partial's queries, with room to aggregate in memory: at 100k
    rollouts the grouping sorts carry each row's metadata and outgrow PostgreSQL's
    default 4 MB of ``work_mem``, spilling to disk; JIT would compile for the large row
    estimate for nothing (as the dashboards' queries set it, ``annotator/dashboards.py``).
    ``SET LOCAL`` ends with the transaction."""
    with transaction.atomic():
        if database.has_transaction_settings():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '64MB'")
                cursor.execute("SET LOCAL jit = off")
        yield


@dataclass(frozen=True)
class RolloutFilter:
    """Which rollouts the page shows: one transform (``(name, version)`` as stored, or
    None for all) and a training step range (None: open)."""

    transform: tuple[str, Any] | None = None
    step_from: int | None = None
    step_to: int | None = None


def rollouts(traces: TraceQuerySet) -> TraceQuerySet:
    """``traces`` (a ``TraceQuerySet``, already ``visible_to`` the member) narrowed to the
    logged rollouts, with their numbers as columns: ``transform``, ``version``,
    ``prm_return``, ``response_chars``, ``repeats``, ``training_step``."""
    return traces.filter(metadata__has_key="rollout").annotate(
        transform=F(f"{_R}transform"),
        version=F(f"{_R}transform_version"),
        prm_return=Cast(KT(f"{_R}prm_return"), FloatField()),
        response_chars=Cast(KT(f"{_R}response_chars"), IntegerField()),
        repeats=Cast(KT(f"{_R}repeated_steps"), IntegerField()),
        training_step=Cast(KT(f"{_R}training_step"), IntegerField()),
    )


def transforms(rows: TraceQuerySet) -> list[tuple[str, Any]]:
    """The distinct ``(transform, version)`` pairs of ``rollouts(...)``, sorted."""
    # order_by(): the model's default order would add the id to the DISTINCT.
    found = rows.values("transform", "version").distinct().order_by()
    pairs = {(r["transform"], r["version"]) for r in found}
    return sorted(pairs, key=lambda pair: (str(pair[0]), str(pair[1])))


def transform_label(name: str, version: Any) -> str:
    """``"clip-delta/v1"`` for version 1, as the service names it; a text version as it is."""
    return f"{name}/v{version}" if isinstance(version, int) else f"{name}/{version}"


def selected(rows: TraceQuerySet, rollout_filter: RolloutFilter) -> TraceQuerySet:
    """``rollouts(...)`` narrowed by the page's filter."""
    if rollout_filter.transform is not None:
        name, version = rollout_filter.transform
        rows = rows.filter(**{f"{_R}transform": name, f"{_R}transform_version": version})
    if rollout_filter.step_from is not None:
        rows = rows.filter(training_step__gte=rollout_filter.step_from)
    if rollout_filter.step_to is not None:
        rows = rows.filter(training_step__lte=rollout_filter.step_to)
    return rows


Series = dict[str, list[tuple[float, float, int]]]


def _series(grouped: Iterable[dict], x: Callable[[dict], float]) -> Series:
    """``{transform label: [(x, value, rollouts), ...]}`` from grouped rows."""
    out: Series = {}
    for row in grouped:
        out.setdefault(transform_label(row["transform"], row["version"]), []).append(
            (x(row), row["value"], row["n"])
        )
    return {label: sorted(points) for label, points in sorted(out.items())}


def return_by_steps(rows: TraceQuerySet) -> Series:
    """Mean PRM return per number of steps, per transform: one grouped query."""
    grouped = (
        rows.values("transform", "version", "num_steps")
        .annotate(value=Avg("prm_return"), n=Count("id"))
        .order_by()
    )
    return _series(grouped, lambda row: row["num_steps"])


@dataclass(frozen=True)
class Ranges:
    rollouts: int
    max_chars: int | None
    min_return: float | None
    max_return: float | None


def ranges(rows: TraceQuerySet) -> Ranges:
    """How many rollouts, their longest response and their PRM returns' range: one query."""
    found = rows.aggregate(
        n=Count("id"),
        max_chars=Max("response_chars"),
        lo=Min("prm_return"),
        hi=Max("prm_return"),
    )
    return Ranges(found["n"], found["max_chars"], found["lo"], found["hi"])


def return_by_length(rows: TraceQuerySet, extent: Ranges) -> Series:
    """Mean PRM return per response length bin (``LENGTH_BINS`` equal bins from 0 to the
    longest response; a point at its bin's centre, in characters), per transform: one
    query."""
    if not extent.max_chars:
        return {}
    width = max(1, math.ceil((extent.max_chars + 1) / LENGTH_BINS))
    grouped = (
        rows.annotate(bin=F("response_chars") / Value(width))
        .values("transform", "version", "bin")
        .annotate(value=Avg("prm_return"), n=Count("id"))
        .order_by()
    )
    return _series(grouped, lambda row: (row["bin"] + 0.5) * width)


def success_by_return(rows: TraceQuerySet, extent: Ranges) -> Series:
    """The share of graded rollouts with a right answer per PRM return bin
    (``RETURN_BINS`` equal bins over every shown rollout's range, so the transforms share
    one axis), per transform: one query. Rollouts without a ground truth are left out."""
    if extent.min_return is None or extent.max_return is None:
        return {}
    lo = extent.min_return
    width = (extent.max_return - lo) / RETURN_BINS or 1.0
    grouped = (
        rows.filter(final_answer_correct__isnull=False)
        .annotate(
            bin=Least(
                Cast(Floor((F("prm_return") - Value(lo)) / Value(width)), IntegerField()),
                Value(RETURN_BINS - 1),
            )
        )
        .values("transform", "version", "bin")
        .annotate(
            right=Count("id", filter=Q(final_answer_correct=True)),
            n=Count("id"),
        )
        .annotate(value=Cast(F("right"), FloatField()) / Cast(F("n"), FloatField()))
        .order_by()
    )
    return _series(grouped, lambda row: lo + (row["bin"] + 0.5) * width)


_SUSPECT_FIELDS = (
    "id",
    "external_id",
    "transform",
    "version",
    "prm_return",
    "num_steps",
    "repeats",
    "training_step",
)


def high_return_failures(rows: TraceQuerySet) -> tuple[list[dict], dict[str, float]]:
    """Hacking suspects of the first kind: rollouts whose answer is wrong although their
    PRM return is at least the mean PRM return of that transform's rollouts with a right
    answer (the PRM rates them as good as a typical success), furthest above it first, at
    most ``SUSPECTS_SHOWN``; and those means per transform label. Two queries."""
    means = (
        rows.filter(final_answer_correct=True)
        .values("transform", "version")
        .annotate(mean=Avg("prm_return"))
        .order_by()
    )
    thresholds = [(row["transform"], row["version"], row["mean"]) for row in means]
    if not thresholds:
        return [], {}
    threshold = Case(
        *(
            When(**{f"{_R}transform": name, f"{_R}transform_version": version}, then=Value(mean))
            for name, version, mean in thresholds
        ),
        default=Value(None),
        output_field=FloatField(),
    )
    found = (
        rows.filter(final_answer_correct=False)
        .annotate(margin=F("prm_return") - threshold)
        .filter(margin__gte=0)
        .order_by("-margin", "id")
        .values(*_SUSPECT_FIELDS, "margin")[:SUSPECTS_SHOWN]
    )
    return _labelled(found), {
        transform_label(name, version): mean for name, version, mean in thresholds
    }


def repeating_rollouts(rows: TraceQuerySet) -> list[dict]:
    """Hacking suspects of the second kind: rollouts with a step that repeats an earlier
    one (``repeated_steps`` >= 1), most repeats first, then the highest PRM return, at
    most ``SUSPECTS_SHOWN``. One query."""
    found = (
        rows.filter(repeats__gte=1)
        .order_by("-repeats", "-prm_return", "id")
        .values(*_SUSPECT_FIELDS)[:SUSPECTS_SHOWN]
    )
    return _labelled(found)


def _labelled(rows: Iterable[dict]) -> list[dict]:
    return [
        {**row, "transform_label": transform_label(row["transform"], row["version"])}
        for row in rows
    ]
