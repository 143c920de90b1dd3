"""The REST API under ``/api/v1/``: small, explicit, and calling the same services as
the HTML views. Token or session auth; non-members get 404 like in the UI."""

from __future__ import annotations

import math
from dataclasses import asdict

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import jobs, runs
from annotator.access import get_membership, get_trace_for_user
from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES
from annotator.importing import start_import
from annotator.models import (
    Annotation,
    ImportJob,
    Membership,
    Project,
    Scorer,
    ScoringRun,
    Trace,
)
from annotator.scorers import validate_scorer
from annotator.services import filter_traces, visible_annotations
from annotator.views.exports import FILE_TYPES, export_response
from scoring.formats import FORMATS
from scoring.steps import SPLITTERS


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "guidelines",
            "annotators_per_trace",
            "label_scheme",
            "created_at",
        ]


class TraceSerializer(serializers.ModelSerializer):
    problem = serializers.CharField(source="problem.text")
    reference_answer = serializers.CharField(source="problem.reference_answer", allow_null=True)

    class Meta:
        model = Trace
        fields = [
            "id",
            "source",
            "external_id",
            "generator",
            "split",
            "problem",
            "reference_answer",
            "final_answer",
            "final_answer_correct",
            "num_steps",
            "metadata",
        ]

    def to_representation(self, trace: Trace) -> dict:
        """Annotators get no reference answer where the project hides it from them."""
        data = super().to_representation(trace)
        membership = self.context.get("membership")
        if membership is None or not membership.sees_reference_answer():
            data["reference_answer"] = None
        return data


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")

    class Meta:
        model = Annotation
        fields = [
            "id",
            "annotator",
            "external_annotator",
            "kind",
            "first_error_step",
            "step_ratings",
            "bad_problem",
            "gave_up",
            "bad_step_split",
            "flag_reason",
            "note",
            "seconds_spent",
            "version",
            "created_at",
        ]


class TraceDetailSerializer(TraceSerializer):
    steps = serializers.SerializerMethodField()
    annotations = serializers.SerializerMethodField()

    class Meta(TraceSerializer.Meta):
        fields = [*TraceSerializer.Meta.fields, "steps", "annotations"]

    def get_steps(self, trace: Trace) -> list[str]:
        return trace.step_texts

    def get_annotations(self, trace: Trace) -> list[dict]:
        membership = self.context["membership"]
        return AnnotationSerializer(visible_annotations(membership, trace), many=True).data


class ImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = [
            "id",
            "file_name",
            "format",
            "status",
            "queue",
            "progress_done",
            "progress_total",
            "attempts",
            "max_attempts",
            "cancel_requested",
            "heartbeat_at",
            "summary",
            "error",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
        ]


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=("auto", *FORMATS), default="auto")
    split = serializers.CharField(required=False, allow_blank=True, default="")
    step_splitter = serializers.ChoiceField(choices=tuple(SPLITTERS), default="paragraphs")


class ProjectList(generics.ListAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        return Project.objects.filter(memberships__user=self.request.user).order_by("slug")


@extend_schema(responses=ProjectSerializer)
@api_view(["GET"])
def project_detail(request: Request, slug: str) -> Response:
    project = get_membership(request.user, slug).project
    return Response(ProjectSerializer(project).data)


class TraceList(generics.ListAPIView):
    serializer_class = TraceSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("split", str),
            OpenApiParameter("generator", str),
            OpenApiParameter("labelled", str, enum=["yes", "no"]),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        self.membership = get_membership(self.request.user, self.kwargs["slug"])
        return filter_traces(self.membership.project, self.request.query_params)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "membership": self.membership}


@extend_schema(responses=TraceDetailSerializer)
@api_view(["GET"])
def trace_detail(request: Request, slug: str, trace_id: int) -> Response:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    return Response(TraceDetailSerializer(trace, context={"membership": membership}).data)


@extend_schema(
    request=ImportRequestSerializer, responses={202: ImportJobSerializer, 503: OpenApiTypes.OBJECT}
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def import_create(request: Request, slug: str) -> Response:
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = ImportRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    try:
        job = start_import(
            project,
            request.user,
            params.validated_data["file"],
            fmt=params.validated_data["format"],
            split=params.validated_data["split"],
            step_splitter=params.validated_data["step_splitter"],
        )
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def _broker_down(exc: jobs.EnqueueError) -> Response:
    return Response(
        {"detail": str(exc), "code": "broker_unavailable"},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "30"},
    )


def _import_job(request: Request, slug: str, job_id: int) -> ImportJob:
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    return get_object_or_404(ImportJob, project=project, pk=job_id)


@extend_schema(responses=ImportJobSerializer)
@api_view(["GET"])
def import_detail(request: Request, slug: str, job_id: int) -> Response:
    return Response(ImportJobSerializer(_import_job(request, slug, job_id)).data)


@extend_schema(request=None, responses=ImportJobSerializer)
@api_view(["POST"])
def import_cancel(request: Request, slug: str, job_id: int) -> Response:
    """Cancel a queued import now, or ask a running one to stop at its next chunk."""
    job = jobs.cancel(_import_job(request, slug, job_id))
    return Response(ImportJobSerializer(job).data)


@extend_schema(
    request=None,
    responses={202: ImportJobSerializer, 409: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
)
@api_view(["POST"])
def import_retry(request: Request, slug: str, job_id: int) -> Response:
    """Queue a failed or cancelled import again."""
    try:
        job = jobs.retry(_import_job(request, slug, job_id))
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    except ValueError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), default="jsonl"),
        OpenApiParameter("labels", str, enum=list(LABEL_SOURCES), default="human"),
        OpenApiParameter("split", str),
        OpenApiParameter("file", str, enum=list(FILE_TYPES), default="jsonl"),
    ],
    responses={
        (200, "application/x-ndjson"): OpenApiTypes.STR,
        (200, "application/octet-stream"): OpenApiTypes.BINARY,
    },
)
@api_view(["GET"])
def export(request: Request, slug: str) -> HttpResponseBase:
    """The same download as the project page's (see ``export_response``)."""
    project = get_membership(request.user, slug, allow=Membership.may_review).project
    return export_response(project, request.query_params)


# -- scorers and scoring runs ---------------------------------------------------------------


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
    """Every logged-in user sees the registry; only staff register scorers, since a
    scorer decides which weights and code a GPU worker loads."""

    queryset = Scorer.objects.all()
    serializer_class = ScorerSerializer
    pagination_class = None

    def perform_create(self, serializer: ScorerSerializer) -> None:
        if not self.request.user.is_staff:
            raise PermissionDenied("only staff register scorers")
        serializer.save(created_by=self.request.user)


class ScoringRunSerializer(serializers.ModelSerializer):
    scorer = serializers.CharField(source="scorer.name", allow_null=True, read_only=True)
    tokens_per_second = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)

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
            "attempts",
            "max_attempts",
            "cancel_requested",
            "summary",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RunRequestSerializer(serializers.Serializer):
    scorer = serializers.SlugRelatedField(slug_field="name", queryset=Scorer.objects.all())
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)
    selection = serializers.DictField(required=False, default=dict)


class ScoreImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.SlugField(max_length=100)


def _project_seeing_scores(request: Request, slug: str) -> Project:
    return get_membership(request.user, slug, allow=Membership.sees_model_scores).project


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
        project = _project_seeing_scores(request, slug)
        runs_ = ScoringRun.objects.filter(project=project).select_related("scorer")
        return Response(ScoringRunSerializer(runs_, many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = RunRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    try:
        run = runs.start_run(
            project,
            params.validated_data["scorer"],
            request.user,
            selection=params.validated_data["selection"],
            name=params.validated_data["name"],
        )
    except runs.RunError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    return Response(ScoringRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _run(request: Request, slug: str, run_id: int, allow) -> ScoringRun:
    project = get_membership(request.user, slug, allow=allow).project
    return get_object_or_404(
        ScoringRun.objects.select_related("scorer"), project=project, pk=run_id
    )


@extend_schema(responses=ScoringRunSerializer)
@api_view(["GET"])
def run_detail(request: Request, slug: str, run_id: int) -> Response:
    """A run, with the ProcessBench table against the human labels once it is done."""
    run = _run(request, slug, run_id, Membership.sees_model_scores)
    data = ScoringRunSerializer(run).data
    data["processbench"] = [
        {"split": row.split, **_finite_dict(asdict(row.result))}
        for row in (runs.processbench_rows(run) if run.status == "done" else [])
    ]
    return Response(data)


def _finite_dict(values: dict) -> dict:
    """JSON has no NaN: an empty class's accuracy is null, as nan is in ProcessBench."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


@extend_schema(request=None, responses=ScoringRunSerializer)
@api_view(["POST"])
def run_cancel(request: Request, slug: str, run_id: int) -> Response:
    run = jobs.cancel(_run(request, slug, run_id, Membership.may_manage))
    return Response(ScoringRunSerializer(run).data)


@extend_schema(
    request=None,
    responses={202: ScoringRunSerializer, 409: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
)
@api_view(["POST"])
def run_retry(request: Request, slug: str, run_id: int) -> Response:
    """Queue a failed or cancelled run again; it resumes after the traces it stored."""
    try:
        run = jobs.retry(_run(request, slug, run_id, Membership.may_manage))
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    except ValueError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return Response(ScoringRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    request=ScoreImportSerializer, responses={201: ScoringRunSerializer, 400: OpenApiTypes.OBJECT}
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def run_import(request: Request, slug: str) -> Response:
    """Store a score file (``python -m scoring score`` output) as an imported run."""
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = ScoreImportSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    upload = params.validated_data["file"]
    try:
        run = runs.import_scores(
            project, upload, upload.name, name=params.validated_data["name"], user=request.user
        )
    except runs.RunError as exc:
        return Response(
            {"detail": f"{exc}. Nothing was imported."}, status=status.HTTP_400_BAD_REQUEST
        )
    return Response(ScoringRunSerializer(run).data, status=status.HTTP_201_CREATED)


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


# DRF authenticates API requests itself (token or session) and answers 401/403;
# the site-wide login redirect must not intercept them.
urlpatterns = [
    path(route, login_not_required(view), name=name)
    for route, view, name in [
        ("projects/", ProjectList.as_view(), "api-projects"),
        ("projects/<slug:slug>/", project_detail, "api-project"),
        ("projects/<slug:slug>/traces/", TraceList.as_view(), "api-traces"),
        ("projects/<slug:slug>/traces/<int:trace_id>/", trace_detail, "api-trace"),
        ("projects/<slug:slug>/imports/", import_create, "api-import"),
        ("projects/<slug:slug>/imports/<int:job_id>/", import_detail, "api-import-job"),
        ("projects/<slug:slug>/imports/<int:job_id>/cancel/", import_cancel, "api-import-cancel"),
        ("projects/<slug:slug>/imports/<int:job_id>/retry/", import_retry, "api-import-retry"),
        ("projects/<slug:slug>/export/", export, "api-export"),
        ("projects/<slug:slug>/traces/<int:trace_id>/scores/", trace_scores, "api-trace-scores"),
        ("projects/<slug:slug>/runs/", run_list, "api-runs"),
        ("projects/<slug:slug>/runs/import/", run_import, "api-runs-import"),
        ("projects/<slug:slug>/runs/<int:run_id>/", run_detail, "api-run"),
        ("projects/<slug:slug>/runs/<int:run_id>/cancel/", run_cancel, "api-run-cancel"),
        ("projects/<slug:slug>/runs/<int:run_id>/retry/", run_retry, "api-run-retry"),
        ("scorers/", ScorerList.as_view(), "api-scorers"),
        ("schema/", SpectacularAPIView.as_view(), "api-schema"),
    ]
]
