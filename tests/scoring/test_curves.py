"""The solve-or-verify estimators against an independent re-implementation of the reference.

The ``ref_*`` functions below re-write the estimator lines of ``nishadsinghi/sc-genrm-scaling``
(``llmonk/evaluate/eval_utils.py``, ``plot_success_rate.py``, ``math_pass_k.py``) on the
reference's own inputs: answer strings with ``"[invalidanswer]"``/``""`` for invalid ones, a
correctness lookup standing in for ``get_solution_correctness``, verification dicts with -1
for a missing p(yes)/p(no), and the global ``random`` seeded with 33. They call nothing in
``scoring.curves``. The text verdict is stored already parsed (the verification runs parse
it), so ``extract_final_verification`` is the dict lookup.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict
from fractions import Fraction

import numpy as np
import pytest
import scipy.special as scsp
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.curves import (
    CurvePoint,
    FlopsModel,
    Pool,
    Sample,
    Verification,
    compute,
    curves,
    expected_best_of,
    flops,
    group_answers,
    mean_estimates,
    measure_lambda,
    pass_at_k,
    problem_estimates,
    solution_score,
    verdict_value,
)

# ------------------------------------------------------------------ the reference, re-written


def ref_from_logprobs(p_yes, p_no):  # eval_utils:231-239
    if p_yes != -1:
        return p_yes
    elif p_no != -1:
        return 1 - p_no
    return None


def ref_extract(verification, use_hybrid, use_logprobs):  # eval_utils:242-261
    if use_hybrid:
        value = ref_from_logprobs(verification["p(yes)"], verification["p(no)"])
        if value:
            return value
        return verification["verification"]
    if use_logprobs:
        return ref_from_logprobs(verification["p(yes)"], verification["p(no)"])
    return verification["verification"]


def ref_solution_score(all_verifications, problem_id, solution_id, v):  # eval_utils:286-300
    if v > all_verifications.shape[-1]:
        raise Exception("Not enough verifications!")
    values = [x for x in all_verifications[problem_id, solution_id, :v] if not np.isnan(x)]
    return 0 if len(values) == 0 else np.mean(values)


def ref_is_invalid(answer):  # eval_utils:346-352
    return "invalidanswer" in answer or answer == ""


def ref_verifier_at_k(scores, k):  # eval_utils:311-318
    eps = 1e-9
    n = len(scores)
    numerators = [scores[i] * scsp.binom(n - i - 1, k - 1) for i in range(n - k + 1)]
    denominator = scsp.binom(n, k)
    return sum([x / (denominator + eps) for x in numerators])


def ref_best_of_once(pairs, k):  # eval_utils:337-341, one shuffle's outcome given
    ranked = sorted(pairs, key=lambda x: x[1], reverse=True)
    return ref_verifier_at_k(list(zip(*ranked, strict=True))[0], k)


def ref_prepare_best_of(scores, predictions, is_correct):  # eval_utils:325-333
    correctnesses = [is_correct(p) for p in predictions]
    scores = list(scores)
    for i in range(len(scores)):
        if ref_is_invalid(predictions[i]):
            scores[i] = 0
    return correctnesses, scores


def ref_best_of_k(scores, predictions, is_correct, k):  # eval_utils:321-343
    correctnesses, scores = ref_prepare_best_of(scores, predictions, is_correct)
    values = []
    for _ in range(100):
        z = list(zip(correctnesses, scores, strict=True))
        random.shuffle(z)
        values.append(ref_best_of_once(z, k))
    return np.mean(values)


def ref_vote_once(drawn, scores, predictions, is_correct):  # eval_utils:380-398, one draw given
    weighted = {}
    for pred, score in zip([predictions[i] for i in drawn], scores[drawn], strict=True):
        weighted[pred] = weighted.get(pred, 0) + score
    weighted["[invalidanswer]"] = -1
    weighted[""] = -1
    return is_correct(max(weighted, key=weighted.get))


def ref_vote_scores(scores, predictions):  # eval_utils:357-362
    scores = np.array(scores)
    scores[np.array([ref_is_invalid(p) for p in predictions])] = 0
    return scores


def ref_weighted_sc(scores, predictions, is_correct, s, reps):  # eval_utils:355-400
    scores = ref_vote_scores(scores, predictions)
    if s == np.size(scores):
        reps = 1
    successes = np.zeros(reps)
    draws = np.array([random.sample(range(len(scores)), s) for _ in range(reps)])
    for i in range(reps):
        successes[i] = ref_vote_once(draws[i], scores, predictions, is_correct)
    return float(np.mean(successes))


def ref_pass_at_k(n, c, k):  # math_pass_k.py:39-45
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def ref_problem(inputs, sc_sizes, sizes, vs, best_of, weighted, seed=33, reps=25):
    """compute_metrics_for_problem, plot_success_rate.py:60-144, for problem 0."""
    predictions, is_correct, all_verifications = inputs
    random.seed(seed)
    np.random.seed(seed)
    correctnesses = [is_correct(p) for p in predictions]
    out = {"coverage": {}, "majority": {}, "best_of": {}, "weighted": {}}
    for s in sc_sizes:
        out["coverage"][s] = ref_pass_at_k(len(correctnesses), np.sum(correctnesses), s)
    for s in sc_sizes:
        out["majority"][s] = ref_weighted_sc(
            np.ones(len(correctnesses)), predictions, is_correct, s, reps
        )
    verified = all_verifications.shape[1]
    for v in vs:
        scores = [ref_solution_score(all_verifications, 0, i, v) for i in range(verified)]
        for s in sizes:
            with_verifications = predictions[: np.size(scores)]
            if best_of:
                out["best_of"][(s, v)] = ref_best_of_k(scores, with_verifications, is_correct, s)
            if weighted:
                out["weighted"][(s, v)] = ref_weighted_sc(
                    scores, with_verifications, is_correct, s, reps
                )
    return out


def ref_inputs(pool: Pool, rule: str):
    """The reference's view of a pool: answer strings, a correctness lookup, the verdict
    array (plot:38-47) over the verified samples' verifications."""
    predictions = [
        s.answer if s.answer is not None else ("" if i % 2 else "[invalidanswer]")
        for i, s in enumerate(pool.samples)
    ]
    right = {s.answer for s in pool.samples if s.correct}

    def is_correct(answer):
        return answer in right

    use_hybrid, use_logprobs = rule == "hybrid", rule == "logprobs"
    rows = []
    for sample in pool.samples[: pool.verified]:
        row = []
        for v in sample.verifications:
            as_dict = {
                "p(yes)": -1 if v.p_yes is None else v.p_yes,
                "p(no)": -1 if v.p_no is None else v.p_no,
                "verification": v.verdict,
            }
            row.append(ref_extract(as_dict, use_hybrid, use_logprobs))
        rows.append(row)
    return predictions, is_correct, np.array([rows], dtype=float)


# ------------------------------------------------------------------ random data sets

COARSE = [0.0, 0.25, 0.5, 0.75, 1.0]


def random_pool(
    rng: random.Random, *, max_samples: int = 8, max_v: int = 4, coarse: bool = False
) -> Pool:
    """Ties (few answers, coarse verdicts), invalid answers, missing verdicts (including
    the hybrid rule's p(yes) = 0 fall-through), unverified samples. ``coarse``: every score
    is a dyadic fraction, so the reference's float totals are exact and ties are ties."""
    n = rng.randint(2, max_samples)
    verified = rng.randint(1, n)
    width = rng.randint(1, max_v)
    right = {"1"} if rng.random() < 0.7 else {"1", "2"}
    samples = []
    for i in range(n):
        answer = rng.choice(["1", "1", "2", "3", "4", None])
        verifications: tuple[Verification, ...] = ()
        if i < verified:
            while True:
                verifications = tuple(random_verification(rng, coarse) for _ in range(width))
                if not coarse or all(
                    dyadic_counts(verifications, rule) for rule in ("hybrid", "logprobs", "text")
                ):
                    break
        samples.append(
            Sample(
                answer, answer in right, tokens=rng.randint(50, 500), verifications=verifications
            )
        )
    return Pool(tuple(samples))


def random_verification(rng: random.Random, coarse: bool) -> Verification:
    def probability() -> float | None:
        if rng.random() < 0.35:
            return None
        return rng.choice(COARSE) if coarse or rng.random() < 0.4 else rng.random()

    return Verification(
        probability(), probability(), rng.choice([True, False, None]), tokens=rng.randint(10, 900)
    )


def dyadic_counts(verifications: tuple[Verification, ...], rule: str) -> bool:
    """Whether every prefix's mean is exact in binary (1, 2 or 4 verdicts, or none)."""
    present = 0
    for v in verifications:
        present += verdict_value(v, rule) is not None
        if present == 3:
            return False
    return True


def random_config(rng: random.Random, pool: Pool) -> dict:
    n, verified = len(pool.samples), pool.verified
    width = len(pool.samples[0].verifications)
    return {
        "sc_sizes": sorted(set(rng.sample(range(1, n + 1), rng.randint(1, n))) | {n}),
        "sizes": sorted(
            set(rng.sample(range(1, verified + 1), rng.randint(1, verified))) | {verified}
        ),
        "verification_counts": sorted(rng.sample(range(1, width + 1), rng.randint(1, width))),
    }


# ------------------------------------------------------------------ replay = the reference's numbers


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["hybrid", "logprobs", "text"]),
    st.booleans(),
    st.booleans(),
)
def test_it_replays_the_references_seed_33_numbers_exactly(
    seed: int, rule: str, best_of: bool, weighted: bool
) -> None:
    rng = random.Random(seed)
    pool = random_pool(rng, max_samples=12, max_v=5)
    config = random_config(rng, pool)
    ours = problem_estimates(
        pool, rule=rule, mode="replay", best_of=best_of, weighted=weighted, **config
    )
    ref = ref_problem(
        ref_inputs(pool, rule),
        config["sc_sizes"],
        config["sizes"],
        config["verification_counts"],
        best_of,
        weighted,
    )
    assert ours.pass_at == ref["coverage"]
    assert ours.majority == ref["majority"]
    assert ours.best_of == ref["best_of"]
    assert ours.weighted == ref["weighted"]


def test_it_replays_the_mean_over_problems_of_a_larger_data_set() -> None:
    """64 samples, 16 verified with 8 verifications: weights from the beta branch of
    SciPy's binom for the pool sizes, and plot:320-333's np.mean over problems."""
    rng = random.Random(7)
    pools = []
    for _ in range(5):
        samples = []
        for i in range(64):
            answer = rng.choice(["1", "2", "2", "3", None])
            verifications = (
                tuple(random_verification(rng, False) for _ in range(8)) if i < 48 else ()
            )
            samples.append(Sample(answer, answer == "2", verifications=verifications))
        pools.append(Pool(tuple(samples)))
    config = {"sc_sizes": [1, 4, 16, 64], "sizes": [1, 8, 24, 48], "verification_counts": [1, 4, 8]}
    ours = mean_estimates(
        [problem_estimates(p, mode="replay", weighted=True, **config) for p in pools]
    )
    refs = [
        ref_problem(
            ref_inputs(p, "hybrid"),
            config["sc_sizes"],
            config["sizes"],
            config["verification_counts"],
            True,
            True,
        )
        for p in pools
    ]
    for name, key in (
        ("majority", "majority"),
        ("best_of", "best_of"),
        ("weighted", "weighted"),
        ("pass_at", "coverage"),
    ):
        expected = {k: np.mean([r[key][k] for r in refs]) for k in refs[0][key]}
        assert getattr(ours, name) == expected


# ------------------------------------------------------------------ exact = the expectation


def brute_force(pool: Pool, rule: str, config: dict) -> dict:
    """The reference's procedure averaged over every draw it can make: every ordered
    S-subset random.sample can return, every order random.shuffle can give."""
    predictions, is_correct, all_verifications = ref_inputs(pool, rule)
    n, verified = len(predictions), all_verifications.shape[1]
    out = {"majority": {}, "best_of": {}, "weighted": {}}
    ones = ref_vote_scores(np.ones(n), predictions)
    for s in config["sc_sizes"]:
        draws = list(itertools.permutations(range(n), s))
        out["majority"][s] = np.mean(
            [ref_vote_once(np.array(d), ones, predictions, is_correct) for d in draws]
        )
    for v in config["verification_counts"]:
        scores = [ref_solution_score(all_verifications, 0, i, v) for i in range(verified)]
        with_verifications = predictions[:verified]
        correctnesses, zeroed = ref_prepare_best_of(scores, with_verifications, is_correct)
        pairs = list(zip(correctnesses, zeroed, strict=True))
        vote_scores = ref_vote_scores(scores, with_verifications)
        for s in config["sizes"]:
            shuffles = itertools.permutations(pairs)
            out["best_of"][(s, v)] = np.mean([ref_best_of_once(list(z), s) for z in shuffles])
            draws = list(itertools.permutations(range(verified), s))
            out["weighted"][(s, v)] = np.mean(
                [
                    ref_vote_once(np.array(d), vote_scores, with_verifications, is_correct)
                    for d in draws
                ]
            )
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["hybrid", "logprobs", "text"]))
def test_the_exact_mode_equals_a_brute_force_enumeration_of_the_references_draws(
    seed: int, rule: str
) -> None:
    rng = random.Random(seed)
    pool = random_pool(rng, max_samples=6, max_v=4, coarse=True)
    config = random_config(rng, pool)
    ours = problem_estimates(pool, rule=rule, weighted=True, **config)
    expected = brute_force(pool, rule, config)
    for name in ("majority", "best_of", "weighted"):
        got = getattr(ours, name)
        assert got.keys() == expected[name].keys()
        for key, value in expected[name].items():
            assert got[key] == pytest.approx(value, abs=1e-9), (name, key)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_exact_mode_equals_the_monte_carlo_average_of_the_reference(seed: int) -> None:
    """The reference run with seeds 0..R-1 instead of 33. Each per-seed number is a mean of
    d i.i.d. draws of a [0, 1] quantity (d = 25 subsets, 1 when S is the pool, 100
    shuffles), so by Hoeffding the average over R seeds is within
    sqrt(ln(2 / delta) / (2 R d)) of the expectation but with probability delta = 1e-6."""
    rng = random.Random(seed)
    pool = random_pool(rng, max_samples=8, max_v=4, coarse=True)
    config = random_config(rng, pool)
    rule = ["hybrid", "logprobs", "text", "hybrid"][seed - 1]
    runs = 300
    exact = problem_estimates(pool, rule=rule, weighted=True, **config)
    inputs = ref_inputs(pool, rule)
    per_seed = [
        ref_problem(
            inputs,
            config["sc_sizes"],
            config["sizes"],
            config["verification_counts"],
            True,
            True,
            seed=r,
        )
        for r in range(runs)
    ]

    def bound(draws: int) -> float:
        return math.sqrt(math.log(2 / 1e-6) / (2 * runs * draws))

    n, verified = len(pool.samples), pool.verified
    for s, value in exact.majority.items():
        mc = np.mean([r["majority"][s] for r in per_seed])
        assert abs(mc - value) <= bound(1 if s == n else 25), ("majority", s)
    for key, value in exact.best_of.items():
        mc = np.mean([r["best_of"][key] for r in per_seed])
        assert abs(mc - value) <= bound(100), ("best_of", key)
    for key, value in exact.weighted.items():
        mc = np.mean([r["weighted"][key] for r in per_seed])
        assert abs(mc - value) <= bound(1 if key[0] == verified else 25), ("weighted", key)


def test_the_exact_mode_has_no_noise_where_the_reference_has_none() -> None:
    """S = the whole pool and no ties: one outcome, so exact, replay and reference agree."""
    pool = Pool(
        (
            Sample("1", True, verifications=(Verification(0.9, None, None),)),
            Sample("2", False, verifications=(Verification(0.5, None, None),)),
            Sample("2", False, verifications=(Verification(0.6, None, None),)),
        )
    )
    config = {"sc_sizes": [3], "sizes": [3], "verification_counts": [1]}
    exact = problem_estimates(pool, weighted=True, **config)
    replay = problem_estimates(pool, mode="replay", weighted=True, **config)
    assert exact.majority == replay.majority == {3: 0.0}
    assert exact.weighted == replay.weighted == {(3, 1): 0.0}  # 1.1 for "2" beats 0.9
    assert exact.best_of == pytest.approx(replay.best_of, abs=1e-15)
    assert exact.best_of[(3, 1)] == pytest.approx(1.0, abs=1e-8)  # 1 / (1 + 1e-9), as the reference


def test_an_exact_weighted_vote_over_the_whole_pool_needs_no_subset_count() -> None:
    """Real-valued p(yes) on 60 samples: too many subset totals for S = 30, but S = 60 is
    the reference's single draw, whose totals are fixed."""
    rng = random.Random(3)
    samples = tuple(
        Sample(str(i % 3), i % 3 == 0, verifications=(Verification(rng.random(), None, None),))
        for i in range(60)
    )
    config = {"sc_sizes": [60], "sizes": [60], "verification_counts": [1]}
    exact = problem_estimates(Pool(samples), weighted=True, **config)
    replay = problem_estimates(Pool(samples), mode="replay", weighted=True, **config)
    assert exact.weighted == replay.weighted
    with pytest.raises(ValueError, match="replay"):
        problem_estimates(
            Pool(samples), sc_sizes=[1], sizes=[30], verification_counts=[1], weighted=True
        )


def test_a_majority_vote_splits_ties_as_the_reference_does_in_expectation() -> None:
    # two answers, two samples each, S = 4: a 2-2 tie, broken by which comes first: 1/2
    samples = [Sample("1", True), Sample("2", False), Sample("1", True), Sample("2", False)]
    estimates = problem_estimates(Pool(tuple(samples)), sc_sizes=[4])
    assert estimates.majority == {4: pytest.approx(0.5)}
    # S = 2 of 4: {1,1} wins, {2,2} loses, a 1-1 tie half: (1 + 4 * 0.5) / 6
    estimates = problem_estimates(Pool(tuple(samples)), sc_sizes=[2])
    assert estimates.majority == {2: pytest.approx(0.5)}
    samples[3] = Sample(None, False)  # an invalid answer never wins: {1,1}, and ties 1-x
    estimates = problem_estimates(Pool(tuple(samples)), sc_sizes=[2])
    # draws: {1a,1b} win; {1,2} x2 tie half; {1,inv} x2 win; {2,inv} lose
    assert estimates.majority == {2: pytest.approx((1 + 2 * 0.5 + 2) / 6)}


def test_best_of_averages_a_tie_block() -> None:
    scores, correct, valid = [0.5, 0.5, 0.1], [True, False, True], [True, True, True]
    # S = 3 keeps the top one: the tied pair, one of them right, leads half the time
    assert expected_best_of(scores, correct, valid, 3) == pytest.approx(0.5, abs=1e-8)
    # S = 1 is one random sample: 2 of 3 are right
    assert expected_best_of(scores, correct, valid, 1) == pytest.approx(2 / 3, abs=1e-8)
    # an invalid answer scores 0 whatever its verifier said
    assert expected_best_of([0.9, 0.5], [False, True], [False, True], 2) == pytest.approx(
        1.0, abs=1e-8
    )


# ------------------------------------------------------------------ scores, pass@k, lambda


def test_the_hybrid_rule_keeps_the_references_fall_through() -> None:
    assert verdict_value(Verification(0.7, 0.1, False)) == 0.7
    assert verdict_value(Verification(None, 0.4, False)) == pytest.approx(0.6)
    assert verdict_value(Verification(0.0, 0.9, True)) == 1.0  # p(yes) = 0 is falsy
    assert verdict_value(Verification(None, 1.0, False)) == 0.0  # 1 - p(no) = 0 falls through
    assert verdict_value(Verification(None, None, None)) is None
    assert verdict_value(Verification(0.0, 0.9, True), "logprobs") == 0.0
    assert verdict_value(Verification(0.3, None, True), "text") == 1.0


def test_a_solution_score_leaves_missing_verdicts_out_and_is_0_with_none() -> None:
    sample = Sample(
        "1",
        True,
        verifications=(
            Verification(None, None, None),
            Verification(0.5, None, None),
            Verification(1.0, None, None),
        ),
    )
    assert solution_score(sample, 1) == 0.0
    assert solution_score(sample, 2) == 0.5
    assert solution_score(sample, 3) == 0.75


def test_pass_at_k_equals_the_closed_form() -> None:
    for n in range(1, 31):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(closed), abs=1e-12)


def test_it_measures_lambda_from_the_stored_token_counts() -> None:
    pools = [
        Pool(
            (
                Sample(
                    "1",
                    True,
                    tokens=100,
                    verifications=(Verification(None, None, True, tokens=300),),
                ),
                Sample("2", False, tokens=300),
            )
        ),
        Pool(
            (
                Sample(
                    "1",
                    True,
                    tokens=200,
                    verifications=(Verification(None, None, True, tokens=500),) * 2,
                ),
            )
        ),
    ]
    # verifications: 300, 500, 500 -> 433.3; solutions: 100, 300, 200 -> 200
    assert measure_lambda(pools) == pytest.approx((1300 / 3) / 200)
    assert compute(8, 4, 0.5) == 8 * (1 + 0.5 * 4)
    assert flops(
        2, 3, policy_params=1e9, verifier_params=2e9, solution_tokens=100, verification_tokens=50
    ) == 2 * 2 * (1e9 * 100 + 3 * 2e9 * 50)


def test_curves_put_sc_genrm_and_a_prm_on_one_axis() -> None:
    rng = random.Random(11)
    pools = [
        Pool(
            tuple(
                Sample(
                    rng.choice(["1", "2", None]),
                    False,
                    100,
                    (Verification(rng.random(), None, None, 50),) * 2,
                )
                for _ in range(4)
            )
        )
        for _ in range(5)
    ]
    prm = [[rng.random() for _ in range(4)] for _ in pools]
    points = curves(
        pools, sc_sizes=[1, 2, 4], sizes=[1, 4], verification_counts=[1, 2], prm_scores=prm
    )
    assert {(p.method, p.solutions, p.verifications) for p in points} == {
        ("sc", 1, 0), ("sc", 2, 0), ("sc", 4, 0),
        ("genrm", 1, 1), ("genrm", 4, 1), ("genrm", 1, 2), ("genrm", 4, 2),
        ("prm", 1, 0), ("prm", 2, 0), ("prm", 4, 0),
    }  # fmt: skip
    by_key = {(p.method, p.solutions, p.verifications): p for p in points}
    assert by_key[("genrm", 4, 2)].compute == 4 * (1 + 0.5 * 2)  # lambda = 50 / 100
    assert by_key[("prm", 2, 0)].compute == 4.0
    assert asdict(by_key[("sc", 1, 0)]).keys() == {
        "method",
        "solutions",
        "verifications",
        "compute",
        "success_rate",
    }
    assert all(p.success_rate == 0.0 for p in points)  # nothing is correct
    on_flops = curves(
        pools, sc_sizes=[2], sizes=[2], verification_counts=[1], prm_scores=prm, prm_sizes=[2],
        flops_model=FlopsModel(policy_params=1e9, verifier_params=3e9, prm_params=1e9),
    )  # fmt: skip
    assert [p.compute for p in on_flops] == [
        2 * 2 * 1e9 * 100,
        2 * 2 * (1e9 * 100 + 3e9 * 50),
        2 * 2 * 1e9 * 100 * 2,
    ]
    assert all(isinstance(p, CurvePoint) for p in on_flops)


def test_prm_best_of_n_follows_the_prm_scores() -> None:
    samples = tuple(Sample(answer, answer == "1", tokens=100) for answer in ["2", "1", "3", None])
    pools = [Pool(samples), Pool(samples)]
    prm = [[0.5, 0.9, 0.1, 0.95], [0.5, 0.9, 0.1, 0.95]]  # the invalid answer's 0.95 counts as 0
    points = curves(pools, sc_sizes=[1, 4], prm_scores=prm, prm_lambda=0.25)
    by_key = {(p.method, p.solutions): p for p in points}
    assert by_key[("prm", 1)].success_rate == pytest.approx(1 / 4)
    assert by_key[("prm", 4)].success_rate == pytest.approx(1.0, abs=1e-8)
    assert by_key[("prm", 4)].compute == 4 * 1.25
    assert by_key[("sc", 4)].success_rate == pytest.approx(1 / 3)  # a three-way 1-1-1 tie


def test_curves_replay_equals_the_replayed_estimates() -> None:
    rng = random.Random(5)
    pools = [random_pool(rng, max_samples=8, max_v=3) for _ in range(4)]
    pools = [
        Pool(tuple(Sample(s.answer, s.correct, 10, s.verifications) for s in p.samples))
        for p in pools
    ]
    config = {"sc_sizes": [2], "sizes": [1], "verification_counts": [1]}
    points = curves(pools, mode="replay", lam=1.0, **config)
    estimates = mean_estimates(
        [problem_estimates(p, mode="replay", weighted=True, **config) for p in pools]
    )
    assert [p.success_rate for p in points] == [estimates.majority[2], estimates.best_of[(1, 1)]]


# ------------------------------------------------------------------ answers and bad input


def test_it_groups_answers_by_string_or_by_an_equivalence() -> None:
    pool = Pool((Sample("1/2", True), Sample("0.5", True), Sample(None, False), Sample("3", False)))
    assert group_answers(pool) == ([0, 1, -1, 2], {0: True, 1: True, 2: False})
    same = group_answers(pool, "math-verify", same_answer=lambda a, b: {a, b} == {"1/2", "0.5"})
    assert same == ([0, 0, -1, 1], {0: True, 1: False})
    # grouped, "1/2" and "0.5" win a 2-1 vote that splits 1-1-1 by string
    samples = (Sample("1/2", True), Sample("0.5", True), Sample("3", False))
    by_string = problem_estimates(Pool(samples), sc_sizes=[3])
    assert by_string.majority[3] == pytest.approx(2 / 3)


def test_it_refuses_bad_input_with_clear_errors() -> None:
    verified = Sample("1", True, verifications=(Verification(0.5, None, None),))
    pool = Pool((verified, Sample("2", False)))
    with pytest.raises(ValueError, match="cannot be correct"):
        Sample(None, True)
    with pytest.raises(ValueError, match="pass None"):
        Sample("", False)
    with pytest.raises(ValueError, match="pass None"):
        Sample("[invalidanswer]", False)
    with pytest.raises(ValueError, match="probability"):
        Verification(1.5, None, None)
    with pytest.raises(ValueError, match="probability"):
        Verification(None, -1.0, None)
    with pytest.raises(ValueError, match="at least one sample"):
        Pool(())
    with pytest.raises(ValueError, match="verified samples must come first"):
        Pool((Sample("2", False), verified))
    with pytest.raises(ValueError, match="graded"):
        group_answers(Pool((Sample("1", True), Sample("1", False))))
    with pytest.raises(ValueError, match="must be in 1..2"):
        problem_estimates(pool, sc_sizes=[3])
    with pytest.raises(ValueError, match="S must be in 1..1"):
        problem_estimates(pool, sc_sizes=[1], sizes=[2], verification_counts=[1])
    with pytest.raises(ValueError, match="only 1 verifications"):
        problem_estimates(pool, sc_sizes=[1], sizes=[1], verification_counts=[2])
    with pytest.raises(ValueError, match="V must be >= 1"):
        problem_estimates(pool, sc_sizes=[1], sizes=[1], verification_counts=[0])
    with pytest.raises(ValueError, match="go together"):
        problem_estimates(pool, sc_sizes=[1], sizes=[1])
    with pytest.raises(ValueError, match="mode"):
        problem_estimates(pool, sc_sizes=[1], mode="sampled")
    with pytest.raises(ValueError, match="rule"):
        problem_estimates(pool, sc_sizes=[1], rule="vibes")
    with pytest.raises(ValueError, match="none"):
        problem_estimates(
            Pool((Sample("1", True),)), sc_sizes=[1], sizes=[1], verification_counts=[1]
        )
    with pytest.raises(ValueError, match="k must be"):
        pass_at_k(4, 1, 0)
    with pytest.raises(ValueError, match="no verifications"):
        measure_lambda([Pool((Sample("1", True, tokens=5),))])
    with pytest.raises(ValueError, match="token counts"):
        measure_lambda([pool])
    with pytest.raises(ValueError, match="prm_scores"):
        curves([pool], sc_sizes=[1], prm_scores=[[0.5], [0.5]])
