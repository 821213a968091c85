"""Per-run credentials: handed to the tool's run at every door, never shown, never in the
database in clear; sealed while the job waits, erased when it ends."""

from __future__ import annotations

import hashlib
import logging
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.fernet import Fernet
from mcp import Client

from conveyor.credentials import KEY_FILE_SUFFIX
from conveyor.errors import ErrorCode
from conveyor.jobs.models import JobStatus
from conveyor.mcp_server import build_server
from conveyor.runtime import open_runtime
from conveyor.settings import is_postgres_url
from tests import databases
from tests.conftest import ERAS, make_settings
from tests.http_helpers import error_of, ok
from tests.live_server import live_server

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-token-that-must-never-be-stored-in-clear"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
TOOL = "testkit_credential_digest"


def stored_bytes(db: str) -> bytes:
    """Every byte SQLite keeps for the database: the file, its WAL and its journal."""
    return b"".join(path.read_bytes() for path in Path(db).parent.glob(Path(db).name + "*"))


async def sealed_of(db: str, job_id: str) -> str | None:
    rows = await databases.execute(
        db, "SELECT sealed_credentials FROM jobs WHERE job_id = :id", {"id": job_id}
    )
    value: str | None = rows[0][0]
    return value


async def test_a_queued_job_keeps_its_credentials_sealed_and_erases_them_when_it_ends(
    database: str, tmp_path: Path
) -> None:
    key = Fernet.generate_key().decode() if is_postgres_url(database) else None
    settings = make_settings(tmp_path, db=database, credentials_key=key)
    async with open_runtime(settings, run_workers=False) as front:
        job = await front.engine.submit(TOOL, {"name": "api"}, owner="alice", credentials={"api": SECRET})
    sealed = await sealed_of(database, job.job_id)
    assert sealed is not None
    assert SECRET not in sealed
    if not is_postgres_url(database):
        assert SECRET.encode() not in stored_bytes(database)
    async with open_runtime(settings) as worker:  # another runtime, as after a restart, runs it
        with anyio.fail_after(20):
            done = await worker.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result == {"digest": DIGEST, "names": "api"}
    assert await sealed_of(database, job.job_id) is None
    if not is_postgres_url(database):
        assert SECRET.encode() not in stored_bytes(database)


async def test_a_canceled_queued_job_erases_its_credentials(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_runtime(settings, run_workers=False) as runtime:
        job = await runtime.engine.submit(TOOL, {"name": "api"}, owner="alice", credentials={"api": SECRET})
        assert await sealed_of(settings.db, job.job_id) is not None
        canceled = await runtime.engine.cancel(job.job_id, owner="alice")
    assert canceled.status is JobStatus.CANCELED
    assert await sealed_of(settings.db, job.job_id) is None


async def test_sqlite_makes_a_private_key_beside_the_database_on_first_use_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    key_file = Path(settings.db + KEY_FILE_SUFFIX)
    async with open_runtime(settings) as runtime:
        assert not await anyio.Path(key_file).exists()  # made on first use, not at start
        with caplog.at_level(logging.WARNING, logger="conveyor.credentials"):
            job = await runtime.engine.submit(
                TOOL, {"name": "api"}, owner="alice", credentials={"api": SECRET}
            )
        done = await runtime.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.result == {"digest": DIGEST, "names": "api"}
    assert stat.S_IMODE((await anyio.Path(key_file).stat()).st_mode) == 0o600
    assert [r for r in caplog.records if getattr(r, "action", None) == "credentials.key_made"]
    assert SECRET not in caplog.text


async def test_a_worker_with_another_key_fails_the_job_with_a_clear_error(tmp_path: Path) -> None:
    first = make_settings(tmp_path, credentials_key=Fernet.generate_key().decode())
    async with open_runtime(first, run_workers=False) as front:
        job = await front.engine.submit(TOOL, {"name": "api"}, owner="alice", credentials={"api": SECRET})
    other = make_settings(tmp_path, credentials_key=Fernet.generate_key().decode())
    async with open_runtime(other) as worker:
        done = await worker.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.FAILED
    assert done.error is not None
    assert done.error["code"] == ErrorCode.EXECUTION_ERROR
    assert "credentials_key" in done.error["message"]
    assert await sealed_of(first.db, job.job_id) is None


async def test_postgres_without_a_key_refuses_credentials_and_says_what_to_set(tmp_path: Path) -> None:
    with databases.fresh_database("postgres", tmp_path) as db:
        async with (
            open_runtime(make_settings(tmp_path, db=db)) as runtime,
            Client(build_server(runtime)) as client,
        ):
            refused = await client.call_tool(
                "jobs_submit", {"tool": TOOL, "arguments": {"name": "api"}, "credentials": {"api": SECRET}}
            )
    assert refused.is_error
    assert refused.structured_content is not None
    error = refused.structured_content["error"]
    assert error["code"] == ErrorCode.INVALID_ARGUMENTS
    assert "credentials_key" in error["suggested_fix"]


@pytest.mark.parametrize("mode", ERAS)
async def test_jobs_submit_hands_the_credentials_to_the_run_and_never_shows_them(
    tmp_path: Path, mode: str
) -> None:
    async with (
        open_runtime(make_settings(tmp_path)) as runtime,
        Client(build_server(runtime), mode=mode) as client,
    ):
        submitted = await client.call_tool(
            "jobs_submit",
            {"tool": TOOL, "arguments": {"name": "api"}, "credentials": {"api": SECRET}, "wait_seconds": 10},
        )
        listed = await client.call_tool("jobs_list", {})
    assert not submitted.is_error
    job = submitted.structured_content
    assert job is not None
    assert job["status"] == "completed"
    assert job["result"] == {"digest": DIGEST, "names": "api"}
    for answer in (submitted, listed):
        assert SECRET not in answer.model_dump_json()
        assert "credentials" not in answer.model_dump_json(exclude={"content"})


@pytest.mark.parametrize(
    ("credentials", "argument"),
    [
        ({"api": 4242424242}, "credentials.api"),
        ({"not a name": "SECRET-VALUE"}, "credentials.not a name.[key]"),
        ({f"k{n}": "SECRET-VALUE" for n in range(33)}, "credentials"),
        ("SECRET-VALUE", "credentials"),
    ],
)
async def test_malformed_credentials_are_refused_without_echoing_them(
    tmp_path: Path, credentials: Any, argument: str
) -> None:
    async with live_server(make_settings(tmp_path)) as server, server.client(server.admin_key) as http:
        body = {"tool": TOOL, "arguments": {"name": "api"}, "credentials": credentials}
        refused = error_of(await http.post("/jobs/submit", json=body), 400, "INVALID_ARGUMENTS")
    assert refused["argument"] == "credentials"
    assert argument in refused["message"]
    assert "SECRET-VALUE" not in str(refused)  # no value echoed
    assert "4242424242" not in str(refused)


async def test_rest_submit_and_execute_tool_hand_the_credentials_to_the_run(tmp_path: Path) -> None:
    async with live_server(make_settings(tmp_path)) as server, server.client(server.admin_key) as http:
        body = {"tool": TOOL, "arguments": {"name": "api"}, "credentials": {"api": SECRET}}
        accepted = ok(await http.post("/jobs/submit", json={**body, "wait_seconds": 10}), 200)
        job = ok(await http.get(f"/jobs/{accepted['job_id']}"))
        direct = ok(await http.post("/execute_tool", json=body))
        queued = ok(await http.post("/execute_tool", json={**body, "mode": "async"}), 202)
        later = ok(await http.get(f"/jobs/{queued['job_id']}", params={"wait_seconds": 10}))
    assert job["result"] == {"digest": DIGEST, "names": "api"}
    assert direct["result"] == {"digest": DIGEST, "names": "api"}
    assert later["result"] == {"digest": DIGEST, "names": "api"}
    for answer in (accepted, job, direct, queued, later):
        assert SECRET not in str(answer)
    assert SECRET.encode() not in stored_bytes(server.runtime.settings.db)
