"""GroundedPRM's tree search, as plain data: node state, selection, fusion and step labels.

GroundedPRM (arXiv 2510.14942; code ``JerryPlain/GroundedPRMCode``) labels steps by growing a
tree of step prefixes, checking each step with a tool and fusing the verdicts with the
outcome of rollouts. The modules:

* :mod:`~scoring.grounded.tree`: the tree's frozen node state, expansion and its JSON;
* :mod:`~scoring.grounded.selection`: UCT (``getBestChild``) or the released ``select()``;
* :mod:`~scoring.grounded.fusion`: the rollout value ``final_V`` and its backup;
* :mod:`~scoring.grounded.paths`: path extraction, the consistency filter, truncation and
  binarisation;
* :mod:`~scoring.grounded.search`: the loop (a round of ``MCTS.search``) and its resumable
  state; :mod:`~scoring.grounded.checking`: a step's tool verdict and judge;
  :mod:`~scoring.grounded.prompts`: the prompts;
* :mod:`~scoring.grounded.exports`: TRL step labels and the generative conversations;
  :mod:`~scoring.grounded.traces`: the extracted paths as traces (labels, transcripts and
  where the tool and the rollouts disagree), as the app brings them in.

Each tree function takes a :class:`Tree` and returns a new one (or paths); the loop that
asks a completer for steps and the tools for verdicts drives them. Nothing here imports
torch, SymPy or Django (SymPy runs in the sandbox's process).
"""

from __future__ import annotations

from scoring.grounded.fusion import (
    backup,
    record_rollout,
    record_terminal,
    rollout_value,
    search_budget,
    search_done,
)
from scoring.grounded.paths import (
    LabelledPath,
    PathStep,
    binarise,
    extract_paths,
    is_consistent,
    label_paths,
    tree_labels,
    truncate,
)
from scoring.grounded.selection import EXPLORATION, best_child, select, uct_score
from scoring.grounded.tree import (
    Node,
    Rollout,
    Sample,
    Step,
    Tree,
    expand,
    is_terminal,
    new_tree,
    step_value,
    tree_from_dict,
    tree_to_dict,
)

__all__ = [
    "EXPLORATION",
    "LabelledPath",
    "Node",
    "PathStep",
    "Rollout",
    "Sample",
    "Step",
    "Tree",
    "backup",
    "best_child",
    "binarise",
    "expand",
    "extract_paths",
    "is_consistent",
    "is_terminal",
    "label_paths",
    "new_tree",
    "record_rollout",
    "record_terminal",
    "rollout_value",
    "search_budget",
    "search_done",
    "select",
    "step_value",
    "tree_from_dict",
    "tree_labels",
    "tree_to_dict",
    "truncate",
    "uct_score",
]
