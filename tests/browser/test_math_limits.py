"""Formulas too large to typeset are shown as their source text without reaching
KaTeX (one 12 KB nested formula took 78 s to render), in real Chromium; the others on
the page still render."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[2] / "static"
# 12 KB: fractions nested 1,000 deep, the shape that took 78 s.
NESTED = "$" + "\\frac{1}{" * 1000 + "x" + "}" * 1000 + "$"
# Within both caps (16 levels, 2,000 characters): still typeset.
DEEP_ENOUGH = "$" + "\\frac{1}{" * 8 + "x" + "}" * 8 + "$"
LONG = "$" + "+".join(["x"] * 1100) + "$"  # 2,199 characters, flat


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<!doctype html><html><body></body></html>")  # KaTeX needs standards mode
    page.add_script_tag(path=str(STATIC / "vendor" / "katex" / "katex.min.js"))
    page.add_script_tag(path=str(STATIC / "js" / "math.js"))
    # Count what reaches KaTeX: the work, not the time.
    page.evaluate(
        """() => { const render = window.katex.render; window.katexCalls = [];
                   window.katex.render = (tex, ...rest) => {
                     window.katexCalls.push(tex.length); return render(tex, ...rest); }; }"""
    )
    yield page
    context.close()


def show(page, texts: dict[str, str]) -> None:
    page.evaluate(
        """texts => {
             for (const [id, text] of Object.entries(texts)) {
               const p = document.createElement("p"); p.id = id; p.className = "math";
               p.textContent = text; document.body.appendChild(p);
             }
             window.stepwiseRenderMath(document);
           }""",
        texts,
    )


def test_a_formula_past_the_caps_is_its_source_text_and_never_typeset(page):
    show(
        page,
        {
            "nested": f"first $x^2$ then {NESTED} then $y_1$",
            "long": f"sum: {LONG}",
            "fine": f"depth 9: {DEEP_ENOUGH}",
        },
    )
    expect(page.locator("#nested .katex")).to_have_count(2)  # x^2 and y_1
    skipped = page.locator("#nested .math-too-large")
    expect(skipped).to_have_text(NESTED)
    expect(skipped).to_have_attribute("title", "not rendered: longer than 2000 characters")
    expect(page.locator("#long .math-too-large")).to_have_text(LONG)
    expect(page.locator("#fine .katex")).to_have_count(1)
    # KaTeX saw x^2, y_1 and the fine formula only.
    assert sorted(page.evaluate("window.katexCalls")) == sorted([3, 3, len(DEEP_ENOUGH) - 2])


def test_a_short_formula_nested_too_deep_is_not_typeset(page):
    deep = "$" + "{" * 17 + "x" + "}" * 17 + "$"
    show(page, {"deep": deep})
    expect(page.locator("#deep .math-too-large")).to_have_attribute(
        "title", "not rendered: nested deeper than 16 levels"
    )
    assert page.evaluate("window.katexCalls") == []
