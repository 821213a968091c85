"""Headless Chromium (Debian's ``chromium`` package, never a downloaded build) driven by
Playwright's async API, for the jobs page's browser tests; and signing in as a person would."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.live_server import LiveServer

WAIT_MS = 20_000  # two cores shared with other test runs: generous, and never a sleep
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    """Debian's Chromium; missing, the browser tests skip, except under CI, where they fail."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, **context: Any) -> Page:
    options: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}, "color_scheme": "light"}
    options.update(context)
    page = await (await browser.new_context(**options)).new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def console_errors(page: Page) -> list[str]:
    """What the page reports as errors from now on: script errors, refused requests, and what
    the Content-Security-Policy blocked."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def sign_in(page: Page, live: LiveServer, key: str) -> None:
    """Open the jobs page, get sent to the sign-in page, sign in with the key, land on the jobs page."""
    await page.goto(f"{live.url}/ui")
    await expect(page).to_have_url(f"{live.url}/ui/login")
    await page.fill("#key", key)
    await page.click("#sign-in-form button[type=submit]")
    await expect(page).to_have_url(f"{live.url}/ui")
    await expect(page.locator("#live")).to_have_text("live")


def job_row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def status_of_row(page: Page, job_id: str) -> Any:
    return job_row(page, job_id).locator(".status .badge")


async def submit_over_rest(live: LiveServer, key: str, tool: str, arguments: dict[str, Any]) -> str:
    async with live.client(key) as http:
        response = await http.post("/jobs/submit", json={"tool": tool, "arguments": arguments})
    assert response.status_code in (200, 202), response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def job_over_rest(live: LiveServer, key: str, job_id: str, *, wait: float = 0) -> dict[str, Any]:
    async with live.client(key) as http:
        response: httpx2.Response = await http.get(f"/jobs/{job_id}", params={"wait_seconds": wait})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


JOB_PAGE = re.compile(r"/ui/jobs/(job_[0-9a-f]+)$")
