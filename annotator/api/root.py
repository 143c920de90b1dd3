"""The API's root: where everything is."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response


@extend_schema(responses=OpenApiTypes.OBJECT)
@api_view(["GET"])
def api_root(request: Request) -> Response:
    """Where everything is: the resources, the schema and its documentation pages."""

    def url(name: str, *args) -> str:
        return request.build_absolute_uri(reverse(name, args=args))

    return Response(
        {
            "projects": url("api-projects"),
            "scorers": url("api-scorers"),
            "schema": url("api-schema"),
            "docs": url("api-docs"),
            "redoc": url("api-redoc"),
            "tokens": url("tokens"),
            "per_project": {
                "project": "projects/{slug}/",
                "traces": "projects/{slug}/traces/",
                "claim_next": "projects/{slug}/claim/",
                "submit_label": "projects/{slug}/traces/{id}/label/",
                "my_labels": "projects/{slug}/labels/",
                "imports": "projects/{slug}/imports/",
                "export": "projects/{slug}/export/",
                "runs": "projects/{slug}/runs/",
                "import_scores": "projects/{slug}/runs/import/",
                "mc_runs": "projects/{slug}/mc-runs/",
                "label_sets": "projects/{slug}/label-sets/",
                "training_runs": "projects/{slug}/training-runs/",
                "sampling_runs": "projects/{slug}/sampling-runs/",
                "verification_runs": "projects/{slug}/verification-runs/",
            },
        }
    )
