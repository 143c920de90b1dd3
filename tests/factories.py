"""What the tests build their cases from: rows (traces with their problem and steps),
records and score files to import, synthetic training data, and the shared data files.

Plain functions, imported by the test modules that need them; fixtures live in the
conftests. Nothing here is a test, so no test module imports from another.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scoring.types import Trace as ScoringTrace

if TYPE_CHECKING:
    from annotator.models import Trace

# ``../shared/data`` beside the checkout: the real datasets the tests import and score.
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def sqlite_env(var: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process on the embedded path (what ``make demo`` runs
    without PostgreSQL or Redis): SQLite and the filesystem broker under ``var``, the
    app's own settings, this checkout importable."""
    shared = ("DATABASE_URL", "CELERY_BROKER_URL", "STEPWISE_MODEL_DIR")
    return (
        {k: v for k, v in os.environ.items() if k not in shared}
        | {
            "STEPWISE_VAR_DIR": str(var),
            "DJANGO_SETTINGS_MODULE": "annotator.settings",
            "PYTHONPATH": str(ROOT),
        }
        | extra
    )


PROCESSBENCH_GSM8K = DATA_DIR / "processbench-gsm8k" / "gsm8k.json"

# A request header as htmx sends it, so a view answers with its partial.
HTMX = {"HTTP_HX_REQUEST": "true"}


def make_trace(project, n_steps: int = 3, *, ext: str | None = None, steps=None, **fields) -> Trace:
    """A trace with its own problem; steps "step i of <ext>" unless given. ``problem_text``
    and ``reference_answer`` go to the problem, the other fields to the trace."""
    # Here, not at the top: the scoring tests import this module too.
    from annotator.models import Problem, Step, Trace, text_hash

    ext = ext or f"t{Trace.objects.count() + 1}"
    text = fields.pop("problem_text", None) or f"Problem of {ext}: what is 2 + 2?"
    problem = Problem.objects.create(
        project=project,
        text=text,
        text_hash=text_hash(text),
        reference_answer=fields.pop("reference_answer", "4"),
    )
    steps = steps or [f"step {i} of {ext}" for i in range(n_steps)]
    fields.setdefault("source", "test")
    trace = Trace.objects.create(
        project=project,
        problem=problem,
        source_format="jsonl",
        external_id=ext,
        num_steps=len(steps),
        **fields,
    )
    Step.objects.bulk_create(Step(trace=trace, index=i, text=t) for i, t in enumerate(steps))
    return trace


def served_id(response) -> int | None:
    """The id of the trace a workspace response serves, or None when it serves none."""
    match = re.search(rb'data-trace-id="(\d+)"', response.content)
    return int(match.group(1)) if match else None


# The dashboard's project: problems with three solutions each over two splits.
N_PROBLEMS = 8
SOLUTIONS = 3


def dashboard_records(rng: random.Random) -> list[dict]:
    """Problems with three solutions each over two splits; labels on most traces
    (some all correct), final answers that repeat (majority votes) and are right or not."""
    records = []
    for p in range(N_PROBLEMS):
        for s in range(SOLUTIONS):
            n = rng.randint(2, 6)
            label = rng.choice([-1, -1, *range(n)]) if (p + s) % 5 else None
            answer = str(rng.choice([p, p, p + 1]))
            records.append(
                {
                    "id": f"p{p}-s{s}",
                    "problem": f"Problem {p}: what is {p} + 0?",
                    "steps": [f"step {i} of solution {s}" for i in range(n)],
                    "split": "gsm8k" if p % 2 else "math",
                    "generator": "model-a" if s else "model-b",
                    "final_answer": answer,
                    "final_answer_correct": answer == str(p),
                    "first_error_step": label,
                }
            )
    return records


def score_file(traces, rng: random.Random, *, with_nan: bool) -> bytes:
    """A score file for the traces (rows): scores on a grid of 1/32 (exact in a 4-byte
    float, and with ties), and with ``with_nan`` one null."""
    lines = []
    for k, trace in enumerate(traces):
        scores = [rng.randint(0, 32) / 32 for _ in range(trace.num_steps)]
        if with_nan and k == 3:
            scores[0] = None
        lines.append(json.dumps({"id": trace.external_id, "scores": scores}))
    return ("\n".join(lines) + "\n").encode()


def synthetic_traces(n: int, seed: int) -> list[ScoringTrace]:
    """Doubling sums: a right step holds a true equation (``2 + 2 = 4.``), a wrong one a
    false one (``2 + 2 = 5.``); steps after the first error are random. Learnable from the
    last digit of a step, so a tiny model learns it in a few dozen steps."""
    rng = random.Random(seed)
    traces = []
    for i in range(n):
        n_steps = rng.randint(2, 4)
        first_error = rng.choice([-1, *range(n_steps)])
        steps = []
        for j in range(n_steps):
            a = rng.randint(1, 3)
            right = first_error == -1 or j < first_error or (j > first_error and rng.random() < 0.5)
            steps.append(f"{a} + {a} = {2 * a + (0 if right else 1)}.")
        traces.append(
            ScoringTrace(
                "Check the sums.",
                tuple(steps),
                id=f"syn-{seed}-{i}",
                split="synthetic",
                first_error_step=first_error,
            )
        )
    return traces


def cli_scores(model_dir: Path, input_path: Path, out: Path, adapter: str = "qwen-prm") -> dict:
    """``{id: scores}`` from ``python -m scoring score`` run as a user would."""
    command = [sys.executable, "-m", "scoring", "score", "--adapter", adapter]
    if adapter != "arithmetic-check":
        command += ["--model", str(model_dir), "--device", "cpu"]
    command += ["--input", str(input_path), "--output", str(out), "--quiet"]
    subprocess.run(command, check=True, capture_output=True)
    return {r["id"]: r["scores"] for r in map(json.loads, out.read_text().splitlines())}


def rollout_records(
    n: int, *, seed: int = 0, start: int = 0, source: str = "reward-service:tiny"
) -> list[dict]:
    """``n`` rollouts as the reward service logs them (``annotator.rollouts.log_rollouts``),
    keys ``r{start}`` on: two transforms, rewards from ``scoring.rewards`` itself, a
    ground truth on most, a training step each, and every fifth rollout repeating a step.
    Problems repeat (eight of them), as a trainer samples several responses per prompt."""
    from scoring.rewards import apply_transform

    rng = random.Random(seed)
    records = []
    for i in range(start, start + n):
        p = i % 8
        n_steps = rng.randint(1, 5)
        steps = [f"Step {k + 1}: {p} + {k} = {p + k}." for k in range(n_steps)]
        if i % 5 == 0:
            steps.append(f"Step {n_steps + 1}: {p} + 0 = {p}")  # the first step again
        answer = p if rng.random() < 0.5 else p + 1
        steps.append(f"The answer is \\boxed{{{answer}}}.")
        scores = [round(rng.random(), 4) for _ in steps]
        ground_truth = None if i % 7 == 0 else str(p)
        success = None if ground_truth is None else answer == p
        name, parameters = ("clip-delta", {"eta": 0.5}) if i % 2 else ("min", {})
        rewards = apply_transform(name, scores, success=success, success_weight=1.0, **parameters)
        records.append(
            {
                "key": f"r{i}",
                "problem": f"Problem {p}: what is {p} + 0?",
                "response": "\n\n".join(steps),
                "steps": steps,
                "step_scores": scores,
                "step_rewards": list(rewards.rewards),
                "return": rewards.total,
                "success": success,
                "ground_truth": ground_truth,
                "transform": rewards.transform,
                "transform_version": rewards.version,
                "training_step": i // 20,
                "source": source,
                "protocol": "native",
            }
        )
    return records


def solved_runs(project, user, *, problems: int = 12, n: int = 8, v: int = 4, seed: int = 0):
    """A finished sampling run of ``n`` solutions per problem (answers that repeat, some
    right, some invalid; token counts) and a finished verification run of ``v``
    verifications of each (verdicts and p(yes) that lean towards the right answers,
    some missing), written as the runs' work writes them; (sampling run, verification run)."""
    from annotator.models import JobStatus, SamplingRun, VerificationRun
    from annotator.sampling import store_solutions
    from annotator.verification import store_verifications

    rng = random.Random(seed)
    run = SamplingRun.objects.create(
        project=project,
        name=f"solve-{seed}",
        completer="openai:http://127.0.0.1:9/v1",
        model="m",
        generator="m",
        n=n,
        created_by=user,
        status=JobStatus.DONE,
        options={"temperature": 0.7, "top_p": 0.95, "max_tokens": 64},
    )
    check = VerificationRun.objects.create(
        project=project,
        name=f"check-{seed}",
        sampling_run=run,
        verifier="genrm-base",
        completer="openai:http://127.0.0.1:9/v1",
        model="m",
        v=v,
        created_by=user,
        status=JobStatus.DONE,
    )
    for p in range(problems):
        trace = make_trace(project, ext=f"solve-{seed}-{p}", reference_answer=str(p))
        solutions = []
        for _ in range(n):
            answer = rng.choice([str(p), str(p), str(p + 1), str(p + 2), None])
            text = f"So \\boxed{{{answer}}}." if answer else "I am not sure."
            solutions.append((text, (text,), answer, answer == str(p), rng.randint(50, 150)))
        store_solutions(run, trace.problem, str(trace.problem_id), solutions)
        for row in run.sampled.filter(problem=trace.problem).select_related("trace"):
            right = row.trace.final_answer_correct
            items = []
            for _ in range(v):
                yes = rng.random() < (0.8 if right else 0.3)
                p_yes = (
                    None
                    if rng.random() < 0.2
                    else round(rng.uniform(0.5, 1) if yes else rng.uniform(0, 0.5), 3)
                )
                items.append(
                    (
                        "Is the answer correct (Yes/No)? " + ("Yes" if yes else "No"),
                        yes,
                        p_yes,
                        None,
                        rng.randint(100, 300),
                    )
                )
            store_verifications(check, row.pk, items)
    return run, check
