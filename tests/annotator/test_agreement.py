"""Agreement statistics against hand-worked examples, and the agreement page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator import agreement
from annotator.labelling import Label, submit_label
from annotator.models import Membership, Role
from tests.factories import make_trace

# Two raters, five items. Worked by hand:
#   exact agreement 4/5 = 0.8
#   Cohen: p_o = 0.8; marginals a = {2:1, -1:2, 0:1, 1:1}, b = {2:1, -1:2, 1:2};
#          p_e = (1*1 + 2*2 + 1*0 + 1*2) / 25 = 7/25; kappa = (0.8 - 0.28) / 0.72 = 13/18
#   Krippendorff (nominal, no missing): n = 10 values, n_c = {2:2, -1:4, 0:1, 1:3};
#          D_o = 2/10 (one unit with 0 vs 1, two ordered pairs);
#          D_e = (100 - (4 + 16 + 1 + 9)) / (10 * 9) = 70/90; alpha = 1 - 0.2 / (7/9) = 26/35
A = {1: 2, 2: -1, 3: 0, 4: -1, 5: 1}
B = {1: 2, 2: -1, 3: 1, 4: -1, 5: 1}


def test_it_computes_cohens_kappa_as_worked_by_hand():
    assert agreement.cohen_kappa(list(A.values()), list(B.values())) == pytest.approx(13 / 18)


def test_it_computes_krippendorffs_alpha_as_worked_by_hand():
    assert agreement.krippendorff_alpha({"a": A, "b": B}) == pytest.approx(26 / 35)


def test_it_handles_missing_labels_in_alpha():
    # Item 6 has one label only: unpairable, so alpha is unchanged.
    assert agreement.krippendorff_alpha({"a": {**A, 6: 3}, "b": B, "c": {}}) == pytest.approx(
        26 / 35
    )
    # Three raters, worked by hand: units (0,0,0) and (0,1,-): n = 5, n_c = {0:4, 1:1};
    # D_o = (2 * 1/(2-1)) / 5 = 2/5; D_e = (25 - 17) / 20 = 2/5; alpha = 0.
    three = {"a": {1: 0, 2: 0}, "b": {1: 0, 2: 1}, "c": {1: 0}}
    assert agreement.krippendorff_alpha(three) == pytest.approx(0.0)


def test_it_returns_none_where_a_statistic_is_undefined():
    assert agreement.cohen_kappa([-1, -1], [-1, -1]) is None
    assert agreement.krippendorff_alpha({"a": {1: -1}, "b": {1: -1}}) is None
    assert agreement.krippendorff_alpha({"a": {1: -1}, "b": {2: 0}}) is None
    assert agreement.pair_agreements({"a": {1: 0}, "b": {2: 0}}) == []


def test_it_compares_steps_both_raters_judged():
    ratings = {"a": {1: [1, 1, -1, None], 2: [1, 1]}, "b": {1: [1, 0, 1, -1], 2: [1, -1]}}
    labels = {"a": {1: 2, 2: -1}, "b": {1: 3, 2: 1}}
    (pair,) = agreement.pair_agreements(labels, ratings)
    # item 1: steps 0-2 judged by both, one equal; item 2: two judged, one equal.
    assert (pair.steps_agreed, pair.steps) == (2, 5)
    assert pair.exact == 0.0 and pair.items == 2


def test_it_summarises_pairs_and_raters():
    labels = {"a": A, "b": B, "c": {1: 2, 2: 0}}
    pairs = agreement.pair_agreements(labels)
    assert [(p.rater_a, p.rater_b, p.items, p.agreed) for p in pairs] == [
        ("a", "b", 5, 4),
        ("a", "c", 2, 1),
        ("b", "c", 2, 1),
    ]
    summary = agreement.summarise(labels, pairs)
    assert (summary.items, summary.pairs, summary.agreed) == (5, 9, 6)
    raters = {r.rater: r for r in agreement.rater_agreements(labels)}
    assert (raters["c"].comparisons, raters["c"].agreed) == (4, 2)
    assert raters["a"].exact == pytest.approx(5 / 7)


def test_it_shows_agreement_and_throughput_on_the_page(
    project, users, django_user_model, client_for
):
    bea = django_user_model.objects.create_user("bea")
    Membership.objects.create(project=project, user=bea, role=Role.ANNOTATOR)
    alan = users["annotator"]
    traces = [make_trace(project, 3, ext=f"t{i}") for i in range(5)]
    for trace, a, b in zip(traces, A.values(), B.values(), strict=True):
        a, b = min(a, 2), min(b, 2)
        submit_label(project, trace, alan, Label(a, None), seconds_spent=30)
        submit_label(project, trace, bea, Label(b, None), seconds_spent=60)
    submit_label(project, traces[0], bea, Label(A[1], None), seconds_spent=60)  # a second version
    page = client_for(users["reviewer"]).get(reverse("agreement", args=[project.slug]))
    assert page.status_code == 200
    quality = page.context["quality"]
    assert quality.summary.exact == pytest.approx(0.8)
    assert quality.summary.alpha == pytest.approx(26 / 35)
    assert quality.pairs[0].kappa == pytest.approx(13 / 18)
    assert b'id="krippendorff-alpha">0.743<' in page.content
    assert b'class="figure kappa">0.722<' in page.content
    rows = {r.name: r for r in quality.annotators}
    assert rows["alan"].median_seconds == 30 and rows["alan"].traces_per_hour == pytest.approx(120)
    # bea: five traces, one of them labelled twice (60 + 60 s): median 60, 5 per 360 s.
    assert rows["bea"].median_seconds == 60
    assert rows["bea"].traces_per_hour == pytest.approx(5 / (360 / 3600))
