"""What the browser tests share: their traces (math in the problem, so KaTeX has work)
and the keyboard and waiting steps of the labelling workspace."""

from __future__ import annotations

from playwright.sync_api import expect

from tests import factories


def make_trace(project, ext: str, steps: list[str], problem_text: str | None = None):
    """A trace whose problem asks for a power of two in TeX, unless ``problem_text``."""
    return factories.make_trace(
        project,
        ext=ext,
        steps=steps,
        problem_text=problem_text or f"Problem {ext}: compute \\(2^{len(steps)}\\).",
        reference_answer="8",
        source="browser",
    )


def press(page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def showing(page, trace) -> None:
    """Wait until the trace is shown and the keyboard script has taken it over."""
    workspace = page.locator("#workspace")
    expect(workspace).to_have_attribute("data-trace-id", str(trace.pk))
    expect(workspace).to_have_attribute("data-ready", "1")
