"""Solve-or-verify curves: ``scoring.curves`` against the reference's own estimator loop.

Synthetic data, seeded: ``--problems`` (128) problems of ``--solutions`` (256) sampled
solutions, each verified ``--verifications`` (32) times, as the paper's MATH runs. Answers
are a few integers per problem (ties in the votes) and about 8 % invalid ones; a
verification has a real-valued p(yes) (higher on correct solutions), sometimes only p(no),
sometimes neither, and a text verdict that is sometimes missing: the "hybrid" rule's every
branch is taken. The sizes are the reference's MATH configs (``configs/*.yaml``): SC and
best-of-S at S = 1, 2, 4... 256, V = 1, 2, 4... 32.

The reference procedure is written out below from ``nishadsinghi/sc-genrm-scaling`` at
1d310ee (``llmonk/evaluate/eval_utils.py`` as ``eval_utils:LINE``, ``plot_success_rate.py``
as ``plot:LINE``, ``math_pass_k.py`` as ``pass_k:LINE``), run as the reference runs it: per
problem ``random.seed(33)``, then coverage, majority vote, and for each V and S best-of-S
and weighted SC (its default run turns all four on, plot:521-526), each with its per-draw
Python loop; then ``np.mean`` over problems. It calls nothing in ``scoring``, and runs in
one process, as our path does (the reference spreads problems over a process pool; so
could we).

Printed: whether ``curves(mode="replay")`` gives the reference's numbers exactly (every SC
and GenRM point), how far the exact expectation (``mode="exact"``) is from them (the
reference's sampling noise), and the wall time of each with the speed-ups, in this one run.

    .venv/bin/python bench/curves.py [--problems 128] [--solutions 256] [--verifications 32]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import scipy.special as scsp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.curves import Pool, Sample, Verification, curves  # noqa: E402

INVALID = "[invalidanswer]"

# ---------------------------------------------------------------- synthetic data


def synthetic(
    problems: int, solutions: int, verifications: int, seed: int
) -> tuple[list[Pool], list[tuple[list[str], str, list[list[dict]]]]]:
    """The same data twice: as our pools, and as the reference holds it (answer strings
    with ``"[invalidanswer]"``, the gold string, verification dicts with -1 for a missing
    probability and the text verdict already parsed)."""
    rng = random.Random(seed)
    pools, raw = [], []
    for _ in range(problems):
        gold = str(rng.randint(0, 9))
        options = [gold] + rng.sample([str(x) for x in range(10, 40)], rng.randint(1, 6))
        weights = [rng.random() for _ in options]
        answers: list[str] = []
        for _ in range(solutions):
            answers.append(INVALID if rng.random() < 0.08 else rng.choices(options, weights)[0])
        rows = []
        for answer in answers:
            lean = 0.65 if answer == gold else 0.35
            row = []
            for _ in range(verifications):
                draw = rng.random()
                p_yes = -1.0 if draw < 0.15 else min(1.0, max(0.0, rng.gauss(lean, 0.25)))
                p_no = -1.0 if draw < 0.05 or rng.random() < 0.3 else 1.0 - lean
                verdict = rng.choice([True, False, None]) if rng.random() < 0.5 else None
                row.append({"p(yes)": p_yes, "p(no)": p_no, "verification": verdict})
            rows.append(row)
        raw.append((answers, gold, rows))
        pools.append(
            Pool(
                tuple(
                    Sample(
                        None if a == INVALID else a,
                        a == gold,
                        verifications=tuple(
                            Verification(
                                None if d["p(yes)"] == -1 else d["p(yes)"],
                                None if d["p(no)"] == -1 else d["p(no)"],
                                d["verification"],
                            )
                            for d in row
                        ),
                    )
                    for a, row in zip(answers, rows, strict=True)
                )
            )
        )
    return pools, raw


# ---------------------------------------------------------------- the reference, written out


def ref_from_logprobs(p_yes, p_no):  # eval_utils:231-239
    if p_yes != -1:
        return p_yes
    elif p_no != -1:
        return 1 - p_no
    else:
        return None


def ref_extract(verification):  # eval_utils:242-248, use_hybrid=True
    value = ref_from_logprobs(verification["p(yes)"], verification["p(no)"])
    if value:
        return value
    return verification["verification"]  # extract_final_verification's result, stored


def ref_solution_score(all_verifications, problem_id, solution_id, v):  # eval_utils:286-300
    if v > all_verifications.shape[-1]:
        raise Exception("Not enough verifications!")
    verifications = all_verifications[problem_id, solution_id, :v]
    verifications = [x for x in verifications if not np.isnan(x)]
    if len(verifications) == 0:
        return 0
    return np.mean(verifications)


def ref_is_invalid(answer):  # eval_utils:346-352
    return "invalidanswer" in answer or answer == ""


def ref_verifier_at_k(scores, k):  # eval_utils:311-318
    eps = 1e-9
    n = len(scores)
    numerators = [scores[i] * scsp.binom(n - i - 1, k - 1) for i in range(n - k + 1)]
    denominator = scsp.binom(n, k)
    fracs = [x / (denominator + eps) for x in numerators]
    return sum(fracs)


def ref_best_of_k(solution_scores, predicted, gold, k):  # eval_utils:321-343
    correctnesses = [predicted[i] == gold for i in range(len(solution_scores))]
    for i in range(len(solution_scores)):  # in place, as there
        if ref_is_invalid(predicted[i]):
            solution_scores[i] = 0
    all_values = []
    for _ in range(100):
        z = list(zip(correctnesses, solution_scores, strict=True))
        random.shuffle(z)
        z = sorted(z, key=lambda x: x[1], reverse=True)
        all_values.append(ref_verifier_at_k(list(zip(*z, strict=True))[0], k))
    return np.mean(all_values)


def ref_weighted_sc(solution_scores, predicted, gold, s, reps):  # eval_utils:355-400
    solution_scores = np.array(solution_scores)
    invalid = np.array([ref_is_invalid(p) for p in predicted])
    solution_scores[invalid] = 0
    if s == np.size(solution_scores):
        reps = 1
    successes = np.zeros(reps)
    total = len(solution_scores)
    all_samples = np.array([random.sample(range(total), s) for _ in range(reps)])
    for i in range(reps):
        drawn = all_samples[i]
        weighted = {}
        for pred, score in zip([predicted[j] for j in drawn], solution_scores[drawn], strict=True):
            weighted[pred] = weighted.get(pred, 0) + score
        weighted[INVALID] = -1
        weighted[""] = -1
        successes[i] = max(weighted, key=weighted.get) == gold
    return float(np.mean(successes))


def ref_pass_at_k(n, c, k):  # pass_k:39-45
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def ref_problem(problem_id, all_verifications, golds, predictions, sc_sizes, sizes, vs):
    """compute_metrics_for_problem (plot:60-144), best_of_n and weighted_sc on."""
    np.random.seed(33)
    random.seed(33)
    gold, predicted = golds[problem_id], predictions[problem_id]
    correctnesses = [p == gold for p in predicted]
    out = {"coverage": {}, "majority": {}, "best_of": {}, "weighted": {}}
    for s in sc_sizes:
        out["coverage"][s] = ref_pass_at_k(len(correctnesses), np.sum(correctnesses), s)
    for s in sc_sizes:
        out["majority"][s] = ref_weighted_sc(np.ones(len(correctnesses)), predicted, gold, s, 25)
    verified = np.shape(all_verifications)[1]
    for v in vs:
        scores = [ref_solution_score(all_verifications, problem_id, j, v) for j in range(verified)]
        for s in sizes:
            with_verifications = predicted[: np.size(scores)]
            out["best_of"][(s, v)] = ref_best_of_k(scores, with_verifications, gold, s)
            out["weighted"][(s, v)] = ref_weighted_sc(scores, with_verifications, gold, s, 25)
    return out


def reference(raw, sc_sizes, sizes, vs) -> dict:
    """plot:38-49 (the verdict array) and plot:286-333 (means over problems)."""
    golds = [gold for _, gold, _ in raw]
    predictions = [answers for answers, _, _ in raw]
    all_verifications = np.array(
        [
            np.array([[ref_extract(d) for d in row] for row in rows], dtype=float)
            for _, _, rows in raw
        ]
    )
    results = [
        ref_problem(i, all_verifications, golds, predictions, sc_sizes, sizes, vs)
        for i in range(len(raw))
    ]
    return {
        name: {key: np.mean([r[name][key] for r in results]) for key in results[0][name]}
        for name in ("coverage", "majority", "best_of", "weighted")
    }


# ---------------------------------------------------------------- the run


def as_table(points) -> dict:
    return {(p.method, p.solutions, p.verifications): p.success_rate for p in points}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--solutions", type=int, default=256)
    parser.add_argument("--verifications", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pools, raw = synthetic(args.problems, args.solutions, args.verifications, args.seed)
    sc_sizes = [2**i for i in range(args.solutions.bit_length()) if 2**i <= args.solutions]
    vs = [2**i for i in range(args.verifications.bit_length()) if 2**i <= args.verifications]
    config = {"sc_sizes": sc_sizes, "sizes": sc_sizes, "verification_counts": vs, "lam": 1.0}
    print(
        f"{args.problems} problems x {args.solutions} solutions x {args.verifications} "
        f"verifications; S = {sc_sizes}, V = {vs}; hybrid verdicts"
    )

    started = time.perf_counter()
    exact = as_table(curves(pools, mode="exact", **config))
    exact_s = time.perf_counter() - started
    print(f"ours, exact expectation:  {exact_s:8.1f} s", flush=True)

    started = time.perf_counter()
    replay = as_table(curves(pools, mode="replay", **config))
    replay_s = time.perf_counter() - started
    print(f"ours, replay of the draws:{replay_s:8.1f} s", flush=True)

    started = time.perf_counter()
    ref = reference(raw, sc_sizes, sc_sizes, vs)
    ref_s = time.perf_counter() - started
    print(f"reference loop:           {ref_s:8.1f} s", flush=True)

    expected = {("sc", s, 0): float(ref["majority"][s]) for s in sc_sizes}
    expected |= {("genrm", s, v): float(ref["best_of"][(s, v)]) for s in sc_sizes for v in vs}
    same = replay == expected
    differing = [key for key in expected if replay.get(key) != expected[key]]
    print(
        f"replay == reference, all {len(expected)} points bit for bit: {same}"
        + (f" (differ at {differing[:5]})" if differing else "")
    )
    noise = max(abs(exact[key] - expected[key]) for key in expected)
    print(f"exact vs reference: largest difference {noise:.4f} (the reference's draw noise)")
    print(f"speed-up, exact vs reference:  {ref_s / exact_s:6.1f}x")
    print(f"speed-up, replay vs reference: {ref_s / replay_s:6.1f}x")


if __name__ == "__main__":
    main()
