"""Traces: the project's traces (filtered as the Traces page filters them) and one
trace with its steps and the labels the member may see."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.access import get_membership, get_trace_for_user
from annotator.filters import BadParameter, TraceFilter
from annotator.hiding import visible_metadata
from annotator.models import LABELLED_CHOICES, Annotation, Trace


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
        """Annotators get no reference answer where the project hides it from them, and
        no imported labeller's record in the metadata where they work blind."""
        data = super().to_representation(trace)
        membership = self.context.get("membership")
        if membership is None or not membership.sees_reference_answer():
            data["reference_answer"] = None
            data["final_answer_correct"] = None  # judged against the hidden answer
        data["metadata"] = visible_metadata(membership, data["metadata"])
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
        annotations = (
            trace.annotations.latest_versions()
            .visible_to(self.context["membership"])
            .select_related("annotator")
            .order_by("id")
        )
        return AnnotationSerializer(annotations, many=True).data


class TraceList(generics.ListAPIView):
    serializer_class = TraceSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("split", str),
            OpenApiParameter("generator", str),
            OpenApiParameter("source", str),
            OpenApiParameter(
                "labelled",
                str,
                enum=list(LABELLED_CHOICES),
                description="with a label you may see (yours, where you work blind), or not",
            ),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        """The project's traces the member may see, narrowed as the Traces page narrows
        them; a bad filter (a NUL byte, too long) is a 400 naming it."""
        self.membership = membership = get_membership(self.request.user, self.kwargs["slug"])
        traces = (
            Trace.objects.filter(project=membership.project)
            .visible_to(membership)
            .select_related("problem")
            .order_by("id")
        )
        try:
            return TraceFilter.from_params(self.request.query_params).apply(traces, membership)
        except BadParameter as exc:
            raise serializers.ValidationError({exc.field: [str(exc)]}) from None

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "membership": self.membership}


@extend_schema(responses=TraceDetailSerializer)
@api_view(["GET"])
def trace_detail(request: Request, slug: str, trace_id: int) -> Response:
    membership, trace = get_trace_for_user(request.user, slug, trace_id)
    return Response(TraceDetailSerializer(trace, context={"membership": membership}).data)
