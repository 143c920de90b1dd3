"""The Label page as annotators want it, in real Chromium: math on the field's data,
the GSM8K page that used to overflow, flags that toggle, step numbers that match the
messages, aligned review columns, and no console errors on the documented keys."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import expect

from annotator.models import Annotation, LabelScheme, Membership, Project, Role
from scoring.labels import Label
from tests.browser.pages import make_trace, press, showing
from tests.factories import DATA_DIR, PROCESSBENCH_GSM8K

pytestmark = [pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[2] / "static"
# A formula KaTeX cannot take: 3,000 nested superscripts.
BAD_FORMULA = "$" + "x^{" * 3000 + "1" + "}" * 3000 + "$"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _records(path: Path):
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    text, decoder, records, i = path.read_text(), json.JSONDecoder(), [], 0
    while i < len(text):  # JSON arrays, JSONL and PRM800K's objects one after another
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text):
            record, i = decoder.raw_decode(text, i)
            records.append(record)
    return records


def real_lines() -> dict[str, list[str]]:
    """Every distinct string holding a $ in every data file, by file; a sample line
    of each file that has none (BIG-Bench Mistake)."""
    lines = {}
    for path in sorted(DATA_DIR.glob("*/*")):
        if path.suffix not in (".json", ".jsonl", ".parquet"):
            continue
        strings = {s for r in _records(path) for s in _strings(r)}
        dollars = sorted(s for s in strings if "$" in s)
        lines[f"{path.parent.name}/{path.name}"] = dollars or sorted(strings)[:50]
    return lines


@pytest.fixture
def blank_page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<!doctype html><html><body></body></html>")  # KaTeX needs standards mode
    page.add_script_tag(path=str(STATIC / "vendor" / "katex" / "katex.min.js"))
    page.add_script_tag(path=str(STATIC / "js" / "math.js"))
    yield page
    context.close()


def test_the_math_rule_holds_on_every_data_file(blank_page):
    lines = real_lines()
    assert len(lines) >= 10  # every file of ../shared/data
    split = blank_page.evaluate(
        """lines => Object.fromEntries(Object.entries(lines).map(([f, ls]) =>
             [f, ls.map(l => window.stepwiseSplitMath(l))]))""",
        lines,
    )
    for name, parts_per_line in split.items():
        maths = [p for parts in parts_per_line for p in parts if p["math"]]
        leftover = [
            line
            for line, parts in zip(lines[name], parts_per_line, strict=True)
            if any("$" in p["text"] for p in parts if not p["math"])
        ]
        if name.startswith(("gsm8k/", "big-bench-mistake/")):
            # Prices and calculator notes, never formulas.
            assert maths == [], (name, maths[:3])
        elif name.startswith("prm800k"):
            # MATH problems: every $ pairs up, bar a handful of broken or priced lines.
            assert len(maths) >= len(lines[name]), name
            assert len(leftover) <= max(1, len(lines[name]) // 100), (name, leftover[:5])
        else:  # ProcessBench: model solutions mix prices with LaTeX
            assert len(maths) > 50, name
            # Without a backslash a formula is an equation a model wrote in dollars
            # ("$60 + 5 = 65$"); prices ("$5 he has left to the $160") stay text.
            plain = [
                p["tex"]
                for line, parts in zip(lines[name], parts_per_line, strict=True)
                if "\\" not in line
                for p in parts
                if p["math"]
            ]
            assert all("=" in tex for tex in plain), plain
    # Real lines, by eye: PRM800K's $G$ is a formula, GSM8K's prices are not.
    by_text = {line: parts for name in split for line, parts in zip(lines[name], split[name], strict=True)}  # fmt: skip
    pencil = by_text["So a pencil costs $0.29."]
    assert [p["math"] for p in pencil] == [False]
    gsm8k6 = next(r for r in json.loads(PROCESSBENCH_GSM8K.read_text()) if r["id"] == "gsm8k-6")
    for step in gsm8k6["steps"]:
        assert not any(p["math"] for p in blank_page.evaluate("window.stepwiseSplitMath", step))


def test_one_bad_formula_leaves_the_others_rendered(blank_page):
    blank_page.evaluate(
        """bad => {
             for (const [id, text] of [["good", "Let $G$ be the centroid of $ABC,$ so"],
                                       ["bad", "first $x^2$ then " + bad + " then $y_1$"],
                                       ["price", "saves her $15 more than $15 a week"]]) {
               const p = document.createElement("p"); p.id = id; p.className = "math";
               p.textContent = text; document.body.appendChild(p);
             }
             window.stepwiseRenderMath(document);
           }""",
        BAD_FORMULA,
    )
    expect(blank_page.locator("#good .katex")).to_have_count(2)
    expect(blank_page.locator("#bad .katex")).to_have_count(2)  # x^2 and y_1
    expect(blank_page.locator("#bad .math-error")).to_have_count(1)
    expect(blank_page.locator("#price .katex")).to_have_count(0)
    expect(blank_page.locator("#price")).to_have_text("saves her $15 more than $15 a week")


@pytest.fixture
def desk(transactional_db, django_user_model):
    project = Project.objects.create(slug="desk", name="Desk", annotators_per_trace=2)
    people = {}
    for name, role in (("ann", Role.ANNOTATOR), ("bob", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
        people[name] = django_user_model.objects.create_user(name, password=f"pw-{name}-123")
        Membership.objects.create(project=project, user=people[name], role=role)
    return project, people


def test_the_gsm8k_6_page_fits_the_viewport(desk, new_page, live_server):
    project, _ = desk
    record = next(r for r in json.loads(PROCESSBENCH_GSM8K.read_text()) if r["id"] == "gsm8k-6")
    trace = make_trace(project, "gsm8k-6", record["steps"], problem_text=record["problem"])
    page = new_page("ann", "pw-ann-123")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/{trace.pk}/")
    press(page, "Enter")  # claim
    showing(page, trace)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    controls = page.locator(".rate label")
    assert controls.count() == 4 * len(record["steps"])
    for i in range(controls.count()):
        box = controls.nth(i).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1280, i
    # Steps carry their numbers, from 0 like every message.
    numbers = page.locator(".label-steps .step-no").all_inner_texts()
    assert numbers == [str(i) for i in range(len(record["steps"]))]


def test_flags_toggle_and_errors_clear(desk, new_page, live_server):
    project, people = desk
    trace = make_trace(project, "t0", ["One.", "Two.", "Three."])
    page = new_page("ann", "pw-ann-123")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    showing(page, trace)
    press(page, "b")  # bad problem: the reason field takes the keys
    expect(page.locator("#flag")).to_have_value("bad_problem")
    press(page, "Escape", "c", "Enter")  # Esc clears the flag: all correct is submitted
    expect(page.get_by_text("Nothing left to label")).to_be_visible()
    label = Annotation.objects.get(annotator=people["ann"])
    assert (label.first_error_step, label.bad_problem, label.flag_reason) == (-1, False, "")
    press(page, "u")
    showing(page, trace)
    page.click('button[data-key="g"]')
    expect(page.locator("#flag")).to_have_value("gave_up")
    page.click('button[data-key="g"]')  # the same key again clears it
    expect(page.locator("#flag")).to_have_value("")
    press(page, "s")  # skip: no htmx error for hx-disabled-elt
    expect(page.locator("#queue-empty")).to_be_visible()
    assert errors == []


def test_numbers_shown_equal_the_numbers_in_messages(desk, new_page, live_server):
    project, _ = desk
    project.label_scheme = LabelScheme.PER_STEP
    project.save()
    trace = make_trace(project, "t0", ["One.", "Two.", "Three.", "Four."])
    page = new_page("ann", "pw-ann-123")
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    showing(page, trace)
    press(page, "3", "j", "j", "1", "Enter")  # step 1 left unrated, step 3 wrong
    error = page.locator("#label-error")
    expect(error).to_contain_text("unrated: 1")
    expect(page.locator("#step-1 .step-no")).to_have_text("1")
    expect(page.locator("#step-1 .fe")).to_contain_text("first error is step 1")
    press(page, "k", "k", "3")  # a key that changes the label clears the old message
    expect(error).to_have_count(0)


def test_the_review_columns_line_up(desk, new_page, live_server):
    project, people = desk
    from annotator.labelling import submit_label

    trace = make_trace(project, "t0", ["One.", "Two.", "Three."])
    submit_label(project, trace, people["ann"], Label(-1, [1, 1, 1]))
    submit_label(project, trace, people["bob"], Label(1, [1, -1, None]))
    page = new_page("rev", "pw-rev-123")
    page.goto(f"{live_server.url}/p/{project.slug}/review/{trace.pk}/")
    for name in ("ann", "bob"):
        head = page.locator(f'#side-by-side thead th.who[data-labeller="{name}"]').first
        hx = head.bounding_box()
        for step in range(3):
            cell = page.locator(f'#side-by-side tr[data-step="{step}"] td[data-labeller="{name}"]')
            box = cell.bounding_box()
            assert abs(box["x"] - hx["x"]) < 1 and abs(box["width"] - hx["width"]) < 1, (name, step)
    expect(page.locator('tr[data-step="1"] .agreement')).to_have_text("✗ disagrees")
    expect(page.locator('tr[data-step="0"] .agreement')).to_have_text("✓ agrees")


def test_the_optional_timer_counts_up_and_restarts_on_the_next_trace(desk, new_page, live_server):
    project, _ = desk
    first = make_trace(project, "t0", ["One.", "Two."])
    second = make_trace(project, "t1", ["Three.", "Four."])
    page = new_page("ann", "pw-ann-123")
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    showing(page, first)
    expect(page.locator("#label-timer")).to_have_count(0)  # off unless the project wants it

    Project.objects.filter(pk=project.pk).update(show_timer=True)
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/{first.pk}/")  # held: editable
    showing(page, first)
    expect(page.locator("#label-timer")).to_have_text("0:02", timeout=5000)
    press(page, "c", "Enter")  # all correct: the next trace is swapped in
    showing(page, second)
    expect(page.locator("#label-timer")).to_have_text("0:01", timeout=5000)


def test_the_progress_line_follows_the_trace_shown(desk, new_page, live_server):
    project, _ = desk
    traces = [make_trace(project, f"t{i}", ["One.", "Two."]) for i in range(2)]
    page = new_page("ann", "pw-ann-123")
    page.goto(f"{live_server.url}/p/{project.slug}/annotate/")
    press(page, "Enter")
    expect(page.locator("#workspace[data-trace-id]")).to_have_count(1)
    shown = int(page.locator("#workspace").get_attribute("data-trace-id"))
    place = [t.pk for t in traces].index(shown) + 1
    expect(page.locator("#progress")).to_contain_text(f"Trace {place} of 2 · You labelled 0 today")
    press(page, "c", "Enter")  # all correct: the other trace is swapped in, and its line
    expect(page.locator("#progress")).to_contain_text(
        f"Trace {3 - place} of 2 · You labelled 1 today"
    )
