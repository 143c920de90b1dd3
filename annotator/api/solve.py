"""Sampling and verification runs: a project's runs (staff owners start them), follow,
cancel, retry; the rules are the pages' (``annotator/sampling.py``,
``annotator/verification.py``)."""

from __future__ import annotations

from functools import partial

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from annotator import jobs, sampling, verification
from annotator.access import get_membership
from annotator.api.common import (
    JOB_FIELDS,
    ShardsField,
    job_actions,
    project_seeing_scores,
    queued,
    shard_traces_field,
)
from annotator.models import Membership, SamplingRun, VerificationRun, VerifierKind


class SamplingRunSerializer(serializers.ModelSerializer):
    shards = ShardsField()

    class Meta:
        model = SamplingRun
        fields = [
            "id",
            "name",
            "completer",
            "model",
            "generator",
            "n",
            "options",
            "selection",
            "solutions",
            "tokens",
            "labelling_queue",
            "shards",
            *JOB_FIELDS,
        ]
        read_only_fields = fields


class VerificationRunSerializer(serializers.ModelSerializer):
    sampling_run = serializers.SlugRelatedField(slug_field="name", read_only=True)
    shards = ShardsField()

    class Meta:
        model = VerificationRun
        fields = [
            "id",
            "name",
            "sampling_run",
            "verifier",
            "completer",
            "model",
            "v",
            "per_problem",
            "options",
            "verifications",
            "tokens",
            "shards",
            *JOB_FIELDS,
        ]
        read_only_fields = fields


class SamplingRequestSerializer(serializers.Serializer):
    completer = serializers.CharField(max_length=500)
    model = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    n = serializers.IntegerField(min_value=1, max_value=sampling.MAX_N)
    options = serializers.DictField(required=False, default=dict)
    selection = serializers.DictField(required=False, default=dict)
    generator = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)
    labelling_queue = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Whether the solutions join the labelling queue (default: they do not).",
    )
    shard_traces = shard_traces_field("problems")


class VerificationRequestSerializer(serializers.Serializer):
    sampling_run = serializers.SlugField(max_length=100, help_text="The sampling run's name.")
    verifier = serializers.ChoiceField(
        choices=VerifierKind.choices, default=VerifierKind.GENRM_BASE
    )
    completer = serializers.CharField(max_length=500)
    model = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    v = serializers.IntegerField(min_value=1, max_value=verification.MAX_V)
    per_problem = serializers.IntegerField(min_value=0, default=0)
    options = serializers.DictField(required=False, default=dict)
    name = serializers.SlugField(required=False, allow_blank=True, default="", max_length=100)
    shard_traces = shard_traces_field("solutions")


def _starter(request: Request, slug: str) -> Membership:
    membership = get_membership(request.user, slug, allow=Membership.may_manage)
    if not membership.may_run_worker_jobs():
        raise PermissionDenied("only staff owners start sampling and verification runs")
    return membership


@extend_schema(methods=["GET"], responses=SamplingRunSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=SamplingRequestSerializer,
    responses={202: SamplingRunSerializer, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    description="Start a sampling run: N solutions per problem, every sampling parameter "
    "in options (temperature, top_p, max_tokens; seed, stop), or an import (sc-genrm:DIR).",
)
@api_view(["GET", "POST"])
def sampling_run_list(request: Request, slug: str) -> Response:
    if request.method == "GET":
        project = project_seeing_scores(request, slug)
        return Response(
            SamplingRunSerializer(SamplingRun.objects.filter(project=project), many=True).data
        )
    membership = _starter(request, slug)
    params = SamplingRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    start = partial(
        sampling.start_sampling_run, membership.project, request.user, **params.validated_data
    )
    return queued(SamplingRunSerializer, start)


@extend_schema(methods=["GET"], responses=VerificationRunSerializer(many=True))
@extend_schema(
    methods=["POST"],
    request=VerificationRequestSerializer,
    responses={202: VerificationRunSerializer, 400: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    description="Start a verification run: V verifications of each solution of a sampling "
    "run (the first per_problem of each problem; 0: all), or an import (sc-genrm:DIR).",
)
@api_view(["GET", "POST"])
def verification_run_list(request: Request, slug: str) -> Response:
    if request.method == "GET":
        project = project_seeing_scores(request, slug)
        found = VerificationRun.objects.filter(project=project).select_related("sampling_run")
        return Response(VerificationRunSerializer(found, many=True).data)
    membership = _starter(request, slug)
    params = VerificationRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = dict(params.validated_data)
    found = SamplingRun.objects.filter(project=membership.project, name=data.pop("sampling_run"))
    if not found.exists():
        raise NotFound("no such sampling run in this project")
    start = partial(
        verification.start_verification_run,
        membership.project,
        request.user,
        sampling_run=found.get(),
        **data,
    )
    return queued(VerificationRunSerializer, start)


@extend_schema(responses=SamplingRunSerializer)
@api_view(["GET"])
def sampling_run_detail(request: Request, slug: str, run_id: int) -> Response:
    _, run = jobs.get_job_for_user(
        request.user, slug, SamplingRun, run_id, allow=Membership.sees_model_scores
    )
    return Response(SamplingRunSerializer(run).data)


@extend_schema(responses=VerificationRunSerializer)
@api_view(["GET"])
def verification_run_detail(request: Request, slug: str, run_id: int) -> Response:
    _, run = jobs.get_job_for_user(
        request.user,
        slug,
        VerificationRun.objects.select_related("sampling_run"),
        run_id,
        allow=Membership.sees_model_scores,
    )
    return Response(VerificationRunSerializer(run).data)


sampling_run_cancel, sampling_run_retry = job_actions(SamplingRun, SamplingRunSerializer, "run_id")
verification_run_cancel, verification_run_retry = job_actions(
    VerificationRun, VerificationRunSerializer, "run_id"
)
