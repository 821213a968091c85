"""A plain 2026-07-28 tools/call over HTTP is answered by Conveyor's own path (``plain_tool_call``)
exactly as the SDK's 2026 entry answers it, and every other request is left to the SDK.

Each request goes twice to a real uvicorn: as served, then with the plain path turned off so that
the SDK's entry answers it; the two answers must be the same, byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx2
import pytest
from pydantic import BaseModel, Field

from conveyor import Toolkit
from conveyor.http_api import plain_answer
from tests.conftest import make_settings
from tests.http_helpers import MODERN as VERSION
from tests.http_helpers import MODERN_META as META
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]

TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}}

routed = Toolkit("routed", description="A tool whose argument travels in a header too.")


class Echo(BaseModel):
    region: str
    note: str | None


@routed.tool(read_only=True, open_world=False)
def region(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], note: str | None = None
) -> Echo:
    """Echo the region, and a note that may be null."""
    return Echo(region=region, note=note)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    toolkits = ("conveyor_toolkits.demo:toolkit", "tests.toolkits:toolkit", f"{__name__}:routed")
    settings = make_settings(tmp_path_factory.mktemp("plain_tool_call"), toolkits=toolkits)
    async with live_server(settings) as server:
        yield server


def call(
    name: str,
    arguments: Any = None,
    *,
    request_id: Any = 7,
    meta: dict[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    body = {"name": name, "_meta": {**META, **(meta or {})}, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def headers_for(message: dict[str, Any], **extra: str) -> list[tuple[str, str]]:
    found = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": message["params"]["name"],
        **extra,
    }
    return list(found.items())


# (case, message, extra headers, whether Conveyor's plain path answers it)
CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]], bool]] = [
    ("a tool's result", call("testkit_blocking_sum", {"numbers": [1, 2, 3]}), [], True),
    ("a string id", call("testkit_blocking_sum", {"numbers": [4]}, request_id="abc"), [], True),
    ("no arguments", call("testkit_pid"), [], True),
    ("a null in the structure", call("routed_region", {"region": "eu"}), [("Mcp-Param-Region", "eu")], True),
    ("arguments the tool refuses", call("testkit_blocking_sum", {"numbers": "many"}), [], True),
    ("a meta-tool's error", call("jobs_status", {"job_id": "job_nosuchjob"}), [], True),
    (
        "a version no tool has",
        call("testkit_blocking_sum", {"numbers": [1]}, meta={"conveyor/version": "9"}),
        [],
        True,
    ),
    (
        "a version that is not text",
        call("testkit_blocking_sum", {"numbers": [1]}, meta={"conveyor/version": 9}),
        [],
        True,
    ),
    ("a tool the caller may not use as a task", call("testkit_quick", {}), [], True),
    ("Accept: */*", call("testkit_blocking_sum", {"numbers": [2]}), [("Accept", "*/*")], True),
    ("an unknown tool", call("no_such_tool", {}), [], False),
    ("a tool that runs only as a task", call("testkit_long", {}), [], False),
    (
        "a tasks-extension caller",
        call("testkit_quick", {}, meta={"io.modelcontextprotocol/clientCapabilities": TASKS}),
        [],
        False,
    ),
    (
        "a name header that disagrees",
        call("testkit_blocking_sum", {"numbers": [1]}),
        [("Mcp-Name", "other")],
        False,
    ),
    ("a routing header twice", call("testkit_pid"), [("Mcp-Method", "tools/call")], False),
    (
        "a param header that disagrees",
        call("routed_region", {"region": "eu"}),
        [("Mcp-Param-Region", "us")],
        False,
    ),
    ("a param header missing", call("routed_region", {"region": "eu"}), [], False),
    (
        "malformed client info",
        call("testkit_pid", meta={"io.modelcontextprotocol/clientInfo": {"name": 1}}),
        [],
        False,
    ),
    ("a field of the 2025 era", call("testkit_pid", task={"ttl": 1000}), [], False),
    ("a boolean id", call("testkit_pid", request_id=True), [], False),
    ("a float id", call("testkit_pid", request_id=7.0), [], False),
    ("arguments that are not an object", call("testkit_pid", [1]), [], False),
    ("no JSON in Accept", call("testkit_pid"), [("Accept", "text/event-stream")], False),
    (
        "a version header of another revision",
        call("testkit_pid"),
        [("MCP-Protocol-Version", "2026-12-31")],
        False,
    ),
]


async def post(server: LiveServer, message: dict[str, Any], extra: list[tuple[str, str]]) -> httpx2.Response:
    replaced = {name.lower() for name, _ in extra if name.lower() != "mcp-method"}
    headers = [(k, v) for k, v in headers_for(message) if k.lower() not in replaced] + extra
    headers.append(("Authorization", f"Bearer {server.admin_key}"))
    async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/mcp", json=message, headers=headers)


@pytest.mark.parametrize(
    ("message", "extra", "plain"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
async def test_each_request_is_answered_as_the_sdk_answers_it(
    server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    message: dict[str, Any],
    extra: list[tuple[str, str]],
    plain: bool,
) -> None:
    answered_plain: list[str] = []
    conveyor_answer = plain_answer.answer

    async def counted(call: Any, *args: Any) -> None:
        answered_plain.append(call.name)
        await conveyor_answer(call, *args)

    monkeypatch.setattr(plain_answer, "answer", counted)
    ours = await post(server, message, extra)
    assert bool(answered_plain) is plain

    monkeypatch.setattr(plain_answer, "recognize", lambda *_: None)  # the SDK's entry answers all
    sdks = await post(server, message, extra)

    assert ours.status_code == sdks.status_code
    assert ours.headers.get("content-type") == sdks.headers.get("content-type")
    assert ours.content == sdks.content


async def test_the_plain_path_answers_what_the_tool_returned(server: LiveServer) -> None:
    # The comparison above holds for any answer both paths give; this pins what the answer is.
    message = call("routed_region", {"region": "eu"})
    response = await post(server, message, [("Mcp-Param-Region", "eu")])
    assert response.status_code == 200
    reply = response.json()
    assert reply["id"] == 7
    result = reply["result"]
    assert result["structuredContent"] == {"region": "eu", "note": None}
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "conveyor"
    assert result["isError"] is False


async def test_refused_arguments_are_a_coded_tool_error(server: LiveServer) -> None:
    response = await post(server, call("testkit_blocking_sum", {"numbers": "many"}, request_id="r1"), [])
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "INVALID_ARGUMENTS"
    assert result["structuredContent"]["error"]["request_id"] == "r1"
