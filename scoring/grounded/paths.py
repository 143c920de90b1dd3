"""Step labels from a search tree: extract its complete paths, keep the consistent ones,
truncate wrong paths after their error, and binarise the values.

Reference: ``JerryPlain/GroundedPRMCode``, ``data_process/extract_path.py`` lines 27-142
(``check_boxed_answer``, ``extract_terminal_paths``, ``extract_paths_with_depth``,
``is_terminal``, ``extract_all_complete_paths``, ``build_dataset``) and
``data_process/construct.py`` lines 54-136 (``filter_consistent_samples``,
``truncate_steps``, ``convert_to_binary_label``) as ``construct_data`` chains them (lines
190-193). A step's score is its node's value: for a tree node the backed-up sum of fused
rollout values, for a rollout step its verdict's +1/-1/0.

Where the released extraction is a defect, this extraction differs:

* **Rollouts are chains, not siblings.** The released tree export stores a rollout as the
  simulated node's flat ``simulation_branch`` list (``mcts.py`` lines 416-419) and the
  extraction walks its entries as that node's children (``extract_path.py`` lines 59-61),
  so a rollout path ``n, s1, s2, s3`` comes out as ``n, s3``: every step but the last is
  skipped, and the label of a step is trained on a prefix that never held its predecessors.
  Here a rollout's path keeps every step, as its parent pointers say.
* **Grading against the answer.** ``build_dataset`` (line 119) compares the path's result
  with the raw solution text (``task["solution"]``), not with the answer parsed from it;
  here the last step is graded against the gold answer by :func:`scoring.grading.grade`.
* **Every rollout.** A node simulated twice keeps both rollouts (the released export keeps
  the last, ``mcts.py`` line 123), and both are walked.
* **The root is the problem, not a step.** ``build_dataset`` makes a step of every node on
  the path, the root included (an empty objective and action, no reflection); with
  ``filter_consistent_samples`` that alone drops every path. Here paths start at the
  root's child.

The filter is otherwise the released one, quirks included: a step is inconsistent when its
score is 0, when it is positive but not judged right, or when it is negative and judged
neither right nor wrong. A negative step judged *right* passes (the inner test of line 70
only looks for ``[True]``), while a positive step judged wrong does not. A step with no
decision (no verdict, or a tool error) never passes, so a tree whose expanded nodes carry no
verdict, as in the released search, yields no path at all. The released filter also
rewrites each reflection into the generative format's text (lines 74-91); that is the
export's business and is not done here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scoring.grading import grade, last_boxed
from scoring.grounded.tree import Label, Node, Tree


@dataclass(frozen=True)
class PathStep:
    """One step of an extracted path: its node, its text, its score (the node's value,
    binarised to +1/-1 by :func:`binarise`) and its verdict's decision."""

    node: int
    objective: str
    action: str
    score: float
    decision: str | None

    @property
    def content(self) -> str:
        return f"{self.objective}\n{self.action}"


@dataclass(frozen=True)
class LabelledPath:
    """A complete path from the root's child down, and whether its final answer is right."""

    steps: tuple[PathStep, ...]
    label: Label


def extract_paths(tree: Tree) -> list[LabelledPath]:
    """Every complete path of the tree, labelled (``extract_all_complete_paths`` and
    ``build_dataset``, with the fixes in the module docstring).

    A path ends at the first node, in the tree or down a rollout, whose step has a boxed
    answer and either says ``<end>`` or answers right (``extract_path.py`` lines 83-94).
    Then, as lines 96-108 add, every leaf of the tree (no children, never simulated) whose
    path from the root is at least as long as the terminal paths on average (root counted,
    Python's rounding). Such a leaf has value 0 and so never passes :func:`is_consistent`.
    """
    ends: dict[str, bool] = {}  # grading is memoised: rollouts repeat answers

    def ends_path(node: Node) -> bool:
        action = node.step.action.strip() if node.step is not None else ""
        if action not in ends:
            ends[action] = _has_boxed(action) and ("<end>" in action or grade(action, tree.gold))
        return ends[action]

    terminal: list[list[int]] = []

    def walk(node_id: int, path: list[int]) -> None:
        path = [*path, node_id]
        node = tree.node(node_id)
        if ends_path(node):
            terminal.append(path)
            return
        for child in node.children:
            walk(child, path)
        for rollout in node.rollouts:
            chain = path
            for step_id in rollout.nodes:
                chain = [*chain, step_id]
                if ends_path(tree.node(step_id)):
                    terminal.append(chain)
                    break

    walk(0, [])
    if not terminal:
        return []
    average = round(sum(len(p) for p in terminal) / len(terminal))
    paths = list(terminal)
    seen = {p[-1] for p in terminal}
    for leaf_path in _leaf_paths(tree):
        if len(leaf_path) >= average and leaf_path[-1] not in seen:
            paths.append(leaf_path)
            seen.add(leaf_path[-1])
    return [_labelled(tree, p) for p in paths]


def _leaf_paths(tree: Tree) -> list[list[int]]:
    """Paths from the root to each tree node with no children and no rollout
    (``extract_paths_with_depth``, lines 66-81, which does not enter rollouts)."""
    out: list[list[int]] = []

    def walk(node_id: int, path: list[int]) -> None:
        path = [*path, node_id]
        node = tree.node(node_id)
        if not node.children and not node.rollouts:
            out.append(path)
            return
        for child in node.children:
            walk(child, path)

    walk(0, [])
    return out


def _has_boxed(action: str) -> bool:
    """``check_boxed_answer`` (``extract_path.py`` lines 27-43): the step writes a closed
    ``\\boxed{...}``. The released regex allows three levels of nested braces and also
    accepts an unclosed one followed by any ``$...$``; :func:`scoring.grading.last_boxed`
    reads any depth and wants the brace closed."""
    return last_boxed(action) is not None


def _labelled(tree: Tree, path: list[int]) -> LabelledPath:
    nodes = [tree.node(i) for i in path[1:]]  # the root is the problem, not a step
    steps = tuple(
        PathStep(n.id, n.step.objective, n.step.action, n.value, n.step.decision) for n in nodes
    )
    label: Label = "positive" if grade(nodes[-1].step.action, tree.gold) else "negative"
    return LabelledPath(steps=steps, label=label)


def is_consistent(path: LabelledPath) -> bool:
    """Whether every step's score agrees with its verdict (``filter_consistent_samples``,
    ``construct.py`` lines 60-72; the module docstring lists its quirks).

    >>> step = PathStep(1, "o", "a", -0.5, "correct")  # negative, judged right: kept
    >>> is_consistent(LabelledPath((step,), "negative"))
    True
    """
    for step in path.steps:
        judged_right = step.decision == "correct"
        judged_wrong = step.decision == "wrong"
        if step.score == 0:
            return False
        if step.score > 0 and not judged_right:
            return False
        if step.score < 0 and not judged_wrong and not judged_right:
            return False
    return True


def truncate(path: LabelledPath) -> LabelledPath:
    """A wrong path cut after its error (``truncate_steps``, ``construct.py`` lines 99-127):
    from the first step scored 0 or less, the steps scored below 0 that follow it are kept
    and the path ends before the next one scored 0 or more. Right paths are unchanged.

    >>> steps = tuple(PathStep(i, "o", "a", s, None) for i, s in enumerate([1, -1, -1, 1, -1]))
    >>> [s.score for s in truncate(LabelledPath(steps, "negative")).steps]
    [1, -1, -1]
    """
    if path.label == "positive":
        return path
    steps = path.steps
    first = next((i for i, s in enumerate(steps) if s.score <= 0), None)
    if first is None:
        return path
    cut = next((j for j in range(first + 1, len(steps)) if steps[j].score >= 0), None)
    return path if cut is None else replace(path, steps=steps[:cut])


def binarise(path: LabelledPath) -> LabelledPath:
    """Scores to signs (``convert_to_binary_label``, ``construct.py`` lines 130-136): +1
    above 0, -1 otherwise (0 included)."""
    steps = tuple(replace(s, score=1.0 if s.score > 0 else -1.0) for s in path.steps)
    return replace(path, steps=steps)


def label_paths(paths: list[LabelledPath]) -> list[LabelledPath]:
    """``construct_data``'s first three stages (``construct.py`` lines 191-193): keep the
    consistent paths, truncate the wrong ones, binarise."""
    return [binarise(truncate(p)) for p in paths if is_consistent(p)]


def tree_labels(tree: Tree) -> list[LabelledPath]:
    """The training paths of one tree: :func:`extract_paths` then :func:`label_paths`."""
    return label_paths(extract_paths(tree))
