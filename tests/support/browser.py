"""A real headless browser for the web page: Debian's /usr/bin/chromium driven by Playwright's Python package.

Never a downloaded browser build (no ``playwright install``): the test is skipped with its reason where Debian's
chromium or the package is missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextlib.contextmanager
def browser_page(locale: str = "en-US", **context_options) -> Iterator:
    """A fresh page in its own context (own sessionStorage), downloads accepted."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(locale=locale, accept_downloads=True, **context_options)
            yield context.new_page()
        finally:
            browser.close()
