from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from annotator import views, views_projects

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("new/", views_projects.project_create, name="project-create"),
    path("p/<slug:slug>/", views.project_detail, name="project"),
    path("p/<slug:slug>/settings/", views_projects.project_settings, name="project-settings"),
    path("p/<slug:slug>/members/", views_projects.member_add, name="member-add"),
    path(
        "p/<slug:slug>/members/<int:membership_id>/remove/",
        views_projects.member_remove,
        name="member-remove",
    ),
    path("p/<slug:slug>/traces/<int:trace_id>/", views.trace_detail, name="trace"),
    path("p/<slug:slug>/import/", views.import_traces, name="import"),
    path("p/<slug:slug>/imports/<int:job_id>/", views.import_job, name="import-job"),
    path("p/<slug:slug>/export/", views.export_dataset, name="export"),
    path("p/<slug:slug>/", include("annotator.urls_annotate")),
    path("api/v1/", include("annotator.api")),
    path("admin/", admin.site.urls),
]
