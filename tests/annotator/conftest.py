"""Fixtures that more than one module of ``tests/annotator`` uses."""

from __future__ import annotations

import json

import pytest

from tests.factories import synthetic_traces


@pytest.fixture
def labelled(project, tmp_path):
    """The project with synthetic traces imported and labelled: six to train on
    (split "train"), three to evaluate on (split "eval")."""
    from annotator.importing import import_file

    path = tmp_path / "synthetic.jsonl"
    records = [
        {
            "id": t.id,
            "problem": t.problem,
            "steps": list(t.steps),
            "label": t.first_error_step,
            "split": split,
        }
        for split, traces in (("train", synthetic_traces(6, 1)), ("eval", synthetic_traces(3, 2)))
        for t in traces
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    import_file(project, path, "jsonl")
    return project
