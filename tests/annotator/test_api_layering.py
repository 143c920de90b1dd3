"""The API (``annotator/api/``) never imports the HTML views: what both need lives in
the app's own modules (``labelling``, ``downloads``, ``uploads``, ...), so a page's
change cannot reach the API through an import, nor the API's the pages."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "annotator" / "api"


def _imported(source: Path) -> list[str]:
    """The absolute names of the modules ``source`` imports (``from x import y``
    counts as ``x`` and ``x.y``, since ``y`` may be a module)."""
    package = "annotator.api"
    names = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def _is_views(name: str) -> bool:
    return name == "annotator.views" or name.startswith("annotator.views.")


def test_no_module_of_the_api_imports_the_views() -> None:
    sources = sorted(API_DIR.glob("*.py"))
    assert len(sources) >= 12
    for source in sources:
        offending = [name for name in _imported(source) if _is_views(name)]
        assert offending == [], f"annotator/api/{source.name} imports {offending}"


def test_loading_every_module_of_the_api_loads_no_view() -> None:
    """Nor through another module: a fresh process that imports the whole API (and
    the settings and apps) has no ``annotator.views`` module loaded."""
    modules = [f"annotator.api.{p.stem}" for p in sorted(API_DIR.glob("*.py"))]
    probe = (
        "import django, sys\n"
        "django.setup()\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(sorted(m for m in sys.modules if m.startswith('annotator.')))\n"
    )
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "annotator.settings"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr
    loaded = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert "annotator.api.urls" in loaded and "annotator.api.labelling" in loaded
    assert [m for m in loaded if _is_views(m)] == []
