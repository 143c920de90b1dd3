"""What the API's resource modules share: pagination, the answer to starting a job (queued,
refused, broker down), the upload-too-large answer, a job request refused by its kind's
rules, the fields every job shows, a run's shards and the request field that asks for
them, the detail, cancel and retry endpoints of a job kind,
the membership that sees model scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from annotator import jobs, shards
from annotator.access import get_membership
from annotator.models import Job, Membership, Project
from annotator.uploads import upload_too_large


class InFlightShardSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="From 1.")
    host = serializers.CharField()
    worker = serializers.CharField()
    done = serializers.IntegerField()
    traces = serializers.IntegerField()


class ShardsSerializer(serializers.Serializer):
    """A run's shards (``shards.overview``): done, in flight (and on which worker), left,
    and the done ones by worker host."""

    total = serializers.IntegerField()
    done = serializers.IntegerField()
    left = serializers.IntegerField()
    in_flight = InFlightShardSerializer(many=True)
    hosts = serializers.DictField(child=serializers.IntegerField())
    unit = serializers.CharField(
        help_text="What a shard's counts count: traces, problems or solutions."
    )


@extend_schema_field(ShardsSerializer(allow_null=True))
class ShardsField(serializers.Field):
    """A run's shards, null for a run that is one job."""

    def __init__(self, **kwargs) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, value: Job) -> dict | None:
        overview = shards.overview(value)
        return None if overview is None else ShardsSerializer(overview).data


def shard_traces_field(unit: str = "traces") -> serializers.IntegerField:
    """A run request's ``shard_traces``: split the run into shards of this many
    ``unit`` (the kind's ``shard_unit``) that several workers take; 0: one job; absent:
    the deployment's ``STEPWISE_RUN_SHARD_TRACES``."""
    return serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        help_text=f"{unit.capitalize()} a shard: several workers take the run's shards; "
        "0: one job; absent: the server's default (STEPWISE_RUN_SHARD_TRACES).",
    )


# What a job serializer shows of every job kind, after the kind's own fields.
JOB_FIELDS = [
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


def paginated(
    request: Request, queryset: QuerySet, serializer: type[serializers.Serializer]
) -> Response:
    paginator = api_settings.DEFAULT_PAGINATION_CLASS()
    page = paginator.paginate_queryset(queryset, request)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def page_of(serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The schema of a LimitOffsetPagination page of ``serializer`` rows."""
    fields = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer(many=True),
    }
    name = serializer.__name__.removesuffix("Serializer") + "Page"
    return type(name, (serializers.Serializer,), fields)


def broker_down(exc: jobs.EnqueueError) -> Response:
    return Response(
        {"detail": str(exc), "code": "broker_unavailable"},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "30"},
    )


def queued(
    serializer_class: type[serializers.Serializer],
    start: Callable[[], Job],
    *,
    refused: tuple[type[Exception], ...] = (jobs.RunError,),
) -> Response:
    """The 202 answer with the job that ``start()`` queued: 400 with the reason when it
    refuses the request (a name taken, an empty selection), 503 when the broker is down."""
    try:
        job = start()
    except refused as exc:
        return Response({"detail": str(exc), "code": "refused"}, status=status.HTTP_400_BAD_REQUEST)
    except jobs.EnqueueError as exc:
        return broker_down(exc)
    return Response(serializer_class(job).data, status=status.HTTP_202_ACCEPTED)


def upload_refused(request: Request) -> Response | None:
    """The 413 for an upload over the size cap (``upload_too_large``, asked before the
    body is read), or None."""
    if too_large := upload_too_large(request):
        return Response(
            {"detail": too_large, "code": "upload_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return None


def refused_request(
    exc: jobs.RunError, fields: Mapping[str, serializers.Field]
) -> serializers.ValidationError:
    """A job request that its kind's rules refuse (``RunError``), as a serializer's
    400: on the request field at fault, an option's under ``options``, else on the
    request as a whole."""
    if exc.field in fields:
        field = exc.field
    elif exc.field and "options" in fields:
        field = "options"
    else:
        field = api_settings.NON_FIELD_ERRORS_KEY
    return serializers.ValidationError({field: [str(exc)]})


def project_seeing_scores(request: Request, slug: str) -> Project:
    return get_membership(request.user, slug, allow=Membership.sees_model_scores).project


def job_detail(model: type[Job], serializer_class: type[serializers.Serializer]):
    """The endpoint that follows one job of ``model`` (owners)."""

    @extend_schema(responses=serializer_class)
    @api_view(["GET"])
    def detail(request: Request, slug: str, job_id: int) -> Response:
        _, job = jobs.get_job_for_user(request.user, slug, model, job_id)
        return Response(serializer_class(job).data)

    return detail


def job_actions(model: type[Job], serializer_class: type[serializers.Serializer], id_kwarg: str):
    """The cancel and retry endpoints of one job kind (owners only): cancel stops a
    queued job now and a running one at its next chunk; retry queues a failed or
    cancelled job again (runs resume after what they stored)."""

    def owned(request: Request, slug: str, ids: dict) -> Job:
        return jobs.get_job_for_user(request.user, slug, model, ids[id_kwarg])[1]

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
            return broker_down(exc)
        except ValueError as exc:
            return Response(
                {"detail": str(exc), "code": "conflict"}, status=status.HTTP_409_CONFLICT
            )
        return Response(serializer_class(job).data, status=status.HTTP_202_ACCEPTED)

    return cancel, retry
