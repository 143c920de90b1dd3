"""``python -m scoring mc`` as a user runs it, against the scripted server process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scoring import mc_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server():
    process, url = mc_server.spawn()
    yield url
    process.terminate()
    process.wait(timeout=10)


def run_mc(server: str, input_path: Path, out: Path, mode: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "scoring", "mc", "--input", str(input_path)]
    command += ["--format", "jsonl"]
    command += ["--completer", f"openai:{server}", "--model", "m", "--n", "3", "--mode", mode]
    command += ["--temperature", "1.0", "--seed", "7", "--output", str(out), "--quiet"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)


def test_it_labels_planted_errors_in_both_modes_and_resumes(server, tmp_path: Path) -> None:
    records = mc_server.planted_records(12)
    input_path = tmp_path / "traces.jsonl"
    input_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    planted = {r["id"]: r["label"] for r in records}
    rollouts = {}
    for mode in ("exhaustive", "binary"):
        out = tmp_path / f"{mode}.jsonl"
        run_mc(server, input_path, out, mode)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert {line["id"]: line["first_error"] for line in lines} == planted
        assert all(
            line.keys() >= {"id", "mc", "hard", "progress", "first_error", "rollouts", "tokens"}
            for line in lines
        )
        rollouts[mode] = sum(line["rollouts"] for line in lines)
    print(f"rollouts over 12 traces: {rollouts}")
    assert rollouts["binary"] < rollouts["exhaustive"]

    # A run killed mid-write: two whole lines and half of a third. The rerun keeps the two,
    # labels the rest once, and asks the server only for what is missing.
    out = tmp_path / "exhaustive.jsonl"
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[2][:10])
    mc_server.reset(server)
    result = run_mc(server, input_path, out, "exhaustive")
    assert "2 already in" in result.stderr
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in again) == sorted(planted)
    asked = sum(len(r["steps"]) + 1 for r in records[2:])  # every prefix and the problem alone
    assert mc_server.stats(server)["requests"] == asked
