"""GroundedPRM's fusion, backup, filter, truncation and selection against the released code.

The reference's lines (``JerryPlain/GroundedPRMCode``: ``pipeline/MCTS/mcts.py`` ``expand``,
``simulate``, ``backpropagate``, ``select``, ``getBestChild``; ``data_process/construct.py``
``filter_consistent_samples``, ``truncate_steps``, ``convert_to_binary_label``;
``data_process/extract_path.py`` ``extract_terminal_paths``) are re-written here on mutable
objects and dicts, as the reference holds them, without calling ``scoring.grounded``; random
trees (hypothesis: shapes, duplicate objectives, verdicts, terminal steps, outcomes) are
grown by both and compared node by node.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.grounded import (
    EXPLORATION,
    LabelledPath,
    PathStep,
    Step,
    Tree,
    best_child,
    binarise,
    expand,
    extract_paths,
    is_consistent,
    is_terminal,
    label_paths,
    new_tree,
    record_rollout,
    record_terminal,
    rollout_value,
    search_budget,
    search_done,
    select,
    tree_from_dict,
    tree_labels,
    tree_to_dict,
    truncate,
    uct_score,
)
from scoring.tools import ToolVerdict

GOLD = "7"
DECISIONS = ("correct", "wrong", "error", None)

# --- the reference, re-written --------------------------------------------------------------


class RefNode:
    """``mcts_node.py`` lines 10-29: the fields the values and the sampling read."""

    def __init__(self, key: str, decision: str | None, terminal: bool, right: bool, parent=None):
        self.key = key  # state.step_objective
        self.decision = decision  # what step_evaluate's verifier said
        self.terminal = terminal  # is_terminal(self)
        self.right = right  # evaluate_final_state(self.state) == 1.0
        self.parent = parent
        self.visits = 0
        self.value = 0.0
        self.children: dict[str, RefNode] = {}
        self.isFullyExpanded = False
        self.is_simulated = False
        self.simulation_branch: list[RefNode] = []


class RefSearch:
    """``mcts.py``'s round (lines 211-228) on given steps instead of a model."""

    def __init__(self) -> None:
        self.root = RefNode("", None, False, False)
        self.phase = "collect_positive"
        self.positive_samples: list[list[RefNode]] = []
        self.negative_samples: list[list[RefNode]] = []

    def expand(self, node: RefNode, actions: list[RefNode]) -> RefNode:  # lines 68-95
        simulate_node = None
        if not node.isFullyExpanded:
            for child in actions:
                child.parent = node
                child.value = 0.0
                node.children.update({child.key: child})
        max_value = float("-inf")
        for child in node.children.values():
            if child.is_simulated:
                continue
            if child.value > max_value and not child.is_simulated:
                max_value = child.value
                simulate_node = child
        if simulate_node is None:
            return node
        simulate_node.is_simulated = True
        if len(node.children) >= 3:
            node.isFullyExpanded = True
        return simulate_node

    def simulate(self, node: RefNode, steps: list[RefNode], depth: int):  # lines 98-131
        simulate_path = [node]
        path_value = [node.value]
        previous_node = node
        simulation_branch = []
        new_node = node
        actions = iter(steps)
        for _step in range(depth):
            if new_node.terminal:
                break
            new_node = next(actions)
            new_node.parent = previous_node
            simulate_path.append(new_node)
            # step_evaluate, lines 341-359: 1.0 on "True", -1.0 on "False", else 0
            new_node.value = {"correct": 1.0, "wrong": -1.0}.get(new_node.decision, 0)
            simulation_branch.append(new_node)
            previous_node = new_node
            path_value += [new_node.value]
        node.simulation_branch = simulation_branch
        final_answer_value = 1.0 if new_node.right else -1.0
        path_value[-1] = final_answer_value
        path_label = "negative" if final_answer_value == -1.0 else "positive"
        return simulate_path, path_value, path_label

    def backpropagate(self, path: list[RefNode], path_value: list) -> list[RefNode]:  # 134-165
        cur_node = path[0]
        final_answer_score = path_value[-1]
        if path_value:
            path_value.pop(-1)
        if path_value:
            path_value.pop(0)
        N = len(path_value)
        V = 0
        if N >= 1:
            factor = 1 / N
            for i in range(0, N):
                V += factor * path_value[i] * (N - i) / N
        else:
            factor = 1
        final_V = V + factor * final_answer_score
        cur_node.value += final_V
        node = cur_node
        dis = 1
        delay_weight = 0.9
        real_path = []
        while node.parent:
            node = node.parent
            real_path.append(node)
            node.value += pow(delay_weight, dis) * final_V
            node.visits += 1
            dis += 1
        return real_path[::-1] + path

    def round(self, expanded_node: RefNode, steps: list[RefNode], depth: int) -> None:
        """Lines 212-227, after ``expand`` (called on its own, to see what it chose)."""
        simulate_path, path_value, path_label = self.simulate(expanded_node, steps, depth)
        full_path = self.backpropagate(simulate_path, path_value)
        if simulate_path[-1].terminal:  # lines 215-224
            if path_label == "positive" and len(self.positive_samples) < 3:
                self.positive_samples.append(full_path)
            elif path_label == "negative" and len(self.negative_samples) < 3:
                self.negative_samples.append(full_path)
        if self.phase == "collect_positive" and len(self.positive_samples) >= 3:
            self.phase = "collect_negative"


TRUE_PATTERN = re.compile(r'^\s*\[\[?["\']?True["\']?\]?\]', re.IGNORECASE)
FALSE_PATTERN = re.compile(r'^\s*\[\[?["\']?False["\']?\]?\]', re.IGNORECASE)


def ref_filter(data: list[dict]) -> list[dict]:
    """``filter_consistent_samples``'s decision (``construct.py`` lines 54-96)."""
    filtered = []
    for sample in data:
        all_consistent = True
        for step in sample.get("steps", []):
            score = step.get("step score", 0)
            reflection = step.get("reflection", "")
            is_true = bool(TRUE_PATTERN.search(reflection))
            is_false = bool(FALSE_PATTERN.search(reflection))
            if (score > 0 and not is_true) or (score < 0 and not is_false) or (score == 0):  # noqa: SIM102 (verbatim)
                if not TRUE_PATTERN.search(reflection) or score == 0:
                    all_consistent = False
                    break
        if all_consistent:
            filtered.append(sample)
    return filtered


def ref_truncate(data: list[dict]) -> list[dict]:
    """``truncate_steps`` (``construct.py`` lines 99-127)."""
    updated_data = []
    for sample in data:
        if sample.get("label") == "positive":
            updated_data.append(sample)
            continue
        steps = sample.get("steps", [])
        first_negative_idx = None
        truncate_idx = None
        for i, step in enumerate(steps):
            if step.get("step score", 0) <= 0:
                first_negative_idx = i
                break
        if first_negative_idx is not None:
            for j in range(first_negative_idx + 1, len(steps)):
                if steps[j].get("step score", 0) >= 0:
                    truncate_idx = j
                    break
            if truncate_idx is not None:
                sample["steps"] = steps[:truncate_idx]
        updated_data.append(sample)
    return updated_data


def ref_binary(data: list[dict]) -> list[dict]:
    """``convert_to_binary_label`` (``construct.py`` lines 130-136)."""
    for item in data:
        if "steps" in item and item["steps"]:
            for step in item["steps"]:
                score = step.get("step score", 0)
                step["step score"] = 1 if score > 0 else -1
    return data


def reflection(decision: str | None, form: int) -> str:
    """The released judge's reflection, ``f'[{result}]' + reason`` (``mcts.py`` line 358), in
    the spellings its patterns accept."""
    if decision is None:
        return ""
    if decision == "error":
        return "[undecided] the verifier gave no verdict"
    word = "True" if decision == "correct" else "False"
    spelled = [f"[{word}]", f"[[{word}]]", f"['{word.lower()}']", f'  ["{word.upper()}"]'][form % 4]
    return f"{spelled} the tool's result agrees."


def as_released(paths: list[LabelledPath], forms: list[int]) -> list[dict]:
    return [
        {
            "steps": [
                {"step score": s.score, "reflection": reflection(s.decision, forms[i % len(forms)])}
                for i, s in enumerate(p.steps)
            ],
            "label": p.label,
        }
        for p in paths
    ]


def ref_construct(data: list[dict]) -> list[dict]:
    return ref_binary(ref_truncate(ref_filter(data)))


# --- random trees -----------------------------------------------------------------------------


def verdict(decision: str | None, query: str) -> ToolVerdict | None:
    if decision is None:
        return None
    if decision == "error":
        return ToolVerdict("sympy", query, "", "error", "undecided", "no finite sample point")
    return ToolVerdict("sympy", query, f"{query} -> checked", decision, None, "symbolic")


@dataclass(frozen=True)
class Drawn:
    """A drawn step: what the tools said, whether it ends its path and is right there."""

    decision: str | None
    terminal: bool
    right: bool

    def action(self, n: int) -> str:
        if self.terminal:
            return "So the answer is \\boxed{7}." if self.right else "<end> \\boxed{3}"
        return f"Then x = {n % 4 + 1}, so \\boxed{{{n % 4 + 1}}}."  # few answers: cheap grading


drawn = st.builds(Drawn, st.sampled_from(DECISIONS), st.booleans(), st.booleans())
rounds = st.lists(
    st.tuples(
        st.integers(0, 10**6),  # which tree node to expand
        st.lists(st.sampled_from("ABCD"), max_size=3),  # objectives (repeats collapse)
        st.dictionaries(st.sampled_from("ABCD"), drawn),  # each objective's step
        st.lists(drawn, max_size=9),  # the rollout's steps
        st.sampled_from([5, 9]),  # simulation depth (search_budget)
    ),
    min_size=1,
    max_size=12,
)


def grow(script) -> tuple[Tree, RefSearch, dict[int, RefNode]]:
    """Run the same rounds through ``scoring.grounded`` and the reference; returns both and
    the map from our node ids to the reference's nodes."""
    tree, ref = new_tree("What is 3 + 4?", GOLD), RefSearch()
    ours_to_ref = {0: ref.root}
    counter = 0
    for n, (pick, letters, by_letter, rollout, depth) in enumerate(script):
        targets = [node.id for node in tree.nodes if not node.virtual and not node.terminal]
        target = targets[pick % len(targets)]
        # Objectives are new under this node (the released replacement of an existing child
        # is the one departure, tested on its own below); repeats within a round collapse.
        steps, ref_actions = [], []
        for letter in letters:
            d = by_letter.get(letter, Drawn("correct", False, False))
            objective = f"{target}/{n}/{letter}"
            steps.append(
                Step(objective, d.action(n), verdict(d.decision, objective), None, d.terminal)
            )
            ref_actions.append(RefNode(objective, d.decision, d.terminal, d.terminal and d.right))
        tree, sim_id = expand(tree, target, steps)
        sim_ref = ref.expand(ours_to_ref[target], ref_actions)
        for child_id in tree.node(target).children:  # a kept duplicate: equal but for identity
            ours_to_ref[child_id] = ours_to_ref[target].children[tree.node(child_id).step.objective]
        assert ours_to_ref[sim_id] is sim_ref  # the same child chosen to simulate
        sim_node = tree.node(sim_id)
        # The loop's part: up to `depth` steps, stopping after a terminal one.
        chosen: list[Drawn] = []
        if not sim_node.terminal:
            for d in rollout[:depth]:
                chosen.append(d)
                if d.terminal:
                    break
        rollout_steps, ref_steps = [], []
        for d in chosen:
            counter += 1
            objective = f"sim{counter}"
            rollout_steps.append(
                Step(objective, d.action(counter), verdict(d.decision, objective), None, d.terminal)
            )
            ref_steps.append(RefNode(objective, d.decision, d.terminal, d.terminal and d.right))
        # The outcome grades the rollout's last node (the simulated node if it has none).
        correct = (ref_steps[-1] if ref_steps else sim_ref).right
        tree = record_rollout(tree, sim_id, rollout_steps, correct)
        # A rollout ends at its first terminal step or after `depth` steps: the loop that
        # drew them decided; the reference's loop runs over exactly those.
        ref.round(sim_ref, ref_steps, len(ref_steps))
        for virtual_id, ref_node in zip(
            tree.node(sim_id).rollouts[-1].nodes, ref_steps, strict=True
        ):
            ours_to_ref[virtual_id] = ref_node
    return tree, ref, ours_to_ref


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds)
def test_it_fuses_and_backs_up_as_the_released_simulate_and_backpropagate(script) -> None:
    tree, ref, ours_to_ref = grow(script)
    assert len(ours_to_ref) == len(tree.nodes)
    for node in tree.nodes:
        theirs = ours_to_ref[node.id]
        assert math.isclose(node.value, theirs.value, rel_tol=0, abs_tol=1e-12)
        assert node.visits == theirs.visits
        assert node.simulated == theirs.is_simulated
        assert node.fully_expanded == theirs.isFullyExpanded
        assert [tree.node(c).step.objective for c in node.children] == list(theirs.children)
        if node.rollouts:  # the reference keeps the last rollout only
            last = [ours_to_ref[i] for i in node.rollouts[-1].nodes]
            assert last == theirs.simulation_branch
    for label, collected in (
        ("positive", ref.positive_samples),
        ("negative", ref.negative_samples),
    ):
        ours = [[ours_to_ref[i] for i in s.path] for s in tree.samples if s.label == label]
        assert ours == collected  # RefNode compares by identity
    assert tree.phase == ref.phase and tree.rounds == len(script)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds, st.lists(st.integers(0, 3), min_size=1, max_size=5))
def test_it_labels_a_random_trees_paths_as_the_released_filter_truncation_and_binarisation(
    script, forms
) -> None:
    tree, _, _ = grow(script)
    paths = extract_paths(tree)
    expected = ref_construct(as_released(paths, forms))
    labelled = label_paths(paths)
    assert [p.label for p in labelled] == [s["label"] for s in expected]
    assert [[step.score for step in p.steps] for p in labelled] == [
        [step["step score"] for step in s["steps"]] for s in expected
    ]


scores = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5]),
    st.floats(-3, 3, allow_nan=False, allow_infinity=False),
)
path_steps = st.lists(st.tuples(scores, st.sampled_from(DECISIONS)), min_size=1, max_size=8)
labelled_paths = st.lists(st.tuples(path_steps, st.sampled_from(["positive", "negative"])))


@settings(max_examples=300, deadline=None)
@given(labelled_paths, st.lists(st.integers(0, 3), min_size=1, max_size=5))
def test_it_filters_truncates_and_binarises_any_paths_as_the_released_construct(raw, forms) -> None:
    paths = [
        LabelledPath(
            tuple(PathStep(i, "o", "a", score, d) for i, (score, d) in enumerate(steps)), label
        )
        for steps, label in raw
    ]
    # Alone, on every path (the filter lets no 0 score reach truncation in the pipeline).
    alone = ref_binary(ref_truncate(as_released(paths, forms)))
    assert [[s.score for s in binarise(truncate(p)).steps] for p in paths] == [
        [s["step score"] for s in t["steps"]] for t in alone
    ]
    # Chained as construct_data chains them.
    released = as_released(paths, forms)
    kept = ref_filter(released)
    assert [is_consistent(p) for p in paths] == [s in kept for s in released]
    ours = [truncate(p) for p in paths if is_consistent(p)]
    theirs = ref_truncate(kept)
    assert [[s.score for s in p.steps] for p in ours] == [
        [s["step score"] for s in t["steps"]] for t in theirs
    ]
    assert [[s.score for s in binarise(p).steps] for p in ours] == [
        [s["step score"] for s in t["steps"]] for t in ref_binary(theirs)
    ]


def test_it_keeps_a_negative_step_judged_right_as_the_released_filter_does() -> None:
    negative_right = LabelledPath((PathStep(1, "o", "a", -0.3, "correct"),), "negative")
    positive_wrong = LabelledPath((PathStep(1, "o", "a", 0.3, "wrong"),), "negative")
    assert is_consistent(negative_right)
    assert not is_consistent(positive_wrong)
    assert ref_filter(as_released([negative_right, positive_wrong], [0])) == as_released(
        [negative_right], [0]
    )


@given(st.lists(st.sampled_from([1.0, -1.0, 0.0]), max_size=10), st.sampled_from([1.0, -1.0]))
def test_it_computes_final_v_as_backpropagate(values, outcome) -> None:
    ref = RefSearch()
    node = RefNode("n", None, False, outcome == 1.0)
    path = [node, *(RefNode(f"s{i}", None, False, False) for i in range(len(values)))]
    path_value = [node.value, *values]
    path_value[-1] = outcome
    ref.backpropagate(path, path_value)
    assert math.isclose(rollout_value(values, outcome), node.value, rel_tol=0, abs_tol=1e-12)


# --- the extraction fix --------------------------------------------------------------------------


def checked(objective: str, action: str, decision: str = "correct", terminal=False) -> Step:
    return Step(objective, action, verdict(decision, objective), None, terminal)


def one_rollout_tree() -> Tree:
    """root -> a (simulated) -> s1 -> s2 -> s3 (right answer), plus b and c never simulated."""
    tree = new_tree("What is 3 + 4?", "3 + 4 = 7, so the answer is \\boxed{7}.")
    children = [checked(o, f"{o}: \\boxed{{{i}}}") for i, o in enumerate("abc", start=1)]
    tree, a = expand(tree, 0, children)
    rollout = [
        checked("s1", "x = 3, \\boxed{3}"),
        checked("s2", "y = 4, \\boxed{4}"),
        checked("s3", "3 + 4 = 7, \\boxed{7}", terminal=True),
    ]
    return record_rollout(tree, a, rollout, correct=True)


def released_layout(tree: Tree, node_id: int = 0) -> dict:
    """``build_tree_dict`` (``mcts.py`` lines 399-420) over our tree: children nested, and a
    node's (last) rollout as its flat ``simulation_branch``."""
    node = tree.node(node_id)
    branch = [released_layout(tree, i) for i in node.rollouts[-1].nodes] if node.rollouts else []
    return {
        "id": node_id,
        "state": {"step_ans": node.step.action if node.step else ""},
        "children": [released_layout(tree, c) for c in node.children],
        "simulation_branch": branch,
    }


def released_terminal_paths(root: dict) -> list[list[int]]:
    """``extract_terminal_paths`` (``extract_path.py`` lines 45-64), terminal meaning a boxed
    7 here."""
    paths = []

    def dfs(node, current_path):
        current_path.append(node)
        if "\\boxed{7}" in node["state"]["step_ans"]:
            paths.append([n["id"] for n in current_path])
            current_path.pop()
            return
        for child in node.get("children", []):
            dfs(child, current_path)
        for sim_child in node.get("simulation_branch", []):
            dfs(sim_child, current_path)
        current_path.pop()

    dfs(root, [])
    return paths


def test_it_extracts_a_rollout_path_with_every_step_where_the_released_code_skips() -> None:
    tree = one_rollout_tree()
    a, s1, s2, s3 = 1, 4, 5, 6
    assert released_terminal_paths(released_layout(tree)) == [[0, a, s3]]
    paths = extract_paths(tree)
    assert [step.node for step in paths[0].steps] == [a, s1, s2, s3]
    assert paths[0].steps[1].content == "s1\nx = 3, \\boxed{3}"
    # Graded against the answer of the gold solution, not its raw text.
    assert paths[0].label == "positive"
    assert [[s.score for s in p.steps] for p in tree_labels(tree)] == [[1.0, 1.0, 1.0, 1.0]]


def test_it_drops_every_path_when_only_rollout_steps_carry_a_verdict() -> None:
    """The released search judges simulated nodes only; its filter then drops every path."""
    tree = one_rollout_tree()
    a = tree.node(1)
    bare = replace(
        tree,
        nodes=tuple(
            replace(n, step=replace(n.step, verdict=None)) if n.id == a.id else n
            for n in tree.nodes
        ),
    )
    assert extract_paths(bare) and tree_labels(bare) == []
    assert tree_labels(tree) != []


def test_it_truncates_a_wrong_path_after_its_first_error() -> None:
    tree = new_tree("What is 3 + 4?", "7")
    tree, a = expand(tree, 0, [checked("a", "x = 3, \\boxed{3}", "wrong")])
    rollout = [
        checked("s1", "x = 5, \\boxed{5}", "wrong"),
        checked("s2", "y = 6, \\boxed{6}", "correct"),
        checked("s3", "<end> \\boxed{11}", "wrong", terminal=True),
    ]
    tree = record_rollout(tree, a, rollout, correct=False)
    assert tree.node(a).value == pytest.approx(-0.75)  # (2/4)(-1) + (1/4)(1) + (1/2)(-1)
    [path] = extract_paths(tree)
    assert path.label == "negative"
    [labelled] = tree_labels(tree)
    assert [(s.node, s.score) for s in labelled.steps] == [(a, -1.0), (a + 1, -1.0)]


# --- node state ------------------------------------------------------------------------------------


def test_it_collapses_children_with_the_same_step_objective() -> None:
    tree = new_tree("q", GOLD)
    tree, first = expand(tree, 0, [checked("x", "1 \\boxed{1}"), checked("x", "2 \\boxed{2}")])
    assert tree.root.children == (first,) and not tree.root.fully_expanded
    tree = record_rollout(tree, first, [checked("s", "\\boxed{7}", terminal=True)], True)
    value = tree.node(first).value
    # Expanded again: the simulated child stays (the released code would replace it).
    tree, chosen = expand(
        tree,
        0,
        [checked("x", "3 \\boxed{3}"), checked("y", "\\boxed{4}"), checked("z", "\\boxed{5}")],
    )
    assert [tree.node(c).step.objective for c in tree.root.children] == ["x", "y", "z"]
    assert tree.node(first).value == value and tree.node(first).step.action == "1 \\boxed{1}"
    assert tree.node(chosen).step.objective == "y" and tree.root.fully_expanded


def test_it_records_a_terminal_node_with_a_visit_and_a_sample() -> None:
    tree = new_tree("q", GOLD)
    tree, a = expand(tree, 0, [checked("a", "\\boxed{7}", terminal=True)])
    tree = record_rollout(tree, a, [], correct=True)
    assert tree.node(a).value == 1.0 and tree.root.value == pytest.approx(0.9)
    assert tree.root.visits == 1 and tree.node(a).visits == 0
    tree = record_terminal(tree, a, correct=True)
    assert [s.path for s in tree.samples] == [(0, a), (0, a)]
    assert [s.branch for s in tree.samples] == ["simulation", "real"]
    assert tree.node(a).visits == 1 and tree.root.visits == 2
    with pytest.raises(ValueError):
        record_rollout(tree, a, [checked("s", "\\boxed{1}")], correct=False)


def test_it_refuses_a_rollout_that_goes_on_after_a_terminal_step() -> None:
    tree, a = expand(new_tree("q", GOLD), 0, [checked("a", "\\boxed{1}")])
    steps = [checked("s1", "\\boxed{7}", terminal=True), checked("s2", "\\boxed{7}")]
    with pytest.raises(ValueError):
        record_rollout(tree, a, steps, correct=True)


def test_it_stops_when_three_right_and_three_wrong_paths_are_held() -> None:
    tree = new_tree("q", GOLD)
    tree, a = expand(tree, 0, [checked("a", "\\boxed{7}", terminal=True)])
    for n in range(3):
        assert not search_done(tree, max_rounds=8)
        tree = record_terminal(tree, a, correct=True)
        assert tree.phase == ("collect_negative" if n == 2 else "collect_positive")
    tree, b = expand(tree, 0, [checked("b", "<end> \\boxed{2}", terminal=True)])
    for _ in range(4):
        tree = record_terminal(tree, b, correct=False)
    assert tree.rounds == 7 and len(tree.samples) == 6
    assert search_done(tree, max_rounds=8)
    assert search_done(replace(tree, samples=tree.samples[:5]), max_rounds=7)
    assert not search_done(replace(tree, samples=tree.samples[:5]), max_rounds=8)
    assert search_budget(3) == (8, 5) and search_budget(4) == (12, 9)


def test_it_decides_terminal_steps_as_the_released_is_terminal() -> None:
    assert is_terminal("So \\boxed{7}.", None, "The sum is \\boxed{7}.")
    assert is_terminal("I am done <end> \\boxed{5}", None, "7")
    assert is_terminal("again \\boxed{4}", "we get \\boxed{4}", "7")
    assert not is_terminal("then \\boxed{5}", "we get \\boxed{4}", "7")
    assert not is_terminal("then \\boxed{5}", None, "7")


# --- selection -------------------------------------------------------------------------------------


def two_child_tree(values: tuple[float, float], visits: tuple[int, int], root_visits: int) -> Tree:
    tree = new_tree("q", GOLD)
    tree, _ = expand(tree, 0, [checked(o, "\\boxed{1}") for o in "abc"])
    nodes = list(tree.nodes)
    nodes[0] = replace(nodes[0], visits=root_visits)
    for i, (value, count) in enumerate(zip(values, visits, strict=True), start=1):
        nodes[i] = replace(nodes[i], value=value, visits=count)
    nodes[3] = replace(nodes[3], value=0.0, visits=1000)  # never the best, in either phase
    return replace(tree, nodes=tuple(nodes))


def test_it_scores_children_by_get_best_childs_formula() -> None:
    for value, visits, parent, phase in [
        (0.4, 2, 5, "collect_positive"),
        (0.4, 0, 1, "collect_negative"),
    ]:
        sign = 1 if phase == "collect_positive" else -1
        expected = sign * value + 1.8 * math.sqrt(math.log(parent + 1) / (visits + 1))
        assert uct_score(value, visits, parent, phase) == pytest.approx(expected, abs=1e-12)
    assert EXPLORATION == 1.8


def test_it_flips_the_sign_once_the_right_paths_are_collected() -> None:
    tree = two_child_tree((1.0, -1.0), (1, 1), 2)
    rng = random.Random(0)
    assert best_child(tree, 0, rng) == 1
    assert best_child(replace(tree, phase="collect_negative"), 0, rng) == 2


def test_it_prefers_the_less_visited_child_at_equal_value() -> None:
    tree = two_child_tree((0.5, 0.5), (4, 0), 4)
    assert best_child(tree, 0, random.Random(0)) == 2


@given(st.integers(0, 2**32))
def test_it_breaks_exact_ties_with_the_random_choice_get_best_child_makes(seed) -> None:
    tree = two_child_tree((0.5, 0.5), (1, 1), 2)
    assert best_child(tree, 0, random.Random(seed)) == random.Random(seed).choice([1, 2])


def deep_tree() -> Tree:
    """Root fully expanded; its best child fully expanded with its own children."""
    tree = new_tree("q", GOLD)
    tree, a = expand(tree, 0, [checked(o, "\\boxed{1}") for o in "abc"])
    tree = record_rollout(tree, a, [checked("s", "<end> \\boxed{7}", terminal=True)], True)
    tree, _ = expand(tree, a, [checked(o, "\\boxed{2}") for o in "def"])
    return tree


def test_it_descends_by_uct_below_the_root() -> None:
    tree = deep_tree()
    chosen = select(tree, random.Random(1))
    assert tree.node(chosen).depth == 2 and tree.node(chosen).parent == 1


@given(st.integers(0, 2**32))
def test_it_selects_as_the_released_select_a_random_child_of_the_root_never_deeper(seed) -> None:
    tree = deep_tree()
    ref_rng = random.Random(seed)
    # mcts.py lines 54-65: the while body draws from node.children (the root's) and returns.
    expected = ref_rng.choice([1, 2, 3])
    assert select(tree, random.Random(seed), selection="released") == expected
    assert select(new_tree("q", GOLD), random.Random(seed), selection="released") == 0


def test_it_expands_a_root_that_is_not_fully_expanded_again() -> None:
    tree, _ = expand(new_tree("q", GOLD), 0, [checked("x", "\\boxed{1}")])
    for selection in ("uct", "released"):
        assert select(tree, random.Random(0), selection=selection) == 0


# --- JSON ------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds)
def test_it_reads_back_the_exported_tree_equal(script) -> None:
    tree, _, _ = grow(script)
    judged = replace(
        tree,
        nodes=tuple(
            replace(
                n, step=replace(n.step, judgement=ToolVerdict("judge", "p", "[True]", "correct"))
            )
            if n.step is not None and n.id % 2
            else n
            for n in tree.nodes
        ),
    )
    text = json.dumps(tree_to_dict(judged))
    assert tree_from_dict(json.loads(text)) == judged


def test_it_exports_each_nodes_parent_step_transcript_value_visits_and_rollouts() -> None:
    data = json.loads(json.dumps(tree_to_dict(one_rollout_tree())))
    a = data["nodes"][1]
    assert a["parent"] == 0 and a["step"] == {"step objective": "a", "action": "a: \\boxed{1}"}
    assert a["verdict"]["query"] == "a" and a["verdict"]["decision"] == "correct"
    # final_V = (2/4)(1) + (1/4)(1) + (1/2)(1): s3's own verdict gives way to the outcome
    assert a["value"] == 1.25 and a["visits"] == 0 and a["simulated"]
    assert a["rollouts"] == [{"nodes": [4, 5, 6], "outcome": 1.0, "value": 1.25}]
    assert data["nodes"][0]["visits"] == 1 and data["nodes"][6]["parent"] == 5
    assert data["samples"] == [
        {"path": [0, 1, 4, 5, 6], "label": "positive", "branch": "simulation"}
    ]


def _break_child(data: dict) -> None:
    data["nodes"][1]["children"] = [2]  # node 2's parent is the root


def _drop_value(data: dict) -> None:
    del data["nodes"][3]["value"]


def _sample_off_tree(data: dict) -> None:
    data["samples"][0]["path"] = [0, 99]


def _rollout_on_tree_node(data: dict) -> None:
    data["nodes"][1]["rollouts"][0]["nodes"] = [2]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_break_child, "child 2 does not name it"),
        (_drop_value, "not a well-formed tree"),
        (_sample_off_tree, "leaves the tree"),
        (_rollout_on_tree_node, "not virtual"),
    ],
)
def test_it_refuses_an_inconsistent_tree(breakage, message) -> None:
    data = json.loads(json.dumps(tree_to_dict(one_rollout_tree())))
    breakage(data)
    with pytest.raises(ValueError, match=message):
        tree_from_dict(data)
