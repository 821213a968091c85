"""The jobs page's doors over real HTTP: the session cookie, CSRF refusals, revocation, the
same ownership, roles and rate limits as the REST API, the live event stream, and the headers.
(The page in a browser: test_ui_browser.py.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from conveyor.http_api.ui import live
from conveyor.http_api.ui.sessions import COOKIE
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import UNKNOWN_JOB, error_of, finished, ok, started_hold, submit
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]
PAGES = ("/ui", "/ui/tools", "/ui/tools/demo_add", f"/ui/jobs/{UNKNOWN_JOB}")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(tmp_path, webhook_allow_private_addresses=True)
    async with live_server(settings) as server:
        yield server


def browser_like(server: LiveServer) -> httpx2.AsyncClient:
    """A client that sends what a browser on the page sends with its requests: the page's Origin."""
    return httpx2.AsyncClient(base_url=server.url, headers={"Origin": server.url}, timeout=30)


@asynccontextmanager
async def signed_in(server: LiveServer, key: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with browser_like(server) as http:
        response = await http.post("/ui/login", json={"key": key})
        assert response.status_code == 200, response.text
        yield http


def session_cookie(response: httpx2.Response) -> Any:
    cookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie[COOKIE]


# -- signing in and out -------------------------------------------------------------------------


async def test_signing_in_sets_an_http_only_strict_session_cookie_that_does_not_hold_the_key(
    server: LiveServer,
) -> None:
    key = await server.new_key()
    async with browser_like(server) as http:
        response = await http.post("/ui/login", json={"key": key})
        answer = ok(response)
        me = ok(await http.get("/ui/api/me"))
    cookie = session_cookie(response)
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert not cookie["max-age"]
    assert not cookie["expires"]  # a session cookie: gone when the browser closes
    assert key not in cookie.value
    assert key.removeprefix("cvk_") not in response.headers["set-cookie"]
    assert answer["role"] == "user"
    assert me == {"key_id": answer["key_id"], "role": "user", "sees_all_jobs": False}


async def test_a_bad_key_is_refused_at_sign_in_and_sets_no_cookie(server: LiveServer) -> None:
    async with browser_like(server) as http:
        response = await http.post("/ui/login", json={"key": "cvk_not-a-key"})
        error_of(response, 401, "UNAUTHORIZED")
        assert "set-cookie" not in response.headers
        error_of(await http.post("/ui/login", json={}), 400, "INVALID_ARGUMENTS")
        error_of(await http.post("/ui/login", content=b"key=cvk_x"), 400, "INVALID_ARGUMENTS")
        error_of(await http.get("/ui/api/me"), 401, "UNAUTHORIZED")


async def test_pages_send_a_browser_that_is_not_signed_in_to_the_sign_in_page(server: LiveServer) -> None:
    async with browser_like(server) as http:
        for path in PAGES:
            response = await http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/ui/login"
        sign_in_page = await http.get("/ui/login")
        assert sign_in_page.status_code == 200
        assert sign_in_page.headers["content-type"].startswith("text/html")
        assert 'id="sign-in-form"' in sign_in_page.text


async def test_a_signed_in_browser_gets_the_pages_and_is_sent_on_from_the_sign_in_page(
    server: LiveServer,
) -> None:
    async with signed_in(server, await server.new_key()) as http:
        for path in PAGES:
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/html")
            assert '<script type="module" src="/ui/static/' in response.text
        again = await http.get("/ui/login")
    assert again.status_code == 303
    assert again.headers["location"] == "/ui"


async def test_signing_out_clears_the_cookie(server: LiveServer) -> None:
    async with signed_in(server, await server.new_key()) as http:
        response = await http.post("/ui/logout")
        assert ok(response) == {"signed_out": True}
        assert session_cookie(response)["max-age"] == "0"
        error_of(await http.get("/ui/api/me"), 401, "UNAUTHORIZED")


async def test_revoking_the_key_ends_its_session(server: LiveServer) -> None:
    key = await server.new_key()
    async with signed_in(server, key) as http:
        key_id = ok(await http.get("/ui/api/me"))["key_id"]
        assert await server.runtime.keys.revoke(key_id)
        error_of(await http.get("/ui/api/me"), 401, "UNAUTHORIZED")
        error_of(await http.get("/ui/events"), 401, "UNAUTHORIZED")
        page = await http.get("/ui")
    assert page.status_code == 303


async def test_revoking_the_key_ends_its_open_event_streams(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.05)
    key = await server.new_key()
    async with server.client(key) as rest:
        job_id = await started_hold(rest)
    async with (
        signed_in(server, key) as http,
        http.sse("/ui/events") as jobs,
        http.sse("/ui/events", params={"job_id": job_id}) as one_job,
    ):
        key_id = ok(await http.get("/ui/api/me"))["key_id"]
        await server.runtime.keys.revoke(key_id)
        with anyio.fail_after(10):  # both streams end by themselves
            assert [event.event async for event in jobs][:2] == ["jobs", "figures"]
            assert [event.event async for event in one_job] == ["job"]


async def test_a_forged_or_tampered_cookie_is_refused(server: LiveServer) -> None:
    async with signed_in(server, await server.new_key()) as http:
        sealed = http.cookies[COOKIE]
        http.cookies.clear()
        http.cookies.set(COOKIE, sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB"))
        error_of(await http.get("/ui/api/me"), 401, "UNAUTHORIZED")
        http.cookies.set(COOKIE, "not a session")
        error_of(await http.get("/ui/api/jobs"), 401, "UNAUTHORIZED")


# -- CSRF, and the cookie's reach --------------------------------------------------------------


async def test_a_cross_site_request_is_refused_even_with_the_cookie(server: LiveServer) -> None:
    key = await server.new_key()
    async with server.client(key) as rest:
        job_id = await started_hold(rest)
    async with signed_in(server, key) as http:
        cross_site = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        for origin in (cross_site, {"Origin": "https://evil.example"}, {"Origin": "null"}):
            submit_refused = await http.post(
                "/ui/api/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}}, headers=origin
            )
            error_of(submit_refused, 403, "FORBIDDEN")
            error_of(await http.delete(f"/ui/api/jobs/{job_id}", headers=origin), 403, "FORBIDDEN")
            error_of(await http.post("/ui/logout", headers=origin), 403, "FORBIDDEN")
        del http.headers["Origin"]  # neither Origin nor Sec-Fetch-Site: not the page's own request
        error_of(await http.delete(f"/ui/api/jobs/{job_id}"), 403, "FORBIDDEN")
        same_origin = await http.delete(f"/ui/api/jobs/{job_id}", headers={"Sec-Fetch-Site": "same-origin"})
        assert ok(same_origin)["status"] == "canceled"
        listed = ok(await http.get("/ui/api/jobs"))  # reads need no Origin
    assert [job["job_id"] for job in listed["jobs"]] == [job_id]  # no job was submitted cross-site


async def test_another_site_cannot_sign_a_browser_in(server: LiveServer) -> None:
    key = await server.new_key()
    async with httpx2.AsyncClient(base_url=server.url, headers={"Origin": "https://evil.example"}) as http:
        response = await http.post("/ui/login", json={"key": key})
    error_of(response, 403, "FORBIDDEN")
    assert "set-cookie" not in response.headers


async def test_the_cookie_opens_only_the_page_and_a_bearer_key_does_not_open_the_page(
    server: LiveServer,
) -> None:
    key = await server.new_key()
    async with signed_in(server, key) as http:
        error_of(await http.get("/jobs"), 401, "UNAUTHORIZED")
        error_of(
            await http.post("/jobs/submit", json={"tool": "demo_echo", "arguments": {}}), 401, "UNAUTHORIZED"
        )
    async with server.client(key) as bearer:
        error_of(await bearer.get("/ui/api/me"), 401, "UNAUTHORIZED")
        assert (await bearer.get("/ui")).status_code == 303


# -- the same rules as the REST API ----------------------------------------------------------------


async def test_a_user_sees_only_their_jobs_and_an_admin_sees_all(server: LiveServer) -> None:
    mine, theirs = await server.new_key(), await server.new_key()
    async with server.client(theirs) as other:
        their_job = await submit(other, "demo_echo", {"text": "theirs"})
        await finished(other, their_job)
    async with signed_in(server, mine) as http:
        my_job = ok(
            await http.post("/ui/api/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "a"}}),
            202,
        )
        listed = ok(await http.get("/ui/api/jobs"))
        error_of(await http.get(f"/ui/api/jobs/{their_job}"), 404, "JOB_NOT_FOUND")
        error_of(await http.get(f"/ui/api/jobs/{their_job}/deliveries"), 404, "JOB_NOT_FOUND")
        error_of(await http.delete(f"/ui/api/jobs/{their_job}"), 404, "JOB_NOT_FOUND")
        error_of(await http.get("/ui/events", params={"job_id": their_job}), 404, "JOB_NOT_FOUND")
        figures = ok(await http.get("/ui/api/figures"))
    assert [job["job_id"] for job in listed["jobs"]] == [my_job["job_id"]]
    assert figures["scope"] == "yours"
    assert sum(figures["by_status"].values()) == 1
    async with signed_in(server, server.admin_key) as admin:
        everyone = ok(await admin.get("/ui/api/jobs"))
        ok(await admin.get(f"/ui/api/jobs/{their_job}"))
        error_of(await admin.delete(f"/ui/api/jobs/{their_job}"), 403, "FORBIDDEN")  # owner only, as on REST
        server_figures = ok(await admin.get("/ui/api/figures"))
    assert {job["job_id"] for job in everyone["jobs"]} == {my_job["job_id"], their_job}
    assert server_figures["scope"] == "server"
    assert sum(server_figures["by_status"].values()) == 2


async def test_submits_from_the_page_count_against_the_keys_rate_limit_with_rest_ones(
    server: LiveServer,
) -> None:
    key = await server.new_key(plan="free")  # 10 executions a minute
    body = {"tool": "demo_echo", "arguments": {"text": "x"}}
    async with server.client(key) as rest, signed_in(server, key) as page:
        for _ in range(5):
            ok(await rest.post("/jobs/submit", json=body), 202)
        for _ in range(5):
            response = await page.post("/ui/api/jobs/submit", json=body)
            ok(response, 202)
        assert response.headers["x-ratelimit-remaining"] == "0"
        refused = await page.post("/ui/api/jobs/submit", json=body)
        error_of(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert int(refused.headers["retry-after"]) > 0
        assert (await page.get("/ui/api/jobs")).headers["x-ratelimit-limit"] == "10"  # reads are not counted


async def test_a_bad_submit_from_the_page_gets_the_coded_error_naming_the_argument(
    server: LiveServer,
) -> None:
    async with signed_in(server, await server.new_key()) as http:
        missing = await http.post("/ui/api/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1}})
        assert error_of(missing, 400, "INVALID_ARGUMENTS")["argument"] == "b"
        error_of(
            await http.post("/ui/api/jobs/submit", json={"tool": "nope", "arguments": {}}),
            404,
            "TOOL_NOT_FOUND",
        )
        error_of(await http.post("/ui/api/jobs/submit", content=b"{"), 400, "INVALID_ARGUMENTS")
        error_of(await http.get("/ui/api/jobs", params={"status": "sleeping"}), 400, "INVALID_ARGUMENTS")
        error_of(await http.get("/ui/api/nothing"), 404, "NOT_FOUND")
        wrong_method = await http.put("/ui/api/jobs/submit")
        error_of(wrong_method, 405, "METHOD_NOT_ALLOWED")
        assert wrong_method.headers["allow"] == "POST"


async def test_an_admin_sees_where_another_keys_webhook_points_but_not_its_path_or_secret(
    server: LiveServer,
) -> None:
    owner = await server.new_key()
    hook = "http://user:hunter2@127.0.0.1:9/hooks/conveyor?token=s3cret"
    async with server.client(owner) as rest:
        response = await rest.post(
            "/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}, "webhook_url": hook}
        )
        job_id = ok(response, 202)["job_id"]
        await finished(rest, job_id)
    async with signed_in(server, owner) as http:
        [own] = ok(await http.get(f"/ui/api/jobs/{job_id}/deliveries"))["deliveries"]
    async with signed_in(server, server.admin_key) as admin:
        [seen] = ok(await admin.get(f"/ui/api/jobs/{job_id}/deliveries"))["deliveries"]
    assert own["url"] == "http://127.0.0.1:9/hooks/conveyor?token=s3cret"  # never the user:password
    assert own["event"] == "job.completed"
    assert seen["url"] == "http://127.0.0.1:9/…"


# -- the live stream ------------------------------------------------------------------------------


async def test_the_event_stream_sends_a_snapshot_then_only_the_callers_job_changes(
    server: LiveServer,
) -> None:
    mine, theirs = await server.new_key(), await server.new_key()
    async with signed_in(server, mine) as http:
        earlier = ok(
            await http.post("/ui/api/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "a"}}),
            202,
        )
        async with server.client(mine) as own:
            await finished(own, earlier["job_id"])
        seen: list[tuple[str, Any]] = []
        async with http.sse("/ui/events") as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            assert source.response.headers["content-security-policy"].startswith("default-src 'none'")
            events = aiter(source)
            with anyio.fail_after(10):
                snapshot, figures = await anext(events), await anext(events)
                async with server.client(theirs) as other:
                    await finished(other, await submit(other, "demo_echo", {"text": "theirs"}))
                async with server.client(mine) as own:
                    my_job = await submit(own, "demo_echo", {"text": "mine"})
                    async for event in events:
                        seen.append((event.event, event.json()))
                        if (
                            event.event == "job"
                            and event.json()["job_id"] == my_job
                            and event.json()["status"] == "completed"
                        ):
                            break
    assert snapshot.event == "jobs"
    assert [job["job_id"] for job in snapshot.json()["jobs"]] == [earlier["job_id"]]
    assert figures.event == "figures"
    assert figures.json()["by_status"]["completed"] == 1
    job_ids = {data["job_id"] for name, data in seen if name == "job"}
    assert job_ids == {my_job}  # theirs changed first, on the same fan-out, and was never sent


async def test_a_jobs_stream_follows_it_to_its_end_and_stops(server: LiveServer) -> None:
    key = await server.new_key()
    async with server.client(key) as rest:
        job_id = await started_hold(rest)
    async with signed_in(server, key) as http, http.sse("/ui/events", params={"job_id": job_id}) as source:
        events = aiter(source)
        with anyio.fail_after(10):
            first = await anext(events)
            toolkits.release.set()
            later = [event.json() async for event in events]  # ends: the server closes the stream
    assert first.event == "job"
    assert first.json()["status"] == "running"
    assert first.json()["arguments"] == {}  # a job's page shows its arguments (as stored)
    assert later[-1]["status"] == "completed"
    assert later[-1]["result"] == "released"


async def test_event_streams_hold_the_keys_share_of_streams(server: LiveServer) -> None:
    key = await server.new_key(plan="free")  # 4 event streams at once
    async with signed_in(server, key) as http, AsyncExitStack() as streams:
        for _ in range(4):
            source = await streams.enter_async_context(http.sse("/ui/events"))
            assert source.response.status_code == 200
        async with http.sse("/ui/events") as refused:
            await refused.response.aread()
            error_of(refused.response, 429, "RATE_LIMIT_EXCEEDED")
        await streams.aclose()  # the slots come back when the streams end
        async with http.sse("/ui/events") as again:
            assert again.response.status_code == 200


# -- what every response carries, and what the wheel ships --------------------------------------


async def test_every_ui_response_carries_the_content_security_policy_and_no_store(server: LiveServer) -> None:
    async with signed_in(server, await server.new_key()) as http:
        responses = [
            await http.get("/ui"),
            await http.get("/ui/api/me"),
            await http.get("/ui/api/nothing"),
            await http.get("/ui/static/ui.css"),
            await http.get("/ui/static/jobs.js"),
        ]
    for response in responses:
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
    assert [r.headers["cache-control"] for r in responses] == ["no-store"] * 3 + ["no-cache"] * 2
    assert responses[4].headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_the_page_fetches_nothing_from_elsewhere_and_writes_no_html_from_data() -> None:
    ui = Path(__file__).resolve().parent.parent / "server" / "conveyor" / "http_api" / "ui"
    for path in [*ui.glob("static/*"), *ui.glob("templates/*")]:
        text = path.read_text(encoding="utf-8").replace(
            'xmlns="http://www.w3.org/2000/svg"', ""
        )  # a name, not a fetch
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), path
        for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "localStorage", "sessionStorage"):
            assert unsafe not in text, (path, unsafe)
