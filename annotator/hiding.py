"""What a project hides from a member, and what hides with it.

``Membership.sees_reference_answer`` says whether a member sees the answer. Where it
does not, the member sees nothing that gives it away either: no reference trace (a
GSM8K reference solution, ``generator="reference"``, ends in the answer: see
``Trace.objects.visible_to``), no final-answer correctness (it is the final answer
compared with the reference) and no Monte-Carlo rollout marked right or wrong (the
same comparison, for each rollout's answer).

``Membership.sees_all_labels`` says whether a member sees other people's labels.
Where it does not (annotators work blind), the member sees only their own labels
(``Annotation.objects.visible_to``) and nothing computed from the others': no label
counts or ``?labelled=`` over them, no agreement of a run with the human verdicts,
no label set copied from them (``visible_label_sets``) and no imported labeller's
record in a trace's metadata (``visible_metadata``).

``Membership.sees_model_scores`` says whether a member sees PRM scores; the Rewards
page and a logged rollout's rewards (``visible_metadata``) are model scores.

Every page and endpoint that shows a trace asks here.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from annotator.models import REFERENCE_GENERATOR, LabelSet, LabelSetSource, Membership, Trace

# Keys of ``Trace.metadata`` that record an imported labeller's work (PRM800K's
# ``finish_reason``: "found_error" is the label; its quality-control and screening
# flags mark the traces with a known answer), so they are labels others gave.
LABEL_METADATA_KEYS = ("finish_reason", "quality_control", "initial_screening")


def check_trace_visible(membership: Membership, trace: Trace) -> None:
    """404 (as for a trace that does not exist) when ``trace`` is hidden from the member."""
    if trace.generator == REFERENCE_GENERATOR and not membership.sees_reference_answer():
        raise Http404("No such trace")


# Keys of a logged rollout's record (``metadata["rollout"]``, ``annotator/rollouts.py``):
# the PRM's scores and what was made of them are model scores; the success signal is the
# final answer graded against the reference, and the return and step rewards hold it too
# (the success term), so they hide with the reference answer.
ROLLOUT_SCORE_KEYS = ("step_scores", "step_rewards", "return", "prm_return")
ROLLOUT_ANSWER_KEYS = ("success", "return", "step_rewards")


def visible_metadata(membership: Membership | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """``Trace.metadata`` as the member may see it: without the imported labellers'
    record for a member who sees only their own labels, or for no member at all; and
    without a logged rollout's scores for a member who labels blind to model scores, or
    its success (and the return holding it) for one who does not see the answer.

    >>> visible_metadata(annotator, {"finish_reason": "found_error", "timestamp": "t"})
    {'timestamp': 't'}
    """
    if membership is None or not membership.sees_all_labels():
        metadata = {k: v for k, v in metadata.items() if k not in LABEL_METADATA_KEYS}
    rollout = metadata.get("rollout")
    if isinstance(rollout, dict):
        hidden = set()
        if membership is None or not membership.sees_model_scores():
            hidden.update(ROLLOUT_SCORE_KEYS)
        if membership is None or not membership.sees_reference_answer():
            hidden.update(ROLLOUT_ANSWER_KEYS)
        if hidden:
            rollout = {k: v for k, v in rollout.items() if k not in hidden}
            metadata = {**metadata, "rollout": rollout}
    return metadata


# Label sets whose labels may be other people's: a copy of the human verdicts, and a
# consensus (one of its two sets may be one).
_FROM_HUMAN_LABELS = (LabelSetSource.HUMAN, LabelSetSource.CONSENSUS)


def visible_label_sets(
    membership: Membership, label_sets: QuerySet[LabelSet]
) -> QuerySet[LabelSet]:
    """The label sets the member may see: not those made from people's labels, for a
    member who sees only their own (their counts and agreement are others' labels)."""
    if membership.sees_all_labels():
        return label_sets
    return label_sets.exclude(source__in=_FROM_HUMAN_LABELS)
