"""Reward transforms: per-step PRM scores (and a graded final answer) to the per-step rewards
and the return an RL trainer optimises.

Each transform is a pure function of plain floats (no torch) that returns a frozen
:class:`StepRewards`. The ones to use against step farming are ``clip``, ``delta`` and
``clip-delta`` (Gao et al., "On Designing Effective RL Reward at Training Time for LLM
Reasoning", arXiv 2410.15115): a policy rewarded by the sum of raw step scores learns to
repeat correct but unnecessary steps, and these bound the return of any trajectory whatever
its length. ``pure-min`` is PURE's min-form credit assignment; ``last``, ``min``, ``prod``
and ``mean`` are the dashboards' aggregations given as an outcome reward.

Conventions, the same for every transform:

- Step scores are P(step correct) in [0, 1], one per step, at least one step; anything else
  (an empty list, NaN, inf, a score outside [0, 1]) is a ``ValueError`` naming the problem.
  A NaN means "no verdict" on the dashboards (:func:`scoring.metrics.first_error`), but a
  reward must be a number, so a scorer without a verdict is an error here.
- ``rewards`` has one entry per step. The return (``total``) is their undiscounted sum, the
  quantity PPO with gamma = 1 and GRPO (which sums them) optimise.
- The success term, ``success_weight`` when the final answer is right, is added to the last
  step's reward and to the return. ``success=None`` (no ground truth) adds nothing.
- Every result names its transform and version (``"clip-delta/v1"``); a version goes up
  whenever a transform's output changes for the same input, so logged rollouts show which
  definition made them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scoring.grading import grade
from scoring.metrics import aggregate

DEFAULT_TEMPERATURE = 0.1  # PURE's default, openrlhf/utils/utils.py line 152


@dataclass(frozen=True)
class StepRewards:
    """One trajectory's rewards: one per step (the success term included at the last step)
    and their sum, the return; the transform and version that made them; the success signal
    used (None: no ground truth, so no success term); the parameters, as ``(name, value)``
    pairs, including ``success_weight``."""

    rewards: tuple[float, ...]
    total: float
    transform: str
    version: int
    success: bool | None
    parameters: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        """``"name/vN"``, the string every answer carries."""
        return transform_label(self.transform, self.version)


def transform_label(name: str, version: int) -> str:
    """The name and version as one string.

    >>> transform_label("clip-delta", 1)
    'clip-delta/v1'
    """
    return f"{name}/v{version}"


def last(
    step_scores: Sequence[float], *, success: bool | None = None, success_weight: float = 1.0
) -> StepRewards:
    """The last step's score as an outcome reward (MC-trained PRMs; ``aggregate(s, "last")``
    in :mod:`scoring.metrics`, the dashboards' rule).

    Like every aggregation here it is placed outcome-style: the aggregate at the last step,
    zeros before, so a trainer that reads per-step rewards sees a single end-of-sequence
    reward and one that reads the return sees the aggregate.

    >>> last([0.9, 0.2, 0.7]).rewards
    (0.0, 0.0, 0.7)
    """
    return _aggregation("last", "last", step_scores, success, success_weight)


def min_(
    step_scores: Sequence[float], *, success: bool | None = None, success_weight: float = 1.0
) -> StepRewards:
    """The lowest step score, at the last step (``aggregate(s, "min")``, Lightman et al.'s
    and Qwen's "a solution is as good as its worst step"). Registered as ``"min"``.

    >>> min_([0.9, 0.2, 0.7]).rewards
    (0.0, 0.0, 0.2)
    """
    return _aggregation("min", "min", step_scores, success, success_weight)


def prod(
    step_scores: Sequence[float], *, success: bool | None = None, success_weight: float = 1.0
) -> StepRewards:
    """The product of the step scores, at the last step (``aggregate(s, "product")``, PRM800K's
    "probability that every step is correct").

    >>> prod([0.5, 0.5]).total
    0.25
    """
    return _aggregation("prod", "product", step_scores, success, success_weight)


def mean(
    step_scores: Sequence[float], *, success: bool | None = None, success_weight: float = 1.0
) -> StepRewards:
    """The mean step score, at the last step (``aggregate(s, "mean")``).

    >>> mean([1.0, 0.5], success=True, success_weight=2.0).rewards
    (0.0, 2.75)
    """
    return _aggregation("mean", "mean", step_scores, success, success_weight)


def clip(
    step_scores: Sequence[float],
    *,
    eta: float,
    success: bool | None = None,
    success_weight: float = 1.0,
) -> StepRewards:
    """Gao et al.'s Clip (arXiv 2410.15115, the Clip/Delta figure; the definition as issue 20
    states it): each step's reward is ``min(s_k - eta, 0)``. No step adds positive reward,
    so appending steps can only lower the return: repeating steps earns nothing.

    >>> clip([0.9, 0.2, 0.7], eta=0.5).rewards
    (0.0, -0.3, 0.0)
    """
    scores = _checked_scores(step_scores)
    eta = _checked_eta(eta)
    clipped = [_clipped(score, eta) for score in scores]
    return _result("clip", clipped, clipped, success, success_weight, (("eta", eta),))


def delta(
    step_scores: Sequence[float], *, success: bool | None = None, success_weight: float = 1.0
) -> StepRewards:
    """Gao et al.'s Delta (arXiv 2410.15115; the definition as issue 20 states it): the
    reward of step k is ``s_k - s_{k+1}`` for k < K - 1 and 0 for the last step. The return
    from any step k telescopes to ``s_k - s_{K-1}``, within [-1, 1] whatever the length.

    The return is computed in that telescoped form (exactly rounded), not by adding the
    rounded differences, whose rounding errors could carry it a few ulps past 1.

    >>> delta([0.75, 0.5, 1.0]).rewards
    (0.25, -0.5, 0.0)
    >>> delta([0.75, 0.5, 1.0]).total
    -0.25
    """
    scores = _checked_scores(step_scores)
    return _result("delta", _differences(scores), [scores[0], -scores[-1]], success, success_weight)


def clip_delta(
    step_scores: Sequence[float],
    *,
    eta: float,
    success: bool | None = None,
    success_weight: float = 1.0,
) -> StepRewards:
    """Gao et al.'s Clip and Delta together (arXiv 2410.15115; as issue 20 states it): Delta
    applied to the clipped values ``c_k = min(s_k - eta, 0)``, each in [-eta, 0], so the
    return telescopes to ``c_0 - c_{K-1}``, within [-eta, eta]. Registered as ``"clip-delta"``.

    >>> clip_delta([0.25, 1.0, 0.5], eta=0.5).rewards
    (-0.25, 0.0, 0.0)
    >>> clip_delta([1.0, 0.25], eta=0.5).total
    0.25
    """
    scores = _checked_scores(step_scores)
    eta = _checked_eta(eta)
    clipped = [_clipped(score, eta) for score in scores]
    return _result(
        "clip-delta",
        _differences(clipped),
        [clipped[0], -clipped[-1]],
        success,
        success_weight,
        (("eta", eta),),
    )


def pure_min(
    step_scores: Sequence[float],
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    success: bool | None = None,
    success_weight: float = 1.0,
) -> StepRewards:
    """PURE's min-form credit assignment (Cheng et al., ``CJReinforce/PURE``,
    ``openrlhf/utils/utils.py`` lines 149-183, ``turn_process_reward_logits_to_reward``, at
    commit 41f9363b8cc4). Registered as ``"pure-min"``. Line by line:

    - 155-158: the shape checks of a padded batch of two-way logits; we take one
      trajectory's step scores.
    - 160-161: ``PR = P(+) - P(-)`` from the PRM's two-way softmax. Our step score is
      ``s = P(+)`` and ``P(-) = 1 - s``, so ``PR_k = s_k - (1 - s_k) = 2 s_k - 1``.
    - 162, 166-168: padded positions are masked out (reward 0, weight 0); we get the real
      steps only, so there is nothing to mask.
    - 164-170: ``weight = softmax(-PR / T)`` over the steps (T = ``temperature``, 0.1 by
      default, line 152): the lowest-scored step gets the most weight.
    - 171-177: the ``disable_weighted_reward`` branch (uniform weights, the mean of PR) is
      not offered; it is ``mean`` mapped to [-1, 1].
    - 178: the step rewards are ``weight_k * PR_k``.
    - 180-182: the outcome reward is their sum, our return, which tends to ``min_k PR_k``
      as T goes to 0 (hence "min-form").

    The softmax is shifted by its largest exponent, ``-min(PR) / T``, as ``torch.softmax``
    does, so no ``exp`` overflows however small T is.

    A right step (PR = 1) and a wrong one (PR = -1): the wrong step takes almost all the
    weight, so the return is close to the minimum, -1.

    >>> pure_min([1.0, 0.0]).rewards
    (2.0611536181902033e-09, -0.9999999979388463)
    """
    scores = _checked_scores(step_scores)
    temperature = _checked_temperature(temperature)
    process = [score - (1.0 - score) for score in scores]
    lowest = min(process)
    exps = [math.exp((lowest - pr) / temperature) for pr in process]  # each in [0, 1]
    norm = math.fsum(exps)  # >= 1: the lowest step's term is exp(0)
    rewards = [e / norm * pr for e, pr in zip(exps, process, strict=True)]
    return _result(
        "pure-min", rewards, rewards, success, success_weight, (("temperature", temperature),)
    )


@dataclass(frozen=True)
class Transform:
    """A registered transform: its name, version, function, the keyword parameters it
    takes besides ``success`` and ``success_weight``, and those of them without a default."""

    name: str
    version: int
    function: Callable[..., StepRewards]
    parameters: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return transform_label(self.name, self.version)


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("last", 1, last),
        Transform("min", 1, min_),
        Transform("prod", 1, prod),
        Transform("mean", 1, mean),
        Transform("clip", 1, clip, ("eta",), ("eta",)),
        Transform("delta", 1, delta),
        Transform("clip-delta", 1, clip_delta, ("eta",), ("eta",)),
        Transform("pure-min", 1, pure_min, ("temperature",)),
    )
}


def get_transform(name: str) -> Transform:
    """The registered transform called ``name``; a ValueError listing the names otherwise."""
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ValueError(
            f"unknown transform {name!r}; choose one of {sorted(TRANSFORMS)}"
        ) from None


def apply_transform(
    name: str,
    step_scores: Sequence[float],
    *,
    success: bool | None = None,
    success_weight: float = 1.0,
    **parameters: float,
) -> StepRewards:
    """Run the transform called ``name``. A parameter it does not take is an error rather
    than silently ignored (``eta`` given to ``min`` is a configuration mistake), and so is a
    missing one (``clip`` has no default threshold: the right eta depends on the PRM).

    >>> apply_transform("clip", [0.9, 0.2], eta=0.5).label
    'clip/v1'
    """
    transform = get_transform(name)
    unknown = sorted(set(parameters) - set(transform.parameters))
    if unknown:
        takes = ", ".join(transform.parameters) or "no parameters"
        raise ValueError(f"transform {name!r} takes {takes}, not {', '.join(unknown)}")
    missing = [parameter for parameter in transform.required if parameter not in parameters]
    if missing:
        raise ValueError(f"transform {name!r} needs {', '.join(missing)}")
    return transform.function(
        step_scores, success=success, success_weight=success_weight, **parameters
    )


def grade_success(response: str, ground_truth: str | None, timeout_s: int = 5) -> bool | None:
    """The success signal: whether the final answer in ``response`` matches ``ground_truth``
    (:func:`scoring.grading.grade`, math-verify). None when there is no ground truth (None,
    or an empty string as OpenRLHF sends without ``--label_key``): no success term.

    >>> grade_success("so \\\\boxed{7}", "")
    """
    if ground_truth is None or not ground_truth.strip():
        return None
    return grade(response, ground_truth, timeout_s)


def _aggregation(
    name: str,
    how: str,
    step_scores: Sequence[float],
    success: bool | None,
    success_weight: float,
) -> StepRewards:
    scores = _checked_scores(step_scores)
    rewards = [0.0] * (len(scores) - 1) + [aggregate(scores, how)]
    return _result(name, rewards, rewards, success, success_weight)


def _result(
    name: str,
    rewards: list[float],
    return_terms: list[float],
    success: bool | None,
    success_weight: float,
    parameters: tuple[tuple[str, float], ...] = (),
) -> StepRewards:
    """The result with the success term added to the last step and to the return, which is
    ``fsum(return_terms + [success term])``: correctly rounded, so appending a step with a
    reward <= 0 can never raise it by a rounding error."""
    success_weight = _checked_finite("success_weight", success_weight)
    if success is not None and not isinstance(success, bool):
        raise ValueError(f"success must be True, False or None, not {success!r}")
    bonus = success_weight if success else 0.0
    if bonus:
        rewards = [*rewards[:-1], rewards[-1] + bonus]
    return StepRewards(
        rewards=tuple(rewards),
        total=math.fsum([*return_terms, bonus]),
        transform=name,
        # The registry is the one place versions are written; it exists by the time any
        # transform runs.
        version=TRANSFORMS[name].version,
        success=success,
        parameters=(*parameters, ("success_weight", success_weight)),
    )


def _clipped(score: float, eta: float) -> float:
    return min(score - eta, 0.0)


def _differences(values: list[float]) -> list[float]:
    return [a - b for a, b in zip(values, values[1:], strict=False)] + [0.0]


def _checked_scores(step_scores: Sequence[float]) -> list[float]:
    if len(step_scores) == 0:
        raise ValueError("no step scores: a reward needs at least one step")
    scores = []
    for index, score in enumerate(step_scores):
        value = _checked_finite(f"step_scores[{index}]", score)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"step_scores[{index}] = {value!r} is outside [0, 1]")
        scores.append(value)
    return scores


def _checked_eta(eta: float) -> float:
    value = _checked_finite("eta", eta)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"eta = {value!r} is outside [0, 1]")
    return value


def _checked_temperature(temperature: float) -> float:
    value = _checked_finite("temperature", temperature)
    if value <= 0.0:
        raise ValueError(f"temperature = {value!r} must be > 0")
    return value


def _checked_finite(name: str, value: float) -> float:
    # bool is an int subclass; True as a score or a weight is a caller's mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} = {value!r} is not finite")
    return float(value)
