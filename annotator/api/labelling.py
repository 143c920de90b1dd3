"""Labelling: claim the next trace, submit a label, list your labels, with the Label
page's rules (``labelling.check_label``) and JSON errors."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from annotator import labelling, queue
from annotator.access import get_membership, get_trace_for_user
from annotator.api.common import page_of, paginated
from annotator.api.traces import AnnotationSerializer, TraceDetailSerializer
from annotator.models import Annotation


class ClaimSerializer(serializers.Serializer):
    trace = TraceDetailSerializer(allow_null=True)
    reason = serializers.CharField(help_text='"" with a trace; else "done" or "screening-failed"')


class LabelRequestSerializer(serializers.Serializer):
    """What the Label page's form sends, as JSON: the types, and for the schema the
    ranges and choices of ``labelling.check_label``, which checks it."""

    first_error_step = serializers.IntegerField(
        required=False, allow_null=True, min_value=-1, help_text="-1: all steps correct"
    )
    step_ratings = serializers.ListField(
        child=serializers.IntegerField(
            allow_null=True, min_value=min(labelling.RATINGS), max_value=max(labelling.RATINGS)
        ),
        required=False,
        allow_null=True,
        help_text="one rating per step (-1, 0, 1 or null), 0-based like every step index",
    )
    flag = serializers.ChoiceField(choices=("", *labelling.FLAGS), required=False, default="")
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=labelling.MAX_REASON_LENGTH
    )
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
    project = membership.project
    params = LabelRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    try:
        label = labelling.check_label(
            project,
            trace,
            request.user,
            data.get("first_error_step"),
            data.get("step_ratings"),
            data["flag"],
            data["reason"],
        )
        annotation = labelling.submit_label(
            project,
            trace,
            request.user,
            label,
            seconds_spent=data.get("seconds_spent"),
            limit_to_n=not membership.may_review(),
        )
    except labelling.LabelRefused as exc:
        field = exc.field or api_settings.NON_FIELD_ERRORS_KEY
        raise serializers.ValidationError({field: [str(exc)]}) from None
    except labelling.NotScreened as exc:
        return Response({"detail": str(exc), "code": "screening"}, status=status.HTTP_409_CONFLICT)
    except labelling.TraceFull as exc:
        return Response({"detail": str(exc), "code": "trace_full"}, status=status.HTTP_409_CONFLICT)
    annotation.annotator = request.user
    return Response(AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)


@extend_schema(responses=page_of(MyLabelSerializer))
@api_view(["GET"])
def my_labels(request: Request, slug: str) -> Response:
    """Your current labels in the project (the latest version of each), newest first."""
    project = get_membership(request.user, slug).project
    labels = (
        Annotation.objects.latest_label_by(request.user)
        .filter(trace__project=project)
        .select_related("trace", "annotator")
        .order_by("-created_at", "-id")
    )
    return paginated(request, labels, MyLabelSerializer)
