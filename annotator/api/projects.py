"""Projects: the ones you are a member of, and one project."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.access import get_membership
from annotator.models import Project


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


class ProjectList(generics.ListAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        return Project.objects.filter(memberships__user=self.request.user).order_by("slug")


@extend_schema(responses=ProjectSerializer)
@api_view(["GET"])
def project_detail(request: Request, slug: str) -> Response:
    project = get_membership(request.user, slug).project
    return Response(ProjectSerializer(project).data)
