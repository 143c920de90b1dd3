"""``import scoring`` stays free of Django, Celery and torch (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ["django", "celery", "torch", "transformers"]
FORMATS_DIR = Path(__file__).resolve().parents[2] / "scoring" / "formats"


def _loaded_after(code: str, modules: list[str] = HEAVY) -> list[str]:
    probe = (
        code
        + f"\nimport json, sys\nprint(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_it_imports_scoring_without_django_celery_or_torch() -> None:
    assert _loaded_after("import scoring") == []


def test_it_imports_the_pure_modules_without_torch() -> None:
    modules = "types, steps, metrics, grading, arithmetic, formats, labels, batching, engine, device, cli, adapters, rewards, tools, curves, grounded, chat_queries, reward_engine, reward_service, reward_clients"
    assert _loaded_after(f"from scoring import {modules}") == []


def test_it_imports_every_module_of_the_format_library_without_the_app_or_pyarrow() -> None:
    """pyarrow too stays out until a parquet file is read or written."""
    names = sorted(p.stem for p in FORMATS_DIR.glob("*.py") if p.stem != "__init__")
    assert {"files", "processbench", "prm800k", "trl", "jsonl"} <= set(names)
    code = "import scoring, scoring.formats\n" + "".join(
        f"import scoring.formats.{name}\n" for name in names
    )
    assert _loaded_after(code, [*HEAVY, "annotator", "pyarrow"]) == []


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
