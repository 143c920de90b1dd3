"""Downloading a project's labels. The project page's *Download* button and the API's
export endpoint answer through the one ``export_response``."""

from __future__ import annotations

import re
import tempfile

from django.http import (
    FileResponse,
    HttpResponseBase,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header

from annotator.exporting import (
    EXPORT_FORMATS,
    LABEL_SOURCES,
    iter_export,
    iter_jsonl_lines,
    write_export,
)
from annotator.filters import BadParameter, TraceFilter
from annotator.models import Project

FILE_TYPES = ("jsonl", "parquet")
# A split is any text; in a file name it keeps letters, digits, ".", "_" and "-", so a
# quote or a CR/LF in ``?split=`` cannot add header parameters or break the header.
_UNSAFE_IN_FILE_NAME = re.compile(r"[^\w.-]", re.ASCII)


def export_response(project: Project, params: QueryDict) -> HttpResponseBase:
    """The export that the query ``params`` ask for, as a download, or a 400 naming
    every bad parameter.

    ``format``: one of ``EXPORT_FORMATS`` (default ``jsonl``); ``labels``: one of
    ``LABEL_SOURCES`` (default ``human``) or the name of one of the project's label
    sets; ``split``: one split (default all); ``file``: ``jsonl`` (streamed) or ``parquet``.
    """
    fmt = params.get("format") or "jsonl"
    labels = params.get("labels") or "human"
    file_type = params.get("file") or "jsonl"
    label_choices = (
        *LABEL_SOURCES,
        *project.label_sets.order_by("name").values_list("name", flat=True),
    )
    problems = [
        f"{name} must be one of {', '.join(choices)}"
        for name, value, choices in (
            ("format", fmt, EXPORT_FORMATS),
            ("labels", labels, label_choices),
            ("file", file_type, FILE_TYPES),
        )
        if value not in choices
    ]
    try:
        split = TraceFilter.from_params(params).split or None
    except BadParameter as exc:
        problems.append(str(exc))
    if problems:
        return JsonResponse({"detail": "; ".join(problems), "code": "invalid"}, status=400)
    if labels not in LABEL_SOURCES and not project.label_sets.get(name=labels).entries.exists():
        # Every format would write nothing (jsonl: every label null): say so, not a 0-byte file.
        return JsonResponse(
            {
                "detail": f"labels: the label set {labels!r} holds no labels, so there is "
                "nothing to download; choose another label set",
                "code": "empty_label_set",
            },
            status=400,
        )
    # The default label source stays out of the name, so the files named before keep it.
    parts = [
        project.slug,
        fmt,
        *([labels] if labels != "human" else []),
        *([split] if split else []),
    ]
    stem = _UNSAFE_IN_FILE_NAME.sub("_", "-".join(parts))
    if file_type == "parquet":
        # Parquet needs a seekable file; spool to a temporary file that closes with the response.
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 (FileResponse closes it)
        write_export(project, fmt, tmp, split=split, labels=labels, parquet=True)
        tmp.seek(0)
        return FileResponse(tmp, as_attachment=True, filename=f"{stem}.parquet")
    records = iter_export(project, fmt, split=split, labels=labels)
    response = StreamingHttpResponse(iter_jsonl_lines(records), content_type="application/x-ndjson")
    response["Content-Disposition"] = content_disposition_header(True, f"{stem}.jsonl")
    return response
