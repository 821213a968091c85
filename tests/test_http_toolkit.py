"""The ``http`` toolkit against a real server on 127.0.0.1 (Starlette under uvicorn), which the
tests' settings allow by network: requests and their answers, redirects checked again (one to a
refused address is refused), size caps, host lists, and credentials sent by name but never
stored, logged or shown."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from conveyor.errors import ErrorCode
from conveyor.mcp_server import build_server
from conveyor.runtime import open_runtime
from conveyor.settings import Settings
from tests.conftest import ERAS, make_settings
from tests.live_server import serving
from tests.mcp_calls import call, call_error

pytestmark = pytest.mark.anyio

TOKEN = "tok-77c0ffee-http-toolkit-only-for-tests"
HTTP_TOOLKITS = ("conveyor_toolkits.demo:toolkit", "conveyor_toolkits.http:toolkit")


class Received:
    """What the test server was sent, for the tests to look at."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = anyio.Event()


def api(received: Received) -> Starlette:
    async def echo(request: Request) -> Response:
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "body": (await request.body()).decode(),
        }
        received.requests.append(seen)
        return JSONResponse(seen, headers={"X-Echoed-Auth": request.headers.get("authorization", "")})

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def big(request: Request) -> Response:
        return PlainTextResponse("x" * int(request.query_params["size"]))

    async def missing(request: Request) -> Response:
        return JSONResponse({"error": "no such pet"}, status_code=404)

    async def slow(request: Request) -> Response:
        await received.release.wait()
        return PlainTextResponse("late")

    async def binary(request: Request) -> Response:
        return Response(bytes(range(256)), media_type="application/octet-stream")

    routes = [
        Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/redirect", redirect),
        Route("/big", big),
        Route("/missing", missing),
        Route("/slow", slow),
        Route("/binary", binary),
    ]
    return Starlette(routes=routes)


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
async def url(received: Received) -> AsyncIterator[str]:
    async with serving(api(received)) as base:
        yield base
        received.release.set()


def http_settings(tmp_path: Path, **table: Any) -> Settings:
    """The toolkit loaded; only 127.0.0.1 among the non-public addresses allowed, unless told otherwise."""
    table = {"allowed_networks": ["127.0.0.1/32"], **table}
    return make_settings(tmp_path, toolkits=HTTP_TOOLKITS, toolkit_settings={"http": table})


def stored_bytes(directory: Path) -> bytes:
    """Every byte SQLite keeps there: the database file, its WAL and its journal."""
    return b"".join(path.read_bytes() for path in directory.glob("conveyor.db*"))


@asynccontextmanager
async def connected(settings: Settings, era: str = "auto") -> AsyncIterator[Client]:
    async with open_runtime(settings) as runtime, Client(build_server(runtime), mode=era) as client:
        yield client


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_a_request_sends_its_method_params_headers_and_json_and_returns_the_parsed_answer(
    tmp_path: Path, url: str, received: Received, era: str
) -> None:
    arguments = {
        "method": "POST",
        "url": f"{url}/echo?kept=1",
        "params": {"page": 2, "q": "a b", "exact": True},
        "headers": {"X-Team": "agents"},
        "json": {"name": "Rex", "tags": ["good"]},
    }
    async with connected(http_settings(tmp_path), era) as client:
        answer = await call(client, "http_request", arguments)
    assert answer["status"] == 200
    assert answer["ok"] is True
    assert answer["body_kind"] == "json"
    seen = answer["body"]
    assert seen == received.requests[0]
    assert seen["method"] == "POST"
    assert seen["query"] == {"kept": "1", "page": "2", "q": "a b", "exact": "true"}
    assert seen["headers"]["x-team"] == "agents"
    assert seen["headers"]["content-type"] == "application/json"
    assert json.loads(seen["body"]) == {"name": "Rex", "tags": ["good"]}
    assert answer["headers"]["content-type"] == "application/json"


async def test_any_status_is_a_result_and_bodies_come_as_text_or_base64(tmp_path: Path, url: str) -> None:
    async with connected(http_settings(tmp_path)) as client:
        missing = await call(client, "http_request", {"url": f"{url}/missing"})
        text = await call(client, "http_request", {"url": f"{url}/big", "params": {"size": 5}})
        binary = await call(client, "http_request", {"url": f"{url}/binary"})
        head = await call(client, "http_request", {"url": f"{url}/big?size=5", "method": "HEAD"})
    assert (missing["status"], missing["ok"], missing["body"]) == (404, False, {"error": "no such pet"})
    assert (text["body_kind"], text["body"]) == ("text", "xxxxx")
    assert binary["body_kind"] == "base64"
    assert head["body_kind"] == "empty"


async def test_a_followed_redirect_is_checked_again_and_one_to_a_refused_address_is_refused(
    tmp_path: Path, url: str
) -> None:
    async with connected(http_settings(tmp_path)) as client:
        followed = await call(
            client, "http_request", {"url": f"{url}/redirect", "params": {"to": f"{url}/echo"}}
        )
        metadata = await call_error(
            client,
            "http_request",
            {"url": f"{url}/redirect", "params": {"to": "http://169.254.169.254/latest/meta-data/"}},
        )
        private = await call_error(
            client, "http_request", {"url": f"{url}/redirect", "params": {"to": "http://10.0.0.1/"}}
        )
    assert followed["body"]["path"] == "/echo"
    assert followed["url"] == f"{url}/echo"
    for refused in (metadata, private):
        assert refused["code"] == ErrorCode.FORBIDDEN
        assert "toolkit_settings.http" in refused["suggested_fix"]


async def test_loopback_is_refused_unless_the_settings_allow_it(tmp_path: Path, url: str) -> None:
    async with connected(http_settings(tmp_path, allowed_networks=[])) as client:
        literal = await call_error(client, "http_request", {"url": f"{url}/echo"})
        by_name = await call_error(
            client, "http_request", {"url": url.replace("127.0.0.1", "localhost") + "/echo"}
        )
    assert literal["code"] == by_name["code"] == ErrorCode.FORBIDDEN


async def test_the_host_lists_hold_for_the_first_request_and_every_redirect(tmp_path: Path, url: str) -> None:
    to_localhost = {
        "url": f"{url}/redirect",
        "params": {"to": url.replace("127.0.0.1", "localhost") + "/echo"},
    }
    allowed_only = http_settings(tmp_path, allowed_hosts=["127.0.0.1"])
    async with connected(allowed_only) as client:
        redirected = await call_error(client, "http_request", to_localhost)
    denied = http_settings(tmp_path, denied_hosts=["127.0.0.1"])
    async with connected(denied) as client:
        first = await call_error(client, "http_request", {"url": f"{url}/echo"})
    assert redirected["code"] == first["code"] == ErrorCode.FORBIDDEN


async def test_an_oversized_body_is_refused(tmp_path: Path, url: str) -> None:
    async with connected(http_settings(tmp_path, max_response_bytes=1000)) as client:
        fits = await call(client, "http_request", {"url": f"{url}/big", "params": {"size": 1000}})
        error = await call_error(client, "http_request", {"url": f"{url}/big", "params": {"size": 1001}})
    assert len(fits["body"]) == 1000
    assert error["code"] == ErrorCode.PAYLOAD_TOO_LARGE


async def test_a_server_that_does_not_answer_in_time_is_a_retryable_upstream_error(
    tmp_path: Path, url: str
) -> None:
    async with connected(http_settings(tmp_path, max_timeout_s=5)) as client:
        late = await call_error(client, "http_request", {"url": f"{url}/slow", "timeout_s": 0.5})
        too_long = await call_error(client, "http_request", {"url": f"{url}/slow", "timeout_s": 6})
    assert late["code"] == ErrorCode.UPSTREAM_UNAVAILABLE
    assert late["retryable"] is True
    assert too_long["code"] == ErrorCode.INVALID_ARGUMENTS
    assert too_long["argument"] == "timeout_s"


async def test_bad_arguments_are_refused_with_the_argument_named(tmp_path: Path, url: str) -> None:
    cases = [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": f"{url}/echo", "headers": {"Host": "evil.example"}}, "headers"),
        ({"url": f"{url}/echo", "headers": {"X-Split": "a\r\nInjected: 1"}}, "headers"),
        ({"url": f"{url}/echo", "json": {}, "body": "both"}, "body"),
        ({"url": f"{url}/echo", "method": "TRACE"}, "method"),
    ]
    async with connected(http_settings(tmp_path)) as client:
        for arguments, argument in cases:
            error = await call_error(client, "http_request", arguments)
            assert error["code"] == ErrorCode.INVALID_ARGUMENTS, arguments
            assert error["argument"] == argument, arguments


# -- credentials ---------------------------------------------------------------------------------


async def test_a_credential_header_is_sent_but_never_stored_logged_or_shown(
    tmp_path: Path, url: str, received: Received, caplog: pytest.LogCaptureFixture
) -> None:
    settings = http_settings(tmp_path)
    arguments = {
        "url": f"{url}/echo",
        "headers": {"Authorization": "Bearer {credential:api}"},
        "params": {"key": "{credential:api}"},
    }
    with caplog.at_level(logging.DEBUG, logger="conveyor"):  # as `--log-level DEBUG` would
        async with open_runtime(settings) as runtime, Client(build_server(runtime)) as client:
            job = await call(
                client,
                "jobs_submit",
                {
                    "tool": "http_request",
                    "arguments": arguments,
                    "credentials": {"api": TOKEN},
                    "wait_seconds": 20,
                },
            )
            listed = await call(client, "jobs_list", {})
            missing = await call_error(client, "http_request", arguments)  # no credentials given
    assert job["status"] == "completed", job
    # The server got the secret, in the header and the query...
    assert received.requests[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert received.requests[0]["query"] == {"key": TOKEN}
    # ...and what came back, which echoes it, shows it redacted, as does the job's URL.
    result = job["result"]
    assert result["body"]["headers"]["authorization"] == "Bearer [redacted]"
    assert result["headers"]["x-echoed-auth"] == "Bearer [redacted]"
    assert result["url"] == f"{url}/echo?key=[redacted]"
    for shown in (json.dumps(job), json.dumps(listed), caplog.text):
        assert TOKEN not in shown
    assert TOKEN.encode() not in stored_bytes(tmp_path)
    assert missing["code"] == ErrorCode.INVALID_ARGUMENTS
    assert missing["argument"] == "headers"
