"""Imports: upload a file of traces (owners), list the project's import jobs, follow,
cancel or retry one."""

from __future__ import annotations

from functools import partial

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.access import get_membership
from annotator.api.common import (
    JOB_FIELDS,
    job_actions,
    job_detail,
    page_of,
    paginated,
    queued,
    upload_refused,
)
from annotator.importing import start_import
from annotator.models import ImportJob, Membership
from scoring.formats import FORMATS
from scoring.steps import SPLITTERS


class ImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        fields = ["id", "file_name", "format", *JOB_FIELDS]


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=("auto", *FORMATS), default="auto")
    split = serializers.CharField(required=False, allow_blank=True, default="")
    step_splitter = serializers.ChoiceField(choices=tuple(SPLITTERS), default="paragraphs")


@extend_schema(
    methods=["GET"],
    responses=page_of(ImportJobSerializer),
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
        return paginated(
            request, ImportJob.objects.filter(project=project).order_by("-id"), ImportJobSerializer
        )
    if refused := upload_refused(request):
        return refused
    params = ImportRequestSerializer(data=request.data)
    params.is_valid(raise_exception=True)
    data = params.validated_data
    start = partial(
        start_import,
        project,
        request.user,
        data["file"],
        fmt=data["format"],
        split=data["split"],
        step_splitter=data["step_splitter"],
    )
    return queued(ImportJobSerializer, start)


import_detail = job_detail(ImportJob, ImportJobSerializer)
import_cancel, import_retry = job_actions(ImportJob, ImportJobSerializer, "job_id")
