"""Which node the search grows next: UCT, or the released code's ``select()``.

Reference: ``JerryPlain/GroundedPRMCode``, ``pipeline/MCTS/mcts.py`` lines 54-65
(``select``) and 262-279 (``getBestChild``); ``pipeline/data_generation.py`` line 36 passes
``exploration_weight=1.8`` (the class default of 1.414, ``mcts.py`` lines 18 and 23, is
never used by the pipeline).

The released search never calls ``getBestChild``: its ``select`` picks a random child of
the root on every round and never goes deeper (the ``while`` body returns in its first
pass, and it draws from ``node.children``, the root's, not ``current``'s). So the tree
grows at most two levels and the values it backs up steer nothing. ``selection="uct"``
(the default) descends by ``getBestChild`` instead; ``selection="released"`` keeps the
released behaviour for comparison.
"""

from __future__ import annotations

import math
import random
from typing import Literal

from scoring.grounded.tree import COLLECT_POSITIVE, Tree

EXPLORATION = 1.8  # data_generation.py line 36
UCT = "uct"
RELEASED = "released"
SELECTIONS = (UCT, RELEASED)

Selection = Literal["uct", "released"]


def uct_score(
    value: float, visits: int, parent_visits: int, phase: str, c: float = EXPLORATION
) -> float:
    """``getBestChild``'s score (``mcts.py`` lines 266-271): the child's value, negated once
    the right paths are collected (phase ``collect_negative``, so the search then looks for
    wrong ones), plus ``c * sqrt(log(N_parent + 1) / (N_child + 1))``.

    >>> uct_score(0.5, 0, 0, "collect_positive")
    0.5
    >>> round(uct_score(0.5, 1, 3, "collect_negative"), 6)
    0.998598
    """
    exploitation = value if phase == COLLECT_POSITIVE else -value
    return exploitation + c * math.sqrt(math.log(parent_visits + 1) / (visits + 1))


def best_child(tree: Tree, node_id: int, rng: random.Random, c: float = EXPLORATION) -> int:
    """``getBestChild`` (``mcts.py`` lines 262-279): the child with the highest
    :func:`uct_score`, a random one among exact ties; the node itself if it has none."""
    node = tree.node(node_id)
    best_value = float("-inf")
    best: list[int] = []
    for child_id in node.children:
        child = tree.node(child_id)
        score = uct_score(child.value, child.visits, node.visits, tree.phase, c)
        if score > best_value:
            best_value, best = score, [child_id]
        elif score == best_value:
            best.append(child_id)
    return rng.choice(best) if best else node_id


def select(
    tree: Tree, rng: random.Random, selection: Selection = UCT, c: float = EXPLORATION
) -> int:
    """The node to expand (or, if terminal, to collect) this round.

    ``uct``: from the root, while the node has children, is fully expanded and is not
    terminal, go to its :func:`best_child`. A node not fully expanded (duplicates collapsed
    its children below three) is returned so that it is expanded again.

    ``released`` (``mcts.py`` lines 54-65): the root if it has no children (or is terminal);
    otherwise a uniformly random child of the root, drawn with ``rng.choice`` over the
    children in order, whatever lies below it. Where the root has children but is not fully
    expanded the released loop body never runs and ``select`` returns None, on which
    ``search`` raises (``is_terminal(None)``, line 191) and the problem is lost; here the
    root is returned, to be expanded again.
    """
    root = tree.root
    if selection == RELEASED:
        if not root.children or root.terminal or not root.fully_expanded:
            return root.id
        return rng.choice(list(root.children))
    if selection != UCT:
        raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")
    current = root
    while current.children and current.fully_expanded and not current.terminal:
        current = tree.node(best_child(tree, current.id, rng, c))
    return current.id
