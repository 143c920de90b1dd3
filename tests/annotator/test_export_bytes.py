"""Exports stay byte for byte what they were: each format's file for a fixed project
(ProcessBench and PRM800K labels, unlabelled traces, a disagreement, an adjudication,
metadata and splits), digested and compared with the digest the export gave before
its speed-ups (issue 24). A change that alters any byte of any format fails here."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from django.core.management import call_command

from annotator.exporting import EXPORT_FORMATS, write_export
from annotator.models import Annotation, AnnotationKind, Trace
from tests.factories import PROCESSBENCH_GSM8K

# sha256 of each export, recorded from the export as it was before issue 24's changes.
EXPECTED = {
    "processbench.jsonl": "c7f79c4b8baf6eab3c03b04154b7c6abd736cd52fa3d87f177fc25e61220347c",
    "processbench.parquet": "75ef35f929debfafc3e26d4168fd595103a9add95dc131191c2a2d871efc4d8f",
    "trl.jsonl": "fe625be1e0e0d4f0588611c4af33dd42064fdf5ef38d9783d3da3744e41a13f8",
    "trl.parquet": "b82edb55bd6fb81f0f77e90fab36ad6c43fcbcc60ade9d2aa2e97337811b558e",
    "prm800k.jsonl": "a9eaa8266a27f15e905feeee83ab60994158c1f08c15d6a39c131c0d0ebd96fb",
    "prm800k.parquet": "16c790acdecafb70b19cf88abd4a51d8b0fd97877e01bdfd45c84bf60a2b0419",
    "math-shepherd.jsonl": "096af01986ae868f2e2cb1f72248259c472815d4e0d5eba4d5ab5113179d5073",
    "math-shepherd.parquet": "d19e83084bee1f5d5f7780c3247209042625e1e7e8729f2a17c879565771310c",
    "jsonl.jsonl": "02a59894413ed9f94fcb67d8bebe50ebaeae38f8c1e91ffff654dc497004ff44",
    "jsonl.parquet": "47c7a86a6ad9a7e262a28f544d1678fa91b698db62cbba4357f73273bdd77c62",
    "jsonl.jsonl adjudicated": "083b77b42721bd06a75949bdada39abb3db190b1a63545424d3f8e384c87ef0f",
}


@pytest.fixture
def fixed_project(project, users, data_dir):
    for path in (
        PROCESSBENCH_GSM8K,
        data_dir / "prm800k-examples" / "prm800k-phase2-train-example.jsonl",
        data_dir / "gsm8k" / "example_model_solutions.jsonl",
        data_dir / "big-bench-mistake" / "word_sorting.jsonl",
    ):
        call_command("import_traces", str(path), "--project", project.slug, verbosity=0)
    # Import times differ per run; the jsonl format writes them.
    Trace.objects.filter(project=project).update(
        created_at=datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    )
    first, second = Trace.objects.filter(project=project).order_by("id")[:2]
    Annotation.objects.create(trace=first, annotator=users["annotator"], first_error_step=-1)
    Annotation.objects.create(trace=second, annotator=users["annotator"], first_error_step=-1)
    Annotation.objects.create(
        trace=second,
        annotator=users["reviewer"],
        kind=AnnotationKind.ADJUDICATION,
        first_error_step=0,
    )
    return project


def digests(project, tmp_path) -> dict[str, str]:
    found = {}
    for fmt in EXPORT_FORMATS:
        for suffix in ("jsonl", "parquet"):
            out = tmp_path / f"{fmt}.{suffix}"
            write_export(project, fmt, out)
            found[f"{fmt}.{suffix}"] = hashlib.sha256(out.read_bytes()).hexdigest()
    write_export(project, "jsonl", tmp_path / "adj.jsonl", labels="adjudicated")
    found["jsonl.jsonl adjudicated"] = hashlib.sha256(
        (tmp_path / "adj.jsonl").read_bytes()
    ).hexdigest()
    return found


def test_every_export_is_byte_identical_to_before(fixed_project, tmp_path):
    assert digests(fixed_project, tmp_path) == EXPECTED


def test_times_are_written_as_python_writes_them(project, tmp_path):
    """An export writes the times it holds as ``datetime.isoformat()`` does,
    microseconds only when there are any, whatever the year."""
    call_command("import_traces", str(PROCESSBENCH_GSM8K), "--project", project.slug, verbosity=0)
    first, second, third = Trace.objects.filter(project=project).order_by("id")[:3]
    utc = datetime.UTC
    times = {
        first.pk: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc),
        second.pk: datetime.datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=utc),
        third.pk: datetime.datetime(2026, 7, 8, 9, 10, 11, 120000, tzinfo=utc),
    }
    for pk, when in times.items():
        Trace.objects.filter(pk=pk).update(created_at=when)
    write_export(project, "prm800k", tmp_path / "prm.jsonl")
    written = [
        json.loads(line)["timestamp"] for line in (tmp_path / "prm.jsonl").read_text().splitlines()
    ]
    assert written[:3] == [when.isoformat() for when in times.values()]
