"""``conveyor keys create|list|revoke`` and the first-start admin key, as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import ByteReceiveStream, Process

from tests.conftest import make_settings
from tests.http_helpers import error_of, ok
from tests.live_server import live_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KEY = re.compile(r"cvk_[A-Za-z0-9_-]{20,}")
LISTENING = re.compile(r"action=http\.listening .*\bport=(\d+)\n")


def environment(tmp_path: Path) -> dict[str, str]:
    """The test's environment without CONVEYOR_* settings, and a data home of its own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(CONVEYOR_ENTRY_POINTS="false", XDG_DATA_HOME=str(tmp_path / "xdg"))
    return env


async def conveyor(tmp_path: Path, db: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "conveyor", *args, "--db", str(db)]
    with anyio.fail_after(30):
        return await anyio.run_process(command, cwd=tmp_path, env=environment(tmp_path), check=False)


async def conveyor_json(tmp_path: Path, db: Path, *args: str) -> Any:
    run = await conveyor(tmp_path, db, *args)
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout)


def database_bytes(db: Path) -> bytes:
    """The database file with its WAL and shared-memory files, as stored on disk."""
    return b"".join(path.read_bytes() for path in db.parent.glob(f"{db.name}*"))


# -- keys create | list | revoke --------------------------------------------------------------------


async def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    made = await conveyor_json(
        tmp_path, db, "keys", "create", "--role", "admin", "--plan", "pro", "--name", "ci"
    )
    listed = await conveyor(tmp_path, db, "keys", "list")
    secret = made["key"]
    assert KEY.fullmatch(secret)
    assert made["key_id"].startswith("key_")
    assert (made["role"], made["plan"], made["name"], made["revoked"]) == ("admin", "pro", "ci", False)
    assert json.loads(listed.stdout) == {"keys": [{k: v for k, v in made.items() if k != "key"}]}
    assert secret.encode() not in listed.stdout + listed.stderr
    assert secret.encode() not in database_bytes(db)


async def test_keys_create_makes_a_user_key_on_the_free_plan_by_default(tmp_path: Path) -> None:
    made = await conveyor_json(tmp_path, tmp_path / "keys.db", "keys", "create")
    assert (made["role"], made["plan"], made["name"]) == ("user", "free", None)


async def test_keys_create_refuses_an_unknown_role_or_plan(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    role = await conveyor(tmp_path, db, "keys", "create", "--role", "root")
    plan = await conveyor(tmp_path, db, "keys", "create", "--plan", "platinum")
    assert (role.returncode, plan.returncode) == (2, 2)
    assert b"--role" in role.stderr
    assert b"--plan" in plan.stderr


async def test_keys_revoke_marks_the_key_revoked_and_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    made = await conveyor_json(tmp_path, db, "keys", "create")
    revoked = await conveyor_json(tmp_path, db, "keys", "revoke", made["key_id"])
    listed = await conveyor_json(tmp_path, db, "keys", "list")
    again = await conveyor(tmp_path, db, "keys", "revoke", made["key_id"])
    assert revoked == {"key_id": made["key_id"], "revoked": True}
    assert [key["revoked"] for key in listed["keys"]] == [True]
    assert again.returncode == 2
    assert again.stderr.decode().splitlines()[-1].startswith("conveyor: error: ")
    assert b"Traceback" not in again.stderr


async def test_a_key_made_by_the_cli_works_over_http_until_the_cli_revokes_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    db = Path(settings.db)
    async with live_server(settings) as live:
        made = await conveyor_json(tmp_path, db, "keys", "create", "--plan", "free")
        async with live.client(made["key"]) as http:
            listed = await http.get("/jobs")
            executed = await http.post(
                "/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}}
            )
            await conveyor_json(tmp_path, db, "keys", "revoke", made["key_id"])
            after = await http.get("/jobs")
    assert listed.status_code == 200
    assert listed.headers["x-ratelimit-limit"] == "10"  # the free plan
    error_of(executed, 403, "FORBIDDEN")  # a user key
    error_of(after, 401, "UNAUTHORIZED")


# -- the first start of an HTTP server ------------------------------------------------------------


@asynccontextmanager
async def serving(tmp_path: Path, db: Path) -> AsyncIterator[tuple[Process, str]]:
    """``conveyor serve --http --port 0``; yields the process and everything it wrote to stderr
    up to the line that says it listens. Ends it with SIGTERM, which must exit it cleanly."""
    command = [sys.executable, "-m", "conveyor", "serve", "--http", "--port", "0", "--db", str(db)]
    process = await anyio.open_process(
        command, cwd=tmp_path, env=environment(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    async with process:
        assert process.stderr is not None
        try:
            yield process, await read_until_listening(process.stderr)
        finally:
            process.terminate()
            with anyio.fail_after(10):
                code = await process.wait()
    assert code == 0


async def read_until_listening(stderr: ByteReceiveStream) -> str:
    text = ""
    with anyio.fail_after(20):
        async for chunk in stderr:
            text += chunk.decode()
            if LISTENING.search(text):
                return text
    raise AssertionError(f"the server ended before it listened:\n{text}")


def url_of(stderr: str) -> str:
    match = LISTENING.search(stderr)
    assert match is not None
    return f"http://127.0.0.1:{match.group(1)}"


async def test_the_first_http_start_prints_an_admin_key_once_to_stderr(tmp_path: Path) -> None:
    db = tmp_path / "first.db"
    async with serving(tmp_path, db) as (_, stderr):
        keys = KEY.findall(stderr)
        assert len(keys) == 1
        admin = {"Authorization": f"Bearer {keys[0]}"}
        async with httpx2.AsyncClient(base_url=url_of(stderr), headers=admin) as http:
            executed = ok(
                await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1, "b": 2}})
            )
            error_of(
                await http.get("/jobs", headers={"Authorization": "Bearer cvk_wrong"}), 401, "UNAUTHORIZED"
            )
    assert executed["result"] == {"sum": 3.0}
    async with serving(tmp_path, db) as (_, stderr_again):
        assert not KEY.search(stderr_again)  # shown once: a key exists now
        async with httpx2.AsyncClient(base_url=url_of(stderr_again), headers=admin) as http:
            assert (await http.get("/jobs")).status_code == 200
    listed = await conveyor_json(tmp_path, db, "keys", "list")
    assert [(key["role"], key["revoked"]) for key in listed["keys"]] == [("admin", False)]


async def test_a_server_whose_port_is_taken_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = str(other.getsockname()[1])
        taken = await conveyor(tmp_path, tmp_path / "taken.db", "serve", "--http", "--port", port)
    assert taken.returncode == 2
    assert taken.stderr.decode().splitlines()[-1].startswith("conveyor: error: cannot listen on")
    assert b"Traceback" not in taken.stderr
