"""Grounded runs: start one, follow it, cancel or retry it, download its step labels; and
the trace page's grounded search trees (for each grounded run that searched the trace's
problem, its tree, nodes coloured by their step's decision and shaded by value, with
visits, and each node's tool and judge transcripts on click: a ``<details>`` per node, no
script).

The trees and the labels hold rollouts graded against the reference answer, and verdicts
that give it away, so every page here is for the members who see both the model scores and
the reference answer (a 404 for the others). Starting a run is for owners who are also
staff (``Membership.may_run_worker_jobs``): the completer specs make the workers call a URL
or load a model, a decision about what the workers run.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from annotator import grounded, jobs, shards
from annotator.access import get_membership, get_trace_for_user
from annotator.grounded_paths import run_source
from annotator.models import GroundedPath, GroundedRun, GroundedSelection, GroundedTree, Membership
from annotator.views.jobs import cancel_and_retry, shard_traces_field, start_from_form


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


class GroundedForm(forms.Form):
    generator = forms.CharField(
        max_length=500,
        help_text="openai:http://host:8000/v1 (a vLLM server) or hf:MODEL (a hub id, or a path "
        "inside the model directory)",
    )
    model = forms.CharField(max_length=500, required=False, help_text="The served model's name.")
    judge = forms.CharField(
        max_length=500,
        initial=grounded.TOOL,
        help_text="tool (the tool's result decides, no judge model), or a judge completer",
    )
    judge_model = forms.CharField(
        max_length=500, required=False, help_text="The served judge's name (default: the model)."
    )
    search_selection = forms.ChoiceField(choices=GroundedSelection.choices, label="Selection")
    seed = forms.IntegerField(min_value=0, max_value=2**32 - 1, initial=0)
    temperature = forms.FloatField(min_value=0, max_value=2, initial=1.0)
    judge_temperature = forms.FloatField(min_value=0, max_value=2, initial=0.6)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=1024)
    chat = forms.BooleanField(required=False, initial=True, help_text="Chat completions.")
    split = forms.CharField(max_length=64, required=False, help_text="Only this split.")
    name = forms.SlugField(max_length=100, required=False)
    shard_traces = shard_traces_field("problems")


def _page(request: HttpRequest, membership: Membership, form: GroundedForm | None, status=200):
    project = membership.project
    return render(
        request,
        "grounded_runs.html",
        {
            "project": project,
            "membership": membership,
            "runs": project.grounded_runs.order_by("-id"),
            "form": (form or GroundedForm()) if membership.may_run_worker_jobs() else None,
        },
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def grounded_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, allow=sees_grounded_trees)
    if request.method == "GET":
        return _page(request, membership, None)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start grounded runs")
    form = GroundedForm(request.POST)
    if not form.is_valid():
        return _page(request, membership, form, status=400)
    data = form.cleaned_data

    def options(spec: str, temperature: float) -> dict:
        chosen = {
            "max_tokens": data["max_tokens"],
            "seed": data["seed"],
            "temperature": temperature,
        }
        return {**chosen, "chat": data["chat"]} if spec.startswith("openai:") else chosen

    judge_options = options(data["judge"], data["judge_temperature"])
    run, status = start_from_form(
        form,
        lambda: grounded.start_grounded_run(
            membership.project,
            request.user,
            generator=data["generator"],
            model=data["model"],
            judge=data["judge"],
            judge_model=data["judge_model"],
            search_selection=data["search_selection"],
            seed=data["seed"],
            options=options(data["generator"], data["temperature"]),
            judge_options=judge_options if data["judge"] != grounded.TOOL else {},
            selection={"split": data["split"]},
            name=data["name"],
            shard_traces=data["shard_traces"],
        ),
    )
    if run is None:
        return _page(request, membership, form, status=status)
    return redirect("grounded-run", slug=slug, run_id=run.pk)


@login_required
@require_GET
def grounded_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    membership, run = jobs.get_job_for_user(
        request.user, slug, GroundedRun, run_id, allow=sees_grounded_trees
    )
    trees = (
        GroundedTree.objects.filter(run=run)
        .select_related("problem")
        .only("problem__text", "rounds", "nodes", "done", "run_id")
        .order_by("problem_id")
    )
    context = {
        "project": membership.project,
        "membership": membership,
        "run": run,
        "trees": trees,
        "source": run_source(run),
        "brought_in": GroundedPath.objects.filter(run=run).count(),
        "shards": shards.overview(run),
    }
    template = "grounded_run.html#grounded-run-status" if request.htmx else "grounded_run.html"
    return render(request, template, context)


EXPORTS = {"trl": "trl_records", "generative": "generative_records"}


@login_required
@require_GET
def grounded_export(request: HttpRequest, slug: str, run_id: int, kind: str) -> HttpResponse:
    """The run's finished trees as step labels, JSONL: TRL stepwise records or the
    generative conversations (``scoring.grounded.exports``)."""
    from scoring.grounded import exports
    from scoring.grounded.search import SearchState

    membership, run = jobs.get_job_for_user(
        request.user, slug, GroundedRun, run_id, allow=sees_grounded_trees
    )
    records = getattr(exports, EXPORTS[kind])
    lines = []
    for row in GroundedTree.objects.filter(run=run, done=True).order_by("problem_id"):
        for record in records(SearchState.from_dict(row.state)):
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    response = HttpResponse("".join(lines), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{run.name}-{kind}.jsonl"'
    return response


grounded_cancel, grounded_retry = cancel_and_retry(GroundedRun, "grounded-run", "run_id")
