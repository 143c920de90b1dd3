"""The API's routes, under ``/api/v1/``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from annotator.api import (
    exports,
    imports,
    labelling,
    labelsets,
    montecarlo,
    projects,
    root,
    runs,
    solve,
    traces,
    training,
)

# DRF authenticates API requests itself (token or session) and answers 401/403;
# the site-wide login redirect must not intercept them.
urlpatterns = [
    path(route, login_not_required(view), name=name)
    for route, view, name in [
        ("", root.api_root, "api-root"),
        ("projects/", projects.ProjectList.as_view(), "api-projects"),
        ("projects/<slug:slug>/claim/", labelling.claim_next, "api-claim"),
        ("projects/<slug:slug>/labels/", labelling.my_labels, "api-my-labels"),
        ("projects/<slug:slug>/traces/<int:trace_id>/label/", labelling.submit_label, "api-label"),
        ("projects/<slug:slug>/", projects.project_detail, "api-project"),
        ("projects/<slug:slug>/traces/", traces.TraceList.as_view(), "api-traces"),
        ("projects/<slug:slug>/traces/<int:trace_id>/", traces.trace_detail, "api-trace"),
        ("projects/<slug:slug>/imports/", imports.import_create, "api-import"),
        ("projects/<slug:slug>/imports/<int:job_id>/", imports.import_detail, "api-import-job"),
        (
            "projects/<slug:slug>/imports/<int:job_id>/cancel/",
            imports.import_cancel,
            "api-import-cancel",
        ),
        (
            "projects/<slug:slug>/imports/<int:job_id>/retry/",
            imports.import_retry,
            "api-import-retry",
        ),
        ("projects/<slug:slug>/export/", exports.export, "api-export"),
        (
            "projects/<slug:slug>/traces/<int:trace_id>/scores/",
            runs.trace_scores,
            "api-trace-scores",
        ),
        ("projects/<slug:slug>/runs/", runs.run_list, "api-runs"),
        ("projects/<slug:slug>/runs/import/", runs.run_import, "api-runs-import"),
        (
            "projects/<slug:slug>/runs/imports/<int:job_id>/",
            runs.score_import_detail,
            "api-score-import",
        ),
        (
            "projects/<slug:slug>/runs/imports/<int:job_id>/cancel/",
            runs.score_import_cancel,
            "api-score-import-cancel",
        ),
        (
            "projects/<slug:slug>/runs/imports/<int:job_id>/retry/",
            runs.score_import_retry,
            "api-score-import-retry",
        ),
        ("projects/<slug:slug>/runs/<int:run_id>/", runs.run_detail, "api-run"),
        ("projects/<slug:slug>/runs/<int:run_id>/cancel/", runs.run_cancel, "api-run-cancel"),
        ("projects/<slug:slug>/runs/<int:run_id>/retry/", runs.run_retry, "api-run-retry"),
        ("projects/<slug:slug>/mc-runs/", montecarlo.mc_run_list, "api-mc-runs"),
        ("projects/<slug:slug>/mc-runs/<int:run_id>/", montecarlo.mc_run_detail, "api-mc-run"),
        (
            "projects/<slug:slug>/mc-runs/<int:run_id>/cancel/",
            montecarlo.mc_run_cancel,
            "api-mc-run-cancel",
        ),
        (
            "projects/<slug:slug>/mc-runs/<int:run_id>/retry/",
            montecarlo.mc_run_retry,
            "api-mc-run-retry",
        ),
        ("projects/<slug:slug>/sampling-runs/", solve.sampling_run_list, "api-sampling-runs"),
        (
            "projects/<slug:slug>/sampling-runs/<int:run_id>/",
            solve.sampling_run_detail,
            "api-sampling-run",
        ),
        (
            "projects/<slug:slug>/sampling-runs/<int:run_id>/cancel/",
            solve.sampling_run_cancel,
            "api-sampling-run-cancel",
        ),
        (
            "projects/<slug:slug>/sampling-runs/<int:run_id>/retry/",
            solve.sampling_run_retry,
            "api-sampling-run-retry",
        ),
        (
            "projects/<slug:slug>/verification-runs/",
            solve.verification_run_list,
            "api-verification-runs",
        ),
        (
            "projects/<slug:slug>/verification-runs/<int:run_id>/",
            solve.verification_run_detail,
            "api-verification-run",
        ),
        (
            "projects/<slug:slug>/verification-runs/<int:run_id>/cancel/",
            solve.verification_run_cancel,
            "api-verification-run-cancel",
        ),
        (
            "projects/<slug:slug>/verification-runs/<int:run_id>/retry/",
            solve.verification_run_retry,
            "api-verification-run-retry",
        ),
        ("projects/<slug:slug>/label-sets/", labelsets.label_set_list, "api-label-sets"),
        ("projects/<slug:slug>/training-runs/", training.training_run_list, "api-training-runs"),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/",
            training.training_run_detail,
            "api-training-run",
        ),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/cancel/",
            training.training_run_cancel,
            "api-training-run-cancel",
        ),
        (
            "projects/<slug:slug>/training-runs/<int:run_id>/retry/",
            training.training_run_retry,
            "api-training-run-retry",
        ),
        ("scorers/", runs.ScorerList.as_view(), "api-scorers"),
        ("schema/", SpectacularAPIView.as_view(), "api-schema"),
        ("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), "api-docs"),
        ("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), "api-redoc"),
    ]
]
