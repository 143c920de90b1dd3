"""The demo's models, offline, on the embedded path (SQLite and the filesystem broker):
``setup_demo --models`` (as ``manage.py demo`` calls it) builds a tiny Qwen-PRM-layout model and a tiny causal LM and queues their
runs; the demo's worker (both queues, as ``manage.py demo`` starts it) fine-tunes the PRM,
scores with the random and the fine-tuned PRM, and runs Monte-Carlo with the tiny LM;
``setup_demo --follow`` queues the fine-tuned model's run once training is done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.factories import sqlite_env

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import django
django.setup()
from django.conf import settings
from annotator.models import (JobStatus, MonteCarloRun, MCRollout, Scorer, ScoringRun,
                              StepScore, TraceMC, TrainingPoint, TrainingRun)
assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
random = Scorer.objects.get(name="demo-tiny-qwen-prm-random")
assert random.adapter == "qwen-prm" and random.options == {"device": "cpu"}
assert random.model.startswith(str(settings.MODEL_DIR)), random.model
train = TrainingRun.objects.get(name="demo-tiny-qwen-prm-finetuned")
assert train.status == JobStatus.DONE, (train.status, train.error)
assert train.queue == "default"
assert TrainingPoint.objects.filter(run=train, name="loss").count() >= 5
tuned = Scorer.objects.get(name="gsm8k-demo-demo-tiny-qwen-prm-finetuned")
assert train.scorer_id == tuned.pk
for scorer in (random, tuned):
    run = ScoringRun.objects.get(scorer=scorer)
    assert run.status == JobStatus.DONE, (run.name, run.status, run.error)
    assert run.queue == "default"
    scored = StepScore.objects.filter(run=run).count()
    assert scored > 0
    print("scored steps:", scorer.name, scored)
mc = MonteCarloRun.objects.get(name="demo-mc-tiny-lm")
assert mc.status == JobStatus.DONE, (mc.status, mc.error)
assert mc.completer.startswith("hf:" + str(settings.MODEL_DIR))
assert TraceMC.objects.filter(run=mc).count() == 3
assert mc.rollouts > 0 and MCRollout.objects.filter(run=mc).exists()
# The dashboard on SQLite compares both model scorers with the humans, every region.
import csv, io
from django.contrib.auth import get_user_model
from django.test import Client
settings.ALLOWED_HOSTS = ["testserver"]
client = Client()
client.force_login(get_user_model().objects.get(username="demo"))
page = client.get("/p/gsm8k-demo/dashboard/")
assert page.status_code == 200 and b'id="runs-table"' in page.content, page.content[:2000]
table = client.get("/p/gsm8k-demo/dashboard/runs/", {"format": "csv"})
rows = {row[0]: row for row in csv.reader(io.StringIO(table.content.decode()))}
for scorer in (random, tuned):
    run = ScoringRun.objects.get(scorer=scorer)
    assert int(rows[run.name][1]) > 0, rows  # traces with a human verdict it scored
    for part in ("", "best-of-n/", "disagreements/"):
        answer = client.get(f"/p/gsm8k-demo/dashboard/runs/{run.pk}/{part}")
        assert answer.status_code == 200, (part, answer.status_code)
print("dashboard on sqlite: ok", sorted(rows))
# Solve or verify: a first visit picks the GSM8K best-of-N solutions (4 per problem) and
# the arithmetic-check run over them; the figure draws SC, its best-of-N and weighted SC.
first = client.get("/p/gsm8k-demo/solve/curves/")
arith = ScoringRun.objects.get(project__slug="gsm8k-demo", name="arithmetic-check")
assert first.status_code == 302, first.status_code
assert first.url.endswith(f"?source=gsm8k-solutions&scoring={arith.pk}"), first.url
assert client.get(first.url).status_code == 200
figure = client.get("/p/gsm8k-demo/solve/curves/figure/?" + first.url.split("?", 1)[1])
assert figure.status_code == 200 and b'id="solve-chart"' in figure.content, figure.content[:2000]
for label in (b"Self-consistency", b"arithmetic-check best-of-N", b"arithmetic-check weighted SC"):
    assert label in figure.content, label
print("solve or verify on sqlite: ok")
print("demo models: ok")
"""


def small_data(data_dir: Path, target: Path) -> Path:
    """The demo's two files, cut to 40 ProcessBench records and 5 problems' solutions."""
    (target / "processbench-gsm8k").mkdir(parents=True)
    (target / "gsm8k").mkdir()
    records = json.loads((data_dir / "processbench-gsm8k" / "gsm8k.json").read_text())[:40]
    (target / "processbench-gsm8k" / "gsm8k.json").write_text(json.dumps(records))
    with open(data_dir / "gsm8k" / "example_model_solutions.jsonl") as fh:
        lines = [next(fh) for _ in range(5)]
    (target / "gsm8k" / "example_model_solutions.jsonl").write_text("".join(lines))
    return target


def test_the_demo_trains_scores_and_rolls_out_tiny_models_offline(data_dir, tmp_path, sqlite_var):
    var = sqlite_var
    for folder in (var / "broker" / "queue", var / "broker" / "processed"):
        folder.mkdir(parents=True)
    # Nothing beyond this machine: a model id that is not on disk fails, not downloads.
    # The filesystem broker keeps its exchanges in ./control: every process runs in
    # tmp_path, so none is left in the checkout.
    env = sqlite_env(var, HF_HUB_OFFLINE="1")
    manage = [sys.executable, str(ROOT / "manage.py")]
    demo = subprocess.run(
        [
            *manage,
            "setup_demo",
            "--models",
            "--data-dir",
            str(small_data(data_dir, tmp_path / "data")),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "queued the training run demo-tiny-qwen-prm-finetuned" in demo.stdout
    assert (var / "models" / "demo" / "tiny-qwen-prm" / "config.json").exists()
    # The demo's worker: both queues, one process (annotator/management/commands/demo.py).
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "--quiet", "-A", "annotator", "worker"]
        + ["-l", "warning", "-Q", "default,gpu", "--concurrency", "1"],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
    )
    try:
        follow = subprocess.run(
            [*manage, "setup_demo", "--follow"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert follow.returncode == 0, follow.stdout[-2000:] + follow.stderr[-2000:]
    assert "queued the scoring run gsm8k-demo-demo-tiny-qwen-prm-finetuned" in follow.stdout
    check = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert "demo models: ok" in check.stdout
    assert "solve or verify on sqlite: ok" in check.stdout
    # Run again, the demo queues nothing twice.
    again = subprocess.run(
        [*manage, "setup_demo", "--models", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "queued" not in again.stdout, again.stdout
