"""import_traces: every format from real files, idempotency, and bad input writing nothing."""

from __future__ import annotations

import gc
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from annotator.bulk import BULK_GC_THRESHOLD
from annotator.importing import import_file
from annotator.models import Annotation, Problem, Step, Trace
from scoring.formats import MAX_RECORD_BYTES, UTF8_BOM, ImportFormatError
from tests.factories import PROCESSBENCH_GSM8K


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


BBM_TASKS = (
    "dyck_languages",
    "logical_deduction",
    "multistep_arithmetic",
    "tracking_shuffled_objects",
    "word_sorting",
)


def test_every_big_bench_mistake_file_imports_with_the_files_counts(project, data_dir):
    total = 0
    for task in BBM_TASKS:
        path = data_dir / "big-bench-mistake" / f"{task}.jsonl"
        records = [json.loads(line) for line in path.open() if line.strip()]
        run_import(path, project)

        traces = Trace.objects.filter(split=task)
        assert traces.count() == len(records), task
        assert Step.objects.filter(trace__split=task).count() == sum(
            1 for r in records for s in r["steps"] if s.strip()
        ), task
        assert Annotation.objects.filter(trace__split=task, first_error_step__gte=0).count() == sum(
            1 for r in records if r["mistake_index"] is not None
        ), task
        total += len(records)
    assert Trace.objects.count() == total == 2186


def test_an_empty_bbm_step_is_dropped_and_the_mistake_stays_on_its_step(project, data_dir):
    path = data_dir / "big-bench-mistake" / "dyck_languages.jsonl"
    record = json.loads(path.read_text().splitlines()[538])  # line 539: step 54 is ""
    assert record["steps"][54] == "" and record["mistake_index"] == 16
    run_import(path, project)

    trace = Trace.objects.get(metadata__dropped_empty_steps=[54])
    assert trace.problem.text == record["input"]
    steps = list(trace.steps.order_by("index").values_list("text", flat=True))
    assert steps == record["steps"][:54] + record["steps"][55:]
    assert trace.annotations.get().first_error_step == 16


def test_a_mistake_after_an_empty_bbm_step_moves_down_with_its_step(project, tmp_path):
    row = {"input": "q", "steps": ["a", " ", "b", "c"], "target": "x", "answer": "y"}
    path = write_lines(tmp_path / "task.jsonl", [row | {"mistake_index": 2}])
    run_import(path, project)

    trace = Trace.objects.get()
    annotation = trace.annotations.get()
    assert trace.steps.get(index=annotation.first_error_step).text == "b"
    assert annotation.first_error_step == 1
    assert trace.metadata == {"dropped_empty_steps": [1]}


def test_it_imports_gsm8k_reference_solutions(project, data_dir):
    path = data_dir / "gsm8k" / "test.jsonl"
    records = [json.loads(line) for line in path.open()]
    run_import(path, project)

    assert Trace.objects.filter(source_format="gsm8k", generator="reference").count() == 1319
    first = records[0]
    trace = Trace.objects.get(problem__text=first["question"])
    steps = list(trace.steps.order_by("index").values_list("text", flat=True))
    assert steps == [
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.",
        "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market.",
    ]
    assert trace.final_answer == "18"
    assert trace.final_answer_correct is True
    assert trace.problem.reference_answer == "18"
    assert trace.problem.reference_solution == first["answer"]
    assert Step.objects.count() == sum(
        1 for r in records for line in r["answer"].split("####")[0].splitlines() if line.strip()
    )
    assert Annotation.objects.count() == 0


def test_gsm8k_reference_and_model_solutions_share_their_problems(project, data_dir):
    run_import(data_dir / "gsm8k" / "test.jsonl", project)
    run_import(data_dir / "gsm8k" / "example_model_solutions.jsonl", project)

    assert Problem.objects.count() == 1319
    per_problem = Problem.objects.annotate(n=Count("traces")).values_list("n", flat=True)
    assert set(per_problem) == {5}  # the reference solution and four model solutions
    assert Trace.objects.filter(generator="reference").count() == 1319


def test_it_imports_prm800k_stepwise_rows_judged_at_their_last_step(project, data_dir):
    path = data_dir / "prm800k-phase1-stepwise" / "phase1_test.stepwise-critic.parquet"
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 5449
    assert len({r["instruction"] for r in rows}) == 101
    assert sum(1 for r in rows if r["rating"] == -1) == 1970
    distinct = list({json.dumps(r, sort_keys=True): r for r in rows}.values())

    summary = import_file(project, path)

    assert summary.format == "prm800k-stepwise"
    assert (summary.records, summary.problems) == (5449, 101)
    # Rows repeated verbatim in the file are one trace.
    assert summary.traces == len(distinct) == 5449 - summary.skipped_duplicates
    assert Annotation.objects.filter(first_error_step__gte=0).count() == sum(
        1 for r in distinct if r["rating"] == -1
    )
    assert Annotation.objects.filter(first_error_step=-1).count() == sum(
        1 for r in distinct if r["rating"] in (0, 1)
    )
    assert Trace.objects.unlabelled().count() == sum(1 for r in distinct if r["rating"] is None)

    wrong = rows[1]
    assert wrong["rating"] == -1 and len(wrong["responses"]) == 1
    trace = Trace.objects.get(
        problem__text=wrong["instruction"], num_steps=2, steps__text=wrong["next_response"]
    )
    steps = list(trace.steps.order_by("index").values_list("text", flat=True))
    assert steps == [*wrong["responses"], wrong["next_response"]]
    annotation = trace.annotations.get()
    assert (annotation.first_error_step, annotation.step_ratings) == (1, [None, -1])
    assert trace.metadata == {
        "is_human_response": False,
        "is_solution": False,
        "is_preferred_response": False,
    }


def test_a_prm800k_stepwise_step_rated_zero_leaves_the_trace_without_a_wrong_step(
    project, tmp_path
):
    row = {
        "instruction": "p",
        "responses": ["a", "b"],
        "next_response": "c",
        "answer": None,
        "is_human_response": False,
        "is_solution": False,
        "is_preferred_response": False,
        "rating": 0,
    }
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
    run_import(path, project)

    annotation = Annotation.objects.get()
    assert (annotation.first_error_step, annotation.step_ratings) == (-1, [None, None, 0])


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


def test_math_shepherd_splits_only_on_its_tags_and_finds_the_solutions_step_1(project, tmp_path):
    problem = "Follow the recipe. Step 1: add 2 to 3. Step 2: double it. What do you get?"
    steps = ["Маша смотрит кино, у неё две руки. Step 1: 2 + 3 = 5.", "The answer is: 10"]
    row = {
        "input": f"{problem} Step 1: {steps[0]} ки\nStep 2: {steps[1]} ки",
        "label": f"{problem} Step 1: {steps[0]} +\nStep 2: {steps[1]} -",
    }
    path = tmp_path / "shepherd.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n")
    run_import(path, project)

    trace = Trace.objects.get(source_format="math-shepherd")
    assert trace.problem.text == problem
    assert list(trace.steps.order_by("index").values_list("text", flat=True)) == steps
    annotation = trace.annotations.get()
    assert (annotation.first_error_step, annotation.step_ratings) == (1, [1, -1])


@pytest.mark.parametrize("compress", [False, True])
def test_a_utf8_byte_order_mark_is_skipped(project, tmp_path, compress):
    records = json.loads(PROCESSBENCH_GSM8K.read_text())[:3]
    data = UTF8_BOM + b"".join(json.dumps(r).encode() + b"\n" for r in records)
    path = tmp_path / ("bom.jsonl.gz" if compress else "bom.jsonl")
    path.write_bytes(gzip.compress(data) if compress else data)
    run_import(path, project)
    assert sorted(Trace.objects.values_list("external_id", flat=True)) == sorted(
        r["id"] for r in records
    )


def test_a_split_made_from_a_long_file_name_or_id_is_cut_to_fit(project, tmp_path):
    trl = write_lines(
        tmp_path / f"{'n' * 80}.jsonl", [{"prompt": "p", "completions": ["a"], "labels": [True]}]
    )
    run_import(trl, project)
    pb = write_lines(tmp_path / "pb.jsonl", [GOOD | {"id": f"{'s' * 70}-1"}])
    run_import(pb, project)
    assert sorted(Trace.objects.values_list("split", flat=True)) == ["n" * 64, "s" * 64]


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


def test_auto_imports_labelled_jsonl_with_its_answer_and_split(project, tmp_path):
    path = tmp_path / "plain.jsonl"
    row = {
        "id": "a-1",
        "problem": "What is 2+3?",
        "steps": ["2+3 = 5", "The answer is 5"],
        "answer": "5",
        "split": "dev",
        "label": 1,
    }
    path.write_text(json.dumps(row) + "\n")
    run_import(path, project)

    trace = Trace.objects.get(external_id="a-1")
    assert (trace.split, trace.problem.reference_answer) == ("dev", "5")
    assert trace.annotations.get().first_error_step == 1


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


PLAIN = {"id": "j-1", "problem": "p", "steps": ["a", "b", "c"]}
LONG = "x" * 201


@pytest.mark.parametrize(
    ("name", "rows", "message"),
    [
        (
            "bad.jsonl",
            [GOOD, GOOD | {"id": "x-2", "steps": ["a", "b\u0000c"]}],
            "bad.jsonl, line 2, field 'steps[1]': contains a NUL character (\\u0000)",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": "j-2", "metadata": {"note": "x\u0000"}}],
            "bad.jsonl, line 2, field 'metadata.note': contains a NUL character",
        ),
        (
            "bad.json",
            [b'[{"id": "j-1", "problem": "caf\\ud800", "steps": ["a"]}]'],
            "bad.json, record 1, field 'problem': contains a lone surrogate (\\ud800)",
        ),
        (
            "bad.json",
            [b'[{"id": "j-1", "problem": "p", "steps": ["a"], "metadata": {"k": ["\\udfff"]}}]'],
            "bad.json, record 1, field 'metadata.k[0]': contains a lone surrogate (\\udfff)",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": LONG}],
            "bad.jsonl, line 2, field 'external_id': is 201 characters long; at most 200 fit",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": "j-2", "generator": LONG}],
            "bad.jsonl, line 2, field 'generator': is 201 characters long; at most 200 fit",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": "j-2", "split": "s" * 65}],
            "bad.jsonl, line 2, field 'split': is 65 characters long; at most 64 fit",
        ),
        (
            "bad.jsonl",
            [GOOD, b"[1, 2]"],
            "bad.jsonl, line 2: expected a JSON object, got list",
        ),
        ("bad.json", [b'[["a", "b"]]'], "bad.json, record 1: expected a JSON object, got list"),
        (
            "bad.jsonl",
            [PLAIN | {"first_error_step": 2, "step_ratings": [1, 0, 1]}],
            "bad.jsonl, line 1, field 'step_ratings': contradicts first_error_step 2: "
            "step 2 is rated 1 but is the first error",
        ),
        (
            "bad.jsonl",
            [{"question": "p", "steps": ["a", "b"], "label": -1, "step_ratings": [1, -1]}],
            "bad.jsonl, line 1, field 'step_ratings': contradicts label -1: "
            "step 1 is rated -1 but the trace is marked all correct",
        ),
        (
            "bad.jsonl",
            [PLAIN | {"first_error_step": 2, "step_ratings": [-1, 1, None]}],
            "field 'step_ratings': contradicts first_error_step 2: step 0 is rated -1",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": "j-2", "metadata": "{not json"}],
            "bad.jsonl, line 2, field 'metadata': holds malformed JSON text",
        ),
        (
            "bad.jsonl",
            [PLAIN, PLAIN | {"id": "j-2", "metadata": ["a"]}],
            "bad.jsonl, line 2, field 'metadata': expected an object, got list",
        ),
        (
            "gsm8k.jsonl",
            [{"question": "q", "answer": "a\n#### 1"}, {"question": "q2", "answer": "a\n####"}],
            "gsm8k.jsonl, line 2, field 'answer': has no final '#### <answer>' line",
        ),
        (
            "task.jsonl",
            [{"input": "q", "steps": ["a", "", "b"], "mistake_index": 1}],
            "task.jsonl, line 1, field 'mistake_index': 1 points at an empty step",
        ),
        (
            "rows.jsonl",
            [
                {"instruction": "p", "responses": [], "next_response": "a", "rating": 1},
                {"instruction": "p", "responses": ["a"], "next_response": "b", "rating": 2},
            ],
            "rows.jsonl, line 2, field 'rating': 2 is not -1, 0, 1 or null",
        ),
        (
            "rows.jsonl",
            [{"instruction": "p", "responses": ["a", " "], "next_response": "b", "rating": 1}],
            "rows.jsonl, line 1, field 'responses': step 1 is empty",
        ),
    ],
)
def test_bad_records_of_any_format_name_the_record_and_field(
    project, tmp_path, name, rows, message
):
    path = write_lines(tmp_path / name, rows)
    with pytest.raises(CommandError) as excinfo:
        run_import(path, project)
    assert message in str(excinfo.value)
    assert "Nothing was imported" in str(excinfo.value)
    assert counts() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--split", "ok.jsonl, field 'split': is 65 characters long; at most 64 fit"),
        ("--source", "ok.jsonl: the source name is 65 characters long; at most 64 fit"),
    ],
)
def test_over_long_split_or_source_options_are_refused(project, tmp_path, option, message):
    path = write_lines(tmp_path / "ok.jsonl", [GOOD])
    with pytest.raises(CommandError) as excinfo:
        run_import(path, project, option, "s" * 65)
    assert message in str(excinfo.value)
    assert counts() == (0, 0, 0, 0)


def test_an_error_late_in_a_big_file_rolls_back_earlier_chunks(project, tmp_path):
    """The bad record is read while the chunk before it goes in (that chunk's COPY still
    open): it is still named, and nothing is written."""
    rows = [GOOD | {"id": f"ok-{i}"} for i in range(4500)] + [GOOD | {"id": "late", "label": 9}]
    path = write_lines(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CommandError, match="line 4501, field 'label'"):
        run_import(path, project)
    assert counts() == (0, 0, 0, 0)


def test_progress_is_reported_per_chunk_and_can_query_the_database(project, tmp_path):
    """Each chunk's steps go in while the next chunk is parsed; the progress report (a
    job updates its row) must still be able to use the connection, and sees every
    earlier chunk written."""
    rows = [GOOD | {"id": f"ok-{i}"} for i in range(4500)]
    path = write_lines(tmp_path / "big.jsonl", rows)
    seen = []

    def progress(done, total):
        seen.append((done, total, Trace.objects.count(), Step.objects.count()))

    import_file(project, path, progress=progress)

    assert seen == [
        (2000, 4500, 2000, 4000),
        (4000, 4500, 4000, 8000),
        (4500, 4500, 4500, 9000),
    ]


def test_the_cycle_collector_runs_less_often_during_an_import_and_as_before_after_it(
    project, tmp_path
):
    """An import raises the young generation's threshold while it runs and puts it back
    afterwards, when it fails as well."""
    before = gc.get_threshold()
    seen = []
    path = write_lines(tmp_path / "ok.jsonl", [GOOD | {"id": f"ok-{i}"} for i in range(2500)])
    import_file(project, path, progress=lambda done, total: seen.append(gc.get_threshold()))
    assert seen and {threshold[0] for threshold in seen} == {BULK_GC_THRESHOLD}
    assert gc.get_threshold() == before

    bad = write_lines(tmp_path / "bad.jsonl", [GOOD | {"id": "late", "label": 5}])
    with pytest.raises(ImportFormatError):
        import_file(project, bad)
    assert gc.get_threshold() == before


def test_a_problem_written_earlier_in_the_same_import_gets_its_answer_filled_in(project, tmp_path):
    """Problems this import wrote are found without asking the database; one that came
    without a reference answer still gets it from a later chunk's record."""
    rows = [{"id": f"a-{i}", "problem": f"q{i % 3}", "steps": ["s"]} for i in range(2500)]
    rows += [{"id": "late", "problem": "q1", "steps": ["s"], "answer": "42"}]
    import_file(project, write_lines(tmp_path / "generic.jsonl", rows), "jsonl")

    assert Problem.objects.count() == 3
    assert dict(Problem.objects.values_list("text", "reference_answer")) == {
        "q0": "",
        "q1": "42",
        "q2": "",
    }
    assert Trace.objects.filter(problem__text="q1").count() == 834


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
        match=r"odd.jsonl, line 1: cannot detect the format from the keys \['foo'\]; choose the format \(one of processbench, ",
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
