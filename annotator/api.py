"""The REST API under ``/api/v1/``: small, explicit, and calling the same services as
the HTML views. Token or session auth; non-members get 404 like in the UI."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.access import MANAGERS, get_membership, get_trace_for_user
from annotator.exporting import EXPORT_FORMATS, LABEL_SOURCES, iter_export, iter_jsonl_lines
from annotator.formats import FORMATS
from annotator.models import Annotation, ImportJob, Project, Role, Trace
from annotator.services import filter_traces, start_import, visible_annotations
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
        if membership is None or not (
            membership.project.show_reference_answer or membership.role in MANAGERS
        ):
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
        return list(trace.steps.order_by("index").values_list("text", flat=True))

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
            "records_done",
            "summary",
            "error",
            "created_at",
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


@extend_schema(request=ImportRequestSerializer, responses={202: ImportJobSerializer})
@api_view(["POST"])
@parser_classes([MultiPartParser])
def import_create(request: Request, slug: str) -> Response:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    params = ImportRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    job = start_import(
        project,
        request.user,
        params.validated_data["file"],
        fmt=params.validated_data["format"],
        split=params.validated_data["split"],
        step_splitter=params.validated_data["step_splitter"],
    )
    return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses=ImportJobSerializer)
@api_view(["GET"])
def import_detail(request: Request, slug: str, job_id: int) -> Response:
    project = get_membership(request.user, slug, roles=[Role.OWNER]).project
    job = get_object_or_404(ImportJob, project=project, pk=job_id)
    return Response(ImportJobSerializer(job).data)


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), required=True),
        OpenApiParameter("labels", str, enum=list(LABEL_SOURCES)),
        OpenApiParameter("split", str),
    ],
    responses={(200, "application/x-ndjson"): str},
)
@api_view(["GET"])
def export(request: Request, slug: str):
    project = get_membership(request.user, slug, roles=MANAGERS).project
    fmt = request.query_params.get("format", "")
    labels = request.query_params.get("labels", "human")
    if fmt not in EXPORT_FORMATS or labels not in LABEL_SOURCES:
        return Response(
            {
                "detail": f"format must be one of {list(EXPORT_FORMATS)}; labels one of {list(LABEL_SOURCES)}"
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    records = iter_export(
        project, fmt, split=request.query_params.get("split") or None, labels=labels
    )
    response = StreamingHttpResponse(iter_jsonl_lines(records), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-{fmt}.jsonl"'
    return response


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
        ("projects/<slug:slug>/export/", export, "api-export"),
        ("schema/", SpectacularAPIView.as_view(), "api-schema"),
    ]
]
