"""Generated hostile JSON against the REST API and MCP over HTTP (a real uvicorn): whatever comes
in, the answer is never a 5xx or an uncoded error, it is always strict JSON, and after each input
that was accepted the owner's and the admin's listings still work."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import strict_json
from tests.live_server import LiveServer

pytestmark = pytest.mark.anyio

MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
# demo_sleep is left out: an accepted direct call could be asked to sleep for years.
TOOLS = ["demo_echo", "demo_add", "jobs_list", "no_such_tool", "", "\ud800"]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\ud83d\ude00", "\x00", "1", "true", "NaN"]),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """Nesting on either side of the limit (64), up to what Python's own parser cannot take."""
    depth = draw(st.sampled_from([63, 64, 65, 200, 1200]))
    value: Any = draw(leaves)
    for _ in range(depth):
        value = [value]
    return value


hostile = st.one_of(values, deep())


def as_json(value: Any) -> str:
    """JSON text as a careless client writes it: lone surrogates as escapes, NaN as NaN."""
    try:
        return json.dumps(value, allow_nan=True)
    except RecursionError:  # too deep for the encoder: write the brackets by hand
        depth = 0
        while isinstance(value, list) and value:
            value, depth = value[0], depth + 1
        return "[" * depth + json.dumps(value, allow_nan=True) + "]" * depth


@st.composite
def rest_bodies(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(["/jobs/submit", "/execute_tool", "/webhooks"]))
    body: dict[str, Any] = {}
    if path == "/webhooks":
        body["url"] = draw(st.one_of(st.just("https://example.com/hook"), hostile))
        if draw(st.booleans()):
            body["events"] = draw(st.one_of(st.just(["job.completed"]), hostile))
    else:
        body["tool"] = draw(st.one_of(st.sampled_from(TOOLS), hostile))
        body["arguments"] = draw(
            st.one_of(st.dictionaries(st.sampled_from(["a", "b", "text", "seconds"]), hostile), hostile)
        )
        for field in ("timeout_ms", "wait_seconds", "idempotency_key", "unknown_field"):
            if draw(st.booleans()):
                body[field] = draw(hostile)
    return path, as_json(body)


@st.composite
def mcp_messages(draw: st.DrawFn) -> str:
    params: dict[str, Any] = {
        "name": draw(st.one_of(st.sampled_from([*TOOLS, "jobs_submit"]), hostile)),
        "arguments": draw(
            st.one_of(st.dictionaries(st.sampled_from(["a", "b", "text", "tool"]), hostile), hostile)
        ),
        "_meta": MODERN_META,
    }
    if draw(st.booleans()):
        params["unknown"] = draw(hostile)
    message = {
        "jsonrpc": "2.0",
        "id": draw(st.one_of(st.integers(1, 10**6), hostile)),
        "method": "tools/call",
    }
    message["params"] = params
    return as_json(message)


def strict_answer(response: httpx2.Response) -> Any:
    """The response must be strict JSON, coded if an error, and never a 5xx."""
    assert response.status_code < 500, response.text
    body = strict_json.loads(response.content)
    if response.status_code >= 400 and isinstance(body, dict) and "error" in body:
        error = body["error"]
        if "jsonrpc" in body:  # a JSON-RPC error: coded by number, and by name in its data
            assert error["code"] != 0
        else:
            assert error["code"], body
    return body


async def listings_still_work(live: LiveServer, owner: httpx2.AsyncClient, admin: httpx2.AsyncClient) -> None:
    for http in (owner, admin):
        page = strict_answer(await http.get("/jobs", params={"limit": 100}))
        for job in page["jobs"]:
            strict_answer(await http.get(f"/jobs/{job['job_id']}"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=rest_bodies())
async def test_hostile_rest_bodies_get_a_coded_strict_answer_and_break_no_listing(
    live: LiveServer, request: tuple[str, str]
) -> None:
    path, body = request
    owner_key = await live.new_key(role="user", plan="enterprise")
    async with live.client(owner_key) as owner, live.client(live.admin_key) as admin:
        client = admin if path == "/execute_tool" else owner  # only admins may execute directly
        strict_answer(await client.post(path, content=body, headers={"content-type": "application/json"}))
        await listings_still_work(live, owner, admin)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=mcp_messages())
async def test_hostile_mcp_messages_get_a_coded_strict_answer_and_break_no_listing(
    live: LiveServer, message: str
) -> None:
    async with live.client(live.admin_key) as admin:
        strict_answer(await admin.post("/mcp", content=message, headers=MCP_HEADERS))
        await listings_still_work(live, admin, admin)
