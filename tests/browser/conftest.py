"""Browser fixtures: Debian's Chromium driven by Playwright (no browser download), screenshots kept under the
pytest tmp dir (its path is printed)."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

from tests.portalserver import portal_server, portal_server_env  # noqa: F401 - fixtures

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    print(f"\nBrowser screenshots: {path}")
    return path


@pytest.fixture
def browser_page(screenshot_dir):
    """A Chromium page at 1366×768 (the width the pages must stay readable at)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium) "
                    "or set CHROMIUM_PATH")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are synchronous anyway.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        try:
            yield page
        finally:
            # ORM calls made while Playwright runs use a connection of their own (greenlet context): close it, or
            # the test database cannot be dropped at the end.
            connections.close_all()
            context.close()
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
