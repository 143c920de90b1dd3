"""export_dataset: round trips, the consumers' own readers, label resolution, query counts."""

from __future__ import annotations

import gc
import io
import json
import threading
import time

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from annotator.bulk import BULK_GC_THRESHOLD
from annotator.exporting import ExportSummary, iter_export, write_export
from annotator.models import Annotation, AnnotationKind, Project, Trace
from tests.factories import PROCESSBENCH_GSM8K


def load(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def export(project, fmt, out, *args: str) -> None:
    call_command(
        "export_dataset",
        "--project",
        project.slug,
        "--format",
        fmt,
        "--out",
        str(out),
        *args,
        verbosity=0,
    )


def import_into(project, path) -> None:
    call_command("import_traces", str(path), "--project", project.slug, verbosity=0)


@pytest.fixture
def processbench(project):
    import_into(project, PROCESSBENCH_GSM8K)
    return json.loads(PROCESSBENCH_GSM8K.read_text())


def test_processbench_round_trip_is_exact(project, processbench, tmp_path):
    out = tmp_path / "pb.jsonl"
    export(project, "processbench", out)
    exported = load(out)
    assert exported == processbench
    assert [list(r) for r in exported[:1]] == [list(processbench[0])]  # same key order too


def test_processbench_export_loads_with_datasets_like_the_benchmark(
    project, processbench, tmp_path
):
    from datasets import load_dataset

    out = tmp_path / "pb.jsonl"
    export(project, "processbench", out)
    ours = load_dataset("json", data_files=str(out), split="train")
    official = load_dataset("json", data_files=str(PROCESSBENCH_GSM8K), split="train")
    assert ours.features == official.features
    assert ours.num_rows == official.num_rows == 400
    assert ours[17] == official[17]


def test_trl_export_ends_each_trace_at_its_first_error(project, processbench, tmp_path):
    out = tmp_path / "trl.jsonl"
    export(project, "trl", out)
    rows = load(out)
    assert len(rows) == 400
    for row, source in zip(rows, processbench, strict=True):
        assert list(row) == ["prompt", "completions", "labels"]
        k = source["label"]
        if k == -1:
            assert row["completions"] == source["steps"]
            assert row["labels"] == [True] * len(source["steps"])
        else:
            assert row["completions"] == source["steps"][: k + 1]
            assert row["labels"] == [True] * k + [False]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_trl_and_math_shepherd_exports_reimport_to_the_same_first_errors(
    project, processbench, tmp_path, users, suffix
):
    expected = {r["problem"].strip(): r["label"] for r in processbench}
    for fmt in ("trl", "math-shepherd", "prm800k"):
        out = tmp_path / f"{fmt}.{suffix}"
        export(project, fmt, out)
        other = Project.objects.create(slug=f"re-{fmt}", name=fmt)
        import_into(other, out)
        got = {}
        for annotation in Annotation.objects.filter(trace__project=other).select_related(
            "trace__problem"
        ):
            got.setdefault(annotation.trace.problem.text.strip(), set()).add(
                annotation.first_error_step
            )
        # Problems repeat in ProcessBench; every imported label must be one of the source labels.
        assert Trace.objects.filter(project=other).count() == 400, fmt
        for problem, labels in got.items():
            sources = {r["label"] for r in processbench if r["problem"].strip() == problem}
            assert labels <= sources, (fmt, problem)
        assert len(got) == len(expected), fmt


def test_parquet_export_holds_the_same_records(project, processbench, tmp_path):
    out = tmp_path / "pb.parquet"
    export(project, "processbench", out)
    table = pq.read_table(out)
    assert table.num_rows == 400
    assert table.to_pylist() == processbench


def test_jsonl_parquet_export_reimports_with_labels_and_metadata(project, tmp_path, data_dir):
    import_into(project, data_dir / "prm800k-examples" / "prm800k-phase2-train-example.jsonl")
    out = tmp_path / "all.parquet"
    export(project, "jsonl", out)
    other = Project.objects.create(slug="again", name="again")
    import_into(other, out)

    def snapshot(project: Project) -> dict:
        label = {
            a.trace.external_id: (a.first_error_step, a.step_ratings)
            for a in Annotation.objects.filter(trace__project=project).select_related("trace")
            if a.first_error_step is not None
        }
        return {
            t.external_id: (t.metadata, t.num_steps, t.split, label.get(t.external_id))
            for t in Trace.objects.filter(project=project)
        }

    before, after = snapshot(project), snapshot(other)
    assert len(after) == 9
    assert after == before
    assert all(metadata["finish_reason"] for metadata, *_ in after.values())


def test_jsonl_export_keeps_unlabelled_traces(project, processbench, tmp_path, data_dir):
    import_into(project, data_dir / "gsm8k" / "example_model_solutions.jsonl")
    out = tmp_path / "all.jsonl"
    export(project, "jsonl", out)
    rows = load(out)
    assert len(rows) == Trace.objects.filter(project=project).count() == 400 + 4 * 1319
    unlabelled = [r for r in rows if r["first_error_step"] is None]
    assert len(unlabelled) == 4 * 1319
    pb_out = tmp_path / "pb.jsonl"
    export(project, "processbench", pb_out)
    assert len(load(pb_out)) == 400  # labelled formats leave unlabelled traces out


def test_the_summary_says_what_each_format_did_with_unlabelled_traces(
    project, processbench, tmp_path, data_dir
):
    import_into(project, data_dir / "gsm8k" / "test.jsonl")
    said = {}
    for fmt in ("jsonl", "processbench"):
        out = io.StringIO()
        call_command(
            "export_dataset",
            "--project",
            project.slug,
            "--format",
            fmt,
            "--out",
            str(tmp_path / f"{fmt}.jsonl"),
            stdout=out,
        )
        said[fmt] = out.getvalue()
    assert len(load(tmp_path / "jsonl.jsonl")) == 400 + 1319
    assert "1719 records written, 1319 of them unlabelled" in said["jsonl"]
    assert "left out" not in said["jsonl"]
    assert "400 records written; left out 1319 unlabelled" in said["processbench"]


def test_disagreements_are_left_out_until_adjudicated(project, processbench, users, tmp_path):
    trace = Trace.objects.get(external_id=processbench[0]["id"])
    Annotation.objects.create(trace=trace, annotator=users["annotator"], first_error_step=-1)
    out = tmp_path / "pb.jsonl"
    export(project, "processbench", out)
    assert processbench[0]["id"] not in {r["id"] for r in load(out)}

    Annotation.objects.create(
        trace=trace,
        annotator=users["reviewer"],
        kind=AnnotationKind.ADJUDICATION,
        first_error_step=0,
    )
    export(project, "processbench", out)
    assert {r["id"]: r["label"] for r in load(out)}[processbench[0]["id"]] == 0
    export(project, "processbench", out, "--labels", "adjudicated")
    assert [(r["id"], r["label"]) for r in load(out)] == [(processbench[0]["id"], 0)]


def test_a_gold_label_is_a_reviewers_verdict(project, processbench, users, tmp_path):
    trace = Trace.objects.get(external_id=processbench[1]["id"])
    Annotation.objects.create(trace=trace, annotator=users["annotator"], first_error_step=-1)
    Annotation.objects.create(trace=trace, annotator=users["owner"], first_error_step=1)
    Annotation.objects.create(
        trace=trace, annotator=users["reviewer"], kind=AnnotationKind.GOLD, first_error_step=2
    )
    out = tmp_path / "pb.jsonl"
    export(project, "processbench", out, "--labels", "adjudicated")
    assert [(r["id"], r["label"]) for r in load(out)] == [(processbench[1]["id"], 2)]
    Annotation.objects.create(
        trace=trace,
        annotator=users["reviewer"],
        kind=AnnotationKind.ADJUDICATION,
        first_error_step=0,
    )
    export(project, "processbench", out)
    assert {r["id"]: r["label"] for r in load(out)}[processbench[1]["id"]] == 0


def test_split_filter(project, processbench, tmp_path, data_dir):
    import_into(project, data_dir / "big-bench-mistake" / "word_sorting.jsonl")
    out = tmp_path / "ws.jsonl"
    export(project, "trl", out, "--split", "word_sorting")
    assert len(load(out)) == 300


def test_a_project_whose_ids_interleave_with_another_exports_only_its_own_steps(
    project, tmp_path, monkeypatch
):
    """A chunk of traces whose id range also holds another project's traces names its
    steps and labels by a subquery of its traces (the range would read the other
    project's rows too); a chunk with the range to itself reads them by the range."""
    from annotator import exporting

    records = json.loads(PROCESSBENCH_GSM8K.read_text())
    other = Project.objects.create(slug="other", name="other")
    for i, target in enumerate([project, other, project, other]):
        part = tmp_path / f"part{i}.json"
        part.write_text(json.dumps(records[i * 100 : (i + 1) * 100]))
        import_into(target, part)
    monkeypatch.setattr(exporting, "CHUNK_TRACES", 150)  # the 2nd chunk spans other's ids
    out = tmp_path / "pb.jsonl"
    with CaptureQueriesContext(connection) as queries:
        export(project, "processbench", out)
    assert load(out) == records[:100] + records[200:300]
    steps = [q["sql"] for q in queries.captured_queries if 'FROM "annotator_step"' in q["sql"]]
    assert ["IN (SELECT" in sql for sql in steps] == [True, False]


def test_export_queries_do_not_grow_with_traces(project, processbench):
    with CaptureQueriesContext(connection) as few:
        records = list(iter_export(project, "processbench", split=None))
    assert len(records) == 400
    from annotator import exporting

    chunk = exporting.CHUNK_TRACES
    exporting.CHUNK_TRACES = 100  # 4 chunks instead of 1
    try:
        with CaptureQueriesContext(connection) as many:
            assert len(list(iter_export(project, "processbench"))) == 400
    finally:
        exporting.CHUNK_TRACES = chunk
    # A chunk: its traces, their labels, their steps. 400 traces in chunks of 100: four
    # full chunks and the query that finds no fifth.
    assert len(few) == 3
    assert len(many) == 4 * 3 + 1


def test_every_export_label_is_the_verdict_the_app_resolves(project, processbench, users):
    """The export reads annotations as plain rows, not model instances: each trace's
    label, ratings and disagreement must still be what ``Verdict.resolve`` gives over
    its latest ``Annotation`` objects, for every label source, and so the summary too."""
    from annotator.exporting import ExportSummary
    from annotator.models import Verdict

    traces = list(Trace.objects.filter(project=project).order_by("id")[:6])
    annotate = Annotation.objects.create
    annotate(trace=traces[0], annotator=users["annotator"], first_error_step=-1)
    annotate(trace=traces[0], annotator=users["owner"], first_error_step=1)  # disagree
    # traces[1]: everyone's latest agrees with the imported label; an older one does not.
    imported = Annotation.objects.get(trace=traces[1]).first_error_step
    annotate(trace=traces[1], annotator=users["annotator"], first_error_step=imported)
    older = annotate(trace=traces[1], annotator=users["owner"], first_error_step=imported + 1)
    Annotation.objects.filter(pk=older.pk).update(is_latest=False)  # as a new submission does
    annotate(trace=traces[1], annotator=users["owner"], first_error_step=imported)
    annotate(trace=traces[2], annotator=users["annotator"], first_error_step=2)
    annotate(
        trace=traces[2], annotator=users["reviewer"], kind=AnnotationKind.GOLD, first_error_step=0
    )
    annotate(
        trace=traces[3],
        annotator=users["reviewer"],
        kind=AnnotationKind.ADJUDICATION,
        first_error_step=1,
        step_ratings=[1, -1],
    )
    annotate(trace=traces[4], annotator=users["annotator"], first_error_step=None)  # no verdict
    annotate(trace=traces[5], annotator=users["annotator"], first_error_step=3)
    results = {}
    for labels in ("human", "adjudicated"):
        summary = ExportSummary()
        exported = results[labels] = {
            record["id"]: (record["first_error_step"], record["step_ratings"])
            for record in iter_export(project, "jsonl", labels=labels, summary=summary)
        }
        expected, disagreements, unlabelled = {}, 0, 0
        for trace in Trace.objects.filter(project=project).prefetch_related("annotations"):
            verdict = Verdict.resolve(
                [a for a in trace.annotations.all() if a.is_latest],
                reviewed_only=labels == "adjudicated",
            )
            disagreements += verdict.disagreement
            unlabelled += not verdict.is_labelled and not verdict.disagreement
            expected[trace.external_id] = (
                (verdict.first_error_step, verdict.step_ratings)
                if verdict.is_labelled
                else (None, None)
            )
        assert exported == expected
        assert (summary.disagreements, summary.unlabelled) == (disagreements, unlabelled)
    assert results["adjudicated"][traces[3].external_id] == (1, [1, -1])
    assert results["human"][traces[1].external_id][0] == imported


def test_the_cycle_collector_runs_less_often_while_an_export_is_written(project):
    """write_export raises the young generation's threshold while it writes and puts it
    back afterwards."""
    import_into(project, PROCESSBENCH_GSM8K)
    before = gc.get_threshold()
    seen = []

    class Out(io.BytesIO):
        def writelines(self, lines):
            for line in lines:
                seen.append(gc.get_threshold()[0])
                self.write(line)

    write_export(project, "processbench", Out())
    assert len(seen) == 400 and set(seen) == {BULK_GC_THRESHOLD}
    assert gc.get_threshold() == before


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "export-read-ahead"]


def _connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _connections_once_settled(expected: int) -> int:
    """``_connections()``, given up to 10 s to come down to ``expected``: a backend
    leaves pg_stat_activity a moment after its client closes the connection."""
    deadline = time.monotonic() + 10
    while (count := _connections()) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_next_chunk_is_read_ahead_on_a_connection_of_its_own(
    project, users, monkeypatch
):
    """The read-ahead thread gives the records the export reads in this thread (inside
    a transaction, where another connection would not see its rows), stops when the
    caller stops, raises its errors in the caller, and leaves no thread or connection."""
    from annotator import exporting

    import_into(project, PROCESSBENCH_GSM8K)
    traces = list(Trace.objects.filter(project=project).order_by("id")[:3])
    for trace, step in zip(traces, (0, 1, 2), strict=True):  # a second opinion on three
        Annotation.objects.create(
            trace=trace,
            annotator=users["annotator"],
            kind=AnnotationKind.LABEL,
            first_error_step=step,
            version=1,
            is_latest=True,
        )
    monkeypatch.setattr(exporting, "CHUNK_TRACES", 64)  # 7 chunks
    connections = _connections()

    assert not connection.in_atomic_block
    ahead = iter_export(project, "processbench", summary=(ahead_summary := ExportSummary()))
    first = next(ahead)
    assert len(_read_ahead_threads()) == 1
    ahead_records = [first, *ahead]
    assert not _read_ahead_threads() and _connections_once_settled(connections) == connections
    with transaction.atomic():
        here_summary = ExportSummary()
        here_records = list(iter_export(project, "processbench", summary=here_summary))
    assert ahead_records == here_records and len(here_records) > 300
    assert ahead_summary == here_summary and ahead_summary.disagreements > 0

    with transaction.atomic():  # a verdict this transaction has not committed is exported
        Annotation.objects.create(
            trace=traces[0],
            annotator=users["reviewer"],
            kind=AnnotationKind.ADJUDICATION,
            first_error_step=2,
            version=1,
            is_latest=True,
        )
        exported = {r["id"]: r["label"] for r in iter_export(project, "processbench")}
        assert exported[traces[0].external_id] == 2
        transaction.set_rollback(True)

    stopped = iter_export(project, "processbench")
    next(stopped)
    stopped.close()  # a download cancelled after its first line
    assert not _read_ahead_threads() and _connections_once_settled(connections) == connections

    with pytest.raises(DataError):  # PostgreSQL text cannot hold NUL: the thread's query
        next(iter_export(project, "processbench", split="a\x00b"))
    assert not _read_ahead_threads() and _connections_once_settled(connections) == connections
