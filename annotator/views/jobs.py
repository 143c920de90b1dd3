"""Cancel and retry, the same two buttons on every job kind's page (imports, scoring,
Monte-Carlo and training runs): owners only, POST only, back to the job's page."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from annotator import jobs
from annotator.access import get_membership
from annotator.models import Job, Membership

JobView = Callable[..., HttpResponse]


def cancel_and_retry(model: type[Job], page: str, id_kwarg: str) -> tuple[JobView, JobView]:
    """The cancel and retry views of ``model``, whose page is the URL named ``page``
    with the job's id as ``id_kwarg``."""

    def get_job(request: HttpRequest, slug: str, job_id: int) -> Job:
        project = get_membership(request.user, slug, allow=Membership.may_manage).project
        return get_object_or_404(model, project=project, pk=job_id)

    @login_required
    @require_POST
    def cancel(request: HttpRequest, slug: str, **ids: int) -> HttpResponse:
        job = get_job(request, slug, ids[id_kwarg])
        jobs.cancel(job)
        return redirect(page, slug=slug, **{id_kwarg: job.pk})

    @login_required
    @require_POST
    def retry(request: HttpRequest, slug: str, **ids: int) -> HttpResponse:
        job = get_job(request, slug, ids[id_kwarg])
        try:
            jobs.retry(job)
        except (ValueError, jobs.EnqueueError) as exc:
            messages.error(request, str(exc))
        return redirect(page, slug=slug, **{id_kwarg: job.pk})

    return cancel, retry
