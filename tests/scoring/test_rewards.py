"""Reward transforms (``scoring/rewards.py``): the properties that make Clip and Delta safe
from step farming, for any step scores in [0, 1] and any number of steps (hypothesis); each
transform against an independent re-implementation of its source (PURE's lines with torch,
as the reference runs them); the success term through real grading; the registry's names
and versions; clear errors for bad input."""

from __future__ import annotations

import functools
import json
import math
import operator
import statistics
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.rewards import (
    DEFAULT_TEMPERATURE,
    TRANSFORMS,
    StepRewards,
    apply_transform,
    clip,
    clip_delta,
    delta,
    get_transform,
    grade_success,
    pure_min,
)

score = st.floats(min_value=0.0, max_value=1.0)
step_scores = st.lists(score, min_size=1, max_size=40)
# A step the PRM calls correct: the kind a policy repeats to farm reward.
correct_steps = st.lists(st.floats(min_value=0.5, max_value=1.0), min_size=1, max_size=20)
etas = st.floats(min_value=0.0, max_value=1.0)
successes = st.sampled_from([None, False, True])
weights = st.floats(min_value=0.0, max_value=10.0)
temperatures = st.floats(min_value=0.01, max_value=10.0)


def bonus(success: bool | None, weight: float) -> float:
    return weight if success else 0.0


# --- step farming ---------------------------------------------------------------------------


@given(step_scores, etas)
def test_every_clip_step_reward_is_at_most_zero(scores: list[float], eta: float) -> None:
    result = clip(scores, eta=eta)
    assert len(result.rewards) == len(scores)
    assert all(reward <= 0.0 for reward in result.rewards)
    assert result.total <= 0.0


@given(step_scores, step_scores, etas, successes, weights)
def test_appending_steps_never_raises_the_clip_return(
    scores: list[float], more: list[float], eta: float, success: bool | None, weight: float
) -> None:
    """Whatever the appended steps score, and with the success term at the (moving) last
    step, the return of every longer trajectory is at most the shorter one's."""
    extended = scores + more
    totals = [
        clip(extended[:k], eta=eta, success=success, success_weight=weight).total
        for k in range(len(scores), len(extended) + 1)
    ]
    assert all(longer <= shorter for shorter, longer in zip(totals, totals[1:], strict=False))


@given(step_scores, correct_steps, etas, successes, weights)
def test_farming_correct_steps_grows_the_raw_sum_but_not_the_bounded_returns(
    scores: list[float],
    farmed: list[float],
    eta: float,
    success: bool | None,
    weight: float,
) -> None:
    """The hack the paper found: each appended correct step raises the sum of raw scores,
    while the delta return stays in [-1, 1], the clip-delta return in [-eta, eta] (each plus
    the success term) and the clip return never rises."""
    term = bonus(success, weight)
    raw_sums, clip_totals = [], []
    for k in range(len(scores), len(scores) + len(farmed) + 1):
        trajectory = (scores + farmed)[:k]
        raw_sums.append(math.fsum(trajectory))
        kwargs = {"success": success, "success_weight": weight}
        assert -1.0 + term <= delta(trajectory, **kwargs).total <= 1.0 + term
        assert -eta + term <= clip_delta(trajectory, eta=eta, **kwargs).total <= eta + term
        clip_totals.append(clip(trajectory, eta=eta, **kwargs).total)
    assert all(b > a for a, b in zip(raw_sums, raw_sums[1:], strict=False))
    assert all(b <= a for a, b in zip(clip_totals, clip_totals[1:], strict=False))


@given(step_scores, etas)
def test_the_delta_return_from_every_step_telescopes(scores: list[float], eta: float) -> None:
    """The return from step k is ``s_k - s_{K-1}`` (delta) and ``c_k - c_{K-1}`` (clip-delta),
    up to the rounding of the differences, so it is bounded from every step, not only the
    first."""
    clipped = [min(s - eta, 0.0) for s in scores]
    for values, result in ((scores, delta(scores)), (clipped, clip_delta(scores, eta=eta))):
        for k in range(len(scores)):
            assert math.fsum(result.rewards[k:]) == pytest.approx(values[k] - values[-1], abs=1e-12)
        assert result.total == values[0] - values[-1]


# --- each transform equals its source, re-implemented here ----------------------------------


def reference_rewards(name: str, scores: list[float], eta: float) -> list[float]:
    """The definitions as their sources state them, written out independently."""
    outcome = {
        "last": lambda: scores[-1],
        "min": lambda: min(scores),
        "prod": lambda: functools.reduce(operator.mul, scores, 1.0),
        "mean": lambda: statistics.fmean(scores),
    }
    if name in outcome:  # the dashboards' aggregate, placed at the last step
        return [0.0] * (len(scores) - 1) + [outcome[name]()]
    if name == "clip":  # Gao et al.: min(r_k - eta, 0)
        return [min(s - eta, 0.0) for s in scores]
    values = scores if name == "delta" else [min(s - eta, 0.0) for s in scores]
    # Gao et al.'s Delta: r_k - r_{k+1} before the last step, 0 at the last
    return [values[k] - values[k + 1] for k in range(len(values) - 1)] + [0.0]


@pytest.mark.parametrize("name", ["last", "min", "prod", "mean", "clip", "delta", "clip-delta"])
@given(scores=step_scores, eta=etas, success=successes, weight=weights)
def test_each_transform_equals_its_source(
    name: str, scores: list[float], eta: float, success: bool | None, weight: float
) -> None:
    parameters = {"eta": eta} if "clip" in name else {}
    result = apply_transform(name, scores, success=success, success_weight=weight, **parameters)
    expected = reference_rewards(name, scores, eta)
    expected[-1] += bonus(success, weight)
    assert result.rewards == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert result.total == pytest.approx(math.fsum(expected), rel=1e-12, abs=1e-12)
    assert (result.transform, result.success) == (name, success)


def pure_reference(
    logits: torch.Tensor, reward_mask: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``CJReinforce/PURE`` ``openrlhf/utils/utils.py`` lines 149-183
    (``turn_process_reward_logits_to_reward``, weighted branch), operation by operation."""
    assert logits.ndim == 3 and logits.size(-1) == 2 and reward_mask.shape == logits.shape[:2]
    probabilities = logits.softmax(dim=-1)  # (B, L, 2)
    process_reward = probabilities[..., 1] - probabilities[..., 0]  # (B, L)
    process_reward = process_reward.masked_fill(~reward_mask, 0)
    weight = torch.softmax(
        -process_reward.masked_fill(~reward_mask, float("inf")) / temperature, dim=-1
    )  # (B, L)
    process_reward = weight * process_reward
    return process_reward, process_reward.sum(dim=-1)  # (B, L), (B,)


@settings(deadline=None)  # the first call pays torch's warm-up
@given(st.lists(step_scores, min_size=1, max_size=4), temperatures)
def test_pure_min_equals_pures_lines_run_with_torch(
    batch: list[list[float]], temperature: float
) -> None:
    """A padded batch, as PURE sees it: logits whose two-way softmax gives (1 - s, s), junk
    logits at padded positions, the reward mask marking the real steps."""
    length = max(len(scores) for scores in batch)
    logits = torch.randn(len(batch), length, 2, dtype=torch.float64)  # (B, L, 2)
    reward_mask = torch.zeros(len(batch), length, dtype=torch.bool)  # (B, L)
    for row, scores in enumerate(batch):
        s = torch.tensor(scores, dtype=torch.float64)
        logits[row, : len(scores)] = torch.stack([torch.log1p(-s), torch.log(s)], dim=-1)
        reward_mask[row, : len(scores)] = True
    step_rewards, outcome = pure_reference(logits, reward_mask, temperature)
    for row, scores in enumerate(batch):
        result = pure_min(scores, temperature=temperature)
        assert result.rewards == pytest.approx(step_rewards[row, : len(scores)].tolist(), abs=1e-6)
        assert result.total == pytest.approx(outcome[row].item(), abs=1e-6)
        assert torch.count_nonzero(step_rewards[row, len(scores) :]) == 0


@given(
    name=st.sampled_from(sorted(TRANSFORMS)),
    scores=step_scores,
    eta=etas,
    temperature=st.floats(min_value=5e-324, max_value=1e6),
    success=successes,
    weight=weights,
)
def test_every_transform_gives_one_finite_reward_per_step_summing_to_the_return(
    name: str,
    scores: list[float],
    eta: float,
    temperature: float,
    success: bool | None,
    weight: float,
) -> None:
    """Whatever the scores and parameters (temperatures down to the smallest float)."""
    given_parameters = {"eta": eta, "temperature": temperature}
    parameters = {p: given_parameters[p] for p in TRANSFORMS[name].parameters}
    result = apply_transform(name, scores, success=success, success_weight=weight, **parameters)
    assert len(result.rewards) == len(scores)
    assert all(math.isfinite(reward) for reward in result.rewards)
    assert result.total == pytest.approx(math.fsum(result.rewards), abs=1e-9)


def test_pure_min_defaults_to_pures_temperature_and_tends_to_the_minimum() -> None:
    assert DEFAULT_TEMPERATURE == 0.1
    assert pure_min([0.9, 0.3]).parameters[0] == ("temperature", 0.1)
    # PR = 2s - 1 = (0.8, -0.4, 0.6): as T -> 0 the weights pick the lowest.
    assert pure_min([0.9, 0.3, 0.8], temperature=1e-3).total == pytest.approx(-0.4, abs=1e-9)
    # No overflow however small T is: the softmax is shifted by its largest exponent.
    tiny = pure_min([0.9, 0.3, 0.3], temperature=1e-300)
    assert tiny.total == pytest.approx(-0.4, abs=1e-9)
    assert tiny.rewards[1] == tiny.rewards[2] == pytest.approx(-0.2, abs=1e-9)


# --- the success term -----------------------------------------------------------------------


def test_a_right_boxed_answer_adds_the_success_weight_at_the_last_step() -> None:
    response = "She has 3 apples and buys 4 more.\n3 + 4 = 7, so the answer is $\\boxed{7}$."
    success = grade_success(response, "7")
    assert success is True
    result = apply_transform("clip-delta", [0.9, 0.8], eta=0.5, success=success, success_weight=2.0)
    assert result.rewards == (0.0, 2.0)
    assert result.total == 2.0
    assert result.success is True
    # A GSM8K reference solution works as the ground truth too.
    assert grade_success(response, "3 + 4 = 7 apples.\n#### 7") is True


def test_a_wrong_boxed_answer_adds_nothing() -> None:
    response = "3 + 4 = 8, so the answer is \\boxed{8}."
    success = grade_success(response, "7")
    assert success is False
    result = apply_transform("min", [0.9, 0.4], success=success, success_weight=2.0)
    assert result.rewards == (0.0, 0.4)
    assert result.success is False


def test_no_ground_truth_means_no_success_term() -> None:
    """OpenRLHF sends "" as the label without ``--label_key``."""
    response = "\\boxed{7}"
    assert grade_success(response, "") is None
    assert grade_success(response, "   ") is None
    assert grade_success(response, None) is None
    result = delta([0.9, 0.4], success=None, success_weight=5.0)
    assert result.rewards == pytest.approx((0.5, 0.0))
    assert result.success is None


# --- registry and versions ------------------------------------------------------------------


def test_the_registry_names_every_transform_with_its_version() -> None:
    assert list(TRANSFORMS) == [
        "last",
        "min",
        "prod",
        "mean",
        "clip",
        "delta",
        "clip-delta",
        "pure-min",
    ]
    for name, transform in TRANSFORMS.items():
        assert get_transform(name) is transform
        assert transform.label == f"{name}/v{transform.version}"
        parameters = {p: 0.5 for p in transform.parameters}
        result = apply_transform(name, [0.2, 0.9], **parameters)
        assert isinstance(result, StepRewards)
        assert (result.transform, result.version, result.label) == (
            name,
            transform.version,
            transform.label,
        )
        assert dict(result.parameters) == {**parameters, "success_weight": 1.0}
    assert TRANSFORMS["clip-delta"].label == "clip-delta/v1"


def test_results_are_frozen() -> None:
    result = clip([0.9], eta=0.5)
    with pytest.raises(AttributeError):
        result.total = 1.0  # type: ignore[misc]


def test_it_refuses_unknown_transforms_and_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown transform 'clip_delta'; choose one of \["):
        get_transform("clip_delta")
    with pytest.raises(ValueError, match="transform 'min' takes no parameters, not eta"):
        apply_transform("min", [0.5], eta=0.5)
    with pytest.raises(ValueError, match="transform 'pure-min' takes temperature, not eta"):
        apply_transform("pure-min", [0.5], eta=0.5)
    with pytest.raises(ValueError, match="transform 'clip-delta' needs eta"):
        apply_transform("clip-delta", [0.5])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: delta([]), "no step scores: a reward needs at least one step"),
        (lambda: delta([0.5, math.nan]), r"step_scores\[1\] = nan is not finite"),
        (lambda: delta([math.inf]), r"step_scores\[0\] = inf is not finite"),
        (lambda: delta([0.5, 1.5]), r"step_scores\[1\] = 1.5 is outside \[0, 1\]"),
        (lambda: delta([-0.1]), r"step_scores\[0\] = -0.1 is outside \[0, 1\]"),
        (lambda: delta(["0.5"]), r"step_scores\[0\] must be a number, not '0.5'"),
        (lambda: clip([0.5], eta=-0.1), r"eta = -0.1 is outside \[0, 1\]"),
        (lambda: clip_delta([0.5], eta=1.5), r"eta = 1.5 is outside \[0, 1\]"),
        (lambda: clip([0.5], eta=math.nan), "eta = nan is not finite"),
        (lambda: pure_min([0.5], temperature=0.0), "temperature = 0.0 must be > 0"),
        (lambda: pure_min([0.5], temperature=-1.0), "temperature = -1.0 must be > 0"),
        (lambda: pure_min([0.5], temperature=math.inf), "temperature = inf is not finite"),
        (lambda: delta([0.5], success_weight=math.nan), "success_weight = nan is not finite"),
        (lambda: delta([0.5], success="yes"), "success must be True, False or None, not 'yes'"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_it_imports_without_torch_or_django() -> None:
    probe = (
        "import json, sys, scoring.rewards\n"
        "print(json.dumps([m for m in ('torch', 'django', 'celery') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
