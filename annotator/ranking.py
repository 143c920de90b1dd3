"""Where each trace stands in a project's annotation queue: ``Trace.queue_rank``.

Queue orders are pluggable: each is a function giving the rank expression written to
``Trace.queue_rank`` (import order, a seeded hash for a random order, or a model-driven
order read off a scoring run). ``Project.queue_ranked_as`` names the order the ranks
stand for; a claim re-ranks when the project's order, seed or run changes
(``ensure_ranked``). An import ranks the traces it writes itself (``import_ranks``),
so the first claim after it does not rank a hundred thousand rows while an annotator
waits; the importer uses this module without loading the queue's claim logic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import BigIntegerField, Expression, F, Func, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from annotator import database
from annotator.models import Project, QueueOrder, Trace


def _rank_import_order(project: Project) -> Expression:
    return F("id")


def _rank_random(project: Project) -> Expression:
    # PostgreSQL's seeded 64-bit hash: a different, reproducible permutation per seed.
    return Func(
        Cast(F("id"), BigIntegerField()),
        Cast(Value(project.queue_seed), BigIntegerField()),
        function="hashint8extended",
        output_field=BigIntegerField(),
    )


# Model-driven orders (PRM800K picked "convincing wrong-answer" solutions this way each
# round): a rank of ``strength << 32 | id`` puts the strongest cases first and keeps
# import order among equals; traces the order has nothing to say about come after all
# of them. Only ranks are written: annotators never see a score.
_LAST = 1 << 30  # strength bucket of the traces an order does not pick


def _strength_rank(strength_sql: str) -> str:
    """``strength << 32 | id`` for a scalar subquery giving the strength (NULL: not
    picked), in SQL that PostgreSQL and SQLite (the demo) both read: ``CAST``, ``CASE``
    and ``min``/``max`` aggregates only, no ``::``, ``least``/``greatest`` or
    ``IS DISTINCT FROM``."""
    return f"CAST(coalesce(({strength_sql}), %s) AS bigint) * 4294967296 + annotator_trace.id"


def _clamp01(sql: str) -> str:
    return f"(CASE WHEN {sql} < 0 THEN 0 WHEN {sql} > 1 THEN 1 ELSE {sql} END)"


def _rank_convincing_wrong(project: Project) -> Expression:
    """Wrong final answers with the highest lowest-step score under the queue run."""
    strength = f"""SELECT 1000000 - round({_clamp01("ts.min_score")} * 1000000)
                     FROM annotator_tracescore ts
                    WHERE ts.run_id = %s AND ts.trace_id = annotator_trace.id
                      AND annotator_trace.final_answer_correct = %s
                      AND {database.is_a_number_sql("ts.min_score")}"""
    return RawSQL(
        _strength_rank(strength),
        [project.queue_run_id or 0, False, _LAST],
        output_field=BigIntegerField(),
    )


def _rank_runs_disagree(project: Project) -> Expression:
    """Traces whose finished runs predict the most different first errors, then the
    widest spread of their lowest-step scores."""
    spread = "max(ts.min_score) - min(ts.min_score)"
    strength = f"""SELECT CASE WHEN count(*) < 2 THEN NULL
                              ELSE (1000 - count(DISTINCT ts.predicted_first_error)) * 1000000
                                   + round(1000000 - (CASE WHEN {spread} > 1 THEN 1
                                                           ELSE {spread} END) * 1000000) END
                     FROM annotator_tracescore ts JOIN annotator_scoringrun r ON r.id = ts.run_id
                    WHERE ts.trace_id = annotator_trace.id AND r.status = 'done'
                      AND {database.is_a_number_sql("ts.min_score")}"""
    return RawSQL(_strength_rank(strength), [_LAST], output_field=BigIntegerField())


def _rank_run_vs_humans(project: Project) -> Expression:
    """Traces where a latest label's first error differs from the queue run's
    prediction (a second opinion), most disputed labels first."""
    strength = """SELECT CASE WHEN count(*) > 0 THEN 1000 - count(*) END
                    FROM annotator_annotation a
                    JOIN annotator_tracescore ts ON ts.trace_id = a.trace_id AND ts.run_id = %s
                   WHERE a.trace_id = annotator_trace.id AND a.is_latest
                     AND a.first_error_step IS NOT NULL
                     AND (ts.predicted_first_error IS NULL
                          OR a.first_error_step <> ts.predicted_first_error)"""
    return RawSQL(
        _strength_rank(strength),
        [project.queue_run_id or 0, _LAST],
        output_field=BigIntegerField(),
    )


def _rank_tool_vs_rollouts(project: Project) -> Expression:
    """Traces brought in from grounded runs (``annotator.grounded_paths``) with the most
    steps whose tool verdict disagrees with the sign of their fused rollout value
    (GroundedPRM's two signals; where they part a person decides), most first."""
    strength = """SELECT CASE WHEN max(gp.disagreements) > 0 THEN 1000000 - max(gp.disagreements) END
                    FROM annotator_groundedpath gp
                   WHERE gp.trace_id = annotator_trace.id"""
    return RawSQL(_strength_rank(strength), [_LAST], output_field=BigIntegerField())


QUEUE_ORDERS: dict[str, Callable[[Project], Expression]] = {
    QueueOrder.IMPORT: _rank_import_order,
    QueueOrder.RANDOM: _rank_random,
    QueueOrder.CONVINCING_WRONG: _rank_convincing_wrong,
    QueueOrder.RUNS_DISAGREE: _rank_runs_disagree,
    QueueOrder.RUN_VS_HUMANS: _rank_run_vs_humans,
    QueueOrder.TOOL_VS_ROLLOUTS: _rank_tool_vs_rollouts,
}


@dataclass(frozen=True)
class ImportRanks:
    """How an import ranks the traces it writes: decided once, in its transaction."""

    settings: Project  # an unsaved copy of the queue settings stored when it began
    # A new trace's rank from its id, written with the row; None (the random order):
    # ranked once the rows are written, by the seeded hash a claim ranks them with.
    rank: Callable[[int], int] | None
    first: bool  # the project had no traces: the import's ranks are all there are


def import_ranks(project: Project) -> ImportRanks | None:
    """How an import into ``project`` ranks its traces, or None to leave them to the
    next claim (the project's ranks are due to be recomputed anyway).

    A trace new to the project has no scores and no labels but the import's own, so
    the model-driven orders put it after every trace they pick, in import order:
    their expressions give it ``_LAST << 32`` plus its id. The settings are read as
    stored now, not as the caller loaded them: ranks written under an order the
    project has since left would pass for current ones."""
    settings, ranked_as = _stored_queue(project)
    first = not Trace.objects.filter(project=project).exists()
    if rank_key(settings) != ranked_as and not first:
        return None
    if settings.queue_order == QueueOrder.IMPORT:
        rank = _identity
    elif settings.queue_order == QueueOrder.RANDOM:
        rank = None
    else:
        rank = _after_the_picked
    return ImportRanks(settings, rank, first)


def _identity(trace_id: int) -> int:
    return trace_id


def _after_the_picked(trace_id: int) -> int:
    return (_LAST << 32) + trace_id


def finish_import_ranks(ranks: ImportRanks, first_id: int) -> None:
    """After an import wrote its traces (ids from ``first_id``), before it commits:
    rank them if only the database can, and for a project's first traces record the
    order they are ranked for, so the next claim finds nothing to do.

    Under the project row lock, which a re-ranking claim and a settings change take
    too, held to the commit. When the project's ranks stand for another order by now
    (a claim re-ranked it for new settings while the import ran), the import's ranks
    are cleared, and the next claim ranks its traces."""
    key = rank_key(ranks.settings)
    stored, ranked_as = _stored_queue(ranks.settings, lock=True)
    unranked = Trace.objects.filter(project=ranks.settings, queue_rank__isnull=True)
    if ranks.first and rank_key(stored) == key:
        # Whatever order the empty project was ranked for (a claim before any trace),
        # its traces are the import's, ranked for the order it still asks for.
        if ranks.rank is None:
            _write_ranks(ranks.settings, unranked)
        if ranked_as != key:
            Project.objects.filter(pk=ranks.settings.pk).update(queue_ranked_as=key)
        return
    if ranked_as not in (key, ""):
        Trace.objects.filter(project=ranks.settings, id__gte=first_id).update(queue_rank=None)
    elif ranked_as == key and ranks.rank is None:
        _write_ranks(ranks.settings, unranked)


def _stored_queue(project: Project, *, lock: bool = False) -> tuple[Project, str]:
    """The project's queue settings as stored (an unsaved copy), and its ranked-as key."""
    rows = Project.objects.filter(pk=project.pk)
    order, seed, run_id, ranked_as = (
        # FOR NO KEY UPDATE: it waits for a re-ranking claim, not for rows being
        # inserted that point at the project (their foreign-key checks' KEY SHARE).
        (rows.select_for_update(no_key=True) if lock else rows)
        .values_list("queue_order", "queue_seed", "queue_run_id", "queue_ranked_as")
        .get()
    )
    return Project(
        pk=project.pk, queue_order=order, queue_seed=seed, queue_run_id=run_id
    ), ranked_as


def rank_key(project: Project) -> str:
    # The queue run is part of the key: picking another run re-ranks.
    return f"{project.queue_order}:{project.queue_seed}:{project.queue_run_id or ''}"


def ensure_ranked(project: Project) -> None:
    """Give every trace of the project its rank in the current queue order.

    One cheap query when nothing changed (a partial index covers unranked rows).
    Ranking takes the project row lock: concurrent first claims after an import would
    otherwise update the same trace rows in different orders and deadlock."""
    key = rank_key(project)
    if (
        project.queue_ranked_as == key
        and not Trace.objects.filter(project=project, queue_rank__isnull=True).exists()
    ):
        return
    with transaction.atomic():
        ranked_as = (
            Project.objects.select_for_update()
            .filter(pk=project.pk)
            .values_list("queue_ranked_as", flat=True)
            .get()
        )
        traces = Trace.objects.filter(project=project)
        if ranked_as != key:
            _write_ranks(project, traces)
            Project.objects.filter(pk=project.pk).update(queue_ranked_as=key)
        else:
            _write_ranks(project, traces.filter(queue_rank__isnull=True))
    project.queue_ranked_as = key


def _write_ranks(project: Project, traces) -> None:
    if project.queue_order == QueueOrder.RANDOM and not database.has_seeded_hash():
        # The embedded SQLite demo has no seeded hash function; rank in Python.
        # Random 62-bit ranks, like the hash's: traces ranked later (a new import)
        # interleave with the earlier ones instead of colliding with their ranks.
        for trace_id in traces.order_by("id").values_list("id", flat=True):
            rank = random.Random(f"{project.queue_seed}:{trace_id}").getrandbits(62)
            Trace.objects.filter(pk=trace_id).update(queue_rank=rank)
        return
    traces.update(queue_rank=QUEUE_ORDERS[project.queue_order](project))
