"""``import scoring`` stays free of Django, Celery and torch (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["django", "celery", "torch", "transformers"]


def _loaded_after(code: str) -> list[str]:
    probe = (
        code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_imports_scoring_without_django_celery_or_torch() -> None:
    assert _loaded_after("import scoring") == []


def test_it_imports_the_pure_modules_without_torch() -> None:
    modules = "types, steps, metrics, grading, arithmetic, formats, batching, engine, device, cli, adapters"
    assert _loaded_after(f"from scoring import {modules}") == []


def test_it_runs_arithmetic_check_end_to_end_without_torch() -> None:
    code = (
        "from scoring.adapters import load_adapter\n"
        "from scoring.engine import score_traces\n"
        "from scoring.types import Trace\n"
        "adapter = load_adapter('arithmetic-check')\n"
        "[result] = score_traces(adapter, [Trace('q', ['2 + 2 = 5', 'ok'])])\n"
        "assert result.scores == (0.0, 1.0), result\n"
    )
    assert _loaded_after(code) == []
