"""An import checks the references of the rows it writes itself, a chunk at a time,
where the database lets it turn the row-by-row foreign-key triggers off: a bad
reference is still refused, a row it references is still locked against deletion, and
a trigger of another kind on its tables keeps the triggers on."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from annotator import importing
from annotator.importing import check_references, import_file
from annotator.models import Problem, Project, Trace, text_hash


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def record(i: int, problem: str = "p") -> dict:
    return {"id": f"r-{i}", "problem": problem, "steps": ["a", "b"], "label": -1}


def role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('session_replication_role')")
        return cursor.fetchone()[0]


def test_a_chunk_naming_a_missing_or_another_projects_problem_or_a_missing_trace_is_refused(
    project,
):
    other = Project.objects.create(slug="other", name="Other")
    mine = Problem.objects.create(project=project, text="q", text_hash=text_hash("q"))
    theirs = Problem.objects.create(project=other, text="q", text_hash=text_hash("q"))
    check_references(project.pk, [mine.pk], [])  # a good chunk passes

    with pytest.raises(IntegrityError, match=rf"problem {theirs.pk} \(of project {project.pk}\)"):
        check_references(project.pk, [mine.pk, theirs.pk], [])
    with pytest.raises(IntegrityError, match=r"problem 999999999 "):
        check_references(project.pk, [999999999], [])
    with pytest.raises(IntegrityError, match=r"trace 999999999"):
        check_references(project.pk, [mine.pk], [999999999])


def test_an_import_turns_the_triggers_off_for_its_rows_only(project, tmp_path, monkeypatch):
    """The test database's role may set the replication role: the import checks its own
    references, and the role is back to ``origin`` between chunks and after."""
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 100)
    assert importing._may_check_references() == "origin"
    seen = []
    path = write_lines(tmp_path / "ok.jsonl", [record(i, f"p{i % 7}") for i in range(250)])
    import_file(project, path, progress=lambda done, total: seen.append(role()))
    assert seen == ["origin"] * 3
    assert role() == "origin"
    assert Trace.objects.filter(project=project).count() == 250


def test_a_trigger_of_another_kind_on_an_imports_table_keeps_the_row_by_row_checks(
    project, tmp_path
):
    """With the triggers off, a trigger someone adds to the traces would silently not
    fire for imported rows: the import sees it and leaves the triggers on."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE fired (n int)")
        cursor.execute(
            "CREATE FUNCTION pg_temp.count_it() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO fired VALUES (1); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER count_it AFTER INSERT ON annotator_trace"
            " FOR EACH ROW EXECUTE FUNCTION pg_temp.count_it()"
        )
    assert importing._may_check_references() is None

    import_file(project, write_lines(tmp_path / "ok.jsonl", [record(i) for i in range(3)]))

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fired")
        assert cursor.fetchone()[0] == 3


@pytest.mark.django_db(transaction=True)
def test_a_problem_an_import_found_cannot_be_deleted_until_it_commits(
    project, tmp_path, monkeypatch
):
    """A problem stored before the import and named by its traces is locked as a
    foreign-key check locks it: another transaction cannot take it for deletion (``FOR
    UPDATE``) while the import runs."""
    monkeypatch.setattr(importing, "CHUNK_RECORDS", 100)
    found = Problem.objects.create(project=project, text="old", text_hash=text_hash("old"))
    path = write_lines(tmp_path / "ok.jsonl", [record(i, "old") for i in range(250)])
    outcome = []

    def delete_elsewhere() -> None:
        try:
            with transaction.atomic():
                Problem.objects.select_for_update(nowait=True).get(pk=found.pk)
            outcome.append("locked it")
        except DatabaseError as exc:
            outcome.append(type(exc.__cause__).__name__)
        finally:
            connection.close()

    def progress(done: int, total: int | None) -> None:
        if done == 100:  # after the first chunk, which named the problem
            thread = threading.Thread(target=delete_elsewhere)
            thread.start()
            thread.join()

    import_file(project, path, progress=progress)
    assert outcome == ["LockNotAvailable"]
    assert Trace.objects.filter(project=project, problem=found).count() == 250
