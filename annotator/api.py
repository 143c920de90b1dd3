"""The REST API under ``/api/v1/``: small, explicit, and calling the same services as
the HTML views. Token or session auth; non-members get 404 like in the UI."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from annotator import jobs, labelling, queue, runs
from annotator.access import get_membership, get_trace_for_user
from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES
from annotator.importing import start_import
from annotator.labelsets import LabelSetError, label_set_named
from annotator.models import (
    Annotation,
    ImportJob,
    Job,
    Membership,
    MonteCarloRun,
    Project,
    Scorer,
    ScoringRun,
    Trace,
    TrainingRun,
)
from annotator.scorers import validate_scorer
from annotator.services import filter_traces, visible_annotations
from annotator.training import KINDS as TRAINING_KINDS
from annotator.views.annotate import SCREENING_FIRST
from annotator.views.exports import FILE_TYPES, export_response
from annotator.views.imports import upload_too_large
from scoring.formats import FORMATS
from scoring.labels import FLAGS
from scoring.steps import SPLITTERS

logger = logging.getLogger(__name__)


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
            data["final_answer_correct"] = None  # judged against the hidden answer
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
        return filter_traces(self.membership, self.request.query_params)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "membership": self.membership}


@extend_schema(responses=TraceDetailSerializer)
@api_view(["GET"])
def trace_detail(request: Request, slug: str, trace_id: int) -> Response:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    return Response(TraceDetailSerializer(trace, context={"membership": membership}).data)


def _page_of(serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of a LimitOffsetPagination page of ``serializer`` rows."""
    fields = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer(many=True),
    }
    name = serializer.__name__.removesuffix("Serializer") + "Page"
    return type(name, (serializers.Serializer,), fields)


@extend_schema(
    methods=["GET"],
    responses=_page_of(ImportJobSerializer),
    description="The project's imports, newest first (owners).",
    operation_id="projects_imports_list",  # not ..._retrieve, the one job's (check --deploy)
)
@extend_schema(
    methods=["POST"],
    request=ImportRequestSerializer,
    responses={202: ImportJobSerializer, 413: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
)
@api_view(["GET", "POST"])
@parser_classes([MultiPartParser])
def import_create(request: Request, slug: str) -> Response:
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    if request.method == "GET":
        return _paginated(request, ImportJob.objects.filter(project=project).order_by("-id"))
    if too_large := upload_too_large(request):
        return Response(
            {"detail": too_large, "code": "upload_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
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


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's handler, and a JSON 500 for anything it does not know: every API error
    has a JSON body (``{"detail": ..., "code": ...}``), never Django's HTML page. The
    exception is logged with its traceback, not shown."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    logger.error("API error", exc_info=exc, extra={"request": context.get("request")})
    return Response(
        {"detail": "Server error; it has been logged.", "code": "server_error"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def server_error(request: HttpRequest) -> HttpResponseBase:
    """The 500 for errors outside DRF (middleware, ``handler500``): JSON under ``/api/``."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Server error; it has been logged.", "code": "server_error"}, status=500
        )
    return defaults.server_error(request)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """The 404 for URLs no view matches (``handler404``): JSON under ``/api/``."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def _broker_down(exc: jobs.EnqueueError) -> Response:
    return Response(
        {"detail": str(exc), "code": "broker_unavailable"},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "30"},
    )


def _job_actions(model, serializer_class, id_kwarg: str):
    """The cancel and retry endpoints of one job kind (owners only): cancel stops a
    queued job now and a running one at its next chunk; retry queues a failed or
    cancelled job again (runs resume after what they stored)."""

    def owned(request: Request, slug: str, ids: dict) -> Job:
        project = get_membership(request.user, slug, allow=Membership.may_manage).project
        return get_object_or_404(model, project=project, pk=ids[id_kwarg])

    @extend_schema(request=None, responses=serializer_class)
    @api_view(["POST"])
    def cancel(request: Request, slug: str, **ids: int) -> Response:
        return Response(serializer_class(jobs.cancel(owned(request, slug, ids))).data)

    @extend_schema(
        request=None,
        responses={202: serializer_class, 409: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    @api_view(["POST"])
    def retry(request: Request, slug: str, **ids: int) -> Response:
        try:
            job = jobs.retry(owned(request, slug, ids))
        except jobs.EnqueueError as exc:
            return _broker_down(exc)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(serializer_class(job).data, status=status.HTTP_202_ACCEPTED)

    return cancel, retry


def _import_job(request: Request, slug: str, job_id: int) -> ImportJob:
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    return get_object_or_404(ImportJob, project=project, pk=job_id)


@extend_schema(responses=ImportJobSerializer)
@api_view(["GET"])
def import_detail(request: Request, slug: str, job_id: int) -> Response:
    return Response(ImportJobSerializer(_import_job(request, slug, job_id)).data)


import_cancel, import_retry = _job_actions(ImportJob, ImportJobSerializer, "job_id")


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), default="jsonl"),
        OpenApiParameter(
            "labels",
            str,
            default="human",
            description=f"{', '.join(LABEL_SOURCES)}, or the name of one of the project's label sets",
        ),
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


# -- labelling: claim, submit, my labels ------------------------------------------------------


def _paginated(request: Request, queryset, serializer=ImportJobSerializer) -> Response:
    paginator = api_settings.DEFAULT_PAGINATION_CLASS()
    page = paginator.paginate_queryset(queryset, request)
    return paginator.get_paginated_response(serializer(page, many=True).data)


class ClaimSerializer(serializers.Serializer):
    trace = TraceDetailSerializer(allow_null=True)
    reason = serializers.CharField(help_text='"" with a trace; else "done" or "screening-failed"')


class LabelRequestSerializer(serializers.Serializer):
    """What the Label page's form sends, as JSON. The same rules check it
    (``normalise_label``): the project's scheme, a reason for a flag, ratings in -1..1."""

    first_error_step = serializers.IntegerField(
        required=False, allow_null=True, min_value=-1, help_text="-1: all steps correct"
    )
    step_ratings = serializers.ListField(
        child=serializers.IntegerField(allow_null=True, min_value=-1, max_value=1),
        required=False,
        allow_null=True,
        help_text="one rating per step (-1, 0, 1 or null), 0-based like every step index",
    )
    flag = serializers.ChoiceField(choices=("", *FLAGS), required=False, default="")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    seconds_spent = serializers.FloatField(required=False, allow_null=True, min_value=0)


class MyLabelSerializer(AnnotationSerializer):
    trace = serializers.IntegerField(source="trace_id")
    external_id = serializers.CharField(source="trace.external_id")

    class Meta(AnnotationSerializer.Meta):
        fields = ["trace", "external_id", *AnnotationSerializer.Meta.fields]


@extend_schema(request=None, responses=ClaimSerializer)
@api_view(["POST"])
def claim_next(request: Request, slug: str) -> Response:
    """Serve and hold the next trace, as the Label page's "next" does."""
    membership = get_membership(request.user, slug)
    served = queue.claim_next(membership.project, request.user)
    trace = None
    if served.trace is not None:
        trace = TraceDetailSerializer(served.trace, context={"membership": membership}).data
    return Response({"trace": trace, "reason": served.reason})


@extend_schema(
    request=LabelRequestSerializer,
    responses={201: AnnotationSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
)
@api_view(["POST"])
def submit_label(request: Request, slug: str, trace_id: int) -> Response:
    """Store a label for the trace: a new version of yours, as the Label page does."""
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    params = LabelRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    ratings = data.get("step_ratings") or [None] * trace.num_steps
    if len(ratings) != trace.num_steps:
        raise serializers.ValidationError(
            {"step_ratings": [f"{trace.num_steps} ratings expected, one per step"]}
        )
    try:
        label = labelling.normalise_label(
            trace.num_steps,
            membership.project.label_scheme,
            data.get("first_error_step"),
            ratings,
            data["flag"],
            data["reason"],
        )
    except labelling.LabelError as exc:
        raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from None
    if not queue.may_label(membership.project, trace, request.user):
        return Response(
            {"detail": SCREENING_FIRST, "code": "screening"}, status=status.HTTP_409_CONFLICT
        )
    try:
        annotation = labelling.submit_label(
            membership.project,
            trace,
            request.user,
            label,
            seconds_spent=data.get("seconds_spent"),
            limit_to_n=not membership.may_review(),
        )
    except labelling.TraceFull as exc:
        return Response({"detail": str(exc), "code": "trace_full"}, status=status.HTTP_409_CONFLICT)
    annotation.annotator = request.user
    return Response(AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=_page_of(MyLabelSerializer))
@api_view(["GET"])
def my_labels(request: Request, slug: str) -> Response:
    """Your current labels in the project (the latest version of each), newest first."""
    project = get_membership(request.user, slug).project
    labels = (
        Annotation.objects.filter(
            trace__project=project, annotator=request.user, kind="label", is_latest=True
        )
        .select_related("trace", "annotator")
        .order_by("-created_at", "-id")
    )
    return _paginated(request, labels, MyLabelSerializer)


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
def api_root(request: Request) -> Response:
    """Where everything is: the resources, the schema and its documentation pages."""

    def url(name: str, *args) -> str:
        return request.build_absolute_uri(reverse(name, args=args))

    return Response(
        {
            "projects": url("api-projects"),
            "scorers": url("api-scorers"),
            "schema": url("api-schema"),
            "docs": url("api-docs"),
            "redoc": url("api-redoc"),
            "tokens": url("tokens"),
            "per_project": {
                "traces": "projects/{slug}/traces/",
                "claim_next": "projects/{slug}/claim/",
                "submit_label": "projects/{slug}/traces/{id}/label/",
                "my_labels": "projects/{slug}/labels/",
                "imports": "projects/{slug}/imports/",
                "export": "projects/{slug}/export/",
                "runs": "projects/{slug}/runs/",
            },
        }
    )


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


run_cancel, run_retry = _job_actions(ScoringRun, ScoringRunSerializer, "run_id")


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


# -- Monte-Carlo runs and label sets (issue 10) ---------------------------------------------


class MonteCarloRunSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    completer = serializers.CharField(read_only=True)
    model = serializers.CharField(read_only=True)
    mode = serializers.CharField(read_only=True)
    n = serializers.IntegerField(read_only=True)
    options = serializers.DictField(read_only=True)
    selection = serializers.DictField(read_only=True)
    keep_rollouts = serializers.BooleanField(read_only=True)
    status = serializers.CharField(read_only=True)
    queue = serializers.CharField(read_only=True)
    progress_done = serializers.IntegerField(read_only=True)
    progress_total = serializers.IntegerField(read_only=True, allow_null=True)
    rollouts = serializers.IntegerField(read_only=True)
    tokens = serializers.IntegerField(read_only=True)
    attempts = serializers.IntegerField(read_only=True)
    summary = serializers.DictField(read_only=True)
    error = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)


class MonteCarloRequestSerializer(serializers.Serializer):
    completer = serializers.CharField(max_length=500)
    model = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    mode = serializers.ChoiceField(choices=["exhaustive", "binary"], default="exhaustive")
    n = serializers.IntegerField(min_value=1, max_value=256, default=8)
    options = serializers.DictField(required=False, default=dict)
    selection = serializers.DictField(required=False, default=dict)
    keep_rollouts = serializers.BooleanField(default=False)
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)


class LabelSetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.SlugField(max_length=100)
    source = serializers.ChoiceField(
        choices=["human", "mc-hard", "mc-soft", "scoring", "consensus"]
    )
    params = serializers.DictField(required=False, default=dict)
    summary = serializers.DictField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


@extend_schema(methods=["GET"], responses=MonteCarloRunSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=MonteCarloRequestSerializer,
    responses={202: MonteCarloRunSerializer, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    description="Start a Monte-Carlo run (owners who are staff: the completer decides what "
    "URL or model the workers use).",
)
@api_view(["GET", "POST"])
def mc_run_list(request: Request, slug: str) -> Response:
    from annotator import montecarlo

    if request.method == "GET":
        project = _project_seeing_scores(request, slug)
        found = MonteCarloRun.objects.filter(project=project)
        return Response(MonteCarloRunSerializer(found, many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    if not request.user.is_staff:
        raise PermissionDenied("only staff owners start Monte-Carlo runs")
    params = MonteCarloRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    try:
        run = montecarlo.start_mc_run(project, request.user, **params.validated_data)
    except runs.RunError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    return Response(MonteCarloRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _mc_run(request: Request, slug: str, run_id: int, allow) -> MonteCarloRun:
    project = get_membership(request.user, slug, allow=allow).project
    return get_object_or_404(MonteCarloRun, project=project, pk=run_id)


@extend_schema(responses=MonteCarloRunSerializer)
@api_view(["GET"])
def mc_run_detail(request: Request, slug: str, run_id: int) -> Response:
    run = _mc_run(request, slug, run_id, Membership.sees_model_scores)
    return Response(MonteCarloRunSerializer(run).data)


mc_run_cancel, mc_run_retry = _job_actions(MonteCarloRun, MonteCarloRunSerializer, "run_id")


@extend_schema(methods=["GET"], responses=LabelSetSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=LabelSetSerializer,
    responses={201: LabelSetSerializer, 400: OpenApiTypes.OBJECT},
    description="Make a label set from a source (owners).",
)
@api_view(["GET", "POST"])
def label_set_list(request: Request, slug: str) -> Response:
    from annotator.labelsets import create_label_set

    if request.method == "GET":
        project = _project_seeing_scores(request, slug)
        return Response(LabelSetSerializer(project.label_sets.all(), many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = LabelSetSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    try:
        made = create_label_set(project, data["name"], data["source"], data["params"], request.user)
    except LabelSetError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(LabelSetSerializer(made).data, status=status.HTTP_201_CREATED)


# -- training runs (issue 11) ---------------------------------------------------------------


class TrainingRunSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    base_model = serializers.CharField(read_only=True)
    label_set = serializers.CharField(source="label_set.name", read_only=True, allow_null=True)
    eval_split = serializers.CharField(read_only=True)
    options = serializers.DictField(read_only=True)
    scorer = serializers.CharField(source="scorer.name", read_only=True, allow_null=True)
    status = serializers.CharField(read_only=True)
    queue = serializers.CharField(read_only=True)
    progress_done = serializers.IntegerField(read_only=True)
    progress_total = serializers.IntegerField(read_only=True, allow_null=True)
    attempts = serializers.IntegerField(read_only=True)
    cancel_requested = serializers.BooleanField(read_only=True)
    summary = serializers.DictField(read_only=True)
    error = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)


class TrainingRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TRAINING_KINDS)
    base_model = serializers.CharField(max_length=500)
    label_set = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="A label set's name; blank: the human labels.",
    )
    eval_split = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    options = serializers.DictField(required=False, default=dict)
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)


@extend_schema(methods=["GET"], responses=TrainingRunSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=TrainingRequestSerializer,
    responses={202: TrainingRunSerializer, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    description="Start fine-tuning a PRM on the project's labels (owners who are staff: the "
    "base model names what the workers load).",
)
@api_view(["GET", "POST"])
def training_run_list(request: Request, slug: str) -> Response:
    from annotator import training

    if request.method == "GET":
        project = _project_seeing_scores(request, slug)
        found = TrainingRun.objects.filter(project=project).select_related("label_set", "scorer")
        return Response(TrainingRunSerializer(found, many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    if not request.user.is_staff:
        raise PermissionDenied("only staff owners start training runs")
    params = TrainingRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = dict(params.validated_data)
    label_set_name = data.pop("label_set")
    try:
        label_set = label_set_named(project, label_set_name) if label_set_name else None
        run = training.start_training_run(project, request.user, label_set=label_set, **data)
    except (runs.RunError, LabelSetError) as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    except jobs.EnqueueError as exc:
        return _broker_down(exc)
    return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses=TrainingRunSerializer)
@api_view(["GET"])
def training_run_detail(request: Request, slug: str, run_id: int) -> Response:
    """A training run, with its logged curves: ``{"curves": {name: [[step, value], ...]}}``."""
    from annotator import training

    project = get_membership(request.user, slug, allow=Membership.sees_model_scores).project
    run = get_object_or_404(
        TrainingRun.objects.select_related("label_set", "scorer"), project=project, pk=run_id
    )
    data = TrainingRunSerializer(run).data
    data["curves"] = {
        name: [
            [step, None if value is None or math.isnan(value) else value] for step, value in points
        ]
        for name, points in training.curves(run).items()
    }
    return Response(data)


training_run_cancel, training_run_retry = _job_actions(TrainingRun, TrainingRunSerializer, "run_id")


# DRF authenticates API requests itself (token or session) and answers 401/403;
# the site-wide login redirect must not intercept them.
urlpatterns = [
    path(route, login_not_required(view), name=name)
    for route, view, name in [
        ("", api_root, "api-root"),
        ("projects/", ProjectList.as_view(), "api-projects"),
        ("projects/<slug:slug>/claim/", claim_next, "api-claim"),
        ("projects/<slug:slug>/labels/", my_labels, "api-my-labels"),
        ("projects/<slug:slug>/traces/<int:trace_id>/label/", submit_label, "api-label"),
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
        ("projects/<slug:slug>/mc-runs/", mc_run_list, "api-mc-runs"),
        ("projects/<slug:slug>/mc-runs/<int:run_id>/", mc_run_detail, "api-mc-run"),
        ("projects/<slug:slug>/mc-runs/<int:run_id>/cancel/", mc_run_cancel, "api-mc-run-cancel"),
        ("projects/<slug:slug>/mc-runs/<int:run_id>/retry/", mc_run_retry, "api-mc-run-retry"),
        ("projects/<slug:slug>/label-sets/", label_set_list, "api-label-sets"),
        ("projects/<slug:slug>/training-runs/", training_run_list, "api-training-runs"),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/",
            training_run_detail,
            "api-training-run",
        ),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/cancel/",
            training_run_cancel,
            "api-training-run-cancel",
        ),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/retry/",
            training_run_retry,
            "api-training-run-retry",
        ),
        ("scorers/", ScorerList.as_view(), "api-scorers"),
        ("schema/", SpectacularAPIView.as_view(), "api-schema"),
        ("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), "api-docs"),
        ("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), "api-redoc"),
    ]
]
