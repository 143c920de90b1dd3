"""A finished grounded run's paths as traces (in-process run against the scripted completer
server process): brought in once however often asked, the ``grounded`` label set equal to
the trees' own labels (``scoring.grounded.paths``), consensus with a Monte-Carlo label set
and with a critic's scoring run, the "tool and rollouts disagree" queue order, and the Label
page's tool transcripts."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotator import queue, runs
from annotator.grounded import create_grounded_run, run_grounded_job
from annotator.grounded_paths import bring_in_paths, run_source
from annotator.importing import import_file
from annotator.labelsets import LabelSetError, create_label_set
from annotator.models import (
    GroundedPath,
    GroundedRun,
    GroundedTree,
    JobStatus,
    LabelSetEntry,
    MonteCarloRun,
    Problem,
    QueueOrder,
    Step,
    Trace,
    TraceMC,
)
from scoring.grounded import expand, new_tree, record_rollout
from scoring.grounded.paths import tree_labels
from scoring.grounded.search import Problem as SearchProblem
from scoring.grounded.search import SearchState
from scoring.grounded.tree import Step as TreeStep
from scoring.grounded.tree import path_to
from scoring.labels import ratings_from_first_error
from scoring.tools import ToolVerdict
from tests.factories import make_trace
from tests.scoring import grounded_server

pytestmark = pytest.mark.django_db

NUMBERS = [(3, 4, 5), (2, 9, 3)]
HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def server():
    process, url = grounded_server.spawn()
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def problems(project, tmp_path) -> list[Problem]:
    records = [
        {
            "id": f"g-{i}",
            "problem": grounded_server.problem(a, b, c),
            "steps": ["A first try."],
            "answer": str((a + b) * c),
            "split": "train",
        }
        for i, (a, b, c) in enumerate(NUMBERS)
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_file(project, path, "jsonl")
    return list(Problem.objects.filter(project=project).order_by("id"))


def run_search(project, users, server) -> GroundedRun:
    run = create_grounded_run(
        project, users["owner"], generator=f"openai:{server}", model="generator", seed=3
    )
    summary = run_grounded_job(run)  # in this process: a worker's run is tests/jobs'
    GroundedRun.objects.filter(pk=run.pk).update(status=JobStatus.DONE, summary=summary)
    run.refresh_from_db()
    return run


@pytest.fixture
def grounded_run(project, users, problems, server) -> GroundedRun:
    return run_search(project, users, server)


def trees(run: GroundedRun) -> dict[int, SearchState]:
    return {
        row.problem_id: SearchState.from_dict(row.state)
        for row in GroundedTree.objects.filter(run=run, done=True)
    }


def brought_in(run: GroundedRun) -> dict[str, Trace]:
    return {t.external_id: t for t in Trace.objects.filter(source=run_source(run))}


def expected_labels(run: GroundedRun) -> dict[str, tuple[int, list[str]]]:
    """The trees' training labels, straight from ``tree_labels``: by path (problem, last
    node), the first step with a negative binarised score and the step texts."""
    out = {}
    for problem_id, state in trees(run).items():
        for path in tree_labels(state.tree):
            scores = [step.score for step in path.steps]
            first_error = next((i for i, s in enumerate(scores) if s < 0), -1)
            key = f"p{problem_id}/n{path.steps[-1].node}"
            out[key] = (first_error, [step.content for step in path.steps])
    return out


def disagreements(state: SearchState, last_node: int) -> int:
    """Steps of the path to ``last_node`` that are tree nodes with a signed value and a
    tool verdict of the opposite sign."""
    count = 0
    for node_id in path_to(state.tree, last_node)[1:]:
        node = state.tree.node(node_id)
        verdict = node.step.verdict
        if node.virtual or node.value == 0 or verdict is None:
            continue
        if (verdict.decision == "correct") != (node.value > 0) and verdict.decision != "error":
            count += 1
    return count


def test_a_finished_runs_paths_come_in_once_however_often_asked(
    grounded_run, project, users, client_for
) -> None:
    traces = brought_in(grounded_run)
    assert traces and grounded_run.summary["traces"] == len(traces)
    assert GroundedPath.objects.filter(run=grounded_run).count() == len(traces)
    problems = Problem.objects.count()
    steps = Step.objects.count()

    again = bring_in_paths(grounded_run)

    assert again["traces"] == 0 and again["written"] == 0
    assert again["duplicates"] == again["paths"] == grounded_run.summary["paths"]
    assert set(brought_in(grounded_run)) == set(traces)
    assert GroundedPath.objects.filter(run=grounded_run).count() == len(traces)
    assert (Problem.objects.count(), Step.objects.count()) == (problems, steps)
    for trace in traces.values():  # on the problem's own row, in its split
        assert trace.problem.traces.filter(source="jsonl").exists()
        assert trace.split == "train" and trace.source_format == "grounded"
    page = client_for(users["owner"]).get(
        reverse("grounded-run", args=[project.slug, grounded_run.pk])
    )
    assert f"{len(traces)} traces</a>" in page.content.decode()


def test_the_grounded_label_set_is_the_trees_own_labels_and_exports(
    grounded_run, project, tmp_path
) -> None:
    expected = expected_labels(grounded_run)
    assert {fe for fe, _ in expected.values()} >= {-1, 0}  # right paths and the planted step
    traces = brought_in(grounded_run)

    made = create_label_set(project, "tool-labels", "grounded", {"run": grounded_run.name})

    entries = {
        trace_id: (fe, ratings)
        for trace_id, fe, ratings in LabelSetEntry.objects.filter(label_set=made).values_list(
            "trace_id", "first_error_step", "step_ratings"
        )
    }
    assert entries == {
        traces[key].pk: (fe, ratings_from_first_error(fe, len(steps)))
        for key, (fe, steps) in expected.items()
    }
    for key, (_, steps) in expected.items():
        assert traces[key].step_texts == steps
    # the traces the filter drops are in the project, not in the set
    assert len(traces) > len(expected)

    out = tmp_path / "tool-labels.jsonl"
    call_command(
        "export_dataset",
        *("--project", project.slug, "--format", "trl", "--labels", "tool-labels"),
        *("--out", str(out)),
        verbosity=0,
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    exported = sorted((tuple(r["completions"]), tuple(r["labels"])) for r in records)
    wanted = []
    for fe, steps in expected.values():  # cut at the first error, as TRL stepwise data is
        n = len(steps) if fe == -1 else fe + 1
        wanted.append((tuple(steps[:n]), tuple(i != fe for i in range(n))))
    assert exported == sorted(wanted)


def test_a_run_with_no_paths_yet_makes_no_label_set(project, users, problems, server) -> None:
    run = create_grounded_run(
        project, users["owner"], generator=f"openai:{server}", model="generator"
    )
    with pytest.raises(LabelSetError, match="brought no paths in yet"):
        create_label_set(project, "early", "grounded", {"run": run.name})
    with pytest.raises(LabelSetError, match="no grounded run named"):
        create_label_set(project, "none", "grounded", {"run": "nope"})


def test_consensus_with_monte_carlo_keeps_the_traces_where_they_agree(
    grounded_run, project
) -> None:
    grounded = create_label_set(project, "tool", "grounded", {"run": grounded_run.name})
    labels = dict(
        LabelSetEntry.objects.filter(label_set=grounded).values_list("trace_id", "first_error_step")
    )
    mc = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:9/v1", status="done"
    )
    agree, disagree = set(), set()
    for k, (trace_id, first_error) in enumerate(sorted(labels.items())):
        n = Trace.objects.get(pk=trace_id).num_steps
        if k % 3 == 2:  # Monte-Carlo says otherwise
            first_error = -1 if first_error >= 0 else n - 1
            disagree.add(trace_id)
        else:
            agree.add(trace_id)
        hard = ratings_from_first_error(first_error, n, correct=True, wrong=False)
        hard = [True if h is None else h for h in hard]
        TraceMC.objects.create(
            run=mc, trace_id=trace_id, mc=[1.0 if h else 0.0 for h in hard], hard=hard,
            first_error=first_error,
        )  # fmt: skip
    other = Trace.objects.filter(source="jsonl").first()  # in the MC run only
    TraceMC.objects.create(run=mc, trace=other, mc=[1.0], hard=[True], first_error=-1)
    assert agree and disagree
    create_label_set(project, "mc-hard", "mc-hard", {"run": "mc"})

    both = create_label_set(project, "agreed", "consensus", {"a": "tool", "b": "mc-hard"})

    kept = set(LabelSetEntry.objects.filter(label_set=both).values_list("trace_id", flat=True))
    assert kept == agree
    assert both.summary["dropped"] == len(disagree) and both.summary["unmatched"] == 1


def test_consensus_with_a_critics_scoring_run(grounded_run, project, users) -> None:
    grounded = create_label_set(project, "tool", "grounded", {"run": grounded_run.name})
    labels = dict(
        LabelSetEntry.objects.filter(label_set=grounded).values_list("trace_id", "first_error_step")
    )
    lines, agree = [], set()
    for k, (trace_id, first_error) in enumerate(sorted(labels.items())):
        trace = Trace.objects.get(pk=trace_id)
        if k % 2:  # the critic finds every step right
            first_error = -1 if first_error >= 0 else 0
        else:
            agree.add(trace_id)
        scores = [
            0.9 if first_error == -1 or i < first_error else 0.1 for i in range(trace.num_steps)
        ]
        lines.append(json.dumps({"id": trace.external_id, "scores": scores}) + "\n")
    runs.import_scores(
        project, io.BytesIO("".join(lines).encode()), "c.jsonl", name="critic", user=users["owner"]
    )
    create_label_set(project, "critic", "scoring", {"run": "critic", "threshold": 0.5})

    both = create_label_set(project, "tool-critic", "consensus", {"a": "tool", "b": "critic"})

    kept = set(LabelSetEntry.objects.filter(label_set=both).values_list("trace_id", flat=True))
    assert kept == agree and both.summary["dropped"] == len(labels) - len(agree) > 0


def _order(project) -> list[int]:
    queue.ensure_ranked(project)
    return list(
        Trace.objects.filter(project=project, is_gold=False)
        .order_by("queue_rank", "id")
        .values_list("id", flat=True)
    )


def test_tool_vs_rollouts_serves_the_most_disagreeing_traces_first(
    project, users, problems, server
) -> None:
    # The order is chosen before the run brings its traces in: they are ranked on arrival.
    project.queue_order = QueueOrder.TOOL_VS_ROLLOUTS
    project.save()
    before = _order(project)
    run = run_search(project, users, server)
    states = trees(run)
    counts = {}
    for trace in Trace.objects.filter(source=run_source(run)):
        problem_id, node = trace.external_id.split("/")
        counts[trace.pk] = disagreements(states[int(problem_id[1:])], int(node[1:]))
    picked = sorted((t for t, c in counts.items() if c), key=lambda t: (-counts[t], t))
    assert picked, "the scripted search gives some disagreeing steps"
    rest = sorted(before + [t for t, c in counts.items() if not c])

    assert _order(project) == picked + rest
    served = queue.claim_next(project, users["annotator"])
    assert served.trace.pk == picked[0]


def checked(objective: str, action: str, terminal: bool = False) -> TreeStep:
    verdict = ToolVerdict("python", f"print({objective!r})", "ok", "correct")
    return TreeStep(objective, action, verdict, None, terminal)


def test_tool_vs_rollouts_ranks_more_disagreeing_steps_first(project, users) -> None:
    """A hand-grown tree: step A and its child B are judged right by the tool, and every
    rollout below them ends wrong, so A's and B's fused values are negative. The path cut
    at B disagrees twice, the path cut at A once."""
    plain = make_trace(project, ext="plain")
    searched = make_trace(project, ext="searched")
    tree = new_tree(searched.problem.text, "4")
    tree, a = expand(tree, 0, [checked("Halve", "4 / 2 = 2, \\boxed{t = 2}")])
    tree = record_rollout(tree, a, [checked("End", "\\boxed{5} <end>", terminal=True)], False)
    tree, b = expand(tree, a, [checked("Add one", "2 + 1 = 3, \\boxed{u = 3}")])
    tree = record_rollout(tree, b, [checked("End", "\\boxed{6} <end>", terminal=True)], False)
    run = GroundedRun.objects.create(project=project, name="hand", generator="openai:x", model="m")
    state = SearchState(SearchProblem(str(searched.problem_id), tree.problem, "4"), tree)
    GroundedTree.objects.create(
        run=run, problem=searched.problem, state=state.to_dict(), nodes=len(tree.nodes), done=True
    )
    project.queue_order = QueueOrder.TOOL_VS_ROLLOUTS
    project.save()
    bring_in_paths(run)
    traces = brought_in(run)
    twice, once = traces[f"p{searched.problem_id}/n{b}"], traces[f"p{searched.problem_id}/n{a}"]
    assert (twice.grounded_path.disagreements, once.grounded_path.disagreements) == (2, 1)

    assert _order(project) == [twice.pk, once.pk, plain.pk, searched.pk]


def test_the_label_page_shows_the_transcripts_to_owners_not_to_blind_annotators(
    grounded_run, project, users, client_for
) -> None:
    path = GroundedPath.objects.filter(run=grounded_run).exclude(verdicts=[None]).first()
    step = next(i for i, v in enumerate(path.verdicts) if v is not None)
    path.verdicts[step]["query"] = f"print(1) {HOSTILE}"
    path.save()
    url = reverse("annotate-trace", args=[project.slug, path.trace_id])

    owner = client_for(users["owner"]).get(url).content.decode()
    assert 'id="grounded-evidence"' in owner
    assert owner.count('class="gnode decision-') == path.trace.num_steps
    assert "print(1) &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in owner
    assert HOSTILE not in owner

    assert not project.show_model_scores
    blind = client_for(users["annotator"]).get(url)
    assert blind.status_code == 200 and f'data-trace-id="{path.trace_id}"' in blind.text
    assert "grounded-evidence" not in blind.text and "print(1)" not in blind.text
    # shown where the project shows model scores and the reference answer
    project.show_model_scores = True
    project.save()
    assert 'id="grounded-evidence"' in client_for(users["annotator"]).get(url).text
