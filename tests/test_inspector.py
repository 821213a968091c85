"""Interop with the official MCP Inspector CLI, pinned in tests/package.json: over stdio, and over
HTTP at /mcp with an API key (the README's commands).

Set up once with ``npm ci --prefix tests``. Without tests/node_modules these tests skip
locally; in CI (``CI`` set) they fail instead, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.serve_process import Served, conveyor_http

pytestmark = pytest.mark.slow

NODE_MODULES = Path(__file__).parent / "node_modules"
NODE_BIN = NODE_MODULES / ".bin"


@pytest.fixture(scope="module")
def inspector() -> list[str]:
    """The inspector CLI run by the pinned Node 22 (the machine's own node may be too old)."""
    node, launcher = NODE_BIN / "node", NODE_BIN / "mcp-inspector"
    if not (node.exists() and launcher.exists()):
        reason = f"{NODE_MODULES} is not installed; run: npm ci --prefix tests"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    return [str(node), str(launcher), "--cli"]


def run_inspector(inspector: list[str], tmp_path: Path, *method: str, stderr: list[str] | None = None) -> Any:
    server = [sys.executable, "-m", "conveyor", "serve", "--db", str(tmp_path / "conveyor.db")]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(
        PATH=f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}",
        MCP_CATALOG_PATH=str(tmp_path / "mcp.json"),  # keep the inspector out of ~/.mcp-inspector
    )
    run = subprocess.run(
        [*inspector, *server, *method],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    if stderr is not None:
        stderr.append(run.stderr)
    return json.loads(run.stdout)


def test_inspector_lists_the_registry_tools_and_the_meta_tools(inspector: list[str], tmp_path: Path) -> None:
    listed = run_inspector(inspector, tmp_path, "--method", "tools/list")
    names = {tool["name"] for tool in listed["tools"]}
    meta_tools = {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list", "tools_search"}
    assert {"demo_echo", "demo_add"} | meta_tools <= names


def test_inspector_calls_a_tool_and_gets_structured_output(inspector: list[str], tmp_path: Path) -> None:
    result = run_inspector(
        inspector,
        tmp_path,
        *("--method", "tools/call", "--tool-name", "demo_add", "--tool-arg", "a=1", "--tool-arg", "b=2"),
    )
    assert result["isError"] is False
    assert result["structuredContent"] == {"sum": 3}


# -- over HTTP: `conveyor serve --http` in a subprocess, the Inspector at /mcp with the API key -----


async def run_inspector_http(inspector: list[str], tmp_path: Path, served: Served, *method: str) -> Any:
    target = [f"{served.url}/mcp", "--transport", "http", "--header", f"Authorization: Bearer {served.key}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(
        PATH=f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}", MCP_CATALOG_PATH=str(tmp_path / "mcp.json")
    )
    with anyio.fail_after(120):
        run = await anyio.run_process(
            [*inspector, *target, *method], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, check=False
        )
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout)


@pytest.mark.anyio
async def test_inspector_lists_and_calls_tools_over_http_with_an_api_key(
    inspector: list[str], tmp_path: Path
) -> None:
    async with conveyor_http(tmp_path, stop=signal.SIGINT) as served:
        listed = await run_inspector_http(inspector, tmp_path, served, "--method", "tools/list")
        added = await run_inspector_http(
            inspector,
            tmp_path,
            served,
            *("--method", "tools/call", "--tool-name", "demo_add", "--tool-arg", "a=1", "b=2"),
        )
        submitted = await run_inspector_http(
            inspector,
            tmp_path,
            served,
            *("--method", "tools/call", "--tool-name", "jobs_submit"),
            *("--tool-arg", "tool=demo_add", 'arguments={"a": 2, "b": 3}', "wait_seconds=10"),
        )
    assert {"demo_add", "jobs_submit", "jobs_status"} <= {tool["name"] for tool in listed["tools"]}
    assert added["isError"] is False
    assert added["structuredContent"] == {"sum": 3}
    assert submitted["structuredContent"]["status"] == "completed"
    assert submitted["structuredContent"]["result"] == {"sum": 5}


def test_the_inspector_finds_nothing_unportable_in_any_tool_schema(
    inspector: list[str], tmp_path: Path
) -> None:
    report: list[str] = []
    listed = run_inspector(inspector, tmp_path, "--method", "tools/list", stderr=report)
    assert {"jobs_submit", "jobs_list", "demo_add"} <= {tool["name"] for tool in listed["tools"]}
    # Its schema lint writes one "Warning: tool ..." or "Error: tool ..." block per finding.
    assert "Warning: tool" not in report[0]
    assert "Error: tool" not in report[0]
