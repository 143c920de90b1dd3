"""Training runs: a project's runs (staff owners start them), one run with its logged
curves, cancel, retry."""

from __future__ import annotations

import math

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import jobs, training
from annotator.access import get_membership
from annotator.api.common import (
    job_actions,
    project_seeing_scores,
    queued,
    refused_request,
)
from annotator.labelsets import LabelSetError, named_set
from annotator.models import Membership, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    label_set = serializers.CharField(source="label_set.name", read_only=True, allow_null=True)
    scorer = serializers.CharField(source="scorer.name", read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "name",
            "kind",
            "base_model",
            "label_set",
            "eval_split",
            "options",
            "scorer",
            "status",
            "queue",
            "progress_done",
            "progress_total",
            "attempts",
            "cancel_requested",
            "summary",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrainingRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=training.KINDS)
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

    def validate(self, attrs: dict) -> dict:
        """The rules the page and ``create_training_run`` apply
        (``training.check_training_request``)."""
        try:
            training.check_training_request(attrs["kind"], attrs["base_model"], attrs["options"])
        except jobs.RunError as exc:
            raise refused_request(exc, self.fields) from None
        return attrs


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
    if request.method == "GET":
        project = project_seeing_scores(request, slug)
        found = TrainingRun.objects.filter(project=project).select_related("label_set", "scorer")
        return Response(TrainingRunSerializer(found, many=True).data)
    membership = get_membership(request.user, slug, allow=Membership.may_manage)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start training runs")
    project = membership.project
    params = TrainingRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = dict(params.validated_data)
    label_set_name = data.pop("label_set")

    def start() -> TrainingRun:
        label_set = named_set(project, label_set_name) if label_set_name else None
        return training.start_training_run(project, request.user, label_set=label_set, **data)

    return queued(TrainingRunSerializer, start, refused=(jobs.RunError, LabelSetError))


@extend_schema(responses=TrainingRunSerializer)
@api_view(["GET"])
def training_run_detail(request: Request, slug: str, run_id: int) -> Response:
    """A training run, with its logged curves: ``{"curves": {name: [[step, value], ...]}}``."""
    with_names = TrainingRun.objects.select_related("label_set", "scorer")
    _, run = jobs.get_job_for_user(
        request.user, slug, with_names, run_id, allow=Membership.sees_model_scores
    )
    data = TrainingRunSerializer(run).data
    data["curves"] = {
        name: [
            [step, None if value is None or math.isnan(value) else value] for step, value in points
        ]
        for name, points in training.curves(run).items()
    }
    return Response(data)


training_run_cancel, training_run_retry = job_actions(TrainingRun, TrainingRunSerializer, "run_id")
