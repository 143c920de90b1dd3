"""What every job kind's pages share: starting a job from a form (its refusals shown on
the form), the form field that splits a run into shards, and the cancel and retry
buttons (owners only, POST only, back to the job's page)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.functional import lazy
from django.utils.text import format_lazy
from django.views.decorators.http import require_GET, require_POST

from annotator import jobs
from annotator.models import Job

JobView = Callable[..., HttpResponse]
J = TypeVar("J", bound=Job)


def shard_traces_field(unit: str = "traces") -> forms.IntegerField:
    """A run form's ``shard_traces``: split the run into shards of this many ``unit``
    that several workers take (``annotator/shards.py``); 0: one job; blank: the
    server's default (``RUN_SHARD_TRACES``). ``shards.check_size`` has the last word."""
    default = lazy(lambda: str(settings.RUN_SHARD_TRACES or "one job"), str)()
    return forms.IntegerField(
        required=False,
        min_value=0,
        label=f"{unit.capitalize()} a shard",
        help_text=format_lazy(
            "Several workers take the run's shards of this many {}; 0: one job; "
            "blank: the server's default ({}).",
            unit,
            default,
        ),
    )


def start_from_form(form: forms.Form, start: Callable[[], J]) -> tuple[J | None, int]:
    """``start()`` for a valid ``form``: the job and 200, or None and the status the page
    answers with, the refusal on the form: a ``RunError`` on the field at fault where the
    form has it (400), a broker that does not answer (503)."""
    try:
        return start(), 200
    except jobs.RunError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        return None, 400
    except jobs.EnqueueError as exc:
        form.add_error(None, str(exc))
        return None, 503


def job_page(model: type[Job], template: str) -> JobView:
    """The page of one job of ``model`` (``template``, whose ``job-status`` partial polls
    itself while the job runs): owners only, 404 to anyone else."""

    @login_required
    @require_GET
    def page(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
        membership, job = jobs.get_job_for_user(request.user, slug, model, job_id)
        name = f"{template}#job-status" if request.htmx else template
        context = {"project": membership.project, "membership": membership, "job": job}
        return render(request, name, context)

    return page


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
