from __future__ import annotations

from django.contrib import admin

from annotator.models import (
    Annotation,
    Assignment,
    ImportJob,
    Membership,
    Problem,
    Project,
    Review,
    Trace,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "annotators_per_trace", "label_scheme", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Problem)
class ProblemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "external_id"]
    list_filter = ["project"]
    search_fields = ["external_id"]
    raw_id_fields = ["project"]


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "source",
        "external_id",
        "generator",
        "split",
        "num_steps",
        "is_gold",
    ]
    list_filter = ["project", "source_format", "is_gold"]
    search_fields = ["external_id"]
    raw_id_fields = ["project", "problem"]
    show_full_result_count = False


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "trace",
        "annotator",
        "kind",
        "first_error_step",
        "version",
        "is_latest",
        "created_at",
    ]
    list_filter = ["kind", "is_latest"]
    raw_id_fields = ["trace", "annotator"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # append-only: a correction is a new submission


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "file_name",
        "status",
        "progress_done",
        "attempts",
        "heartbeat_at",
        "created_at",
    ]
    list_filter = ["status"]
    raw_id_fields = ["project", "created_by"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "trace", "annotator", "claimed_at", "expires_at", "skipped"]
    list_filter = ["skipped"]
    raw_id_fields = ["project", "trace", "annotator"]
    show_full_result_count = False


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "annotation", "reviewer", "decision", "created_at"]
    list_filter = ["decision"]
    raw_id_fields = ["annotation", "reviewer"]
