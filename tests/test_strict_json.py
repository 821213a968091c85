"""Strict, bounded JSON at every door: what is refused, how, and that whatever was accepted
(or stored before the checks existed) can always be read back."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, PARSE_ERROR

from conveyor import strict_json
from conveyor.jobs.models import JobStatus
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime
from conveyor.schemas import JobView
from conveyor.settings import Settings
from tests.conftest import ERAS
from tests.http_helpers import error_of, ok
from tests.live_server import LiveServer
from tests.mcp_calls import call, call_error
from tests.raw_mcp import LEGACY, RawError, raw_client
from tests.serve_process import REPO, env_with_testkit, server_env, stdio_exchange

pytestmark = pytest.mark.anyio

DEEP = "[" * 2000 + "]" * 2000
# Each is valid JSON syntax or close to it, and none is strict JSON.
HOSTILE_VALUES = {
    "lone surrogate": '"\\ud800"',
    "NaN": "NaN",
    "Infinity": "-Infinity",
    "overflowing float": "1e999",
    "huge integer": "9" * 5000,
    "integer past 64 bits": str(2**64),
    "nesting past the limit": "[" * 65 + "]" * 65,
    "nesting past the parser": DEEP,
}


# -- the module --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
def test_strict_loads_refuses_what_json_cannot_carry_back(text: str) -> None:
    with pytest.raises(strict_json.NotStrictJson):
        strict_json.loads('{"a": ' + text + "}")


def test_strict_loads_names_where_a_value_is_wrong_and_takes_what_is_fine() -> None:
    with pytest.raises(strict_json.NotStrictJson) as caught:
        strict_json.loads('{"arguments": {"items": [1, "\\udfff"]}}')
    assert caught.value.location == "arguments.items[1]"
    fine = '{"a": [1, -9223372036854775808, 1.5e300, "\\ud83d\\ude00", {"b": null, "c": true}]}'
    assert strict_json.loads(fine) == json.loads(fine)
    assert strict_json.loads("[" * 64 + "]" * 64) is not None  # exactly the limit
    with pytest.raises(strict_json.NotStrictJson):
        strict_json.loads(b"\xff\xfe not utf-8")


def test_sanitized_makes_any_value_strict() -> None:
    dirty = {"t": "a\ud800b", "n": float("nan"), "i": 2**70, "l": [float("inf")], "k\udfff": 1}
    clean = strict_json.sanitized(dirty)
    strict_json.check(clean)
    assert clean == {"t": "a\ufffdb", "n": None, "i": str(2**70), "l": [None], "k\ufffd": 1}


# -- REST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
@pytest.mark.parametrize("path", ["/jobs/submit", "/execute_tool", "/webhooks"])
async def test_rest_refuses_bodies_that_are_not_strict_json_and_commits_nothing(
    live: LiveServer, path: str, value: str
) -> None:
    body = (
        '{"url": "https://example.com/h", "events": ' + value + "}"
        if path == "/webhooks"
        else '{"tool": "demo_echo", "arguments": {"text": ' + value + "}}"
    )
    async with live.client(live.admin_key) as http:
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        error_of(response, 400, "INVALID_ARGUMENTS")
        strict_json.loads(response.content)
        assert ok(await http.get("/jobs"))["pagination"]["total"] == 0
        assert ok(await http.get("/webhooks"))["webhooks"] == []


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [({"a": "1", "b": 2}, "a"), ({"a": 1, "b": True}, "b"), ({"a": 1.5, "b": [2]}, "b")],
)
async def test_rest_validates_tool_arguments_strictly_as_the_schema_says(
    live: LiveServer, arguments: dict[str, Any], argument: str
) -> None:
    async with live.client(live.admin_key) as http:
        for path in ("/jobs/submit", "/execute_tool"):
            response = await http.post(path, json={"tool": "demo_add", "arguments": arguments})
            assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == argument
        query = {"tool": "demo_add", "arguments": {"a": 1, "b": 2}, "timeout_ms": "5000"}
        assert error_of(await http.post("/jobs/submit", json=query), 400, "INVALID_ARGUMENTS")[
            "argument"
        ] == ("timeout_ms")
        # Query values are text: a number written in one is still a number.
        assert ok(await http.get("/jobs", params={"limit": "5"}))["pagination"]["limit"] == 5


# -- MCP -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [(HOSTILE_VALUES["NaN"], PARSE_ERROR), (HOSTILE_VALUES["lone surrogate"], INVALID_PARAMS)],
)
async def test_mcp_over_http_answers_a_message_that_is_not_strict_json_with_a_json_rpc_error(
    live: LiveServer, value: str, code: int
) -> None:
    message = (
        '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", '
        '"params": {"name": "demo_echo", "arguments": {"text": ' + value + "}}}"
    )
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with live.client(live.admin_key) as http:
        response = await http.post("/mcp", content=message, headers=headers)
        deep = await http.post(
            "/mcp", content='{"jsonrpc": "2.0", "id": 8, "params": ' + DEEP + "}", headers=headers
        )
    answer = strict_json.loads(response.content)
    assert response.status_code == 400
    assert answer["id"] == 7
    assert answer["error"]["code"] == code
    assert answer["error"]["data"]["code"] == "INVALID_ARGUMENTS"
    assert deep.status_code == 400
    assert strict_json.loads(deep.content)["error"]["data"]["code"] == "INVALID_ARGUMENTS"


async def test_mcp_over_stdio_answers_a_line_that_is_not_strict_json_and_serves_on(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "serve",
        "--db",
        str(tmp_path / "c.db"),
        "--worker",
        "inline",
    ]
    process = await anyio.open_process(
        command, env={**server_env(), **env_with_testkit()}, cwd=str(REPO), stderr=subprocess.DEVNULL
    )
    async with process:
        ask = stdio_exchange(process)
        with anyio.fail_after(20):
            nan = await ask('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": NaN}}')
            surrogate = await ask(
                '{"jsonrpc": "2.0", "id": "two", "method": "ping", "params": {"x": "\\ud800"}}'
            )
            garbage = await ask("this is not JSON")
            listed = await ask(
                '{"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": {'
                '"io.modelcontextprotocol/protocolVersion": "2026-07-28", '
                '"io.modelcontextprotocol/clientCapabilities": {}}}}'
            )
            await process.stdin.aclose()  # type: ignore[union-attr]
            assert await process.wait() == 0
    assert (nan["id"], nan["error"]["code"]) == (1, PARSE_ERROR)
    assert (surrogate["id"], surrogate["error"]["code"]) == ("two", INVALID_PARAMS)
    assert (garbage["id"], garbage["error"]["code"]) == (None, PARSE_ERROR)
    assert listed["id"] == 4
    assert "demo_echo" in [tool["name"] for tool in listed["result"]["tools"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_every_mcp_door_to_a_tool_refuses_what_the_schema_does_not_allow(
    runtime: Runtime, mode: str
) -> None:
    async with Client(build_server(runtime), mode=mode) as client:
        for arguments, argument in [
            ({"a": float("nan"), "b": 1}, "a"),
            ({"a": "1", "b": 1}, "a"),
            ({"a": 1, "b": True}, "b"),
            ({"a": 2**70, "b": 1}, "a"),
        ]:
            assert (await call_error(client, "demo_add", arguments))["argument"] == argument
            submitted = await call_error(client, "jobs_submit", {"tool": "demo_add", "arguments": arguments})
            assert submitted["code"] == "INVALID_ARGUMENTS"
        assert (await call_error(client, "demo_echo", {"text": "\ud800"}))["code"] == "INVALID_ARGUMENTS"
        assert (await call_error(client, "jobs_list", {"limit": "5"}))["argument"] == "limit"
        assert (await call(client, "jobs_list", {"limit": 5}))["pagination"]["total"] == 0


async def test_a_tool_result_json_cannot_carry_fails_the_run_and_bad_progress_text_is_cleaned(
    runtime: Runtime,
) -> None:
    for kind in ("nan", "surrogate"):
        job = await runtime.engine.submit("testkit_unruly", {"kind": kind}, owner="alice")
        done = await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)
        assert done.status is JobStatus.FAILED
        assert done.error is not None
        assert done.error["code"] == "EXECUTION_ERROR"
    job = await runtime.engine.submit("testkit_unruly", {"kind": "progress"}, owner="alice")
    done = await runtime.engine.wait(job.job_id, owner=None, timeout_s=10)
    assert done.status is JobStatus.COMPLETED
    assert done.progress is not None
    assert done.progress["message"] == "half \ufffd way"
    strict_json.check(JobView.of(done))


async def test_a_forged_tasks_list_cursor_is_invalid_params_never_an_internal_error(runtime: Runtime) -> None:
    import base64

    forged = [
        "not base64!",
        base64.urlsafe_b64encode(b"o:99999999999999999999999").decode(),
        base64.urlsafe_b64encode("o:١٢".encode()).decode(),
        base64.urlsafe_b64encode(b"x:1").decode(),
        "\u00e9t\u00e9",
    ]
    async with raw_client(build_server(runtime), era=LEGACY) as client:
        for cursor in forged:
            with pytest.raises(RawError) as refused:
                await client.request("tasks/list", {"cursor": cursor})
            assert refused.value.code == INVALID_PARAMS, cursor


async def test_an_unexpected_failure_in_a_handler_is_a_coded_internal_error_in_both_eras(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(runtime.engine, "list", broken)
    for mode in ERAS:
        async with Client(build_server(runtime), mode=mode) as client:
            with pytest.raises(MCPError) as failed:
                await client.list_resources()
        assert failed.value.error.code == INTERNAL_ERROR
        assert "secret internals" not in failed.value.error.message
        data = failed.value.error.data
        assert isinstance(data, dict)
        assert data["code"] == "INTERNAL_ERROR"
        assert data["request_id"]


# -- what was stored before the checks ---------------------------------------------------------


async def test_jobs_stored_before_the_checks_with_what_json_cannot_carry_are_still_read_and_listed(
    tmp_path: Path, live: LiveServer
) -> None:
    settings: Settings = live.runtime.settings
    job = await live.runtime.engine.submit("demo_echo", {"text": "ok"}, owner="alice")
    done = await live.runtime.engine.wait(job.job_id, owner=None, timeout_s=10)
    with sqlite3.connect(settings.db) as db:  # as an older Conveyor wrote them
        db.execute(
            "UPDATE jobs SET arguments = ?, result = ?, progress = ? WHERE job_id = ?",
            ('{"text": "\\ud800"}', '{"sum": NaN, "t": "\\udfff"}', '{"message": "x\\ud800"}', done.job_id),
        )
    async with live.client(live.admin_key) as http:
        shown = strict_json.loads((await http.get(f"/jobs/{done.job_id}")).content)
        listed = strict_json.loads((await http.get("/jobs")).content)
    assert shown["result"] == {"sum": None, "t": "\ufffd"}
    assert listed["jobs"][0]["job_id"] == done.job_id
    async with Client(build_server(live.runtime), mode="legacy") as client:
        status = await call(client, "jobs_status", {"job_id": done.job_id})
        read = await client.read_resource(f"conveyor://jobs/{done.job_id}")
    assert status["result"] == {"sum": None, "t": "\ufffd"}
    strict_json.loads(read.contents[0].text)  # type: ignore[union-attr]
    run = await anyio.run_process(
        [sys.executable, "-m", "conveyor", "jobs", "list", "--json", "--db", settings.db],
        env={**os.environ, "CONVEYOR_ENTRY_POINTS": "false"},
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert strict_json.loads(run.stdout)["jobs"][0]["job_id"] == done.job_id


async def test_conveyor_call_refuses_a_value_the_schema_does_not_allow(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_ENTRY_POINTS": "false", "CONVEYOR_DB": str(tmp_path / "c.db")}
    run = await anyio.run_process(
        [sys.executable, "-m", "conveyor", "call", "demo_add", "a=NaN", "b=2"], env=env, check=False
    )
    assert run.returncode == 1
    assert strict_json.loads(run.stdout)["error"]["code"] == "INVALID_ARGUMENTS"
