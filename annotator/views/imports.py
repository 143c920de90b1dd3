"""Import pages: upload a file of traces, follow its job, cancel or retry it."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_http_methods

from annotator import jobs
from annotator.access import get_membership
from annotator.importing import start_import
from annotator.models import ImportJob, Membership
from annotator.uploads import upload_too_large
from annotator.views.jobs import cancel_and_retry, job_page
from scoring.formats import FORMATS
from scoring.steps import SPLITTERS


class ImportForm(forms.Form):
    file = forms.FileField()
    format = forms.ChoiceField(
        choices=[("auto", "Detect from the first record")] + [(f, f) for f in FORMATS]
    )
    split = forms.CharField(
        required=False,
        max_length=64,
        help_text="Leave empty to take it from the records or file name.",
    )
    step_splitter = forms.ChoiceField(
        choices=[(s, s) for s in SPLITTERS],
        initial="paragraphs",
        help_text="For plain JSONL solutions given as one string.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = filesizeformat(settings.MAX_UPLOAD_BYTES)
        self.fields["file"].help_text = f"At most {limit}; gzip it if it is bigger."


@login_required
@require_http_methods(["GET", "POST"])
def import_traces(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_membership(request.user, slug, allow=Membership.may_manage).project
    too_large = request.method == "POST" and upload_too_large(request)
    if too_large:
        messages.error(request, too_large)
        form = ImportForm()
        status = 413
    else:
        form = ImportForm(request.POST or None, request.FILES or None)
        status = 200
    if request.method == "POST" and not too_large and form.is_valid():
        try:
            job = start_import(
                project,
                request.user,
                form.cleaned_data["file"],
                fmt=form.cleaned_data["format"],
                split=form.cleaned_data["split"],
                step_splitter=form.cleaned_data["step_splitter"],
            )
        except jobs.EnqueueError as exc:
            messages.error(request, str(exc))
            status = 503
        else:
            return redirect("import-job", slug=project.slug, job_id=job.pk)
    recent = project.import_jobs.all()[:10]
    return render(
        request, "import.html", {"project": project, "form": form, "jobs": recent}, status=status
    )


import_job = job_page(ImportJob, "import_job.html")
import_cancel, import_retry = cancel_and_retry(ImportJob, "import-job", "job_id")
