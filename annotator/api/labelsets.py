"""Label sets: a project's label sets, and making one from a source (owners)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.access import get_membership
from annotator.hiding import visible_label_sets
from annotator.labelsets import LabelSetError, create_label_set
from annotator.models import LabelSet, Membership


class LabelSetSerializer(serializers.ModelSerializer):
    # The model stores any JSON; a label set's parameters are named (run, threshold, ...).
    params = serializers.DictField(required=False, default=dict)

    class Meta:
        model = LabelSet
        fields = ["id", "name", "source", "params", "summary", "created_at"]
        read_only_fields = ["summary"]


@extend_schema(methods=["GET"], responses=LabelSetSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=LabelSetSerializer,
    responses={201: LabelSetSerializer, 400: OpenApiTypes.OBJECT},
    description="Make a label set from a source (owners).",
)
@api_view(["GET", "POST"])
def label_set_list(request: Request, slug: str) -> Response:
    if request.method == "GET":
        membership = get_membership(request.user, slug, allow=Membership.sees_model_scores)
        label_sets = visible_label_sets(membership, membership.project.label_sets.all())
        return Response(LabelSetSerializer(label_sets, many=True).data)
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    params = LabelSetSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    try:
        made = create_label_set(project, data["name"], data["source"], data["params"], request.user)
    except LabelSetError as exc:
        return Response({"detail": str(exc), "code": "invalid"}, status=status.HTTP_400_BAD_REQUEST)
    return Response(LabelSetSerializer(made).data, status=status.HTTP_201_CREATED)
