"""Browser tests: Playwright driving Debian's Chromium against carebot on 127.0.0.1.

Without /usr/bin/chromium (or the playwright package) the tests skip with a message saying
how to enable them; CI sets CAREBOT_TEST_REQUIRE_BROWSER=1, and then they must run.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CAREBOT_TEST_CHROMIUM", "/usr/bin/chromium"))
SKIP_MESSAGE = (
    "browser tests skipped: install Debian's Chromium (`apt-get install chromium`) and run "
    "`make setup` (installs playwright) to run them"
)
# As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def screenshots() -> Path:
    """Where the tests put the pages' screenshots: docs/screenshots with
    CAREBOT_UPDATE_SCREENSHOTS=1 (`make screenshots`), else test-artifacts/screenshots, so a
    test run does not rewrite the committed images."""
    if os.environ.get("CAREBOT_UPDATE_SCREENSHOTS") == "1":
        where = DOCS_SCREENSHOTS
    else:
        where = ARTIFACTS / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A headless Chromium; pages it opened are screenshotted if the test fails."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CAREBOT_TEST_REQUIRE_BROWSER"):
            pytest.fail(f"CAREBOT_TEST_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(f"{SKIP_MESSAGE} ({missing})")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                await _screenshot_all(chromium, request.node.name)
            await chromium.close()


async def _screenshot_all(chromium: Any, test_name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    for i, context in enumerate(chromium.contexts):
        for j, page in enumerate(context.pages):
            await page.screenshot(path=str(ARTIFACTS / f"{safe}-{i}-{j}.png"), full_page=True)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until `check()` is true (polling), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
