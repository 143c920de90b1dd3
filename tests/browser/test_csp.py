"""The pages work under the Content-Security-Policy (``annotator/csp.py``) in real
Chromium: the API's Redoc and Swagger pages render the schema, and the Label page
renders its math, with no request refused by the policy. (The dashboard's plotly
charts under the policy: tests/browser/test_dashboard.py, whose console check fails on
any refusal.)"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import Membership, Project, Role
from tests.browser.pages import make_trace

pytestmark = pytest.mark.browser


def watch(page) -> list[str]:
    """Every refusal by the policy, and every console error, as it happens."""
    found: list[str] = []
    page.on("console", lambda message: message.type == "error" and found.append(message.text))
    page.on("pageerror", lambda error: found.append(str(error)))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", e =>
             console.error("CSP refused " + e.blockedURI + " (" + e.violatedDirective + ")"));"""
    )
    return found


@pytest.fixture
def member(transactional_db, django_user_model):
    project = Project.objects.create(slug="csp", name="CSP")
    user = django_user_model.objects.create_user("cora", password="pw-cora-123")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    trace = make_trace(project, "t1", ["We have $\\frac{1}{2} + 1$.", "So \\(x = 3\\)."])
    return project, trace


def test_the_api_documentation_renders_under_the_policy(member, new_page, live_server):
    page = new_page("cora", "pw-cora-123")
    found = watch(page)
    page.goto(f"{live_server.url}/api/v1/redoc/")
    expect(page.locator("h1").first).to_contain_text("Stepwise API")
    page.goto(f"{live_server.url}/api/v1/docs/")
    expect(page.locator(".swagger-ui .title").first).to_contain_text("Stepwise API")
    # Redoc's bundle links its sidebar logo from Redocly's CDN; the policy refuses it
    # before any request is made (Redoc has no option to leave it out).
    assert [f for f in found if "cdn.redoc.ly/redoc/logo-mini.svg" not in f] == []


def test_the_label_page_renders_its_math_under_the_policy(member, new_page, live_server):
    project, trace = member
    page = new_page("cora", "pw-cora-123")
    found = watch(page)
    page.goto(f"{live_server.url}/p/{project.slug}/traces/{trace.pk}/")
    expect(page.locator(".step .katex")).to_have_count(2)
    assert found == []
