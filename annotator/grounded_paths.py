"""A grounded run's extracted paths brought into its project as traces, with their step
labels and tool transcripts (``GroundedPath``).

A finished search tree's paths (``scoring.grounded.traces.path_traces``: every extracted
path, wrong ones cut after their error, scores binarised, each marked consistent or not)
are written through the importer's own write path (``importing.import_traces``): source
``grounded:<run id>:<run name>``, external id ``p<problem id>/n<last node>``, the problem's
row found by its text, the split of the problem's first trace (so a held-out problem's
paths are held out too), the run's model as generator. The importer skips a trace the
project holds already, and a path row is written only for a trace that has none, so
bringing a run in again (a retried job, a second call) writes nothing twice. It is one
transaction: a worker killed in it leaves nothing.

The consistent paths' binarised scores are the run's ``grounded`` label set
(``annotator.labelsets``); the number of steps where the tool and the rollouts disagree
orders the queue (``ranking``'s ``tool_vs_rollouts``); the transcripts are the Label
page's evidence (:func:`path_evidence`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from annotator.importing import SOURCE_MAX_LENGTH, import_traces
from annotator.models import GroundedPath, GroundedRun, GroundedTree, Project, QueueOrder, Trace
from scoring.formats import ParsedTrace

if TYPE_CHECKING:
    from scoring.grounded.traces import PathTrace

FORMAT = "grounded"
TREES_PER_CHUNK = 100
GENERATOR_MAX_LENGTH: int = Trace._meta.get_field("generator").max_length


def run_source(run: GroundedRun) -> str:
    """The source of the run's traces: its id keeps it unique, its name says which run
    (cut to fit the column)."""
    return f"grounded:{run.pk}:{run.name}"[:SOURCE_MAX_LENGTH]


def external_id(problem_id: int, path: PathTrace) -> str:
    return f"p{problem_id}/n{path.last_node}"


def bring_in_paths(run: GroundedRun) -> dict[str, int]:
    """Write the paths of the run's finished trees as traces of its project (module
    docstring); returns the paths found, the traces and path rows written, and the
    traces found there already."""
    # Here, not at the top: the Label page imports this module, the search only workers.
    from scoring.grounded.search import SearchState
    from scoring.grounded.traces import path_traces

    project = run.project
    source = run_source(run)
    counts = {"paths": 0, "traces": 0, "duplicates": 0, "written": 0}
    tree_ids = list(
        GroundedTree.objects.filter(run=run, done=True)
        .order_by("problem_id")
        .values_list("id", flat=True)
    )
    new_traces: list[int] = []
    with transaction.atomic():
        for start in range(0, len(tree_ids), TREES_PER_CHUNK):
            rows = list(
                GroundedTree.objects.filter(pk__in=tree_ids[start : start + TREES_PER_CHUNK])
                .select_related("problem")
                .order_by("problem_id")
            )
            splits = _first_splits([row.problem_id for row in rows])
            made = [
                (row, path)
                for row in rows
                for path in path_traces(SearchState.from_dict(row.state).tree)
            ]
            parsed = [
                ParsedTrace(
                    problem=row.problem.text,
                    steps=list(path.steps),
                    external_id=external_id(row.problem_id, path),
                    reference_answer=row.problem.reference_answer,
                    generator=(run.model or run.generator)[:GENERATOR_MAX_LENGTH],
                    split=splits.get(row.problem_id, ""),
                    final_answer=path.final_answer,
                    final_answer_correct=path.final_answer_correct,
                    metadata={"grounded_run": run.name, "nodes": list(path.nodes)},
                )
                for row, path in made
            ]
            summary = import_traces(project, parsed, source=source, fmt=FORMAT)
            counts["paths"] += len(made)
            counts["traces"] += summary.traces
            counts["duplicates"] += summary.skipped_duplicates
            ids = dict(
                Trace.objects.filter(
                    project=project, source=source, external_id__in=[p.external_id for p in parsed]
                ).values_list("external_id", "id")
            )
            have = set(
                GroundedPath.objects.filter(trace_id__in=ids.values()).values_list(
                    "trace_id", flat=True
                )
            )
            rows_to_write = {}
            for (row, path), trace in zip(made, parsed, strict=True):
                trace_id = ids[trace.external_id]
                if trace_id not in have and trace_id not in rows_to_write:
                    rows_to_write[trace_id] = _path_row(run, row, trace_id, path)
            GroundedPath.objects.bulk_create(rows_to_write.values(), batch_size=1000)
            counts["written"] += len(rows_to_write)
            new_traces.extend(rows_to_write)
        _leave_to_be_ranked(project, new_traces)
    return counts


def _first_splits(problem_ids: list[int]) -> dict[int, str]:
    """Each problem's first trace's split."""
    splits: dict[int, str] = {}
    for problem_id, split in (
        Trace.objects.filter(problem_id__in=problem_ids)
        .order_by("problem_id", "id")
        .values_list("problem_id", "split")
    ):
        splits.setdefault(problem_id, split)
    return splits


def _path_row(run: GroundedRun, tree: GroundedTree, trace_id: int, path: PathTrace) -> GroundedPath:
    disagreeing = path.disagreeing_steps
    return GroundedPath(
        run=run,
        trace_id=trace_id,
        tree=tree,
        nodes=list(path.nodes),
        values=list(path.values),
        scores=list(path.scores),
        decisions=list(path.decisions),
        verdicts=[None if v is None else v.to_dict() for v in path.verdicts],
        judgements=[None if j is None else j.to_dict() for j in path.judgements],
        fused=list(path.fused),
        label=path.label,
        consistent=path.consistent,
        disagreeing=disagreeing,
        disagreements=len(disagreeing),
    )


def _leave_to_be_ranked(project: Project, trace_ids: list[int]) -> None:
    """Under the ``tool_vs_rollouts`` order the import ranked the new traces after every
    picked one (it ranks before their path rows exist): clear their ranks, so the next
    claim ranks them by their disagreements (``ranking.ensure_ranked``)."""
    order = Project.objects.filter(pk=project.pk).values_list("queue_order", flat=True).get()
    if order == QueueOrder.TOOL_VS_ROLLOUTS and trace_ids:
        for start in range(0, len(trace_ids), 5000):
            Trace.objects.filter(pk__in=trace_ids[start : start + 5000]).update(queue_rank=None)


def path_evidence(trace: Trace) -> dict[str, Any] | None:
    """The Label page's evidence for a trace brought in from a grounded run: per step its
    tool and judge transcripts, value, label and whether the tool and the rollouts
    disagree on it; None for any other trace."""
    path = GroundedPath.objects.filter(trace=trace).select_related("run").first()
    if path is None:
        return None
    disagreeing = set(path.disagreeing)
    steps = [
        {
            "index": index,
            "value": value,
            "score": score,
            "decision": decision or "unchecked",
            "verdict": verdict,
            "judgement": judgement,
            "fused": fused,
            "disagrees": index in disagreeing,
        }
        for index, (value, score, decision, verdict, judgement, fused) in enumerate(
            zip(
                path.values,
                path.scores,
                path.decisions,
                path.verdicts,
                path.judgements,
                path.fused,
                strict=True,
            )
        )
    ]
    return {"run": path.run, "consistent": path.consistent, "steps": steps}
