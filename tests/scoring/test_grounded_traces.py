"""A search tree's paths as traces (``scoring.grounded.traces``) on random trees: the
consistent ones are exactly the tree's training labels (``tree_labels``), every extracted
path is one trace named by its last node, and a step disagrees exactly where its tool
verdict and the sign of its fused value part."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.grounded import expand, new_tree, record_rollout
from scoring.grounded.paths import extract_paths, tree_labels, truncate
from scoring.grounded.traces import path_traces
from scoring.grounded.tree import Step, Tree, path_to
from scoring.tools import ToolVerdict

GOLD = "7"
DECISIONS = ["correct", "wrong", "error", None]


def step(rng: random.Random, name: str, terminal: bool) -> Step:
    decision = rng.choice(DECISIONS)
    verdict = None
    if decision is not None:
        kind = "exception" if decision == "error" else None
        verdict = ToolVerdict("python", f"q {name}", "o", decision, kind)
    if terminal:
        action = rng.choice(["So \\boxed{7}.", "<end> \\boxed{3}"])
    else:
        action = f"Then \\boxed{{x = {rng.randint(1, 4)}}}."
    return Step(name, action, verdict, None, terminal)


def grow(seed: int, rounds: int) -> Tree:
    rng = random.Random(seed)
    tree = new_tree("What is 3 + 4?", GOLD)
    for n in range(rounds):
        targets = [node.id for node in tree.nodes if not node.virtual and not node.terminal]
        target = rng.choice(targets)
        steps = [step(rng, f"{n}/{k}", rng.random() < 0.3) for k in range(rng.randint(1, 3))]
        tree, sim_id = expand(tree, target, steps)
        rollout = []
        if not tree.node(sim_id).terminal:
            for k in range(rng.randint(0, 4)):
                rollout.append(step(rng, f"sim{n}/{k}", rng.random() < 0.4))
                if rollout[-1].terminal:
                    break
        last = rollout[-1] if rollout else tree.node(sim_id).step  # None: the root again
        tree = record_rollout(tree, sim_id, rollout, last is not None and "{7}" in last.action)
    return tree


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_the_consistent_traces_are_the_trees_training_labels(seed, rounds) -> None:
    tree = grow(seed, rounds)
    traces = path_traces(tree)

    labels = {
        path.steps[-1].node: ([s.content for s in path.steps], [s.score for s in path.steps])
        for path in tree_labels(tree)
    }
    consistent = {
        t.last_node: (list(t.steps), [float(s) for s in t.scores]) for t in traces if t.consistent
    }
    assert consistent == labels
    cut = {truncate(p).steps[-1].node for p in extract_paths(tree)}
    assert [t.last_node for t in traces] == list(dict.fromkeys(t.last_node for t in traces))
    assert {t.last_node for t in traces} == cut
    for trace in traces:
        assert list(trace.nodes) == path_to(tree, trace.last_node)[1:]
        assert trace.first_error == next((i for i, s in enumerate(trace.scores) if s < 0), -1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 10))
def test_a_step_disagrees_where_the_tool_and_the_fused_value_part(seed, rounds) -> None:
    tree = grow(seed, rounds)
    for trace in path_traces(tree):
        expected = []
        for i, node_id in enumerate(trace.nodes):
            node = tree.node(node_id)
            tool = node.step.verdict.decision if node.step.verdict else None
            if node.virtual:  # a rollout step's value is its own verdict's
                continue
            if (tool == "correct" and node.value < 0) or (tool == "wrong" and node.value > 0):
                expected.append(i)
        assert trace.disagreeing_steps == expected
