"""Solve or verify: the estimators of "When To Solve, When To Verify" (Singhi et al., arXiv
2504.01005) on one compute axis.

The reference is ``nishadsinghi/sc-genrm-scaling`` at 1d310ee: ``llmonk/evaluate/
eval_utils.py`` (cited as ``eval_utils:LINE``), ``plot_success_rate.py`` (``plot:LINE``) and
``math_pass_k.py`` (``pass_k:LINE``). Every estimator here follows those lines; the
docstrings cite them.

A problem is a :class:`Pool` of :class:`Sample` s (the final answer, already normalised the
way the reference's ``get_predicted_solutions`` normalises it, eval_utils:117-148, or None
for an invalid one; correctness; token count), the first ones carrying
:class:`Verification` s. Two modes:

- ``"exact"`` (the default): the expectation of the reference's procedure over its shuffles
  and subsets, computed by counting, with no sampling noise.
- ``"replay"``: the reference's own draws (``random.seed(33)`` per problem, plot:85-86, then
  its calls in its order, plot:106-142), equal to its numbers bit for bit.

Compute is ``C = S * (1 + lambda * V)`` (plot:382, 410) in units of one solution; lambda is
measured from the stored token counts or given. :func:`flops` gives the same axis in FLOPs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

RULES = ("hybrid", "logprobs", "text")
MODES = ("exact", "replay")
GROUPINGS = ("string", "math-verify")
SEED = 33
SHUFFLES = 100  # eval_utils:336
SC_REPS = 25  # plot:509, num_reps_sc
_EPS = 1e-9  # eval_utils:312, added to verifier_at_k's denominator
# The exact expectations hold counts as floats; comb(1000, 500) ~ 2.7e299 still fits a double.
MAX_EXACT_POOL = 1000
# Distinct (count, total) pairs per answer for an exact weighted vote; real-valued p(yes)
# scores make that number grow like 2**n, where only the replay is practical.
MAX_SUBSET_TOTALS = 20_000
# Score-weighted SC (:func:`weighted_vote`): past this much counting work (a correct
# answer's (count, total) pairs times the other answers' pairs) the exact vote gives way to
# a Monte-Carlo estimate of MC_DRAWS subsets, reported with its standard error.
MAX_VOTE_WORK = 50_000  # about a tenth of a second of counting
MC_DRAWS = 1000
# Monte-Carlo totals are float sums in draw order: totals this close (relative) are a tie,
# as the same weights summed in another order may differ in the last bits.
_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Verification:
    """One generative verification of a solution.

    ``p_yes``/``p_no``: the probabilities of "Yes"/"No" at the verdict position, None where
    the server gave none (the reference writes -1 there, generate_verifications.py:107,
    154). ``verdict``: the text verdict parsed from the verification (the reference's
    ``extract_final_verification``, eval_utils:190-227), None if none was found.
    """

    p_yes: float | None
    p_no: float | None
    verdict: bool | None
    tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("p_yes", "p_no"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1] or None, got {value!r}")
        if self.tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {self.tokens}")


@dataclass(frozen=True)
class Sample:
    """One sampled solution: its normalised final answer (None when the reference's
    ``is_invalid_answer`` holds, eval_utils:346-352), whether it is correct, its token count
    and its verifications (empty for an unverified sample)."""

    answer: str | None
    correct: bool
    tokens: int = 0
    verifications: tuple[Verification, ...] = ()

    def __post_init__(self) -> None:
        if self.answer is None and self.correct:
            raise ValueError("an invalid answer (None) cannot be correct")
        if self.answer is not None and (self.answer == "" or "invalidanswer" in self.answer):
            raise ValueError(f"answer {self.answer!r} is invalid to the reference: pass None")
        if self.tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {self.tokens}")


@dataclass(frozen=True)
class Pool:
    """All samples of one problem. The verified samples come first, as in the reference
    (``problem_i/solution_j.yaml`` exists for j < num_solutions, plot:40-45)."""

    samples: tuple[Sample, ...]
    verified: int = field(init=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("a pool needs at least one sample")
        verified = sum(1 for s in self.samples if s.verifications)
        if any(not s.verifications for s in self.samples[:verified]):
            raise ValueError(
                "verified samples must come first: an unverified one precedes one with verifications"
            )
        object.__setattr__(self, "verified", verified)


@dataclass(frozen=True)
class Estimates:
    """Success rates keyed as the reference's ``plot_points`` (plot:287): ``pass_at`` and
    ``majority`` by S over all samples; ``best_of`` and ``weighted`` by (S, V) over the
    verified ones."""

    pass_at: dict[int, float]
    majority: dict[int, float]
    best_of: dict[tuple[int, int], float]
    weighted: dict[tuple[int, int], float]


@dataclass(frozen=True)
class CurvePoint:
    """One point of a success-rate-against-compute curve; ``dataclasses.asdict`` gives its
    JSON object or CSV row. ``method``: ``"sc"``, ``"genrm"``, ``"prm"`` (best-of-N by a
    PRM or self-reward) or ``"prm-sc"`` (weighted SC by its scores)."""

    method: str
    solutions: int
    verifications: int
    compute: float
    success_rate: float


@dataclass(frozen=True)
class FlopsModel:
    """Parameter counts for the FLOPs axis (see :func:`flops`)."""

    policy_params: float
    verifier_params: float
    prm_params: float | None = None


# ---------------------------------------------------------------------------------- verdicts


def verdict_value(verification: Verification, rule: str = "hybrid") -> float | None:
    """The number one verification contributes to its solution's score, None for none.

    As ``verification_extraction_wrapper`` (eval_utils:242-261) with
    ``extract_final_verification_from_logprobs`` (eval_utils:231-239):

    - ``"logprobs"``: p(yes), else 1 - p(no), else None.
    - ``"hybrid"``: the same, but only when truthy (``if logprob_verifications:``,
      eval_utils:246): a p(yes) of exactly 0.0 (or a p(no) of 1.0) falls through to the
      text verdict, as does a missing pair. That quirk is kept.
    - ``"text"``: the text verdict, True -> 1.0, False -> 0.0 (the reference's
      ``np.array(..., dtype=float)``, plot:47, also maps None to NaN, i.e. no verdict).

    >>> verdict_value(Verification(0.0, 0.9, True))
    1.0
    >>> verdict_value(Verification(0.0, 0.9, True), "logprobs")
    0.0
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    text = None if verification.verdict is None else float(verification.verdict)
    if rule == "text":
        return text
    if verification.p_yes is not None:
        from_logprobs: float | None = verification.p_yes
    elif verification.p_no is not None:
        from_logprobs = 1 - verification.p_no
    else:
        from_logprobs = None
    if rule == "logprobs":
        return from_logprobs
    return from_logprobs if from_logprobs else text


def _verdicts(sample: Sample, verifications: int, rule: str) -> list[float]:
    if verifications < 1:
        raise ValueError(f"the number of verifications V must be >= 1, got {verifications}")
    if len(sample.verifications) < verifications:
        # eval_utils:287-288 raises "Not enough verifications!" too
        raise ValueError(
            f"V={verifications} but a verified sample has only {len(sample.verifications)} verifications"
        )
    values = (verdict_value(v, rule) for v in sample.verifications[:verifications])
    return [v for v in values if v is not None]


def solution_score(sample: Sample, verifications: int, rule: str = "hybrid") -> float:
    """Mean of the verdicts among the sample's first ``verifications``; a verification with
    no verdict is left out, none at all scores 0 (``get_solution_score``, eval_utils:286-300,
    the same ``np.mean`` so the float is the reference's)."""
    present = _verdicts(sample, verifications, rule)
    return float(np.mean(present)) if present else 0.0


def exact_solution_score(sample: Sample, verifications: int, rule: str = "hybrid") -> Fraction:
    """:func:`solution_score` in exact arithmetic. The exact weighted vote adds these: the
    reference's float total of equal sums depends on the draw's order (0.1 + 0.2 + 0.3 is
    0.6000000000000001, 0.3 + 0.2 + 0.1 is 0.6), so its ties are ties only sometimes; the
    expectation is that of the reference's procedure in exact arithmetic, where they always
    are."""
    present = _verdicts(sample, verifications, rule)
    return (
        sum((Fraction(v) for v in present), Fraction(0)) / len(present) if present else Fraction(0)
    )


# ---------------------------------------------------------------------------------- answers


def group_answers(
    pool: Pool, grouping: str = "string", same_answer: Callable[[str, str], bool] | None = None
) -> tuple[list[int], dict[int, bool]]:
    """Answer groups for voting: one id per sample (-1 for an invalid answer) and each
    group's correctness.

    ``"string"`` groups by the normalised answer string, as the reference's vote dictionary
    does (eval_utils:386-387). ``"math-verify"`` groups by :func:`scoring.grading.answers_match`
    instead: each answer joins the first group (in pool order) whose first answer it
    matches. Members of one group must agree on correctness (the reference grades the
    winning string, eval_utils:398); where they do not, a ValueError names them.
    ``same_answer`` overrides the comparison (for tests).
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if same_answer is None and grouping == "math-verify":
        from scoring.grading import answers_match

        same_answer = answers_match
    ids: list[int] = []
    representatives: list[str] = []
    by_string: dict[str, int] = {}
    correct: dict[int, bool] = {}
    for sample in pool.samples:
        if sample.answer is None:
            ids.append(-1)
            continue
        gid = by_string.get(sample.answer)
        if gid is None and same_answer is not None:
            gid = next(
                (i for i, rep in enumerate(representatives) if same_answer(rep, sample.answer)),
                None,
            )
        if gid is None:
            gid = len(representatives)
            representatives.append(sample.answer)
            correct[gid] = sample.correct
        by_string[sample.answer] = gid
        if correct[gid] != sample.correct:
            raise ValueError(
                f"answers {representatives[gid]!r} and {sample.answer!r} vote together but one is graded "
                "correct and the other not"
            )
        ids.append(gid)
    return ids, correct


# ---------------------------------------------------------------------------------- pass@k


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """Unbiased pass@k, ``1 - C(n - c, k) / C(n, k)``, as the product the reference computes
    (pass_k:39-45), over all samples of a problem (plot:107-111).

    >>> pass_at_k(4, 1, 2)
    0.5
    """
    if not 0 <= correct <= samples:
        raise ValueError(f"need 0 <= correct <= samples, got correct={correct}, samples={samples}")
    if not 1 <= k <= samples:
        raise ValueError(f"k must be in 1..{samples}, got {k}")
    if samples - correct < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(samples - correct + 1, samples + 1)))


# ---------------------------------------------------------------------------------- best-of-S


def _check_size(size: int, pool_size: int, what: str) -> None:
    if not 1 <= size <= pool_size:
        raise ValueError(f"S must be in 1..{pool_size} ({what}), got {size}")


def _zero_invalid(scores: Sequence[float], valid: Sequence[bool]) -> list[float]:
    # eval_utils:330-333 and 360-362: an invalid answer's score is 0
    return [score if ok else 0.0 for score, ok in zip(scores, valid, strict=True)]


def expected_best_of(
    scores: Sequence[float], correct: Sequence[bool], valid: Sequence[bool], size: int
) -> float:
    """Exact expectation of ``compute_best_of_k`` (eval_utils:321-343) over its shuffles.

    Each shuffle followed by a stable sort on the score puts the samples in score order with
    ties in uniformly random order; ``verifier_at_k`` (eval_utils:311-318) then weighs
    position i by ``C(N - i - 1, S - 1) / (C(N, S) + 1e-9)``, the chance that i leads a
    random S-subset (the 1e-9 kept: it is part of the reference's number). In expectation a
    tie block of m samples, c of them correct, contributes c/m of its positions' weights.
    """
    n = len(scores)
    _check_size(size, n, "scored samples")
    scores = _zero_invalid(scores, valid)
    denominator = math.comb(n, size)
    # A denominator above 1e8 absorbs the 1e-9 completely in float arithmetic.
    quirk = denominator / (denominator + _EPS) if denominator < 10**8 else 1.0
    weights = [math.comb(n - i - 1, size - 1) / denominator * quirk for i in range(n)]
    order = sorted(range(n), key=lambda i: scores[i], reverse=True)
    total = 0.0
    start = 0
    while start < n:
        stop = start
        while stop < n and scores[order[stop]] == scores[order[start]]:
            stop += 1
        right = sum(1 for i in order[start:stop] if correct[i])
        if right:
            total += right / (stop - start) * math.fsum(weights[start:stop])
        start = stop
    return total


def replay_best_of(
    rng: random.Random,
    scores: Sequence[float],
    correct: Sequence[bool],
    valid: Sequence[bool],
    size: int,
) -> float:
    """``compute_best_of_k`` (eval_utils:321-343) with the reference's own draws from ``rng``:
    100 shuffles of the N pairs, a stable descending sort on the score, ``verifier_at_k``
    with SciPy's ``binom`` (eval_utils:311-318; the same function, so the same floats) and
    its summation order, then ``np.mean``. Shuffling indices consumes ``rng`` exactly as
    shuffling the pairs does."""
    from scipy.special import binom  # the reference's binom, for bit-equal weights

    n = len(scores)
    _check_size(size, n, "scored samples")
    scores = _zero_invalid(scores, valid)
    denominator = binom(n, size) + _EPS
    fractions = [binom(n - i - 1, size - 1) / denominator for i in range(n - size + 1)]
    orders = []
    for _ in range(SHUFFLES):
        order = list(range(n))
        rng.shuffle(order)
        orders.append(sorted(order, key=scores.__getitem__, reverse=True))
    ranked = np.asarray(correct, dtype=bool)[np.array(orders)[:, : len(fractions)]]  # (100, N-S+1)
    # verifier_at_k's sum() runs left to right; cumsum does too, and a wrong sample's 0.0
    # changes no float sum, so the last column is the reference's value bit for bit.
    values = np.cumsum(np.where(ranked, np.array(fractions), 0.0), axis=1)[:, -1]
    return float(np.mean(values))


# ---------------------------------------------------------------------------------- votes


def _subset_totals(weights: Sequence[Fraction], limit: int) -> dict[tuple[int, Fraction], int]:
    """How many subsets of ``weights`` have each (size, total), sizes up to ``limit``."""
    multiplicity: dict[Fraction, int] = {}
    for w in weights:
        multiplicity[w] = multiplicity.get(w, 0) + 1
    table: dict[tuple[int, Fraction], int] = {(0, Fraction(0)): 1}
    for value, count in multiplicity.items():
        grown: dict[tuple[int, Fraction], int] = {}
        for (size, total), ways in table.items():
            for taken in range(min(count, limit - size) + 1):
                key = (size + taken, total + taken * value)
                grown[key] = grown.get(key, 0) + ways * math.comb(count, taken)
        if len(grown) > MAX_SUBSET_TOTALS:
            raise ValueError(
                "too many distinct subset totals for an exact weighted vote (real-valued scores on a large "
                "pool); use mode='replay'"
            )
        table = grown
    return table


def expected_vote(
    groups: Sequence[int],
    weights: Sequence[Fraction],
    correct: dict[int, bool],
    size: int,
    max_work: int | None = None,
) -> float:
    """Exact expectation of ``compute_weighted_sc`` (eval_utils:355-400) over its draws.

    ``groups``: each sample's answer group, -1 for an invalid one; ``weights``: each sample's
    vote (1 for majority voting, plot:115-121). The reference draws ordered S-subsets with
    ``random.sample`` (25 of them, or one when S is the whole pool: only the order is random
    then), adds each answer's weights, sets invalid answers to -1 so they never win
    (eval_utils:390-392), and ``max`` keeps the first key inserted among the tied best:
    the tied answer whose first sample comes first in the draw, which happens with
    probability k_g / (k_g + tau) for an answer with k_g samples drawn against tau tied
    samples of other answers. A draw of invalid answers only is a failure.

    Counting: for each correct answer g and each (k, W) it can draw, the other answers'
    draws are folded in one at a time, split into "loses to W" and "ties W at j samples"
    (answers that can never reach W, i.e. whose positive weights sum below it, join the
    invalid ones as free samples). Weights may be negative (a self-reward such as LaSeR's
    r_s): an answer not drawn takes no part, one drawn may lose with a negative total.
    ``max_work`` bounds the counting (pairs of a correct answer's (count, total) times the
    other answers' pairs): past it a ValueError, as past ``MAX_SUBSET_TOTALS``.
    """
    n = len(groups)
    _check_size(size, n, "voting samples")
    if n > MAX_EXACT_POOL:
        raise ValueError(
            f"an exact vote handles pools of up to {MAX_EXACT_POOL} samples, got {n}; use mode='replay'"
        )
    members: dict[int, list[Fraction]] = {}
    for gid, weight in zip(groups, weights, strict=True):
        if gid >= 0:
            members.setdefault(gid, []).append(weight)
    invalid = n - sum(len(ws) for ws in members.values())
    if size == n:
        return _whole_pool_vote(members, correct)
    tables = {gid: _subset_totals(ws, size) for gid, ws in members.items()}
    if max_work is not None:
        pairs = sum(len(t) for t in tables.values())
        work = sum(len(t) for gid, t in tables.items() if correct[gid]) * pairs
        if work > max_work:
            raise ValueError(f"an exact weighted vote here counts {work} pairs, over {max_work}")
    reach = {gid: sum((w for w in ws if w > 0), Fraction(0)) for gid, ws in members.items()}
    success = 0.0
    for g, g_table in tables.items():
        if not correct[g]:
            continue
        for (k, target), g_ways in g_table.items():
            if k == 0:
                continue
            left = size - k
            free = invalid
            folds = []
            for h, table in tables.items():
                if h == g:
                    continue
                if reach[h] < target:
                    free += len(members[h])
                    continue
                lose = np.zeros(left + 1)
                ties: dict[int, float] = {}
                for (j, total), ways in table.items():
                    if j > left:
                        continue
                    if j == 0 or total < target:
                        lose[j] += ways
                    elif total == target:
                        ties[j] = ties.get(j, 0.0) + ways
                folds.append((np.trim_zeros(lose, "b"), ties))
            # by_tie[tau][c]: ways for the folded answers to use c samples with tau of them tied
            by_tie = {0: np.eye(1, left + 1)[0]}
            for lose, ties in folds:
                folded: dict[int, np.ndarray] = {}
                for tau, ways in by_tie.items():
                    folded[tau] = folded.get(tau, 0) + np.convolve(ways, lose)[: left + 1]
                    for j, tie_ways in ties.items():
                        shifted = np.zeros(left + 1)
                        shifted[j:] = ways[: left + 1 - j] * tie_ways
                        folded[tau + j] = folded.get(tau + j, 0) + shifted
                by_tie = folded
            free_ways = np.array([math.comb(free, left - c) for c in range(left + 1)], dtype=float)
            for tau, ways in by_tie.items():
                success += g_ways * float(ways @ free_ways) * k / (k + tau)
    return success / math.comb(n, size)


def _whole_pool_vote(members: dict[int, list[Fraction]], correct: dict[int, bool]) -> float:
    """The one draw of the whole pool (eval_utils:366-367): the totals are fixed and only
    the order decides between tied answers, k_g / (sum of the tied k_h) for each."""
    if not members:
        return 0.0
    totals = {gid: sum(ws, Fraction(0)) for gid, ws in members.items()}
    best = max(totals.values())
    tied = [gid for gid, total in totals.items() if total == best]
    return sum(len(members[g]) for g in tied if correct[g]) / sum(len(members[g]) for g in tied)


def replay_vote(
    rng: random.Random,
    groups: Sequence[int],
    weights: Sequence[float],
    correct: dict[int, bool],
    size: int,
    reps: int,
) -> float:
    """``compute_weighted_sc`` (eval_utils:355-400) with the reference's own draws: all
    ``reps`` ``random.sample`` calls first (one when S is the whole pool), per draw the
    weights added in draw order, invalid answers out of the running, the first inserted of
    the best. The reference sets invalid answers' total to -1 (eval_utils:390-392), below any
    total of weights in [0, 1]; here it is -inf, the same for such weights, so that an answer
    with a negative total (weights such as LaSeR's r_s) still beats an invalid one, as the
    reference means: invalid answers never win."""
    n = len(groups)
    _check_size(size, n, "voting samples")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    scores = np.array(_zero_invalid(weights, [g >= 0 for g in groups]), dtype=float)
    draws = [rng.sample(range(n), size) for _ in range(1 if size == n else reps)]
    successes = np.zeros(len(draws))
    for rep, drawn in enumerate(draws):
        totals: dict[int, float] = {}
        for index in drawn:
            totals[groups[index]] = totals.get(groups[index], 0) + scores[index]
        totals[-1] = -math.inf
        winner = max(totals, key=totals.__getitem__)
        successes[rep] = winner >= 0 and correct[winner]
    return float(np.mean(successes))


@dataclass(frozen=True)
class VoteEstimate:
    """A weighted vote's success rate for one problem and one S. ``how``: ``"exact"`` (the
    expectation, counted), ``"monte-carlo"`` (``error`` is its standard error) or
    ``"replay"`` (the reference's own draws; ``error`` 0, it is the reference's number)."""

    value: float
    error: float
    how: str


def sampled_vote(
    groups: Sequence[int],
    weights: Sequence[float],
    correct: dict[int, bool],
    size: int,
    *,
    draws: int = MC_DRAWS,
    seed: int = SEED,
) -> VoteEstimate:
    """Monte-Carlo estimate of :func:`expected_vote`'s expectation: ``draws`` uniform
    S-subsets (``numpy.random.default_rng([seed, size])``, so a page shows the same number
    on every load), each scored by its expectation over the draw order, which is exact given
    the subset: the best total wins; among answers tied at it (within a relative 1e-9, see
    ``_TIE_TOLERANCE``) answer g wins with probability k_g / (the tied answers' k), the
    reference's ``max`` keeping the first inserted; invalid answers never win; a subset of
    invalid answers only is a failure. The estimate is the mean over the subsets, its error
    the standard error of that mean (sample standard deviation / sqrt(draws)); averaging
    the order out first makes it smaller than the reference's own 25-draw noise."""
    n = len(groups)
    _check_size(size, n, "voting samples")
    if draws < 2:
        raise ValueError(f"draws must be >= 2 for a standard error, got {draws}")
    ids = sorted({g for g in groups if g >= 0})
    column = {g: i for i, g in enumerate(ids)}
    width = len(ids) + 1  # the last column collects the invalid answers
    group_index = np.array([column.get(g, len(ids)) for g in groups])
    right = np.array([correct[g] for g in ids], dtype=bool)
    rng = np.random.default_rng([seed, size])
    # the indices of the S smallest of n uniform numbers: a uniform S-subset
    keys = rng.random((draws, n))
    picked = (np.argpartition(keys, size - 1, axis=1) if size < n else np.argsort(keys, axis=1))[
        :, :size
    ]
    cells = (np.arange(draws)[:, None] * width + group_index[picked]).ravel()
    values = np.asarray(weights, dtype=float)[picked].ravel()
    totals = np.bincount(cells, weights=values, minlength=draws * width).reshape(draws, width)
    counts = np.bincount(cells, minlength=draws * width).reshape(draws, width)
    totals, counts = totals[:, :-1], counts[:, :-1]
    drawn = counts > 0
    totals = np.where(drawn, totals, -np.inf)
    best = totals.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        tied = drawn & (totals >= best - _TIE_TOLERANCE * (1 + np.abs(best)))
    tied_counts = np.where(tied, counts, 0)
    everyone = tied_counts.sum(axis=1)
    winners = tied_counts[:, right].sum(axis=1)
    success = np.divide(winners, everyone, out=np.zeros(draws), where=everyone > 0)
    return VoteEstimate(
        float(success.mean()), float(success.std(ddof=1) / math.sqrt(draws)), "monte-carlo"
    )


def _counting_bound(
    groups: Sequence[int], weights: Sequence[float], correct: dict[int, bool], size: int
) -> float:
    """An upper bound on :func:`expected_vote`'s counting work, cheap to compute: an
    answer's (count, total) pairs are at most the product of (multiplicity + 1) over its
    distinct weights and at most the subsets of up to S of its samples."""
    members: dict[int, dict[float, int]] = {}
    for gid, weight in zip(groups, weights, strict=True):
        if gid >= 0:
            values = members.setdefault(gid, {})
            values[weight] = values.get(weight, 0) + 1
    pairs = {}
    for gid, values in members.items():
        by_value = math.prod(c + 1 for c in values.values())
        m = sum(values.values())
        by_size = sum(math.comb(m, j) for j in range(min(m, size) + 1))
        pairs[gid] = min(by_value, by_size)
    if any(p > MAX_SUBSET_TOTALS for p in pairs.values()):
        return math.inf
    return sum(p for gid, p in pairs.items() if correct[gid]) * sum(pairs.values())


def weighted_vote(
    groups: Sequence[int],
    weights: Sequence[float],
    correct: dict[int, bool],
    size: int,
    *,
    draws: int = MC_DRAWS,
    seed: int = SEED,
    max_work: int = MAX_VOTE_WORK,
) -> VoteEstimate:
    """The reference's weighted SC (``compute_weighted_sc``, eval_utils:355-400) with
    real-valued weights, e.g. a PRM's or LaSeR's score per solution: the exact expectation
    (:func:`expected_vote` on the floats' exact values) where its counting stays within
    ``max_work`` and ``MAX_SUBSET_TOTALS``, always when S is the whole pool; otherwise the
    Monte-Carlo estimate of the same expectation (:func:`sampled_vote`) with its standard
    error. Real-valued weights make the number of distinct subset totals grow like 2**n,
    so a pool of more than about a dozen solutions of one answer is past exact counting."""
    _check_size(size, len(groups), "voting samples")
    if size == 1:  # the one drawn solution's answer wins unless it is invalid
        right = sum(1 for g in groups if g >= 0 and correct[g])
        return VoteEstimate(right / len(groups), 0.0, "exact")
    if size < len(groups) and _counting_bound(groups, weights, correct, size) > max_work:
        return sampled_vote(groups, weights, correct, size, draws=draws, seed=seed)
    exact = [Fraction(float(w)) for w in weights]
    try:
        return VoteEstimate(expected_vote(groups, exact, correct, size, max_work), 0.0, "exact")
    except ValueError:  # too much counting: estimate the same expectation
        pass
    return sampled_vote(groups, weights, correct, size, draws=draws, seed=seed)


def score_weighted_sc(
    pool: Pool,
    scores: Sequence[float],
    sizes: Sequence[int],
    *,
    mode: str = "exact",
    draws: int = MC_DRAWS,
    seed: int = SEED,
    reps: int = SC_REPS,
    grouping: str = "string",
) -> dict[int, VoteEstimate]:
    """Weighted SC with one real-valued score per solution (a PRM's aggregate, LaSeR's
    r_s) over the problem's first ``len(scores)`` solutions, the scored ones, as the
    reference's weighted SC votes over the verified ones (plot:127-142). ``"exact"``:
    :func:`weighted_vote`; ``"replay"``: :func:`replay_vote` with ``random.seed(seed)``
    and ``reps`` draws per S, in the order of ``sizes``, as the reference draws for a
    verifier's scores. A NaN score (a solution the scorer could not score) votes 0, as a
    solution with no verdict scores 0 in the reference (eval_utils:299-300)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 1 <= len(scores) <= len(pool.samples):
        raise ValueError(f"{len(scores)} scores for a pool of {len(pool.samples)} samples")
    groups, group_correct = group_answers(pool, grouping)
    groups = groups[: len(scores)]
    weights = [0.0 if math.isnan(x) else float(x) for x in scores]
    if mode == "replay":
        rng = random.Random(seed)
        return {
            s: VoteEstimate(
                replay_vote(rng, groups, weights, group_correct, s, reps), 0.0, "replay"
            )
            for s in sizes
        }
    return {
        s: weighted_vote(groups, weights, group_correct, s, draws=draws, seed=seed) for s in sizes
    }


# ---------------------------------------------------------------------------------- problems


def _check(mode: str, rule: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def problem_estimates(
    pool: Pool,
    *,
    sc_sizes: Sequence[int],
    sizes: Sequence[int] = (),
    verification_counts: Sequence[int] = (),
    rule: str = "hybrid",
    mode: str = "exact",
    best_of: bool = True,
    weighted: bool = False,
    seed: int = SEED,
    reps: int = SC_REPS,
    grouping: str = "string",
) -> Estimates:
    """One problem's estimates as ``compute_metrics_for_problem`` (plot:60-144) computes them.

    ``sc_sizes`` (the reference's ``all_num_solutions_plot_no_verif``): pass@S and majority
    vote over all samples. ``sizes`` x ``verification_counts`` (``all_num_solutions_plot``,
    ``all_num_verifications_plot``): best-of-S and weighted SC over the verified samples.

    Replay seeds ``random`` with ``seed`` and makes the reference's calls in its order:
    pass@S (no draws), majority vote for each S, then for each V and each S best-of-S (if
    ``best_of``) and weighted SC (if ``weighted``). The flags change later draws, so they
    must be the reference run's. The reference's in-place zeroing of invalid scores
    (eval_utils:330-333) changes nothing downstream, as weighted SC zeroes them again.

    The exact mode ranks best-of-S on the reference's float scores (equal floats are its
    ties) and adds weighted SC's votes exactly (:func:`exact_solution_score`). An exact
    weighted SC over real-valued p(yes) on a large pool is a subset-sum count that grows
    like 2**n: it raises ValueError past ``MAX_SUBSET_TOTALS`` and the replay is the way
    there (S equal to the pool is always exact).
    """
    _check(mode, rule)
    if bool(sizes) != bool(verification_counts):
        raise ValueError("sizes and verification_counts go together")
    if sizes and not pool.verified:
        raise ValueError("best-of-S and weighted SC need verified samples; this pool has none")
    rng = random.Random(seed)
    groups, group_correct = group_answers(pool, grouping)
    n = len(pool.samples)
    right = sum(s.correct for s in pool.samples)
    ones = [1.0] * n
    valid = [g >= 0 for g in groups]
    pass_at = {s: pass_at_k(n, right, s) for s in sc_sizes}
    majority = {}
    for s in sc_sizes:
        if mode == "exact":
            majority[s] = expected_vote(groups, [Fraction(1)] * n, group_correct, s)
        else:
            majority[s] = replay_vote(rng, groups, ones, group_correct, s, reps)
    best: dict[tuple[int, int], float] = {}
    weighted_sc: dict[tuple[int, int], float] = {}
    verified = pool.samples[: pool.verified]
    correct = [s.correct for s in verified]
    for v in verification_counts:
        scores = [solution_score(sample, v, rule) for sample in verified]
        exact = weighted and mode == "exact"
        exact_scores = (
            [exact_solution_score(sample, v, rule) for sample in verified] if exact else []
        )
        for s in sizes:
            if best_of:
                if mode == "exact":
                    best[(s, v)] = expected_best_of(scores, correct, valid[: pool.verified], s)
                else:
                    best[(s, v)] = replay_best_of(rng, scores, correct, valid[: pool.verified], s)
            if weighted:
                if mode == "exact":
                    weighted_sc[(s, v)] = expected_vote(
                        groups[: pool.verified], exact_scores, group_correct, s
                    )
                else:
                    weighted_sc[(s, v)] = replay_vote(
                        rng, groups[: pool.verified], scores, group_correct, s, reps
                    )
    return Estimates(pass_at, majority, best, weighted_sc)


def mean_estimates(per_problem: Sequence[Estimates]) -> Estimates:
    """Success rates over problems: ``np.mean`` of the per-problem values in problem order,
    as plot:320-333."""
    if not per_problem:
        raise ValueError("no problems")

    def mean(name: str) -> dict:
        keys = getattr(per_problem[0], name)
        return {key: float(np.mean([getattr(e, name)[key] for e in per_problem])) for key in keys}

    return Estimates(mean("pass_at"), mean("majority"), mean("best_of"), mean("weighted"))


# ---------------------------------------------------------------------------------- compute


def measure_lambda(pools: Iterable[Pool]) -> float:
    """lambda = mean verification tokens / mean solution tokens over the stored counts (the
    paper's ratio of a verification's cost to a solution's; the reference takes it as a
    given, ``lamb``, plot:499)."""
    solution_tokens: list[int] = []
    verification_tokens: list[int] = []
    for pool in pools:
        for sample in pool.samples:
            solution_tokens.append(sample.tokens)
            verification_tokens.extend(v.tokens for v in sample.verifications)
    if not verification_tokens:
        raise ValueError("no verifications to measure lambda from")
    if not sum(solution_tokens):
        raise ValueError("solutions have no token counts; give lambda instead")
    return float(np.mean(verification_tokens) / np.mean(solution_tokens))


def compute(solutions: int, verifications: int, lam: float) -> float:
    """``C = S * (1 + lambda * V)`` in units of one solution's generation (plot:382, 410).

    >>> compute(4, 2, 1.0)
    12.0
    """
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return float(solutions * (1 + lam * verifications))


def flops(
    solutions: int,
    verifications: int,
    *,
    policy_params: float,
    verifier_params: float,
    solution_tokens: float,
    verification_tokens: float,
) -> float:
    """FLOPs of S solutions and V verifications each, with the usual approximation of
    2 * N FLOPs per token for an N-parameter model (attention ignored), counting generated
    tokens only, as the paper's token-ratio lambda does (the verifier's prefill of question
    and solution is not counted): ``2 * S * (N_p * T_s + V * N_v * T_v)``.
    """
    if min(policy_params, verifier_params, solution_tokens, verification_tokens) < 0:
        raise ValueError("parameter and token counts must be >= 0")
    return (
        2.0
        * solutions
        * (policy_params * solution_tokens + verifications * verifier_params * verification_tokens)
    )


def _mean_solution_tokens(pools: Sequence[Pool]) -> float:
    tokens = [s.tokens for p in pools for s in p.samples]
    if not sum(tokens):
        raise ValueError("a FLOPs axis needs the solutions' token counts")
    return float(np.mean(tokens))


def _mean_verification_tokens(pools: Sequence[Pool]) -> float:
    tokens = [v.tokens for p in pools for s in p.samples for v in s.verifications]
    if not tokens:
        raise ValueError("a FLOPs axis with GenRM points needs the verifications' token counts")
    return float(np.mean(tokens))


def curves(
    pools: Sequence[Pool],
    *,
    sc_sizes: Sequence[int],
    sizes: Sequence[int] = (),
    verification_counts: Sequence[int] = (),
    rule: str = "hybrid",
    mode: str = "exact",
    lam: float | None = None,
    flops_model: FlopsModel | None = None,
    prm_scores: Sequence[Sequence[float]] | None = None,
    prm_sizes: Sequence[int] | None = None,
    prm_lambda: float = 1.0,
    prm_weighted: bool = False,
    seed: int = SEED,
    reps: int = SC_REPS,
    grouping: str = "string",
) -> list[CurvePoint]:
    """Success rate against compute: SC (majority vote) at each of ``sc_sizes``, GenRM
        best-of-S at each V of ``verification_counts`` over ``sizes``, and, given per-solution
        PRM scores (one list per problem, for its first solutions), PRM best-of-N at each of
    ``prm_sizes`` (default ``sc_sizes``) with the same position weights and invalid answers at 0.

        Compute is ``S * (1 + lambda * V)`` with lambda measured (:func:`measure_lambda`) unless
        given; a PRM reads each solution in one prefill, ``S * (1 + prm_lambda)``, where the
        default 1 is a PRM of the policy's size (a prefill of T tokens costs the FLOPs of
        generating them). With ``flops_model`` the axis is :func:`flops` with the mean token
        counts, and a PRM costs ``2 * N_prm * T_s`` per solution on top of the solution.

        In replay mode SC and GenRM replay the reference's default run (plot:521-526 turns
        weighted SC on too, whose draws come between best-of-S's); PRM best-of-N has no
        reference draws and is always the exact expectation.

        ``prm_weighted`` adds weighted SC with the PRM's (or LaSeR's) scores as the votes
        (:func:`score_weighted_sc`, method ``"prm-sc"``) at the PRM's cost: exact or
        Monte-Carlo in exact mode, the reference's seed-``seed`` draws in replay mode.
    """
    _check(mode, rule)
    if not pools:
        raise ValueError("no problems")
    if flops_model is not None:
        solution_tokens = _mean_solution_tokens(pools)
        verification_tokens = _mean_verification_tokens(pools) if sizes else 0.0

        def cost(s: int, v: int) -> float:
            return flops(
                s,
                v,
                policy_params=flops_model.policy_params,
                verifier_params=flops_model.verifier_params,
                solution_tokens=solution_tokens,
                verification_tokens=verification_tokens,
            )
    else:
        if lam is None:
            lam = measure_lambda(pools) if sizes else 0.0

        def cost(s: int, v: int) -> float:
            return compute(s, v, lam)

    per_problem = [
        problem_estimates(
            pool,
            sc_sizes=sc_sizes,
            sizes=sizes,
            verification_counts=verification_counts,
            rule=rule,
            mode=mode,
            weighted=mode == "replay",
            seed=seed,
            reps=reps,
            grouping=grouping,
        )
        for pool in pools
    ]
    means = mean_estimates(per_problem)
    points = [CurvePoint("sc", s, 0, cost(s, 0), means.majority[s]) for s in sc_sizes]
    points += [
        CurvePoint("genrm", s, v, cost(s, v), means.best_of[(s, v)])
        for v in verification_counts
        for s in sizes
    ]
    if prm_scores is not None:
        prm_sizes = sc_sizes if prm_sizes is None else prm_sizes
        points += _prm_points(
            pools, prm_scores, prm_sizes, flops_model, prm_lambda, cost, prm_weighted, mode, seed
        )
    elif prm_weighted:
        raise ValueError("prm_weighted needs prm_scores")
    return points


def _prm_points(
    pools: Sequence[Pool],
    prm_scores: Sequence[Sequence[float]],
    sizes: Sequence[int],
    flops_model: FlopsModel | None,
    prm_lambda: float,
    cost: Callable[[int, int], float],
    weighted: bool = False,
    mode: str = "exact",
    seed: int = SEED,
) -> list[CurvePoint]:
    if len(prm_scores) != len(pools):
        raise ValueError(f"prm_scores has {len(prm_scores)} problems, the pools {len(pools)}")
    for pool, scores in zip(pools, prm_scores, strict=True):
        if len(scores) > len(pool.samples):
            raise ValueError(f"{len(scores)} PRM scores for a pool of {len(pool.samples)} samples")
    if flops_model is not None:
        if flops_model.prm_params is None:
            raise ValueError("a FLOPs axis with PRM points needs prm_params")
        tokens = _mean_solution_tokens(pools)

        def prm_cost(s: int) -> float:
            return cost(s, 0) + 2.0 * s * flops_model.prm_params * tokens
    else:
        if prm_lambda < 0:
            raise ValueError(f"prm_lambda must be >= 0, got {prm_lambda}")

        def prm_cost(s: int) -> float:
            return float(s * (1 + prm_lambda))

    points = []
    for s in sizes:
        values = []
        for pool, scores in zip(pools, prm_scores, strict=True):
            samples = pool.samples[: len(scores)]
            values.append(
                expected_best_of(
                    list(scores),
                    [x.correct for x in samples],
                    [x.answer is not None for x in samples],
                    s,
                )
            )
        points.append(CurvePoint("prm", s, 0, prm_cost(s), float(np.mean(values))))
    if weighted:
        votes = [
            score_weighted_sc(pool, scores, sizes, mode=mode, seed=seed)
            for pool, scores in zip(pools, prm_scores, strict=True)
        ]
        points += [
            CurvePoint("prm-sc", s, 0, prm_cost(s), float(np.mean([v[s].value for v in votes])))
            for s in sizes
        ]
    return points
