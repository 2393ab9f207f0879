"""The console in a real headless Chromium against the running service: see a failed item, retry it, see it done."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from postroom.service import Service

from .conftest import OPERATOR_TOKEN, fail, store_mail

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install -y chromium)")


@pytest.fixture
def page(service: Service) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(15_000)
            yield tab
        finally:
            browser.close()


def test_failed_item_retried_from_the_console_gets_processed(service: Service, page, tenant_ids) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    inbound_id = store_mail(service.app, tenant_ids["acme"], "acme", subject="Keys for unit 4B")
    fail(service.app, inbound_id, "TimeoutError: blob store did not answer")

    page.goto(f"{service.http_url}/console")
    page.fill("input[name=token]", OPERATOR_TOKEN)
    page.click("text=Sign in")
    page.select_option("select[name=tenant]", "acme")
    row = page.locator(f"#problem-{inbound_id}")
    expect(row).to_contain_text("TimeoutError: blob store did not answer")
    expect(row).to_contain_text("failed")

    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text(f"inbound {inbound_id}: retry done")
    for _ in range(50):
        if "done" in page.locator(f"#inbound-{inbound_id}").inner_text():
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(page.locator(f"#inbound-{inbound_id}")).to_contain_text("Keys for unit 4B")
    expect(page.locator(f"#inbound-{inbound_id} .status-done")).to_have_text("done")
    expect(page.locator(f"#problem-{inbound_id}")).to_have_count(0)


def test_api_docs_render_with_the_network_blocked(service: Service, page) -> None:  # type: ignore[no-untyped-def]
    """Every request that is not to the service itself is aborted: /docs must not need a CDN."""
    from playwright.sync_api import expect

    local = service.http_url
    blocked: list[str] = []

    def only_local(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(local):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{local}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("postroom")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert blocked == []
