"""A search tree's extracted paths as traces: what the app stores when a grounded run brings
its step labels into the project.

Every complete path :func:`scoring.grounded.paths.extract_paths` finds becomes one trace:
wrong paths cut after their error (:func:`~scoring.grounded.paths.truncate`), scores
binarised (:func:`~scoring.grounded.paths.binarise`), each marked ``consistent`` when it
passes the released consistency filter (:func:`~scoring.grounded.paths.is_consistent`). The
consistent ones are exactly :func:`~scoring.grounded.paths.tree_labels`, the training
labels; the others are kept as traces too, because what the filter drops is where the tool
and the rollouts disagree, the cases a person should look at.

A path is named by its last node: the path from the root to a node is unique, so two wrong
paths cut at the same node are the same steps with the same labels, and are one trace (it is
consistent when either of them was).

A step *disagrees* when its node's value is a fused rollout value (a tree node, not a
rollout step, whose value is its own verdict's +1/-1) with a sign, and the tool's verdict
(not the judge's) says the opposite: right under a negative value, wrong under a positive
one. A tool error or a value of 0 says nothing either way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scoring.grading import grade, last_boxed
from scoring.grounded.paths import LabelledPath, binarise, extract_paths, is_consistent, truncate
from scoring.grounded.tree import Label, Tree
from scoring.tools.verdict import ToolVerdict


@dataclass(frozen=True)
class PathTrace:
    """One extracted path as a trace: per step its text, node, value before binarisation,
    binarised score, deciding verdict, tool verdict and (where a judge looked) judgement."""

    nodes: tuple[int, ...]
    steps: tuple[str, ...]
    values: tuple[float, ...]
    scores: tuple[int, ...]
    decisions: tuple[str | None, ...]
    verdicts: tuple[ToolVerdict | None, ...]
    judgements: tuple[ToolVerdict | None, ...]
    fused: tuple[bool, ...]
    label: Label
    consistent: bool
    final_answer: str
    final_answer_correct: bool

    @property
    def last_node(self) -> int:
        return self.nodes[-1]

    @property
    def first_error(self) -> int:
        """The first step labelled wrong (score -1), or -1 when every step is right."""
        return next((i for i, s in enumerate(self.scores) if s < 0), -1)

    @property
    def disagreeing_steps(self) -> list[int]:
        """The steps whose tool verdict and fused value disagree (module docstring)."""
        out = []
        for i, (value, verdict, fused) in enumerate(
            zip(self.values, self.verdicts, self.fused, strict=True)
        ):
            if not fused or value == 0 or verdict is None:
                continue
            if (verdict.decision == "correct" and value < 0) or (
                verdict.decision == "wrong" and value > 0
            ):
                out.append(i)
        return out


def path_traces(tree: Tree) -> list[PathTrace]:
    """The tree's extracted paths as traces, one per last node, in extraction order."""
    found: dict[int, PathTrace] = {}
    for path in extract_paths(tree):
        cut = truncate(path)
        trace = _trace(tree, cut, binarise(cut), is_consistent(path))
        seen = found.get(trace.last_node)
        if seen is None:
            found[trace.last_node] = trace
        elif trace.consistent and not seen.consistent:
            found[trace.last_node] = replace(seen, consistent=True)
    return list(found.values())


def _trace(tree: Tree, cut: LabelledPath, signs: LabelledPath, consistent: bool) -> PathTrace:
    nodes = [tree.node(s.node) for s in cut.steps]
    last_action = nodes[-1].step.action
    return PathTrace(
        nodes=tuple(n.id for n in nodes),
        steps=tuple(s.content for s in cut.steps),
        values=tuple(s.score for s in cut.steps),
        scores=tuple(1 if s.score > 0 else -1 for s in signs.steps),
        decisions=tuple(s.decision for s in cut.steps),
        verdicts=tuple(n.step.verdict for n in nodes),
        judgements=tuple(n.step.judgement for n in nodes),
        fused=tuple(not n.virtual for n in nodes),
        label=cut.label,
        consistent=consistent,
        final_answer=last_boxed(last_action) or "",
        # Only a path's last step can be graded right (a right answer ends the path), so
        # this is the path's label for an uncut path and False for a cut one.
        final_answer_correct=grade(last_action, tree.gold),
    )
