"""Monte-Carlo runs: a project's runs (staff owners start them), follow, cancel, retry."""

from __future__ import annotations

from functools import partial

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import jobs, montecarlo
from annotator.access import get_membership
from annotator.api.common import (
    ShardsField,
    job_actions,
    project_seeing_scores,
    queued,
    refused_request,
    shard_traces_field,
)
from annotator.models import MCMode, Membership, MonteCarloRun


class MonteCarloRunSerializer(serializers.ModelSerializer):
    shards = ShardsField()

    class Meta:
        model = MonteCarloRun
        fields = [
            "id",
            "name",
            "completer",
            "model",
            "mode",
            "n",
            "options",
            "selection",
            "keep_rollouts",
            "status",
            "queue",
            "progress_done",
            "progress_total",
            "shards",
            "rollouts",
            "tokens",
            "attempts",
            "summary",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class MonteCarloRequestSerializer(serializers.Serializer):
    completer = serializers.CharField(max_length=500)
    model = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    mode = serializers.ChoiceField(choices=MCMode.choices, default=MCMode.EXHAUSTIVE)
    n = serializers.IntegerField(min_value=1, max_value=256, default=8)
    options = serializers.DictField(required=False, default=dict)
    selection = serializers.DictField(required=False, default=dict)
    keep_rollouts = serializers.BooleanField(default=False)
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)
    shard_traces = shard_traces_field()

    def validate(self, attrs: dict) -> dict:
        """The rules the page and ``create_mc_run`` apply (``montecarlo.check_mc_request``)."""
        try:
            montecarlo.check_mc_request(
                attrs["completer"], attrs["model"], attrs["mode"], attrs["n"], attrs["options"]
            )
        except jobs.RunError as exc:
            raise refused_request(exc, self.fields) from None
        return attrs


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
    if request.method == "GET":
        project = project_seeing_scores(request, slug)
        found = MonteCarloRun.objects.filter(project=project)
        return Response(MonteCarloRunSerializer(found, many=True).data)
    membership = get_membership(request.user, slug, allow=Membership.may_manage)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start Monte-Carlo runs")
    params = MonteCarloRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    start = partial(
        montecarlo.start_mc_run, membership.project, request.user, **params.validated_data
    )
    return queued(MonteCarloRunSerializer, start)


@extend_schema(responses=MonteCarloRunSerializer)
@api_view(["GET"])
def mc_run_detail(request: Request, slug: str, run_id: int) -> Response:
    _, run = jobs.get_job_for_user(
        request.user, slug, MonteCarloRun, run_id, allow=Membership.sees_model_scores
    )
    return Response(MonteCarloRunSerializer(run).data)


mc_run_cancel, mc_run_retry = job_actions(MonteCarloRun, MonteCarloRunSerializer, "run_id")
