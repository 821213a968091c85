"""MCP tasks interop with the official TypeScript clients, pinned in tests/package.json.

- ``tests/node/tasks_2025.mjs``: ``@modelcontextprotocol/sdk`` 1.x, protocol 2025-11-25 tasks,
  through ``client.experimental.tasks`` (``callToolStream``, ``getTask``, ``getTaskResult``,
  ``listTasks``, ``cancelTask``).
- ``tests/node/tasks_2026.mjs``: ``@modelcontextprotocol/client`` 2.x with
  ``@modelcontextprotocol/ext-tasks``, the 2026-07-28 tasks extension.

Each script talks to a real ``conveyor serve`` (over stdio it spawns the server; over HTTP
this module starts one) and prints one JSON summary of what it saw; the assertions are here.
Set up once with ``npm ci --prefix tests``. Without tests/node_modules these tests skip
locally; in CI (``CI`` set) they fail instead, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
NODE_MODULES = TESTS / "node_modules"
NODE = NODE_MODULES / ".bin" / "node"
SCRIPTS = TESTS / "node"
PACKAGES = ("@modelcontextprotocol/sdk", "@modelcontextprotocol/client", "@modelcontextprotocol/ext-tasks")
SCRIPT_TIMEOUT_S = 60
CONVEYOR = [sys.executable, "-m", "conveyor"]
RELATED_TASK = "io.modelcontextprotocol/related-task"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_ID = re.compile(r"^job_[0-9a-f]{32}$")
# What demo_sleep answers for the arguments tasks_2025.mjs uses for its streamed task.
SLEEP_OUTPUT = {"slept_seconds": 1, "steps": 4}


@pytest.fixture(scope="module")
def node() -> Path:
    """Node 22 from tests/node_modules (the machine's own node may be too old)."""
    if not NODE_MODULES.exists():
        reason = f"{NODE_MODULES} is not installed; run: npm ci --prefix tests"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    # Installed but stale (an older package.json): that is a broken set-up, not a reason to skip.
    missing = [name for name in PACKAGES if not (NODE_MODULES / name / "package.json").exists()]
    if not NODE.exists() or missing:
        pytest.fail(f"{NODE_MODULES} lacks {missing or 'node'}; run: npm ci --prefix tests")
    return NODE


def serve_command(db: Path, *extra: str) -> list[str]:
    toolkits = ["--toolkit", "conveyor_toolkits.demo:toolkit", "--toolkit", "tests.toolkits:toolkit"]
    return [*CONVEYOR, "serve", "--db", str(db), *toolkits, *extra]


def server_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(
        PYTHONPATH=str(REPO),
        CONVEYOR_ENTRY_POINTS="false",
        CONVEYOR_PROGRESS_INTERVAL_SECONDS="0",  # every progress step reaches the client
        CONVEYOR_TASK_POLL_INTERVAL_MS="200",  # the clients poll at the server's hint: keep the suite fast
        CONVEYOR_SQLITE_SYNCHRONOUS="NORMAL",
    )
    return env


def run_script(node: Path, script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one interop script; return its JSON summary once it exited 0."""
    run = subprocess.run(
        [str(node), str(SCRIPTS / script), *args],
        cwd=REPO,
        env={**server_env(), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    lines = run.stdout.strip().splitlines()
    summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    stderr_tail = "\n".join(run.stderr.strip().splitlines()[-30:])
    report = (
        f"{script} exited {run.returncode}\nsummary: {json.dumps(summary, indent=1)}\nstderr:\n{stderr_tail}"
    )
    assert run.returncode == 0, report
    assert "error" not in summary, report
    return summary


# -- an HTTP server as a subprocess ---------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    db: Path
    admin_key: str

    def new_user_key(self) -> str:
        """A fresh ``user`` key, made the way an operator would: ``conveyor keys create``."""
        run = subprocess.run(
            [*CONVEYOR, "keys", "create", "--db", str(self.db), "--role", "user", "--plan", "pro"],
            cwd=REPO,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        key: str = json.loads(run.stdout)["key"]
        return key

    def client(self, key: str) -> httpx2.Client:
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


ADMIN_KEY_LINE = re.compile(r"^\s+(cvk_\S+)\s*$")
LISTENING_PORT = re.compile(r"http\.listening.*?\bport\W+(\d+)")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory, node: Path) -> Iterator[HttpServer]:
    """``conveyor serve --http --port 0`` on a fresh database: its port and first admin key from stderr."""
    db = tmp_path_factory.mktemp("http") / "conveyor.db"
    process = subprocess.Popen(
        serve_command(db, "--http", "--port", "0"),
        cwd=REPO,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def drain(stream: Any) -> None:  # keeps the pipe from filling up while the server logs
        for line in stream:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, args=(process.stderr,), daemon=True)
    reader.start()
    try:
        admin_key, port = None, None
        while admin_key is None or port is None:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                pytest.fail(
                    "conveyor serve --http did not report its admin key and port in 30 s:\n" + "".join(seen)
                )
            if line is None:
                pytest.fail(f"conveyor serve --http exited with {process.wait()}:\n" + "".join(seen))
            seen.append(line)
            if match := ADMIN_KEY_LINE.match(line):
                admin_key = match.group(1)
            elif match := LISTENING_PORT.search(line):
                port = match.group(1)
        yield HttpServer(f"http://127.0.0.1:{port}", db, admin_key)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stderr.close()


# -- what every 2025 run must show ----------------------------------------------------------------


def check_2025_summary(summary: dict[str, Any]) -> None:
    assert summary["client"]["protocolVersion"] == "2025-11-25"
    assert summary["serverCapabilities"]["tasks"] == {
        "list": {},
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }
    support = summary["taskSupport"]
    assert support["demo_sleep"] == "optional"
    assert support["testkit_long"] == "required"
    assert support["testkit_quick"] == "forbidden"
    assert set(support.values()) <= {"optional", "required", "forbidden"}

    streamed = summary["streamed"]
    created = streamed["created"]
    assert TASK_ID.match(created["taskId"]), created
    assert created["status"] == "working"
    assert created["ttl"] == 60_000
    assert created["pollInterval"] > 0
    assert created["createdAt"] <= created["lastUpdatedAt"]
    assert streamed["statuses"][-1] == "completed"
    assert set(streamed["statuses"]) <= {"working", "completed"}
    assert streamed["output"] == summary["direct"]  # the task's result is what tools/call answers
    assert streamed["output"]["structuredContent"] == SLEEP_OUTPUT
    assert streamed["relatedTask"] == {"taskId": created["taskId"]}
    assert "resultType" not in streamed["result"]  # a 2026 field: not on the 2025 wire
    assert streamed["final"]["status"] == "completed"
    assert streamed["job"] == {
        "isError": False,
        "job_id": created["taskId"],
        "status": "completed",
        "tool": "demo_sleep",
    }

    # Progress on the original tools/call's token, after the task reply; the spec wants each
    # notification's progress to increase.
    progress = [step["progress"] for step in streamed["progress"]]
    assert progress, "no notifications/progress arrived for the task"
    assert progress == sorted(set(progress)), f"progress must increase with each notification: {progress}"
    assert progress[-1] == 4

    blocking = summary["blocking"]
    assert blocking["createdStatus"] == "working"
    assert blocking["output"]["structuredContent"] == {"slept_seconds": 0.5, "steps": 2}
    assert blocking["relatedTask"] == {"taskId": blocking["taskId"]}
    assert blocking["statusAfterResult"] == "completed"  # tasks/result answered only once the task ended

    cancel = summary["cancel"]
    assert cancel["statusBeforeCancel"] == "working"
    assert cancel["cancelReply"] == {"taskId": cancel["taskId"], "status": "cancelled"}
    assert cancel["statusAfterCancel"] == "cancelled"
    assert cancel["cancelAgain"]["code"] == -32602  # a terminal task cannot be cancelled again
    assert cancel["job"]["status"] == "canceled"

    assert summary["unknownTask"]["code"] == -32602

    listed = {task["taskId"]: task["status"] for task in summary["list"]["tasks"]}
    assert listed == {
        created["taskId"]: "completed",
        blocking["taskId"]: "completed",
        cancel["taskId"]: "cancelled",
    }

    # notifications/tasks/status for each task, ending in its terminal status.
    last_status: dict[str, str] = {}
    for note in summary["statusNotifications"]:
        last_status[note["taskId"]] = note["status"]
    assert last_status.get(created["taskId"]) == "completed"
    assert last_status.get(cancel["taskId"]) == "cancelled"


def test_sdk_1x_drives_2025_tasks_over_stdio(node: Path, tmp_path: Path) -> None:
    summary = run_script(node, "tasks_2025.mjs", "stdio", "--", *serve_command(tmp_path / "conveyor.db"))
    assert summary["transport"] == "stdio"
    check_2025_summary(summary)


def test_sdk_1x_drives_2025_tasks_over_http_and_tasks_are_jobs_of_their_owner(
    node: Path, http_server: HttpServer
) -> None:
    mine, theirs = http_server.new_user_key(), http_server.new_user_key()
    summary = run_script(
        node,
        "tasks_2025.mjs",
        "http",
        f"{http_server.url}/mcp",
        env={"CONVEYOR_KEY": mine, "CONVEYOR_OTHER_KEY": theirs},
    )
    assert summary["transport"] == "http"
    check_2025_summary(summary)

    # Another principal's task stays out of my list, and mine are unknown to them.
    other = summary["other"]
    assert other["taskId"] not in {task["taskId"] for task in summary["list"]["tasks"]}
    assert [task["taskId"] for task in other["list"]["tasks"]] == [other["taskId"]]
    assert other["getMine"]["code"] == -32602
    assert other["cancelMine"]["code"] == -32602

    # A task id is a job id on the REST door: the owner and admins see it, others get 404.
    task_id = summary["streamed"]["taskId"]
    with http_server.client(mine) as http:
        job = http.get(f"/jobs/{task_id}").json()
    assert job["job_id"] == task_id
    assert job["status"] == "completed"
    assert job["tool"] == "demo_sleep"
    assert job["result"] == SLEEP_OUTPUT
    with http_server.client(http_server.admin_key) as http:
        assert http.get(f"/jobs/{summary['cancel']['taskId']}").json()["status"] == "canceled"
    with http_server.client(theirs) as http:
        response = http.get(f"/jobs/{task_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "JOB_NOT_FOUND"


# -- the 2026 extension ---------------------------------------------------------------------------


def check_2026_summary(summary: dict[str, Any]) -> None:
    assert summary["protocol"] == {"era": "modern", "version": "2026-07-28"}
    # ext-tasks enables the extension only for an empty-object capability value.
    assert summary["serverCapabilities"]["extensions"][TASKS_EXTENSION] == {}
    assert "tasks" not in summary["serverCapabilities"]  # the 2025 capability is not advertised at 2026
    assert summary["sessionCapabilities"]["execution"] is True

    # A client that did not declare the extension cannot run a task-only tool.
    assert summary["withoutExtension"]["code"] == -32021

    optional = summary["optional"]
    assert optional["outcome"] == "completed"
    assert optional["output"] == summary["direct"]
    assert optional["result"]["resultType"] == "complete"

    created = summary["created"]
    assert created["kind"] == "task"
    assert TASK_ID.match(created["taskId"]), created
    assert created["outcome"] == "completed", created
    assert created["statuses"][-1] == "completed"
    # The inlined result carries resultType: ext-tasks rejects a completed task without it.
    assert created["resultType"] == "complete"
    assert created["output"]["isError"] is False
    assert json.loads(created["output"]["content"][0]["text"]) == {"slept": 0.5}
    assert created["controllerOutput"] == created["output"]
    snapshot = created["snapshot"]
    assert snapshot["status"] == "completed"
    assert snapshot["resultType"] == "complete"
    assert isinstance(snapshot["ttlMs"], int)
    assert snapshot["pollIntervalMs"] > 0
    assert not {"ttl", "pollInterval"} & snapshot.keys()  # the 2026 names only
    assert created["job"] == {
        "isError": False,
        "job_id": created["taskId"],
        "status": "completed",
        "tool": "testkit_long",
    }

    cancel = summary["cancel"]
    assert cancel["kind"] == "task"
    assert cancel["statusBeforeCancel"] == "working"
    assert cancel["localOutcome"] == "cancelled"
    assert cancel["statusAfterCancel"] == "cancelled"
    assert cancel["cancelAgain"]["ok"] is True  # the extension's cancel is an acknowledgement
    assert cancel["job"]["status"] == "canceled"
    cancel_replies = [x["response"] for x in summary["wire"] if x["method"] == "tasks/cancel"]
    assert cancel_replies
    assert all(reply["result"]["resultType"] == "complete" for reply in cancel_replies)

    creations = [x["response"]["result"] for x in summary["wire"] if x["method"] == "tools/call"]
    for task in (r for r in creations if r.get("resultType") == "task"):
        assert {"taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs"} <= task.keys(), task

    raw = summary["raw"]
    assert raw["tasksList"]["code"] == -32601  # 2025-only methods are unknown at 2026
    assert raw["tasksResult"]["code"] == -32601
    assert raw["unknownTask"]["code"] == -32602


def test_v2_client_with_ext_tasks_drives_the_2026_extension_over_stdio(node: Path, tmp_path: Path) -> None:
    summary = run_script(node, "tasks_2026.mjs", "stdio", "--", *serve_command(tmp_path / "conveyor.db"))
    assert summary["transport"] == "stdio"
    check_2026_summary(summary)


def test_v2_client_with_ext_tasks_drives_the_2026_extension_over_http(
    node: Path, http_server: HttpServer
) -> None:
    key = http_server.new_user_key()
    summary = run_script(node, "tasks_2026.mjs", "http", f"{http_server.url}/mcp", env={"CONVEYOR_KEY": key})
    assert summary["transport"] == "http"
    check_2026_summary(summary)
    with http_server.client(key) as http:
        job = http.get(f"/jobs/{summary['created']['taskId']}").json()
    assert job["status"] == "completed"
    assert job["tool"] == "testkit_long"
