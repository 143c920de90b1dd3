"""Scorers and scoring runs: the scorer registry, a project's runs (start, follow,
cancel, retry), score-file imports (queue one, follow, cancel, retry) and one trace's
scores by run."""

from __future__ import annotations

import math
from dataclasses import asdict
from functools import partial
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import jobs, runs
from annotator.access import get_membership, get_trace_for_user
from annotator.api.common import (
    JOB_FIELDS,
    ShardsField,
    job_actions,
    job_detail,
    project_seeing_scores,
    queued,
    shard_traces_field,
    upload_refused,
)
from annotator.models import Membership, ScoreImportJob, Scorer, ScoringRun
from annotator.scorers import validate_scorer


class ScorerSerializer(serializers.ModelSerializer):
    queue = serializers.CharField(read_only=True)

    class Meta:
        model = Scorer
        fields = ["id", "name", "adapter", "model", "revision", "options", "queue", "created_at"]

    def validate(self, attrs: dict) -> dict:
        errors = validate_scorer(
            attrs.get("adapter", ""), attrs.get("model", ""), attrs.get("options", {})
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ScorerList(generics.ListCreateAPIView):
    """The scorers the user may see (``Scorer.objects.visible_to``: the site-wide ones
    and their projects'); only staff register scorers, since a scorer decides which
    weights and code a GPU worker loads."""

    serializer_class = ScorerSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Scorer]:
        return Scorer.objects.visible_to(self.request.user)

    def perform_create(self, serializer: ScorerSerializer) -> None:
        if not self.request.user.is_staff:
            raise PermissionDenied("only staff register scorers")
        serializer.save(created_by=self.request.user)


class ScoringRunSerializer(serializers.ModelSerializer):
    scorer = serializers.CharField(source="scorer.name", allow_null=True, read_only=True)
    tokens_per_second = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    shards = ShardsField()

    class Meta:
        model = ScoringRun
        fields = [
            "id",
            "name",
            "scorer",
            "source",
            "selection",
            "provenance",
            "threshold",
            "status",
            "queue",
            "progress_done",
            "progress_total",
            "tokens",
            "tokens_per_second",
            "eta_seconds",
            "shards",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "summary",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class UsableScorerField(serializers.SlugRelatedField):
    """A scorer by name among those the project (``context["project"]``) may use: another
    project's scorer is refused as one that does not exist, so the answer does not tell
    whether it does."""

    def get_queryset(self) -> QuerySet[Scorer]:
        return Scorer.objects.usable_in(self.context["project"])

    def to_internal_value(self, data: Any) -> Scorer:
        # PostgreSQL refuses NUL in text: a name holding one names no scorer.
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value="(a NUL byte)")
        return super().to_internal_value(data)


class RunRequestSerializer(serializers.Serializer):
    # ``queryset`` for the schema; the field looks up in the project's usable scorers.
    scorer = UsableScorerField(slug_field="name", queryset=Scorer.objects.all())
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)
    selection = serializers.DictField(required=False, default=dict)
    shard_traces = shard_traces_field()


class ScoreImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.SlugField(max_length=100)


class ScoreImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ScoreImportJob
        fields = ["id", "file_name", "name", "run", *JOB_FIELDS]


@extend_schema(
    methods=["GET"], responses=ScoringRunSerializer(many=True), description="The project's runs."
)
@extend_schema(
    methods=["POST"],
    request=RunRequestSerializer,
    responses={202: ScoringRunSerializer, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    description="Start a run of a scorer over a selection of traces (owners).",
)
@api_view(["GET", "POST"])
def run_list(request: Request, slug: str) -> Response:
    if request.method == "GET":
        project = project_seeing_scores(request, slug)
        runs_ = ScoringRun.objects.filter(project=project).select_related("scorer")
        return Response(ScoringRunSerializer(runs_, many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = RunRequestSerializer(data=request.data, context={"project": project})
    params.is_valid(raise_exception=True)
    data = params.validated_data
    start = partial(
        runs.start_run,
        project,
        data["scorer"],
        request.user,
        selection=data["selection"],
        name=data["name"],
        shard_traces=data["shard_traces"],
    )
    return queued(ScoringRunSerializer, start)


@extend_schema(responses=ScoringRunSerializer)
@api_view(["GET"])
def run_detail(request: Request, slug: str, run_id: int) -> Response:
    """A run, with the ProcessBench table against the human labels once it is done, for
    members who see everyone's labels (its per-split counts are the human verdicts)."""
    with_scorer = ScoringRun.objects.select_related("scorer")
    membership, run = jobs.get_job_for_user(
        request.user, slug, with_scorer, run_id, allow=Membership.sees_model_scores
    )
    data = ScoringRunSerializer(run).data
    if membership.sees_all_labels():
        data["processbench"] = [
            {"split": row.split, **_finite_dict(asdict(row.result))}
            for row in (runs.processbench_rows(run) if run.status == "done" else [])
        ]
    return Response(data)


def _finite_dict(values: dict) -> dict:
    """JSON has no NaN: an empty class's accuracy is null, as nan is in ProcessBench."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


run_cancel, run_retry = job_actions(ScoringRun, ScoringRunSerializer, "run_id")


@extend_schema(
    request=ScoreImportSerializer,
    responses={
        202: ScoreImportJobSerializer,
        400: OpenApiTypes.OBJECT,
        413: OpenApiTypes.OBJECT,
        503: OpenApiTypes.OBJECT,
    },
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def run_import(request: Request, slug: str) -> Response:
    """Queue a score file (``python -m scoring score`` output) for import as a run, as
    trace imports are queued; follow the job at ``runs/imports/{id}/``, whose ``run`` is
    the run once it is done."""
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    if refused := upload_refused(request):
        return refused
    params = ScoreImportSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    start = partial(runs.start_score_import, project, request.user, data["file"], name=data["name"])
    return queued(ScoreImportJobSerializer, start)


score_import_detail = job_detail(ScoreImportJob, ScoreImportJobSerializer)
score_import_cancel, score_import_retry = job_actions(
    ScoreImportJob, ScoreImportJobSerializer, "job_id"
)


@extend_schema(responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
def trace_scores(request: Request, slug: str, trace_id: int) -> Response:
    """``{"runs": {run name: [score per step, null where no verdict]}}`` for this trace."""
    membership, trace = get_trace_for_user(
        request.user, slug, trace_id, allow=Membership.sees_model_scores
    )
    project_runs = {
        run.pk: run.name for run in ScoringRun.objects.filter(project=membership.project)
    }
    by_run = runs.scores_by_trace(project_runs, trace)
    return Response(
        {
            "trace": trace.pk,
            "runs": {
                project_runs[run_id]: [None if math.isnan(s) else s for s in scores]
                for run_id, scores in by_run.items()
            },
        }
    )
