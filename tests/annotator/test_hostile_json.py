"""Every API operation that takes a JSON body, walked from the API's own OpenAPI schema,
answers a hostile body with a 4xx, never a 500, and changes nothing when it refuses:
nesting deeper than the parser's stack, numbers past a float (``1e999``) and ``NaN``,
integers past 64 bits, NUL bytes in every string field, and a body that is not an
object. The operations' path ids name real objects of the project, so the body is read
(a 404 before the body would prove nothing)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from rest_framework.authtoken.models import Token

from annotator.models import (
    Annotation,
    ImportJob,
    JobStatus,
    MonteCarloRun,
    SamplingRun,
    ScoreImportJob,
    ScoringRun,
    TrainingRun,
    VerificationRun,
)
from tests.factories import make_trace

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
# (what the body is, the body as sent): each replaces the whole body.
WHOLE_BODIES = (
    ("nested past the parser's stack", DEEP),
    ("an object nested past the parser's stack", '{"a":' * 50_000 + "1" + "}" * 50_000),
    ("a list", "[1, 2, 3]"),
    ("a string", '"text"'),
    ("NaN", "NaN"),
)
# (what the field holds, the JSON text put in place of each field in turn).
FIELD_VALUES = (
    ("a number past a float", "1e999"),
    ("minus a number past a float", "-1e999"),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("an integer past 64 bits", str(10**40)),
    ("a NUL byte", json.dumps("a\x00b")),
    ("deep nesting", "[" * 5_000 + "]" * 5_000),
    ("an object of NUL bytes", json.dumps({k: "a\x00b" for k in ("split", "source", "name")})),
)


@pytest.fixture
def objects(project, users):
    """One of each object the operations' path ids name, in the project."""
    trace = make_trace(project, ext="t0", final_answer="4", final_answer_correct=True)
    Annotation.objects.create(trace=trace, annotator=users["owner"], first_error_step=-1)
    done = {"project": project, "status": JobStatus.DONE}
    return {
        "trace_id": trace.pk,
        "scoring_run": ScoringRun.objects.create(name="s", **done).pk,
        "mc_run": MonteCarloRun.objects.create(
            name="m", completer="openai:http://127.0.0.1:1", **done
        ).pk,
        "sampling_run": (sampling := SamplingRun.objects.create(name="g", n=2, **done)).pk,
        "verification_run": VerificationRun.objects.create(
            name="v", sampling_run=sampling, v=2, per_problem=1, **done
        ).pk,
        "training_run": TrainingRun.objects.create(name="t", **done).pk,
        "import_job": ImportJob.objects.create(project=project, status=JobStatus.DONE).pk,
        "score_import_job": ScoreImportJob.objects.create(
            project=project, status=JobStatus.DONE
        ).pk,
    }


def path_for(template: str, slug: str, objects: dict) -> str:
    """The operation's path with the project's slug and the ids of real objects."""
    kind = (
        "mc_run"
        if "/mc-runs/" in template
        else "sampling_run"
        if "/sampling-runs/" in template
        else "verification_run"
        if "/verification-runs/" in template
        else "training_run"
        if "/training-runs/" in template
        else "score_import_job"
        if "/runs/imports/" in template
        else "import_job"
        if "/imports/" in template
        else "scoring_run"
    )
    path = template.replace("{slug}", slug).replace("{trace_id}", str(objects["trace_id"]))
    return re.sub(r"\{(run_id|job_id)\}", str(objects[kind]), path)


def json_operations(client, headers: dict) -> list[tuple[str, str, dict]]:
    """(method, path template, request body schema) of every operation taking JSON."""
    answer = client.get("/api/v1/schema/", **headers)
    assert answer.status_code == 200, (answer.status_code, answer.content[:300])
    schema = yaml.safe_load(answer.content)
    found = []
    for template, item in schema["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = content["application/json"].get("schema", {})
                while "$ref" in body:
                    body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
                found.append((method, template, body))
    return found


def state(project) -> tuple:
    """What a refused request must leave as it was."""
    from annotator.models import Trace

    return (
        Annotation.objects.count(),
        Trace.objects.count(),
        ScoringRun.objects.count(),
        MonteCarloRun.objects.count(),
        SamplingRun.objects.count(),
        VerificationRun.objects.count(),
        TrainingRun.objects.count(),
        ImportJob.objects.count(),
        sorted(ImportJob.objects.values_list("status", flat=True)),
    )


def test_no_hostile_json_body_gets_a_server_error(client, project, users, objects):
    token = Token.objects.create(user=users["owner"]).key
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    operations = json_operations(client, headers)
    assert len(operations) >= 8, [(m, t) for m, t, _ in operations]
    sent, failures = 0, []
    for method, template, schema in operations:
        path = path_for(template, project.slug, objects)
        fields = list(schema.get("properties", {})) or ["name"]
        bodies = list(WHOLE_BODIES) + [
            (f"{field} = {what}", "{" + json.dumps(field) + ": " + text + "}")
            for field in fields
            for what, text in FIELD_VALUES
        ]
        before = state(project)
        for what, body in bodies:
            answer = getattr(client, method)(
                path, data=body, content_type="application/json", **headers
            )
            sent += 1
            after = state(project)
            if answer.status_code >= 500:
                failures.append((method, path, what, answer.status_code))
            elif answer.status_code >= 400 and (
                after != before or not answer["Content-Type"].startswith("application/json")
            ):
                failures.append((method, path, what, "changed state or answered non-JSON"))
            before = after
    assert not failures, failures
    assert sent > 100
