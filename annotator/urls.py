"""Every URL of the site, grouped by the resource it serves; the API is under ``api/v1/``."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from annotator.api.errors import unknown_api_url
from annotator.views import (
    annotate,
    dashboards,
    exports,
    grounded,
    imports,
    labelsets,
    montecarlo,
    projects,
    review,
    rewards,
    runs,
    solve,
    tokens,
    traces,
    training,
)

project_urls = [
    path("", projects.project_detail, name="project"),
    path("settings/", projects.project_settings, name="project-settings"),
    path("members/", projects.member_add, name="member-add"),
    path("members/<int:membership_id>/remove/", projects.member_remove, name="member-remove"),
    # traces
    path("traces/<int:trace_id>/", traces.trace_detail, name="trace"),
    path("traces/<int:trace_id>/history/", traces.trace_history, name="trace-history"),
    path("traces/<int:trace_id>/gold/", traces.mark_gold, name="mark-gold"),
    path(
        "traces/<int:trace_id>/score-chart/",
        dashboards.trace_score_chart,
        name="trace-score-chart",
    ),
    # imports and exports
    path("import/", imports.import_traces, name="import"),
    path("imports/<int:job_id>/", imports.import_job, name="import-job"),
    path("imports/<int:job_id>/cancel/", imports.import_cancel, name="import-cancel"),
    path("imports/<int:job_id>/retry/", imports.import_retry, name="import-retry"),
    path("export/", exports.export_dataset, name="export"),
    # labelling
    path("annotate/", annotate.annotate_next, name="annotate"),
    path("annotate/undo/", annotate.annotate_undo, name="annotate-undo"),
    path("annotate/next/", annotate.annotate_claim, name="annotate-claim"),
    path("annotate/progress/", annotate.annotate_progress, name="annotate-progress"),
    path("annotate/<int:trace_id>/", annotate.annotate_trace, name="annotate-trace"),
    path(
        "annotate/<int:trace_id>/claim/", annotate.annotate_claim_trace, name="annotate-claim-trace"
    ),
    path("annotate/<int:trace_id>/submit/", annotate.annotate_submit, name="annotate-submit"),
    path("annotate/<int:trace_id>/skip/", annotate.annotate_skip, name="annotate-skip"),
    # review
    path("review/", review.review_list, name="review"),
    path("review/<int:trace_id>/", review.review_trace, name="review-trace"),
    path("review/<int:trace_id>/adjudicate/", review.review_adjudicate, name="review-adjudicate"),
    path("review/<int:trace_id>/send-back/", review.review_send_back, name="review-send-back"),
    path(
        "annotations/<int:annotation_id>/review/",
        review.review_annotation,
        name="review-annotation",
    ),
    path("agreement/", review.agreement, name="agreement"),
    # scoring runs
    path("runs/", runs.run_list, name="runs"),
    path("runs/import/", runs.run_import, name="run-import"),
    path("runs/imports/<int:job_id>/", runs.score_import_job, name="score-import"),
    path("runs/imports/<int:job_id>/cancel/", runs.score_import_cancel, name="score-import-cancel"),
    path("runs/imports/<int:job_id>/retry/", runs.score_import_retry, name="score-import-retry"),
    path("runs/<int:run_id>/", runs.run_detail, name="run"),
    path("runs/<int:run_id>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/retry/", runs.run_retry, name="run-retry"),
    # Monte-Carlo runs and label sets
    path("mc/", montecarlo.mc_list, name="mc-runs"),
    path("mc/<int:run_id>/", montecarlo.mc_detail, name="mc-run"),
    path("mc/<int:run_id>/cancel/", montecarlo.mc_cancel, name="mc-cancel"),
    path("mc/<int:run_id>/retry/", montecarlo.mc_retry, name="mc-retry"),
    # grounded runs
    path("grounded/", grounded.grounded_list, name="grounded-runs"),
    path("grounded/<int:run_id>/", grounded.grounded_detail, name="grounded-run"),
    path("grounded/<int:run_id>/cancel/", grounded.grounded_cancel, name="grounded-cancel"),
    path("grounded/<int:run_id>/retry/", grounded.grounded_retry, name="grounded-retry"),
    path(
        "grounded/<int:run_id>/steps.trl.jsonl",
        grounded.grounded_export,
        {"kind": "trl"},
        name="grounded-export-trl",
    ),
    path(
        "grounded/<int:run_id>/generative.jsonl",
        grounded.grounded_export,
        {"kind": "generative"},
        name="grounded-export-generative",
    ),
    # sampling and verification runs, and what each is worth against its compute
    path("solve/", solve.solve_runs, name="solve-runs"),
    path("solve/verify/", solve.start_verification, name="verification-start"),
    path("solve/sampling/<int:run_id>/", solve.sampling_detail, name="sampling-run"),
    path("solve/sampling/<int:run_id>/cancel/", solve.sampling_cancel, name="sampling-cancel"),
    path("solve/sampling/<int:run_id>/retry/", solve.sampling_retry, name="sampling-retry"),
    path("solve/verification/<int:run_id>/", solve.verification_detail, name="verification-run"),
    path(
        "solve/verification/<int:run_id>/cancel/",
        solve.verification_cancel,
        name="verification-cancel",
    ),
    path(
        "solve/verification/<int:run_id>/retry/",
        solve.verification_retry,
        name="verification-retry",
    ),
    path("solve/curves/", solve.solve_or_verify_page, name="solve-or-verify"),
    path("solve/curves/figure/", solve.solve_or_verify_figure, name="solve-or-verify-figure"),
    # training runs
    path("training/", training.training_list, name="training-runs"),
    path("training/<int:run_id>/", training.training_detail, name="training-run"),
    path("training/<int:run_id>/cancel/", training.training_cancel, name="training-cancel"),
    path("training/<int:run_id>/retry/", training.training_retry, name="training-retry"),
    path("label-sets/", labelsets.label_set_list, name="label-sets"),
    path("traces/<int:trace_id>/mc/", montecarlo.trace_mc, name="trace-mc"),
    path("traces/<int:trace_id>/grounded/", grounded.trace_grounded, name="trace-grounded"),
    # dashboard (the page, then its partials)
    path("dashboard/", dashboards.dashboard, name="dashboard"),
    path("dashboard/runs/", dashboards.dashboard_runs, name="dashboard-runs"),
    path("dashboard/runs/<int:run_id>/", dashboards.dashboard_run, name="dashboard-run"),
    path(
        "dashboard/runs/<int:run_id>/disagreements/",
        dashboards.dashboard_disagreements,
        name="dashboard-disagreements",
    ),
    path(
        "dashboard/mc/<int:run_id>/disagreements/",
        dashboards.dashboard_mc_disagreements,
        name="dashboard-mc-disagreements",
    ),
    path(
        "dashboard/runs/<int:run_id>/best-of-n/",
        dashboards.dashboard_run_best_of_n,
        name="dashboard-run-best-of-n",
    ),
    path("dashboard/best-of-n/", dashboards.dashboard_best_of_n, name="dashboard-best-of-n"),
    path("dashboard/labelling/", dashboards.dashboard_annotation, name="dashboard-annotation"),
    # rewards: rollouts logged by the reward service (the page, then its partials)
    path("rewards/", rewards.rewards, name="rewards"),
    path("rewards/charts/", rewards.rewards_charts, name="rewards-charts"),
    path("rewards/suspects/", rewards.rewards_suspects, name="rewards-suspects"),
]

urlpatterns = [
    path("", projects.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("new/", projects.project_create, name="project-create"),
    path("scorers/", runs.scorer_list, name="scorers"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/new/", tokens.token_create, name="token-create"),
    path("tokens/revoke/", tokens.token_revoke, name="token-revoke"),
    path("p/<slug:slug>/", include(project_urls)),
    path("api/v1/", include("annotator.api.urls")),
    path("admin/", admin.site.urls),
    # Last, so it takes only what nothing above matched; only paths ending in a slash,
    # so that APPEND_SLASH still redirects "/api/v1/projects" to its view.
    re_path(r"^api/(?P<rest>(?:.*/)?)$", unknown_api_url, name="api-unknown"),
]

# Under /api/ an unknown URL answers JSON, as every API error does.
handler404 = "annotator.api.errors.not_found"
handler500 = "annotator.api.errors.server_error"
