"""Fusing tool verdicts with the rollout outcome, and backing the result up the tree.

Reference: ``JerryPlain/GroundedPRMCode``, ``pipeline/MCTS/mcts.py`` lines 98-131
(``simulate``), 134-165 (``backpropagate``), 167-229 (``search``'s round) and 362-371
(``evaluate_final_state``); ``pipeline/data_generation.py`` lines 39-47 (the budget).

A round of the search, with these functions as its seam (the loop that asks a completer
for steps and the tools for verdicts lives elsewhere)::

    tree = new_tree(problem, gold)
    max_rounds, depth = search_budget(level)
    while not search_done(tree, max_rounds):
        node_id = select(tree, rng)                       # scoring.grounded.selection
        if tree.node(node_id).terminal:
            tree = record_terminal(tree, node_id, correct=grade(...))
            continue
        tree, sim_id = expand(tree, node_id, three_checked_steps)   # scoring.grounded.tree
        steps = up to `depth` checked steps from sim_id, stopping after a terminal one
        tree = record_rollout(tree, sim_id, steps, correct=grade(last action, tree.gold))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scoring.grounded.tree import (
    COLLECT_NEGATIVE,
    COLLECT_POSITIVE,
    Label,
    Node,
    Rollout,
    Sample,
    Step,
    Tree,
    ancestors,
    path_to,
    step_value,
    with_nodes,
)

DECAY = 0.9  # backpropagate's delay_weight, mcts.py line 154
REQUIRED_POSITIVE = 3  # mcts.py line 42
REQUIRED_NEGATIVE = 3  # mcts.py line 43


def search_budget(level: int | None) -> tuple[int, int]:
    """Rounds and simulation depth by difficulty (``data_generation.py`` lines 39-47): 8
    rounds of depth 5 up to level 3 (and when the level is unknown), 12 of depth 9 above."""
    return (8, 5) if level is None or level <= 3 else (12, 9)


def rollout_value(step_values: Sequence[float], outcome: float) -> float:
    """``final_V``: a rollout's steps' verdict values fused with its outcome.

    As ``simulate`` and ``backpropagate`` compute it (``mcts.py`` lines 101, 121, 125 and
    136-150): the path's values are the simulated node's own, then one per rollout step;
    the last is overwritten by the outcome (so the last step's verdict does not count),
    the first and last are removed, and of the ``N`` left, step ``i`` (from 0) weighs
    ``(N - i) / N**2`` and the outcome ``1 / N``. With ``N = 0`` (a rollout of at most one
    step) ``final_V`` is the outcome alone.

    >>> rollout_value([1.0, -1.0, 1.0], -1.0)  # N = 2: (2/4)(1) + (1/4)(-1) + (1/2)(-1)
    -0.25
    >>> rollout_value([], 1.0)
    1.0
    """
    middle = list(step_values[:-1])
    n = len(middle)
    if n == 0:
        return float(outcome)
    factor = 1 / n
    fused = 0.0
    for i, value in enumerate(middle):
        fused += factor * value * (n - i) / n  # the released order of operations, bit for bit
    return fused + factor * outcome


def backup(tree: Tree, node_id: int, final_v: float) -> Tree:
    """``backpropagate``'s updates (``mcts.py`` lines 151-162): ``final_v`` is added to the
    simulated node without a visit, and ``0.9**k * final_v`` to its ancestor ``k`` levels up,
    the root included, each with one visit."""
    node = tree.node(node_id)
    changed = [replace(node, value=node.value + final_v)]
    for k, ancestor_id in enumerate(ancestors(tree, node_id), start=1):
        ancestor = tree.node(ancestor_id)
        changed.append(
            replace(
                ancestor, value=ancestor.value + pow(DECAY, k) * final_v, visits=ancestor.visits + 1
            )
        )
    return with_nodes(tree, changed)


def record_rollout(tree: Tree, node_id: int, steps: Sequence[Step], correct: bool) -> Tree:
    """One simulation from ``node_id`` (the id :func:`expand` returned), fused and backed up.

    ``steps`` are the rollout's checked steps in order: empty when the node is itself
    terminal, else up to the simulation depth, only the last of them terminal (the search
    stops there, ``mcts.py`` line 108). ``correct`` grades the final answer (the last step's,
    or the node's): outcome +1 or -1 (``evaluate_final_state``). Each step becomes a virtual
    node whose value is its verdict's (:func:`step_value`, as ``step_evaluate`` sets it).
    The node's value and its ancestors' change by :func:`backup` of :func:`rollout_value`;
    if the path ends on a terminal node it is collected as a sample while fewer than three
    of its label are held (lines 215-224), the phase flips to ``collect_negative`` once
    three right paths are held (line 226), and the round is counted (line 228).
    """
    node = tree.node(node_id)
    if node.terminal and steps:
        raise ValueError(f"node {node_id} is terminal: its rollout has no steps")
    if any(step.terminal for step in steps[:-1]):
        raise ValueError("a rollout stops at its first terminal step")
    added = []
    parent, depth = node_id, node.depth
    for offset, step in enumerate(steps):
        depth += 1
        new_id = len(tree.nodes) + offset
        added.append(
            Node(
                id=new_id,
                parent=parent,
                depth=depth,
                step=step,
                virtual=True,
                value=step_value(step),
            )
        )
        parent = new_id
    outcome = 1.0 if correct else -1.0
    final_v = rollout_value([n.value for n in added], outcome)
    rollout = Rollout(nodes=tuple(n.id for n in added), outcome=outcome, value=final_v)
    tree = with_nodes(tree, [replace(node, rollouts=node.rollouts + (rollout,))], added)
    tree = backup(tree, node_id, final_v)
    last = added[-1] if added else node
    if last.terminal:
        path = (*path_to(tree, node_id), *rollout.nodes)
        tree = _collect(tree, Sample(path=path, label=_label(correct), branch="simulation"))
    return _end_round(tree)


def record_terminal(tree: Tree, node_id: int, correct: bool) -> Tree:
    """A round whose selection reached a terminal tree node (``mcts.py`` lines 191-209): its
    path is collected as a sample while fewer than three of its label are held, and the
    round is counted (line 208).

    Two additions that the released selection cannot notice (it never reads visits or the
    phase): the node and its ancestors get a visit, and the phase is updated. Under UCT a
    terminal node that is never visited keeps its full exploration bonus and would be
    selected round after round, and a phase updated only after simulations (the released
    ``continue`` skips line 226) would never flip if that happened.
    """
    node = tree.node(node_id)
    if not node.terminal:
        raise ValueError(f"node {node_id} is not terminal")
    visited = [
        replace(tree.node(i), visits=tree.node(i).visits + 1) for i in path_to(tree, node_id)
    ]
    tree = with_nodes(tree, visited)
    sample = Sample(path=tuple(path_to(tree, node_id)), label=_label(correct), branch="real")
    return _end_round(_collect(tree, sample))


def search_done(
    tree: Tree,
    max_rounds: int,
    required_positive: int = REQUIRED_POSITIVE,
    required_negative: int = REQUIRED_NEGATIVE,
) -> bool:
    """Enough right and wrong paths are held, or the rounds are spent (``stop_condition``,
    ``mcts.py`` lines 335-338)."""
    enough = (
        tree.count("positive") >= required_positive and tree.count("negative") >= required_negative
    )
    return enough or tree.rounds >= max_rounds


def _label(correct: bool) -> Label:
    return "positive" if correct else "negative"


def _collect(tree: Tree, sample: Sample) -> Tree:
    required = REQUIRED_POSITIVE if sample.label == "positive" else REQUIRED_NEGATIVE
    if tree.count(sample.label) >= required:
        return tree
    return replace(tree, samples=tree.samples + (sample,))


def _end_round(tree: Tree) -> Tree:
    phase = tree.phase
    if phase == COLLECT_POSITIVE and tree.count("positive") >= REQUIRED_POSITIVE:
        phase = COLLECT_NEGATIVE
    return replace(tree, phase=phase, rounds=tree.rounds + 1)
