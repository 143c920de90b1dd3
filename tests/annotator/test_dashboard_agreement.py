"""The Agreement page's statistics stay exact and fast: Cohen's kappa written out
equals scikit-learn's, and computing it no longer imports scikit-learn."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from annotator.agreement import cohen_kappa


@pytest.mark.parametrize("seed", range(20))
def test_cohen_kappa_equals_scikit_learn(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(seed)
    n = rng.randint(1, 40)
    categories = list(range(-1, rng.randint(0, 6)))
    a = [rng.choice(categories) for _ in range(n)]
    b = [x if rng.random() < 0.6 else rng.choice(categories) for x in a]
    expected = cohen_kappa_score([str(x) for x in a], [str(x) for x in b])
    got = cohen_kappa(a, b)
    if len(set(a) | set(b)) < 2 or expected != expected:  # one category, or NaN
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_kappa_is_none_when_both_raters_use_one_label_each_and_it_matches():
    assert cohen_kappa([1, 1], [1, 1]) is None
    assert cohen_kappa([], []) is None


def test_agreement_statistics_do_not_import_scikit_learn():
    code = (
        "import sys; from annotator import agreement;"
        "agreement.pair_agreements({'a': {1: 0, 2: -1}, 'b': {1: 0, 2: 1}});"
        "agreement.krippendorff_alpha({'a': {1: 0, 2: -1}, 'b': {1: 0, 2: 1}});"
        "assert 'sklearn' not in sys.modules, 'sklearn imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
