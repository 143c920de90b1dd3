"""Training data from a stored search tree: discriminative step labels and the generative
verify/judge/output conversations.

Both start from :func:`scoring.grounded.paths.tree_labels` (complete paths, the consistency
filter, truncation of wrong paths, sign binarisation: ``construct.py`` lines 190-193).

* :func:`trl_records`: TRL stepwise supervision, ``{prompt, completions[], labels[]}`` (the
  fields of :mod:`scoring.formats.trl`), one record per labelled path, a step's label its
  binarised sign. The reference's truncation keeps the run of wrong steps after a wrong
  path's first error, so a record may hold several ``false`` labels in a row (and a right
  path may hold a wrong step that the filter let through); they are written as they are.
* :func:`generative_records`: the reference's generative format (``merge_steps`` lines
  139-185 and ``conversation_trans_ref`` lines 18-32): per step an assistant reply
  ``<verify>…</verify><judge>…</judge><output>…\\boxed{±}</output>`` as a multi-turn
  conversation, the system turn the training instruction, the first user turn the problem
  and the first step, each further user turn one step.

  ``<verify>`` holds the tool's query and output where the tool gave a result ("The
  expression I needed to verify is: …, the result is: …"), and the reference's sentence for
  a step with no tool result otherwise. ``<judge>`` holds the judge's reason (the LLM's, or
  under ``judge=tool`` the tool's own account) ending ``The conclusion is[Right]`` or
  ``[Wrong]`` by the decision, as ``filter_consistent_samples`` rewrites the reflection
  (lines 74-91). ``<output>`` carries ``+`` or ``-`` by the binarised label, in the
  reference's two wordings.
"""

from __future__ import annotations

from typing import Any

from scoring.grounded.paths import LabelledPath, tree_labels
from scoring.grounded.prompts import TRAINING_INSTRUCTION
from scoring.grounded.search import SearchState
from scoring.grounded.tree import Tree
from scoring.tools.verdict import ToolVerdict

NO_TOOL_RESULT = "This is a thinking step, no specific calculations are needed"  # line 164


def trl_records(state: SearchState) -> list[dict[str, Any]]:
    """One TRL stepwise record per labelled path of the search's tree."""
    return [
        {
            "id": f"{state.problem.id}/{k}",
            "prompt": state.tree.problem,
            "completions": [step.content for step in path.steps],
            "labels": [step.score > 0 for step in path.steps],
        }
        for k, path in enumerate(tree_labels(state.tree))
    ]


def verify_text(verdict: ToolVerdict | None) -> str:
    """``<verify>``'s content: the tool's query and result, or the no-result sentence."""
    if verdict is None or verdict.decision == "error" or not verdict.query:
        return NO_TOOL_RESULT
    return f"The expression I needed to verify is: {verdict.query}, the result is: {verdict.output}"


def judge_text(verdict: ToolVerdict | None, judgement: ToolVerdict | None) -> str:
    """``<judge>``'s content: the reason, then the conclusion marker of the decision."""
    deciding = judgement or verdict
    if deciding is None:
        return ""
    reason = deciding.detail if judgement is not None else _tool_account(deciding)
    marker = {"correct": "[Right]", "wrong": "[Wrong]"}.get(deciding.decision)
    if marker is None:
        return reason
    return f"{reason.strip().rstrip('.')}. The conclusion is{marker}".strip()


def _tool_account(verdict: ToolVerdict) -> str:
    return f"The {verdict.tool} check of {verdict.query} found: {verdict.detail or verdict.output}"


def step_response(tree: Tree, node_id: int, score: float) -> str:
    """One step's assistant reply (``merge_steps``)."""
    step = tree.node(node_id).step
    verify = f"<verify>\n{verify_text(step.verdict)}\n</verify>\n"
    judge = f"<judge>\n{judge_text(step.verdict, step.judgement)}\n</judge>\n"
    if score > 0:
        output = (
            "<output>\nAccording to the judgement conclusion, this step is: \\boxed{+}\n</output>"
        )
    else:
        output = (
            "<output>\nAccording to the judgement conclusion, the label of this step is: "
            "\\boxed{-}\n</output>"
        )
    return verify + judge + output


def conversation(tree: Tree, path: LabelledPath) -> list[dict[str, str]]:
    """The path as a conversation (``conversation_trans_ref``)."""
    turns = [{"role": "system", "content": TRAINING_INSTRUCTION}]
    for k, step in enumerate(path.steps):
        user = f"{tree.problem}\n{step.content}" if k == 0 else step.content
        turns.append({"role": "user", "content": user})
        turns.append({"role": "assistant", "content": step_response(tree, step.node, step.score)})
    return turns


def generative_records(state: SearchState) -> list[dict[str, Any]]:
    """One conversation per labelled path of the search's tree."""
    return [
        {"id": f"{state.problem.id}/{k}", "conversation": conversation(state.tree, path)}
        for k, path in enumerate(tree_labels(state.tree))
        if path.steps
    ]
