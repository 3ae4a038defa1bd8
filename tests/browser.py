"""Render a local HTML file in a REAL headless Chromium (Debian's ``chromium``) through Playwright.

Playwright's own browser download is never used (no ``playwright install``): the system Chromium is
launched by path, offline. ``chromium_or_skip()`` skips a test with a clear reason when Chromium or
Playwright is absent, except under CI (env CI set), where their absence fails the test.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]


def chromium_or_skip() -> str:
    """Path of the Chromium executable; skip (or fail under CI) when it or Playwright is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "chromium is not installed (apt-get install -y chromium; scripts/test.sh does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is missing (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"browser test under CI: {problem}")
        pytest.skip(problem)
    return path


class Page:
    """What a test learns from one rendered page."""

    def __init__(self, page, console_errors: list[str], page_errors: list[str], requests: list[str]):
        self.page = page
        self.console_errors = console_errors
        self.page_errors = page_errors
        self.requests = requests


@contextmanager
def open_page(html_path: Path, width: int = 1400, height: int = 1000, javascript: bool = True):
    """Yield a ``Page`` for ``html_path`` opened from file://, with console and page errors and
    every non-file request recorded (a self-contained report makes none)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, java_script_enabled=javascript)
            page = context.new_page()
            console_errors: list[str] = []
            page_errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
            yield Page(page, console_errors, page_errors, requests)
        finally:
            browser.close()
