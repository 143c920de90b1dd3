"""Cancel and retry, the same two buttons on every job kind's page (imports, scoring,
Monte-Carlo and training runs): owners only, POST only, back to the job's page."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from annotator import jobs
from annotator.models import Job

JobView = Callable[..., HttpResponse]


def cancel_and_retry(model: type[Job], page: str, id_kwarg: str) -> tuple[JobView, JobView]:
    """The cancel and retry views of ``model``, whose page is the URL named ``page``
    with the job's id as ``id_kwarg``."""

    @login_required
    @require_POST
    def cancel(request: HttpRequest, slug: str, **ids: int) -> HttpResponse:
        _, job = jobs.get_job_for_user(request.user, slug, model, ids[id_kwarg])
        jobs.cancel(job)
        return redirect(page, slug=slug, **{id_kwarg: job.pk})

    @login_required
    @require_POST
    def retry(request: HttpRequest, slug: str, **ids: int) -> HttpResponse:
        _, job = jobs.get_job_for_user(request.user, slug, model, ids[id_kwarg])
        try:
            jobs.retry(job)
        except (ValueError, jobs.EnqueueError) as exc:
            messages.error(request, str(exc))
        return redirect(page, slug=slug, **{id_kwarg: job.pk})

    return cancel, retry
