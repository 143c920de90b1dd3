"""No page loads anything from another host (the README's "no CDN"): an owner of a
project with traces, a scored run, a Monte-Carlo run, a training run and logged RL
rollouts visits every page a user reaches in real Chromium; every request the pages
make goes to the live server on loopback, and no page logs a console error or a policy
refusal."""

from __future__ import annotations

import io
import json
import random
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from annotator import runs, training
from annotator.importing import import_file
from annotator.models import (
    JobStatus,
    Membership,
    MonteCarloRun,
    Project,
    Role,
    Trace,
    TraceMC,
    TrainingRun,
)
from annotator.rollouts import log_rollouts
from tests.factories import dashboard_records, rollout_records, score_file

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost"}

# Redoc's bundle always renders "API docs by Redocly" under its menu with an <img> of
# Redocly's logo from their CDN (no option leaves it out: hideLoading, hideLogo and the
# theme do not touch it). The Content-Security-Policy refuses it before anything leaves
# the browser, but Playwright still reports the attempt and Chromium logs the refusal:
# this one URL is the only one allowed, as a request and as a console error.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def owned(transactional_db, django_user_model, tmp_path):
    project = Project.objects.create(slug="offline", name="Offline")
    owner = django_user_model.objects.create_user("olga", password="pw-olga-123")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    rng = random.Random(5)
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in dashboard_records(rng)) + "\n")
    import_file(project, path, "jsonl")
    traces = list(Trace.objects.filter(project=project).order_by("id"))
    run = runs.import_scores(
        project,
        io.BytesIO(score_file(traces, rng, with_nan=False)),
        "scores.jsonl",
        name="prm-a",
        user=owner,
    )
    mc = MonteCarloRun.objects.create(
        project=project, name="mc", completer="openai:http://127.0.0.1:1", status=JobStatus.DONE
    )
    for trace in traces[:3]:
        TraceMC.objects.create(run=mc, trace=trace, first_error=-1)
    trained = training.create_training_run(project, owner, kind="qwen-prm", base_model="base")
    for step, loss in ((1, 0.9), (2, 0.7)):
        training.store_points(trained, step, {"loss": loss})
    TrainingRun.objects.filter(pk=trained.pk).update(
        status=JobStatus.DONE, progress_total=2, progress_done=2
    )
    log_rollouts(project.slug, rollout_records(30))
    return project, traces[0], run, mc, trained


def test_no_page_requests_anything_from_another_host(owned, new_page, live_server):
    project, trace, run, mc, trained = owned
    p = f"/p/{project.slug}"
    paths = [
        "/",
        f"{p}/",
        f"{p}/annotate/{trace.pk}/",
        f"{p}/traces/{trace.pk}/",
        f"{p}/review/",
        f"{p}/dashboard/",
        f"{p}/agreement/",
        f"{p}/runs/",
        f"{p}/runs/{run.pk}/",
        f"{p}/mc/",
        f"{p}/mc/{mc.pk}/",
        f"{p}/training/",
        f"{p}/training/{trained.pk}/",
        f"{p}/label-sets/",
        f"{p}/rewards/",
        f"{p}/import/",
        "/tokens/",
        f"{p}/settings/",
        "/scorers/",
        "/api/v1/docs/",
        "/api/v1/redoc/",
    ]
    page = new_page("olga", "pw-olga-123")
    requested: list[tuple[str, str]] = []
    errors: list[tuple[str, str]] = []
    where = {"path": ""}
    page.on("request", lambda request: requested.append((where["path"], request.url)))
    page.on(
        "console",
        lambda message: message.type == "error" and errors.append((where["path"], message.text)),
    )
    page.on("pageerror", lambda error: errors.append((where["path"], str(error))))
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and errors.append((where["path"], f"{response.status} {response.url}"))
        ),
    )
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", e =>
             console.error("CSP refused " + e.blockedURI + " (" + e.violatedDirective + ")"));"""
    )
    for path in paths:
        where["path"] = path
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        # Partials, charts and Redoc's own fetches come after the load event.
        page.wait_for_load_state("networkidle")
    expect(page.locator("h1").first).to_contain_text("Stepwise API")  # Redoc rendered

    visited = {path for path, _ in requested}
    assert visited == set(paths)  # every page was seen by the recorder
    external = [
        (path, url)
        for path, url in requested
        if urlsplit(url).scheme in ("http", "https")
        and urlsplit(url).hostname not in LOOPBACK
        and url != REDOC_LOGO
    ]
    assert external == []
    assert [(path, text) for path, text in errors if REDOC_LOGO not in text] == []
