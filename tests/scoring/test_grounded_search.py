"""The grounded search end to end, against a scripted completer on loopback
(``tests/scoring/grounded_server.py``, its own process): planted wrong steps, labels equal to
the reference's fusion, filter and binarisation applied to the run's own exported tree,
determinism, resumption (from a saved state, and of the command killed mid-search)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scoring.completers import load_completer
from scoring.formats.base import ParseOptions
from scoring.formats.trl import read as read_trl
from scoring.grounded import extract_paths, tree_from_dict
from scoring.grounded.checking import (
    Checker,
    StepToCheck,
    boxed_sides,
    parse_step,
    plain_math,
    read_verification,
    tool_verdict,
)
from scoring.grounded.search import (
    Search,
    SearchState,
    extract_root,
    new_search,
    problem_from_record,
)
from tests.scoring import grounded_server
from tests.scoring.grounded_server import PLANTED
from tests.scoring.test_grounded import RefNode, RefSearch, as_released, ref_construct

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = [
    {"id": "easy", "problem": grounded_server.problem(3, 4, 5), "answer": "35", "level": 2},
    {
        "id": "hard",
        "problem": grounded_server.problem(2, 9, 3),
        "solution": "(2 + 9) * 3 = 33, so \\boxed{33}.",
        "level": "Level 5",
        "global_objective": "Find (2 + 9) * 3",
        "conditions": ["A = 2", "B = 9", "C = 3"],
    },
]


@pytest.fixture(scope="module")
def server():
    process, url = grounded_server.spawn()
    yield url
    process.kill()
    process.wait()


def searcher(url: str, judge: str) -> Search:
    generator = load_completer(f"openai:{url}", "generator", temperature=1.0)
    judging = None if judge == "tool" else load_completer(f"openai:{url}", "judge")
    return Search(generator, Checker(writer=judging or generator, judge=judging))


def start(url: str, record: dict, seed: int = 0, selection: str = "uct") -> SearchState:
    generator = load_completer(f"openai:{url}", "generator")
    problem = extract_root(problem_from_record(record, 0), generator)
    return new_search(problem, seed=seed, selection=selection)


def run_cli(url: str, out: Path, judge: str, *extra: str, delay_url: str | None = None):
    problems = out.parent / f"{out.name}-problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    judge_args = ["--judge", "tool"] if judge == "tool" else ["--judge", f"openai:{url}"]
    return [
        sys.executable,
        "-m",
        "scoring",
        "grounded",
        "--problems",
        str(problems),
        "--generator",
        f"openai:{url}",
        "--model",
        "generator",
        *judge_args,
        "--judge-model",
        "judge",
        "--seed",
        "7",
        "--output",
        str(out),
        *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- the reference, applied to the exported tree ------------------------------------------------


def boxed_number(action: str) -> int | None:
    inner = action[action.rindex("\\boxed{") + 7 :].split("}")[0] if "\\boxed{" in action else ""
    numbers = re.findall(r"-?\d+", inner.split("=")[-1])
    return int(numbers[-1]) if numbers else None


def reference_values(data: dict, gold: int) -> dict[int, float]:
    """Every node's value as the released ``simulate`` and ``backpropagate`` compute it, from
    the exported tree's rollouts and each rollout step's decision; outcomes graded here by
    the boxed number."""
    nodes = data["nodes"]
    ref = RefSearch()
    refs: dict[int, RefNode] = {}
    for node in nodes:  # parents come before their children
        decision = node["judgement"] or node["verdict"]
        parent = refs.get(node["parent"]) if node["parent"] is not None else None
        refs[node["id"]] = RefNode(
            str(node["id"]), decision and decision["decision"], node["terminal"], False, parent
        )
    for node in nodes:
        for rollout in node["rollouts"]:
            steps = [refs[i] for i in rollout["nodes"]]
            for step in steps:  # step_evaluate
                step.value = {"correct": 1.0, "wrong": -1.0}.get(step.decision, 0)
            last = nodes[rollout["nodes"][-1]] if rollout["nodes"] else node
            outcome = 1.0 if boxed_number(last["step"]["action"]) == gold else -1.0
            path = [refs[node["id"]], *steps]
            path_value = [refs[node["id"]].value, *(s.value for s in steps)]
            path_value[-1] = outcome
            ref.backpropagate(path, path_value)
    return {i: r.value for i, r in refs.items()}


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.parametrize("judge", ["tool", "llm"])
def test_a_planted_wrong_step_is_labelled_wrong_and_the_rest_as_the_reference(
    server, tmp_path, judge
) -> None:
    out = tmp_path / judge
    run = subprocess.run(
        run_cli(server, out, judge), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    trees = read_jsonl(out / "trees.jsonl")
    trl = read_jsonl(out / "steps.trl.jsonl")
    generative = read_jsonl(out / "generative.jsonl")
    assert [t["id"] for t in trees] == ["easy", "hard"]

    planted_seen = 0
    for record in trl:
        for completion, label in zip(record["completions"], record["labels"], strict=True):
            if PLANTED in completion:
                planted_seen += 1
                assert label is False, record
    assert planted_seen > 0  # the planted step reached the exports
    for conversation in generative:
        turns = conversation["conversation"]
        for user, assistant in zip(turns[1::2], turns[2::2], strict=True):
            if PLANTED in user["content"]:
                assert assistant["content"].endswith("\\boxed{-}\n</output>")

    expected_labels: list[list[bool]] = []
    for data in trees:
        tree = tree_from_dict(data["tree"])
        # every node, expanded or simulated, carries a tool verdict (and a judgement)
        for node in data["tree"]["nodes"][1:]:
            assert node["verdict"] is not None and node["verdict"]["query"] is not None
            assert (node["judgement"] is not None) == (judge == "llm")
        # values: the released fusion and backup over the exported rollouts
        gold = 35 if data["id"] == "easy" else 33
        values = reference_values(data["tree"], gold)
        for node in data["tree"]["nodes"]:
            assert math.isclose(node["value"], values[node["id"]], abs_tol=1e-9)
        # labels: the released filter, truncation and binarisation over the exported paths
        released = ref_construct(as_released(extract_paths(tree), [0, 1, 2, 3]))
        expected_labels += [
            [s["step score"] > 0 for s in p["steps"]] for p in released if p["steps"]
        ]
    assert [r["labels"] for r in trl] == expected_labels
    assert [
        [t["content"].endswith("\\boxed{+}\n</output>") for t in c["conversation"][2::2]]
        for c in generative
    ] == expected_labels
    # the TRL records read back through the project's own TRL reader
    for record in trl:
        [trace] = read_trl(record, "x", ParseOptions())
        assert list(trace.steps) == record["completions"]


def test_the_search_with_a_fixed_seed_is_deterministic(server) -> None:
    search = searcher(server, "llm")
    record = PROBLEMS[1]
    first = search.run(start(server, record, seed=5)).to_dict()
    again = search.run(start(server, record, seed=5)).to_dict()
    assert first == again
    # the seed does decide: the released selection draws a child of the root per round
    trees = {
        json.dumps(search.run(start(server, record, seed=s, selection="released")).to_dict())
        for s in range(4)
    }
    assert len(trees) > 1


@pytest.mark.parametrize("interrupt_after", [1, 3])
def test_a_search_resumed_from_its_saved_state_equals_one_that_ran_through(
    server, interrupt_after
) -> None:
    record = PROBLEMS[0]
    whole = searcher(server, "llm").run(start(server, record, seed=2))
    half = searcher(server, "llm").run(start(server, record, seed=2), stop_after=interrupt_after)
    assert half.tree.rounds == interrupt_after and not half.done
    saved = json.dumps(half.to_dict())
    resumed = searcher(server, "llm").run(SearchState.from_dict(json.loads(saved)))
    assert resumed.to_dict() == whole.to_dict()


def test_the_released_selection_never_grows_the_tree_below_the_roots_children(server) -> None:
    state = searcher(server, "tool").run(start(server, PROBLEMS[1], seed=3, selection="released"))
    tree_nodes = [n for n in state.tree.nodes if not n.virtual]
    assert max(n.depth for n in tree_nodes) == 2
    assert state.tree.rounds >= 1


def test_the_command_killed_mid_search_resumes_to_the_same_trees(tmp_path) -> None:
    process, url = grounded_server.spawn(delay=0.05)
    try:
        through = tmp_path / "through"
        run = subprocess.run(
            run_cli(url, through, "tool"), cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        killed = tmp_path / "killed"
        command = run_cli(url, killed, "tool")
        victim = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
        partial = killed / "partial"
        # kill it once the second problem's search has saved a round
        while victim.poll() is None:
            states = []
            for path in partial.glob("*.json"):
                # A problem's partial file is removed once its tree is written.
                with contextlib.suppress(FileNotFoundError):
                    states.append(json.loads(path.read_text() or "{}"))
            if any(s.get("id") == "hard" and s["tree"]["rounds"] >= 2 for s in states):
                os.kill(victim.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        victim.wait()
        assert victim.returncode == -signal.SIGKILL, "finished before it could be killed"
        assert [t["id"] for t in read_jsonl(killed / "trees.jsonl")] == ["easy"]
        rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr
        assert "1 resumed, 1 already done" in rerun.stderr
        for name in ("trees.jsonl", "steps.trl.jsonl", "generative.jsonl"):
            assert (killed / name).read_text() == (through / name).read_text(), name
        assert list(partial.iterdir()) == []
    finally:
        process.kill()
        process.wait()


# --- checking ---------------------------------------------------------------------------------------


def test_a_boxed_chain_is_checked_directly_with_sympy_and_no_query() -> None:
    right = tool_verdict(StepToCheck("o", "\\boxed{p = \\frac{70}{2} = 35}", "g", ()), None)
    wrong = tool_verdict(StepToCheck("o", "\\boxed{p = \\sqrt{49} \\cdot 5 = 36}", "g", ()), None)
    assert (right.tool, right.decision) == ("sympy", "correct")
    assert (wrong.tool, wrong.decision) == ("sympy", "wrong")
    # a bare value has nothing to check against without a query model
    alone = tool_verdict(StepToCheck("o", "\\boxed{p = 35}", "g", ()), None)
    assert alone.decision == "error" and alone.error_kind == "undecided"


def test_judge_tool_decides_by_the_tool_alone(server) -> None:
    checker = searcher(server, "tool").checker
    [(verdict, judgement)] = checker.check(
        [StepToCheck("Add A and B", "3 + 4 = 8, so \\boxed{s = 8}", "Find (3 + 4) * 5", ())]
    )
    assert judgement is None and verdict.tool == "arithmetic" and verdict.decision == "wrong"


def test_a_written_query_runs_in_the_sandbox_against_the_boxed_value(server) -> None:
    checker = searcher(server, "tool").checker
    target = "Find (3 + 4) * 5"
    results = checker.check(
        [
            StepToCheck("Restate the sum", "So far \\boxed{s = 7}", target, ("A = 3",)),
            StepToCheck("Restate the sum", "So far \\boxed{s = 8}", target, ("A = 3",)),
        ]
    )
    assert [(v.tool, v.query, v.decision) for v, _ in results] == [
        ("python", "print(3 + 4)", "correct"),
        ("python", "print(3 + 4)", "wrong"),
    ]


def test_a_query_whose_program_fails_is_written_again(server) -> None:
    checker = searcher(server, "tool").checker
    step = StepToCheck("Recheck the sum", "So far \\boxed{s = 7}", "Find (3 + 4) * 5", ())
    before = grounded_server.stats(server).get("query", 0)
    [(verdict, _)] = checker.check([step])
    assert grounded_server.stats(server)["query"] - before == 2
    assert (verdict.query, verdict.decision) == ("print(3 + 4)", "correct")


@pytest.mark.parametrize(
    ("reply", "decision"),
    [
        ('{"reason": "fine", "result": "True"}', "correct"),
        ('<think>hmm</think>```json\n{"reason": "no", "result": "false"}\n```', "wrong"),
        ('{"reason": "copied", "result": ["True", "False"]}', "correct"),  # True is read first
        ('"reason": "cut short", "result": "False"', "wrong"),
        ("I cannot tell.", None),
    ],
)
def test_it_reads_a_verification_as_the_released_step_evaluate(reply, decision) -> None:
    assert read_verification(reply)[0] == decision


def test_it_parses_a_step_in_either_key_spelling_or_by_pattern() -> None:
    assert parse_step('{"step_objective": "o", "actions": "a \\\\boxed{1}"}') == (
        "o",
        "a \\boxed{1}",
    )
    assert parse_step('noise {"step objective": "o", "action": "x = \\frac{1}{2}"}') == (
        "o",
        "x = \\frac{1}{2}",
    )
    assert parse_step("just text") == ("", "just text")


def test_it_rewrites_latex_to_plain_math_or_refuses() -> None:
    assert plain_math("\\frac{1}{4} \\cdot 2^{3}") == "((1)/(4)) * 2^(3)"
    assert plain_math("\\text{apples}") is None
    assert boxed_sides("\\boxed{x \\le 3}") is None
    assert boxed_sides("\\boxed{f(x) = x^2 = x \\cdot x}") == ["x^2", "x * x"]
