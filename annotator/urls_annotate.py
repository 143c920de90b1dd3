"""Project-scoped URLs of the annotation workspace: labelling, review, agreement.

Included under ``p/<slug:slug>/`` by ``annotator/urls.py``.
"""

from __future__ import annotations

from django.urls import path

from annotator import views_annotate as views

urlpatterns = [
    path("annotate/", views.annotate_next, name="annotate"),
    path("annotate/undo/", views.annotate_undo, name="annotate-undo"),
    path("annotate/<int:trace_id>/", views.annotate_trace, name="annotate-trace"),
    path("annotate/<int:trace_id>/submit/", views.annotate_submit, name="annotate-submit"),
    path("annotate/<int:trace_id>/skip/", views.annotate_skip, name="annotate-skip"),
    path("traces/<int:trace_id>/history/", views.trace_history, name="trace-history"),
    path("traces/<int:trace_id>/gold/", views.mark_gold, name="mark-gold"),
    path("review/", views.review_list, name="review"),
    path("review/<int:trace_id>/", views.review_trace, name="review-trace"),
    path("review/<int:trace_id>/adjudicate/", views.review_adjudicate, name="review-adjudicate"),
    path("review/<int:trace_id>/send-back/", views.review_send_back, name="review-send-back"),
    path(
        "annotations/<int:annotation_id>/review/",
        views.review_annotation,
        name="review-annotation",
    ),
    path("agreement/", views.agreement, name="agreement"),
]
