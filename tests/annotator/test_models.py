"""Rules on the models: membership rights, a trace's verdict, rater names, padded
ratings, and reading traces with their steps in chunks."""

from __future__ import annotations

import dataclasses

import pytest

from annotator.models import (
    Annotation,
    AnnotationKind,
    Membership,
    Role,
    Trace,
    Verdict,
    pad_ratings,
    rater_name,
    read_with_steps,
)
from tests.factories import make_trace


@pytest.mark.parametrize(
    ("role", "manage", "review", "all_labels"),
    [
        (Role.OWNER, True, True, True),
        (Role.REVIEWER, False, True, True),
        (Role.ANNOTATOR, False, False, False),
    ],
)
def test_it_gives_each_role_its_rights(project, users, role, manage, review, all_labels):
    membership = Membership(project=project, user=users["outsider"], role=role)
    assert membership.may_manage() is manage
    assert membership.may_review() is review
    assert membership.sees_all_labels() is all_labels


def test_it_hides_the_reference_answer_from_annotators_only_where_the_project_says(project, users):
    annotator = Membership(project=project, user=users["outsider"], role=Role.ANNOTATOR)
    reviewer = Membership(project=project, user=users["outsider"], role=Role.REVIEWER)
    assert annotator.sees_reference_answer() and reviewer.sees_reference_answer()
    project.show_reference_answer = False
    assert not annotator.sees_reference_answer()
    assert reviewer.sees_reference_answer()


def label(kind=AnnotationKind.LABEL, first_error=None, ratings=None, pk=1) -> Annotation:
    return Annotation(id=pk, kind=kind, first_error_step=first_error, step_ratings=ratings)


def test_a_verdict_is_the_annotators_label_when_they_agree():
    verdict = Verdict.resolve(
        [label(first_error=1, ratings=[1, -1, None], pk=2), label(first_error=1, pk=3)]
    )
    assert verdict == Verdict(1, [1, -1, None], AnnotationKind.LABEL)
    assert verdict.is_labelled and not verdict.disagreement


def test_a_verdict_says_when_annotators_disagree():
    verdict = Verdict.resolve([label(first_error=1, pk=2), label(first_error=-1, pk=3)])
    assert verdict.disagreement
    assert not verdict.is_labelled and verdict.first_error_step is None


def test_a_reviewers_verdict_wins_the_newest_adjudication_before_gold():
    annotations = [
        label(first_error=1, pk=1),
        label(first_error=2, pk=2),
        label(AnnotationKind.GOLD, first_error=0, pk=3),
        label(AnnotationKind.ADJUDICATION, first_error=-1, pk=4),
        label(AnnotationKind.ADJUDICATION, first_error=2, ratings=[1, 1, -1], pk=5),
    ]
    assert Verdict.resolve(annotations) == Verdict(2, [1, 1, -1], AnnotationKind.ADJUDICATION)
    assert Verdict.resolve(annotations[:3]) == Verdict(0, None, AnnotationKind.GOLD)


def test_a_verdict_without_labels_is_none_and_reviewed_only_ignores_annotators():
    assert Verdict.resolve([]) == Verdict()
    assert Verdict.resolve([label(pk=1)]) == Verdict()  # gave up: no first error
    assert Verdict.resolve([label(first_error=1)], reviewed_only=True) == Verdict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        Verdict().first_error_step = 1


def test_it_names_raters_and_pads_ratings(project, users):
    assert rater_name("alan") == "alan"
    assert rater_name("import-prm800k", "labeller-7") == "import-prm800k:labeller-7"
    annotation = Annotation(annotator=users["annotator"], external_annotator="x")
    assert annotation.rater_name == "alan:x"
    assert pad_ratings([1, -1], 4) == [1, -1, None, None]
    assert pad_ratings([1, 1, -1], 2) == [1, 1]
    assert pad_ratings(None, 2) == [None, None]
    assert Annotation(step_ratings=[1]).ratings_by_step(3) == [1, None, None]


def test_it_reads_traces_with_their_steps_in_two_queries_a_chunk(
    project, django_assert_num_queries
):
    made = [make_trace(project, n, ext=f"w{n}") for n in (3, 1, 4, 2, 5)]
    traces = Trace.objects.filter(project=project)
    # Five traces in chunks of two: three chunks, two queries each (the last is short,
    # so no query looks for a fourth).
    with django_assert_num_queries(6):
        read = list(traces.with_steps(chunk_size=2))
    assert [t.pk for t in read] == [t.pk for t in made]
    assert [t.step_texts for t in read] == [
        [f"step {i} of w{n}" for i in range(n)] for n in (3, 1, 4, 2, 5)
    ]
    # Full chunks: one more query finds nothing after the last.
    with django_assert_num_queries(2 * 1 + 1):
        assert len(list(traces.with_steps(chunk_size=5))) == 5
    with django_assert_num_queries(2):
        assert [t.num_steps for t in traces.filter(num_steps__gt=3).with_steps()] == [4, 5]


def test_it_reads_the_steps_of_a_trace_loaded_alone_once(project, django_assert_num_queries):
    trace = Trace.objects.get(pk=make_trace(project, 3, ext="alone").pk)
    with django_assert_num_queries(1):
        assert trace.step_texts == ["step 0 of alone", "step 1 of alone", "step 2 of alone"]
        assert len(trace.step_texts) == 3


def save_label(trace, user, first_error, *, kind=AnnotationKind.LABEL, latest=True, ratings=None):
    return Annotation.objects.create(
        trace=trace,
        annotator=user,
        kind=kind,
        first_error_step=first_error,
        step_ratings=ratings,
        is_latest=latest,
    )


def test_it_resolves_the_verdict_of_every_trace_from_the_latest_annotations(project, users):
    agreed, disputed, adjudicated, bare = (make_trace(project, ext=f"v{i}") for i in range(4))
    save_label(agreed, users["owner"], 0, latest=False)  # an old version: not counted
    save_label(agreed, users["owner"], 1, ratings=[1, -1, None])
    save_label(agreed, users["annotator"], 1)
    save_label(disputed, users["owner"], 0)
    save_label(disputed, users["annotator"], 2)
    save_label(adjudicated, users["annotator"], 2)
    save_label(adjudicated, users["reviewer"], -1, kind=AnnotationKind.ADJUDICATION)
    verdicts = Annotation.objects.filter(trace__project=project).verdicts(chunk_size=2)
    assert verdicts == {
        agreed.pk: Verdict(1, [1, -1, None], AnnotationKind.LABEL),
        disputed.pk: Verdict(kind=AnnotationKind.LABEL, disagreement=True),
        adjudicated.pk: Verdict(-1, None, AnnotationKind.ADJUDICATION),
    }
    assert bare.pk not in verdicts
    reviewed = Annotation.objects.filter(trace__project=project).verdicts(reviewed_only=True)
    assert {pk for pk, v in reviewed.items() if v.is_labelled} == {adjudicated.pk}


def test_it_narrows_annotations_to_the_latest_labels_of_a_user(project, users):
    trace = make_trace(project)
    old = save_label(trace, users["annotator"], 0, latest=False)
    mine = save_label(trace, users["annotator"], 1)
    save_label(trace, users["owner"], 1)
    save_label(trace, users["reviewer"], 1, kind=AnnotationKind.GOLD)
    assert list(Annotation.objects.latest_label_by(users["annotator"])) == [mine]
    assert set(Annotation.objects.by(users["annotator"])) == {old, mine}
    assert Annotation.objects.latest_versions().labels().count() == 2
    annotator = project.memberships.get(user=users["annotator"])
    reviewer = project.memberships.get(user=users["reviewer"])
    assert set(trace.annotations.visible_to(annotator)) == {old, mine}
    assert trace.annotations.latest_versions().visible_to(reviewer).count() == 3
    assert trace.annotations.latest_versions().visible_to(annotator).counts_by_trace() == {
        trace.pk: 1
    }


def test_it_selects_traces_by_split_generator_source_and_labels(project, users):
    a = make_trace(project, ext="a", split="test", generator="g1")
    b = make_trace(project, ext="b", split="test", generator="g2")
    c = make_trace(project, ext="c", split="train", generator="g1")
    save_label(b, users["owner"], 0)
    save_label(c, users["annotator"], 1)
    traces = Trace.objects.filter(project=project)
    assert list(traces.selected(split="test")) == [a, b]
    assert list(traces.selected(generator="g1", source="test")) == [a, c]
    assert list(traces.selected(source="elsewhere")) == []
    assert list(traces.selected(labelled="yes")) == [b, c]
    assert list(traces.selected(labelled="no")) == [a]
    # A blind annotator's "labelled" is their own labels only.
    annotator = project.memberships.get(user=users["annotator"])
    assert list(traces.selected(labelled="yes", seen_by=annotator)) == [c]
    assert list(traces.selected(labelled="no", seen_by=annotator)) == [a, b]
    assert traces.facets() == {"splits": ["test", "train"], "generators": ["g1", "g2"]}


def test_it_hides_reference_traces_from_members_who_may_not_see_the_answer(project, users):
    solution = make_trace(project, ext="s", generator="g1")
    reference = make_trace(project, ext="r", generator="reference")
    annotator = project.memberships.get(user=users["annotator"])
    reviewer = project.memberships.get(user=users["reviewer"])
    traces = Trace.objects.filter(project=project)
    assert list(traces.visible_to(annotator)) == [solution, reference]
    project.show_reference_answer = False
    project.save()
    annotator.refresh_from_db()
    assert list(traces.visible_to(annotator)) == [solution]
    assert traces.visible_to(annotator).facets()["generators"] == ["g1"]
    assert list(traces.visible_to(reviewer)) == [solution, reference]


def test_it_reads_traces_in_keyset_chunks_as_the_reader_returns_them(project):
    made = [make_trace(project, n, ext=f"k{i}") for i, n in enumerate((3, 1, 3, 2, 1))]
    traces = Trace.objects.filter(project=project)
    chunks = list(traces.chunks(2, read=lambda page: list(page.only("id"))))
    assert [[t.pk for t in chunk] for chunk in chunks] == [
        [made[0].pk, made[1].pk],
        [made[2].pk, made[3].pk],
        [made[4].pk],
    ]
    # Shortest first: the key (num_steps, id) orders ties by id, and no trace is read twice.
    chunks = list(traces.chunks(2, read=read_with_steps, by=("num_steps", "id")))
    assert [[t.external_id for t in chunk] for chunk in chunks] == [
        ["k1", "k4"],
        ["k3", "k0"],
        ["k2"],
    ]
    assert chunks[0][0].step_texts == ["step 0 of k1"]
