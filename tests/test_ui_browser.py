"""The jobs page in a real browser: headless Chromium against a real server and SQLite file.

Everything is awaited through Playwright's ``expect`` (it retries until the page shows what is
expected, or fails at its timeout): no sleeps. The jobs page with running jobs is saved as a test
artifact, ``build/artifacts/jobs-page.png`` (or under ``$CONVEYOR_TEST_ARTIFACTS``): the README's
``docs/images/jobs-page.png`` is a copy of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests import toolkits
from tests.conftest import make_settings
from tests.live_server import LiveServer, live_server
from tests.ui_browser import (
    JOB_PAGE,
    chromium,
    console_errors,
    job_over_rest,
    job_row,
    new_page,
    sign_in,
    status_of_row,
    submit_over_rest,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]
ARTIFACTS = Path(
    os.environ.get("CONVEYOR_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "build" / "artifacts"
)
SCREENSHOT = ARTIFACTS / "jobs-page.png"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(tmp_path, concurrency=2)) as server:
        yield server


async def test_a_bad_key_is_refused_and_a_good_one_signs_in_without_the_key_in_url_or_storage(
    browser: Browser, server: LiveServer
) -> None:
    key = await server.new_key()
    page = await new_page(browser)
    await page.goto(f"{server.url}/ui")
    await expect(page).to_have_url(f"{server.url}/ui/login")
    await page.fill("#key", "cvk_not-a-key")
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#sign-in-error .code")).to_have_text("UNAUTHORIZED")
    await expect(page).to_have_url(f"{server.url}/ui/login")

    await sign_in(page, server, key)
    await expect(page.locator("#who-name")).to_contain_text("user")
    [cookie] = await page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert key not in cookie["value"]
    assert cookie["expires"] == -1  # a session cookie: it ends with the browser
    assert key not in page.url
    stored = await page.evaluate(
        "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
    )
    assert key not in stored
    assert "conveyor_session" not in stored  # HttpOnly: no script reads it


async def test_a_job_submitted_over_rest_appears_and_reaches_completed_without_a_reload(
    browser: Browser, server: LiveServer
) -> None:
    key = await server.new_key()
    page = await new_page(browser)
    errors = console_errors(page)
    await sign_in(page, server, key)
    await page.evaluate("() => { window.notReloaded = true; }")

    job_id = await submit_over_rest(server, key, "testkit_hold", {})
    await expect(status_of_row(page, job_id)).to_have_text("running")
    await expect(job_row(page, job_id).locator(".progress-text")).to_contain_text("holding")
    await expect(page.locator("#fig-running")).to_have_text("1")
    toolkits.release.set()
    await expect(status_of_row(page, job_id)).to_have_text("completed")
    await expect(page.locator("#fig-completed")).to_have_text("1")
    assert await page.evaluate("() => window.notReloaded") is True
    assert errors == []


async def test_a_running_job_is_canceled_from_its_page(browser: Browser, server: LiveServer) -> None:
    key = await server.new_key()
    page = await new_page(browser)
    await sign_in(page, server, key)
    job_id = await submit_over_rest(server, key, "demo_sleep", {"seconds": 120, "steps": 120})
    await page.click(f'tr[data-job-id="{job_id}"] .id a')
    await expect(page).to_have_url(f"{server.url}/ui/jobs/{job_id}")
    await expect(page.locator("#job-status")).to_have_text("running")
    await page.click("#cancel")
    await expect(page.locator("#job-status")).to_have_text("canceled")
    await expect(page.locator("#error-code")).to_have_text("CANCELED")
    await expect(page.locator("#cancel")).to_be_hidden()
    job = await job_over_rest(server, key, job_id)
    assert job["status"] == "canceled"
    assert job["error"]["code"] == "CANCELED"


async def test_a_job_submitted_from_a_tools_form_runs_and_a_bad_one_shows_its_coded_error(
    browser: Browser, server: LiveServer
) -> None:
    key = await server.new_key()
    page = await new_page(browser)
    await sign_in(page, server, key)
    await page.click("nav >> text=Tools")
    await page.click('[data-tool="demo_add"] a.tool-name')
    await expect(page).to_have_url(f"{server.url}/ui/tools/demo_add")
    await expect(page.locator("#input-schema")).to_contain_text('"required"')

    await page.fill("#arg-a", "2")
    await page.click("#submit")  # b left out: the server names it
    await expect(page.locator("#submit-error .code")).to_have_text("INVALID_ARGUMENTS")
    await expect(page.locator("#arg-b")).to_have_attribute("aria-invalid", "true")

    await page.fill("#arg-b", "3.5")
    await page.click("#submit")
    await expect(page).to_have_url(JOB_PAGE)
    await expect(page.locator("#job-status")).to_have_text("completed")
    await expect(page.locator("#job-result")).to_contain_text('"sum": 5.5')
    await expect(page.locator("#job-arguments")).to_contain_text('"b": 3.5')
    match = JOB_PAGE.search(page.url)
    assert match is not None
    job = await job_over_rest(server, key, match.group(1))
    assert job["tool"] == "demo_add"
    assert job["result"] == {"sum": 5.5}


async def test_a_user_key_never_sees_another_keys_job_in_the_list_or_by_its_id(
    browser: Browser, server: LiveServer
) -> None:
    mine, theirs = await server.new_key(), await server.new_key()
    page = await new_page(browser)
    await sign_in(page, server, mine)
    their_job = await submit_over_rest(server, theirs, "demo_echo", {"text": "not yours"})
    assert (await job_over_rest(server, theirs, their_job, wait=10))["status"] == "completed"
    # Ours comes after theirs through the same event fan-out: had theirs been sent, it is here.
    my_job = await submit_over_rest(server, mine, "demo_echo", {"text": "mine"})
    await expect(status_of_row(page, my_job)).to_have_text("completed")
    await expect(job_row(page, their_job)).to_have_count(0)
    await expect(page.locator("#fig-completed")).to_have_text("1")  # a user's figures count their jobs

    await page.reload()
    await expect(status_of_row(page, my_job)).to_have_text("completed")
    await expect(job_row(page, their_job)).to_have_count(0)

    await page.goto(f"{server.url}/ui/jobs/{their_job}")
    await expect(page.locator("#job-error .code")).to_have_text("JOB_NOT_FOUND")
    await expect(page.locator("#job")).to_be_hidden()
    assert "not yours" not in await page.content()

    admin = await new_page(browser)
    await sign_in(admin, server, server.admin_key)
    await expect(status_of_row(admin, their_job)).to_have_text("completed")


async def test_the_jobs_page_fits_a_narrow_window(browser: Browser, server: LiveServer) -> None:
    key = await server.new_key()
    page = await new_page(browser, viewport={"width": 380, "height": 800})
    await sign_in(page, server, key)
    job_id = await submit_over_rest(server, key, "demo_echo", {"text": "narrow"})
    await expect(status_of_row(page, job_id)).to_have_text("completed")
    await expect(job_row(page, job_id)).to_be_visible()
    overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0


async def test_a_screenshot_of_the_jobs_page_with_running_jobs_is_saved(
    browser: Browser, server: LiveServer
) -> None:
    """The README's picture: a few jobs done, failed, running with progress, and one queued."""
    key = server.admin_key
    page = await new_page(browser, viewport={"width": 1280, "height": 720})
    errors = console_errors(page)
    await sign_in(page, server, key)
    done = [
        await submit_over_rest(server, key, "demo_add", {"a": 2, "b": 3}),
        await submit_over_rest(server, key, "demo_echo", {"text": "hello"}),
        await submit_over_rest(server, key, "demo_fail", {"message": "disk quota exceeded"}),
        await submit_over_rest(server, key, "demo_sleep", {"seconds": 0.4, "steps": 4}),
    ]
    for job_id in done:
        await job_over_rest(server, key, job_id, wait=10)
    running = [
        await submit_over_rest(server, key, "demo_sleep", {"seconds": 60, "steps": 120}),
        await submit_over_rest(server, key, "demo_sleep", {"seconds": 30, "steps": 120}),
    ]
    queued = await submit_over_rest(server, key, "demo_sleep", {"seconds": 30})  # two workers: it waits
    await expect(job_row(page, running[0]).locator(".progress-text")).to_contain_text("step")
    await expect(job_row(page, running[1]).locator(".progress-text")).to_contain_text(
        re.compile(r"step [1-9]\d+ of 120")  # 10 or more
    )
    await expect(status_of_row(page, queued)).to_have_text("queued")
    await expect(status_of_row(page, done[2])).to_have_text("failed")
    await expect(page.locator("#fig-running")).to_have_text("2")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    for job_id in [*done, *running]:  # and each job's page, without an error either
        await page.goto(f"{server.url}/ui/jobs/{job_id}")
        await expect(page.locator("#job-id")).to_have_text(job_id)
    await page.goto(f"{server.url}/ui/tools/demo_sleep")
    await expect(page.locator("#arg-seconds")).to_be_visible()
    assert errors == []


async def test_a_secret_argument_typed_in_a_tools_form_never_shows_on_the_page(
    browser: Browser, tmp_path: Path
) -> None:
    toolkits_loaded = ("conveyor_toolkits.demo:toolkit", "tests.secret_toolkits:toolkit")
    async with live_server(make_settings(tmp_path, toolkits=toolkits_loaded)) as server:
        key = await server.new_key()
        page = await new_page(browser)
        await sign_in(page, server, key)
        await page.goto(f"{server.url}/ui/tools/secretkit_login")
        await expect(page.locator("#arg-password")).to_have_attribute("type", "password")
        await page.fill("#arg-user", "ada")
        await page.fill("#arg-password", "hunter2-s3cret")
        await page.click("#submit")
        await expect(page).to_have_url(JOB_PAGE)
        await expect(page.locator("#job-status")).to_have_text("completed")
        await expect(page.locator("#job-arguments")).to_contain_text('"password": "[secret]"')
        await expect(page.locator("#job-arguments")).to_contain_text('"user": "ada"')
        assert "hunter2-s3cret" not in await page.content()
