"""The trace page's grounded search trees: for each grounded run that searched the trace's
problem, its tree, nodes coloured by their step's decision and shaded by value, with visits,
and each node's tool and judge transcripts on click (a ``<details>`` per node, no script).

The trees hold rollouts graded against the reference answer, and verdicts that give it
away, so they are for the members who see both the model scores and the reference answer;
the others get a 404 here and no section on the page.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotator.access import get_trace_for_user
from annotator.models import GroundedTree, Membership


def sees_grounded_trees(membership: Membership) -> bool:
    return membership.sees_model_scores() and membership.sees_reference_answer()


@login_required
@require_GET
def trace_grounded(request: HttpRequest, slug: str, trace_id: int) -> HttpResponse:
    """The ``grounded-trees`` partial, which the trace page loads after itself."""
    membership, trace = get_trace_for_user(request.user, slug, trace_id, allow=sees_grounded_trees)
    rows = (
        GroundedTree.objects.filter(run__project=membership.project, problem=trace.problem_id)
        .select_related("run")
        .order_by("-run_id")
    )
    context = {
        "project": membership.project,
        "membership": membership,
        "trace": trace,
        "grounded_trees": [
            {"run": row.run, "row": row, "root": node_tree(row.state)} for row in rows
        ],
    }
    return render(request, "grounded_trees.html#grounded-trees", context)


def node_tree(state: dict[str, Any]) -> dict[str, Any]:
    """The stored search state's nodes nested under the root: each node's children are the
    tree nodes and rollout steps whose parent it is, in id order."""
    nodes = state["tree"]["nodes"]
    views = [_node_view(node) for node in nodes]
    for node, view in zip(nodes, views, strict=True):
        if node["parent"] is not None:
            views[node["parent"]]["children"].append(view)
    return views[0]


def _node_view(node: dict[str, Any]) -> dict[str, Any]:
    step = node["step"] or {}
    verdict, judgement = node["verdict"], node["judgement"]
    deciding = judgement or verdict
    value = float(node["value"])
    return {
        "id": node["id"],
        "objective": step.get("step objective", ""),
        "action": step.get("action", ""),
        "decision": deciding["decision"] if deciding else "unchecked",
        "verdict": verdict,
        "judgement": judgement,
        "value": value,
        # -1 .. 1 onto the score colour scale (0 red, 1 green); beyond it, clamped
        "hue": f"{(max(-1.0, min(1.0, value)) + 1) / 2:.3f}",
        "visits": node["visits"],
        "virtual": node["virtual"],
        "terminal": node["terminal"],
        "children": [],
    }
