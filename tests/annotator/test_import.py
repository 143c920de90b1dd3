"""import_traces: every format from real files, idempotency, and bad input writing nothing."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotator.formats import MAX_RECORD_BYTES
from annotator.models import Annotation, Problem, Step, Trace
from tests.conftest import PROCESSBENCH_GSM8K


def run_import(path, project, *args: str) -> None:
    call_command("import_traces", str(path), "--project", project.slug, *args, verbosity=0)


def counts() -> tuple[int, int, int, int]:
    return (
        Problem.objects.count(),
        Trace.objects.count(),
        Step.objects.count(),
        Annotation.objects.count(),
    )


def test_it_imports_processbench_with_labels_by_an_importer_identity(project):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())
    run_import(PROCESSBENCH_GSM8K, project)

    assert Trace.objects.filter(project=project).count() == len(records) == 400
    assert Step.objects.count() == sum(len(r["steps"]) for r in records)
    trace = Trace.objects.get(external_id=records[7]["id"])
    assert trace.split == "gsm8k"
    assert trace.generator == records[7]["generator"]
    assert trace.final_answer_correct == records[7]["final_answer_correct"]
    assert list(trace.steps.order_by("index").values_list("text", flat=True)) == records[7]["steps"]
    annotation = trace.annotations.get()
    assert annotation.first_error_step == records[7]["label"]
    assert annotation.annotator.username == "import-processbench"
    assert not annotation.annotator.is_active
    all_correct = sum(1 for r in records if r["label"] == -1)
    assert Annotation.objects.filter(first_error_step=-1).count() == all_correct == 193


def test_it_is_idempotent_on_reimport(project):
    run_import(PROCESSBENCH_GSM8K, project)
    before = counts()
    out = []
    call_command(
        "import_traces",
        str(PROCESSBENCH_GSM8K),
        "--project",
        project.slug,
        verbosity=0,
        stdout=type(
            "W", (), {"write": lambda self, s: out.append(s), "flush": lambda self: None}
        )(),
    )
    assert counts() == before
    assert "400 duplicates skipped" in "".join(out)


def test_it_imports_gsm8k_model_solutions_as_best_of_n(project, data_dir):
    path = data_dir / "gsm8k" / "example_model_solutions.jsonl"
    first = json.loads(path.open().readline())
    run_import(path, project)

    solution_keys = [k for k, v in first.items() if isinstance(v, dict) and "solution" in v]
    problem = Problem.objects.get(text=first["question"])
    traces = problem.traces.order_by("generator")
    assert sorted(traces.values_list("generator", flat=True)) == sorted(solution_keys)
    assert problem.reference_answer == first["ground_truth"].strip().splitlines()[-1].removeprefix(
        "A: "
    )
    for trace in traces:
        assert trace.final_answer_correct == first[trace.generator]["is_correct"]
        assert trace.steps.count() == len(
            [ln for ln in first[trace.generator]["solution"].splitlines() if ln.strip()]
        )
    assert Annotation.objects.count() == 0  # outcome flags only, no step labels


def test_problems_are_shared_between_benchmark_and_solution_files(project, data_dir):
    run_import(PROCESSBENCH_GSM8K, project)
    run_import(data_dir / "gsm8k" / "example_model_solutions.jsonl", project)
    pb = json.loads(PROCESSBENCH_GSM8K.read_text())[0]
    problem = Problem.objects.get(project=project, text=pb["problem"])
    assert problem.traces.filter(source="processbench").count() >= 1
    assert problem.traces.filter(source="gsm8k-solutions").count() == 4
    assert problem.reference_answer  # filled in by the second file


def test_it_imports_prm800k_phase1_following_chosen_and_human_completions(project, data_dir):
    path = data_dir / "prm800k-examples" / "prm800k-phase1-test-example.json"
    record = json.loads(path.read_text())
    run_import(path, project, "--format", "prm800k")

    trace = Trace.objects.get()
    steps = list(trace.steps.order_by("index").values_list("text", flat=True))
    expected = []
    for step in record["label"]["steps"]:
        if step["chosen_completion"] is not None:
            expected.append(step["completions"][step["chosen_completion"]]["text"])
        else:
            expected.append(step["human_completion"]["text"])
    assert steps == expected
    annotation = trace.annotations.get()
    assert annotation.step_ratings == [1, None, 1, 1, 1, 1]  # the human-written step is unrated
    assert annotation.first_error_step == -1  # finish_reason "solution"
    assert annotation.external_annotator == record["labeler"]
    assert trace.metadata["finish_reason"] == "solution"
    assert trace.metadata["quality_control"] is False
    assert trace.problem.reference_answer == record["question"]["ground_truth_answer"]


def test_it_imports_prm800k_phase2_on_pre_generated_steps(project, data_dir):
    path = data_dir / "prm800k-examples" / "prm800k-phase2-train-example.jsonl"
    run_import(path, project)  # concatenated pretty-printed objects, detected as prm800k

    first = json.JSONDecoder().raw_decode(path.read_text())[0]
    trace = Trace.objects.order_by("id").first()
    assert trace.source_format == "prm800k"
    pre = first["question"]["pre_generated_steps"]
    assert list(trace.steps.order_by("index").values_list("text", flat=True)) == pre
    annotation = trace.annotations.get()
    judged = len(first["label"]["steps"])
    assert annotation.first_error_step == judged - 1  # found_error at the last judged step
    assert annotation.step_ratings[judged - 1] == -1
    assert annotation.step_ratings[judged:] == [None] * (len(pre) - judged)
    assert Trace.objects.count() == 9


def test_it_imports_big_bench_mistake(project, data_dir):
    path = data_dir / "big-bench-mistake" / "logical_deduction.jsonl"
    records = [json.loads(line) for line in path.open()]
    run_import(path, project)

    assert Trace.objects.count() == len(records)
    assert set(Trace.objects.values_list("split", flat=True)) == {"logical_deduction"}
    with_mistake = [r for r in records if r["mistake_index"] is not None]
    assert Annotation.objects.exclude(first_error_step=-1).count() == len(with_mistake)
    r = with_mistake[0]
    annotation = Annotation.objects.get(
        trace__problem__text=r["input"],
        trace__steps__text=r["steps"][0],
        trace__num_steps=len(r["steps"]),
    )
    assert annotation.first_error_step == r["mistake_index"]


def processbench_as(fmt: str, records: list[dict]) -> list[dict]:
    """Real ProcessBench records rewritten in another format's exact layout."""
    out = []
    for r in records:
        k = r["label"]
        flags = [True] * len(r["steps"]) if k == -1 else [True] * k + [False]
        steps = r["steps"] if k == -1 else r["steps"][: k + 1]
        if fmt == "trl":
            out.append({"prompt": r["problem"], "completions": steps, "labels": flags})
        elif fmt == "math-shepherd":
            body = "".join(f"Step {i}: {s} ки\n" for i, s in enumerate(steps, 1))
            label = "".join(
                f"Step {i}: {s} {'+' if ok else '-'}\n"
                for i, (s, ok) in enumerate(zip(steps, flags, strict=True), 1)
            )
            out.append(
                {
                    "input": f"{r['problem']} {body}",
                    "label": f"{r['problem']} {label}",
                    "task": "GSM8K",
                }
            )
    return out


def test_it_imports_trl_stepwise_supervision(project, tmp_path):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())[:50]
    path = tmp_path / "trl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in processbench_as("trl", records)))
    run_import(path, project)

    assert Trace.objects.filter(source_format="trl").count() == 50
    for r in records[:10]:
        annotation = Annotation.objects.get(
            trace__problem__text=r["problem"],
            trace__generator="",
            trace__steps__index=0,
            trace__steps__text=r["steps"][0],
        )
        assert annotation.first_error_step == r["label"]


def test_it_imports_math_shepherd_tags_and_labels(project, tmp_path):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())[:30]
    path = tmp_path / "shepherd.jsonl"
    path.write_text(
        "".join(
            json.dumps(r, ensure_ascii=False) + "\n"
            for r in processbench_as("math-shepherd", records)
        )
    )
    run_import(path, project)

    assert Trace.objects.filter(source_format="math-shepherd").count() == 30
    r = next(r for r in records if r["label"] > 0)
    trace = Trace.objects.get(
        problem__text=r["problem"].strip(),
        num_steps=r["label"] + 1,
        steps__index=0,
        steps__text=r["steps"][0].strip(),
    )
    annotation = trace.annotations.get()
    assert annotation.first_error_step == r["label"]
    assert annotation.step_ratings == [1] * r["label"] + [-1]


def test_it_imports_generic_jsonl_with_a_step_splitter(project, tmp_path):
    path = tmp_path / "plain.jsonl"
    rows = [
        {
            "id": "a",
            "question": "What is 2+3?",
            "solution": "Step 1: 2+3 = 5\nStep 2: The answer is 5",
            "answer": "5",
        },
        {
            "id": "b",
            "question": "What is 2*3?",
            "solution": "Step 1: 2*3 = 5\nStep 2: The answer is 5",
            "answer": "6",
            "label": 0,
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_import(path, project, "--format", "jsonl", "--step-splitter", "step-markers")

    a = Trace.objects.get(external_id="a")
    assert list(a.steps.order_by("index").values_list("text", flat=True)) == [
        "2+3 = 5",
        "The answer is 5",
    ]
    assert a.problem.reference_answer == "5"
    assert Trace.objects.get(external_id="b").annotations.get().first_error_step == 0


def test_it_reads_gzip_and_parquet(project, tmp_path):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())[:40]
    gz = tmp_path / "pb.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records[:20])
    parquet = tmp_path / "pb.parquet"
    pq.write_table(pa.Table.from_pylist(records[20:]), parquet)

    run_import(gz, project)
    run_import(parquet, project)
    assert sorted(Trace.objects.values_list("external_id", flat=True)) == sorted(
        r["id"] for r in records
    )


# ---------------------------------------------------------------- bad input


def write_lines(path, rows):
    path.write_bytes(
        b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)
    )
    return path


GOOD = {
    "id": "x-1",
    "generator": "g",
    "problem": "p",
    "steps": ["a", "b"],
    "final_answer_correct": True,
    "label": -1,
}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [GOOD, b'{"id": "x-2", "problem": "p", "steps": ["a"], "label": 0'],
            "bad.jsonl, line 2: malformed JSON",
        ),
        (
            [GOOD, {k: v for k, v in GOOD.items() if k != "steps"} | {"id": "x-2"}],
            "bad.jsonl, line 2, field 'steps': missing",
        ),
        (
            [GOOD, GOOD | {"id": "x-3", "label": 2}],
            "bad.jsonl, line 2, field 'label': 2 is out of range: use -1 (all correct) or 0..1",
        ),
        ([GOOD, GOOD | {"id": "x-4", "label": -2}], "field 'label': -2 is out of range"),
        (
            [GOOD, GOOD | {"id": "x-5", "steps": []}],
            "bad.jsonl, line 2, field 'steps': has no steps",
        ),
        (
            [GOOD, GOOD | {"id": "x-6", "steps": ["a", "  "]}],
            "bad.jsonl, line 2, field 'steps': step 1 is empty",
        ),
        (
            [GOOD, GOOD | {"id": "x-7", "steps": "a\n\nb"}],
            "bad.jsonl, line 2, field 'steps': expected a list of strings, got str",
        ),
        (
            [GOOD, GOOD | {"id": "x-8", "label": "1"}],
            "bad.jsonl, line 2, field 'label': expected an integer, got str",
        ),
        (
            [GOOD, GOOD | {"id": "x-9", "label": True}],
            "field 'label': expected an integer, got bool",
        ),
        (
            [GOOD, GOOD | {"id": "x-10", "steps": ["a", 3]}],
            "field 'steps': step 1 is int, not a string",
        ),
        (
            [GOOD, GOOD | {"id": "x-11", "final_answer_correct": "yes"}],
            "field 'final_answer_correct': expected true or false",
        ),
        (
            [GOOD, b'{"id": "x-12", "problem": "caf\xe9", "steps": ["a"], "label": -1}'],
            "bad.jsonl, line 2: not valid UTF-8 (byte 0xe9 at column 31)",
        ),
    ],
)
def test_bad_input_names_line_and_field_and_writes_nothing(project, tmp_path, rows, message):
    path = write_lines(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CommandError) as excinfo:
        run_import(path, project, "--format", "processbench")
    assert message in str(excinfo.value)
    assert "Nothing was imported" in str(excinfo.value)
    assert counts() == (0, 0, 0, 0)


def test_an_error_late_in_a_big_file_rolls_back_earlier_chunks(project, tmp_path):
    rows = [GOOD | {"id": f"ok-{i}"} for i in range(4500)] + [GOOD | {"id": "late", "label": 9}]
    path = write_lines(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CommandError, match="line 4501, field 'label'"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_a_huge_line_is_refused(project, tmp_path):
    path = tmp_path / "huge.jsonl"
    huge = GOOD | {"id": "huge", "steps": ["x" * (MAX_RECORD_BYTES + 10)]}
    write_lines(path, [GOOD, huge])
    with pytest.raises(CommandError, match=r"huge.jsonl, line 2: line is longer than 16 MiB"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_malformed_json_array_names_the_line(project, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(
        '[\n  {"id": "a", "problem": "p", "steps": ["s"], "label": -1},\n  {"id": "b",,}\n]\n'
    )
    with pytest.raises(CommandError, match=r"broken.json, line 3: malformed JSON"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_non_utf8_json_document_names_the_line(project, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(
        '[{"id": "a", "problem": "p", "steps": ["s"], "label": -1},\n{"id": "b", "problem": "caf\xe9"}]'.encode(
            "latin-1"
        )
    )
    with pytest.raises(CommandError, match=r"latin1.json, line 2: not valid UTF-8 \(byte 0xe9"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_records_of_another_format_name_the_field(project, tmp_path):
    path = write_lines(
        tmp_path / "mixed.jsonl", [GOOD, {"prompt": "p", "completions": ["a"], "labels": [True]}]
    )
    with pytest.raises(CommandError, match=r"mixed.jsonl, line 2, field 'id': missing"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_trl_labels_must_match_completions(project, tmp_path):
    path = write_lines(
        tmp_path / "trl.jsonl", [{"prompt": "p", "completions": ["a", "b"], "labels": [True]}]
    )
    with pytest.raises(
        CommandError, match=r"trl.jsonl, line 1, field 'labels': has 1 labels for 2 completions"
    ):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_an_undetectable_format_says_what_to_do(project, tmp_path):
    path = write_lines(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(
        CommandError,
        match=r"odd.jsonl, line 1: cannot detect the format from the keys \['foo'\]; pass --format",
    ):
        run_import(path, project)


def test_an_empty_file_is_an_error(project, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(CommandError, match="empty.jsonl: the file is empty"):
        run_import(path, project)


def test_an_unknown_project_is_an_error(db, tmp_path):
    with pytest.raises(CommandError, match="no project with slug 'nope'"):
        call_command("import_traces", str(PROCESSBENCH_GSM8K), "--project", "nope", verbosity=0)
