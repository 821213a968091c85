"""Secret arguments (``Annotated[str, Secret()]``, ``SecretStr``): the tool gets the clear value;
the database, the logs, every view, webhook and error get none. A job keeps the value sealed
until it ends, through retries and restarts, and shows ``[redacted]`` wherever a tool echoed it."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.fernet import Fernet
from mcp import Client

import conveyor
from conveyor.errors import ErrorCode
from conveyor.jobs.models import JobStatus
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.secret_arguments import SECRET_MARKER, Secret
from conveyor.settings import Settings, is_postgres_url
from tests import databases, secret_toolkits
from tests.conftest import ERAS, make_settings
from tests.http_helpers import error_of, ok
from tests.live_server import live_server
from tests.mcp_calls import call, call_error
from tests.raw_mcp import LEGACY, raw_client
from tests.serve_process import conveyor_worker, env_with_testkit
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.anyio

SECRET = "hunter2-correct-horse-battery-staple"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()
LOGIN = {"user": "ada", "password": SECRET}
TOOLKITS = ("tests.secret_toolkits:toolkit",)


def secret_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path, toolkits=TOOLKITS, webhook_allow_private_addresses=True, **overrides)


@pytest.fixture(autouse=True)
def fresh_toolkit_state() -> Iterator[None]:
    secret_toolkits.reset()
    yield
    secret_toolkits.release.set()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return secret_settings(tmp_path)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(params=ERAS)
async def client(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Client]:
    async with Client(build_server(runtime), mode=request.param) as client:
        yield client


def stored_bytes(db: str) -> bytes:
    """Every byte SQLite keeps for the database: the file, its WAL and its journal."""
    return b"".join(path.read_bytes() for path in Path(db).parent.glob(Path(db).name + "*"))


async def stored_row(db: str, job_id: str) -> dict[str, Any]:
    columns = ("arguments", "result", "error", "progress", "step_results", "sealed_credentials")
    rows = await databases.execute(
        db, f"SELECT {', '.join(columns)} FROM jobs WHERE job_id = :id", {"id": job_id}
    )
    return dict(zip(columns, rows[0], strict=True))


def assert_hidden(*answers: Any) -> None:
    for answer in answers:
        text = answer if isinstance(answer, str | bytes) else json.dumps(answer, default=str)
        assert (SECRET.encode() if isinstance(text, bytes) else SECRET) not in text


# -- the schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_a_secret_parameter_is_advertised_write_only_as_a_password(runtime: Runtime, era: str) -> None:
    async with Client(build_server(runtime), mode=era) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    login = tools["secretkit_login"].input_schema["properties"]
    assert login["password"] == {"type": "string", "format": "password", "writeOnly": True}
    assert login["user"] == {"type": "string"}  # nothing else changes
    assert tools["secretkit_token_kind"].input_schema["properties"]["token"]["writeOnly"] is True
    assert runtime.registry.get("secretkit_login").secret_arguments == {"password"}
    assert runtime.registry.get("secretkit_token_kind").secret_arguments == {"token"}
    assert conveyor.Secret is Secret


# -- direct calls: nothing stored, nothing shown -----------------------------------------------


async def test_a_direct_call_gives_the_tool_the_clear_value_and_redacts_every_echo(
    client: Client, all_logs: pytest.LogCaptureFixture
) -> None:
    progress: list[str | None] = []

    async def on_progress(current: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    result = await client.call_tool("secretkit_login", LOGIN, progress_callback=on_progress)
    assert not result.is_error, result.content
    assert result.structured_content == {"user": "ada", "digest": DIGEST, "echo": "password was [redacted]"}
    assert progress == ["checking [redacted]"]
    assert "a library logs [redacted]" in all_logs.text
    assert_hidden(result.model_dump(), all_logs.text, [r.__dict__ for r in all_logs.records])


async def test_a_sync_tool_gets_a_secret_str_and_its_thread_logs_are_redacted(
    client: Client, all_logs: pytest.LogCaptureFixture
) -> None:
    answer = await client.call_tool("secretkit_token_kind", {"token": SECRET})
    assert not answer.is_error, answer.content
    assert json.loads(answer.content[0].text) == {"type": "SecretStr", "digest": DIGEST}  # type: ignore[union-attr]
    assert "token is [redacted]" in all_logs.text
    assert_hidden(all_logs.text)


async def test_a_failing_tool_and_a_refusing_validator_never_quote_the_secret(
    client: Client, all_logs: pytest.LogCaptureFixture
) -> None:
    failed = await call_error(client, "secretkit_fail_with", {"password": SECRET})
    assert failed["code"] == ErrorCode.EXECUTION_ERROR
    assert "[redacted]" in failed["message"]
    short = SECRET[:8]
    refused = await call_error(client, "secretkit_strict_pin", {"pin": short})
    assert refused["code"] == ErrorCode.INVALID_ARGUMENTS
    assert refused["argument"] == "pin"
    assert short not in json.dumps(refused)
    assert "Traceback" in all_logs.text  # the failure's traceback is logged, redacted
    assert_hidden(failed, all_logs.text)
    assert short not in all_logs.text


# -- jobs: sealed while they wait, gone when they end ------------------------------------------


async def test_jobs_submit_seals_the_secret_and_no_view_shows_it(
    client: Client, runtime: Runtime, all_logs: pytest.LogCaptureFixture
) -> None:
    job = await call(
        client, "jobs_submit", {"tool": "secretkit_login", "arguments": LOGIN, "wait_seconds": 10}
    )
    assert job["status"] == "completed", job
    assert job["result"] == {"user": "ada", "digest": DIGEST, "echo": "password was [redacted]"}
    assert job["step_results"] == [{"step": "checked", "result": {"password": "[redacted]"}}]
    assert job["progress"]["message"] == "checking [redacted]"
    status = await call(client, "jobs_status", {"job_id": job["job_id"]})
    listed = await call(client, "jobs_list", {})
    resource = await client.read_resource(f"conveyor://jobs/{job['job_id']}")
    row = await stored_row(runtime.settings.db, job["job_id"])
    assert json.loads(row["arguments"]) == {"user": "ada", "password": SECRET_MARKER}
    assert row["sealed_credentials"] is None  # erased as the job ended
    assert_hidden(
        job, status, listed, resource.model_dump(), all_logs.text, stored_bytes(runtime.settings.db)
    )


async def test_a_queued_job_keeps_the_secret_sealed_until_a_worker_runs_it(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    async with open_runtime(settings, run_workers=False) as front:
        job = await front.engine.submit("secretkit_token_kind", {"token": SECRET}, owner="alice")
    row = await stored_row(settings.db, job.job_id)
    assert row["sealed_credentials"] is not None
    assert json.loads(row["arguments"]) == {"token": SECRET_MARKER}
    assert_hidden(stored_bytes(settings.db))
    async with open_runtime(settings) as worker:  # another runtime, as after a restart
        done = await worker.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result == {"type": "SecretStr", "digest": DIGEST}
    assert (await stored_row(settings.db, job.job_id))["sealed_credentials"] is None
    assert_hidden(stored_bytes(settings.db))


async def test_a_failed_job_and_a_refused_submit_never_quote_the_secret(
    client: Client, runtime: Runtime, all_logs: pytest.LogCaptureFixture
) -> None:
    failed = await call(
        client,
        "jobs_submit",
        {"tool": "secretkit_fail_with", "arguments": {"password": SECRET}, "wait_seconds": 10},
    )
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == ErrorCode.EXECUTION_ERROR
    assert "[redacted]" in failed["error"]["message"]
    short = SECRET[:8]
    refused = await call_error(
        client, "jobs_submit", {"tool": "secretkit_strict_pin", "arguments": {"pin": short}}
    )
    assert refused["code"] == ErrorCode.INVALID_ARGUMENTS
    assert refused["argument"] == "pin"
    assert short not in json.dumps(refused)
    assert_hidden(failed, all_logs.text, stored_bytes(runtime.settings.db))


async def test_a_retried_job_gets_its_secret_back_from_the_seal(runtime: Runtime) -> None:
    job = await runtime.engine.submit(
        "secretkit_flaky_login", {"key": "k", "password": SECRET}, owner="alice"
    )
    done = await runtime.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.attempts == 2
    assert done.result == DIGEST
    assert (await stored_row(runtime.settings.db, job.job_id))["sealed_credentials"] is None
    assert_hidden(stored_bytes(runtime.settings.db))


async def test_a_job_handed_back_at_shutdown_runs_with_its_secret_after_a_restart(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    async with open_runtime(settings) as first:
        job = await first.engine.submit("secretkit_held_login", {"password": SECRET}, owner="alice")
        with anyio.fail_after(10):
            await secret_toolkits.started.wait()
    # The tool is idempotent: stopped mid-run, its job is queued again, its secret still sealed.
    row = await stored_row(settings.db, job.job_id)
    assert row["sealed_credentials"] is not None
    secret_toolkits.release.set()
    async with open_runtime(settings) as second:
        done = await second.engine.wait(job.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result == DIGEST
    assert_hidden(stored_bytes(settings.db))


async def test_jobs_with_secrets_are_never_answered_by_an_identical_looking_job(client: Client) -> None:
    """What credentials do: a repeat with a secret may mean another secret, so no dedupe; an
    idempotency key names one job whatever secret comes with it."""
    request = {"tool": "secretkit_held_login", "arguments": {"password": SECRET}}
    first = await call(client, "jobs_submit", request)
    again = await call(client, "jobs_submit", request)
    other = await call(client, "jobs_submit", {**request, "arguments": {"password": "another"}})
    assert len({first["job_id"], again["job_id"], other["job_id"]}) == 3
    keyed = {**request, "idempotency_key": "k1"}
    once = await call(client, "jobs_submit", keyed)
    twice = await call(client, "jobs_submit", {**keyed, "arguments": {"password": "another"}})
    assert once["job_id"] == twice["job_id"]


async def test_a_2025_task_seals_the_secret_like_a_job(runtime: Runtime) -> None:
    async with raw_client(build_server(runtime), era=LEGACY) as client:
        created = await client.request(
            "tools/call", {"name": "secretkit_login", "arguments": LOGIN, "task": {"ttl": 60_000}}
        )
        task_id = created["task"]["taskId"]
        result = await client.request("tasks/result", {"taskId": task_id})
        polled = await client.request("tasks/get", {"taskId": task_id})
    assert result["structuredContent"]["digest"] == DIGEST
    row = await stored_row(runtime.settings.db, task_id)
    assert json.loads(row["arguments"])["password"] == SECRET_MARKER
    assert_hidden(created, result, polled, stored_bytes(runtime.settings.db))


# -- REST and webhooks on a live server --------------------------------------------------------


async def test_rest_submit_execute_tool_streams_and_webhooks_never_show_the_secret(
    tmp_path: Path, all_logs: pytest.LogCaptureFixture
) -> None:
    async with (
        webhook_receiver() as receiver,
        live_server(secret_settings(tmp_path)) as server,
        server.client(server.admin_key) as http,
    ):
        ok(await http.post("/webhooks", json={"url": receiver.url + "/registered"}), 201)
        body = {"tool": "secretkit_login", "arguments": LOGIN}
        hooked = {**body, "webhook_url": receiver.url + "/own", "wait_seconds": 10}
        accepted = ok(await http.post("/jobs/submit", json=hooked), 200)
        job = ok(await http.get(f"/jobs/{accepted['job_id']}"))
        listed = ok(await http.get("/jobs"))
        stream = (await http.get(f"/jobs/{accepted['job_id']}/stream")).text
        direct = ok(await http.post("/execute_tool", json=body))
        queued = ok(await http.post("/execute_tool", json={**body, "mode": "async"}), 202)
        later = ok(await http.get(f"/jobs/{queued['job_id']}", params={"wait_seconds": 10}))
        failed = error_of(
            await http.post(
                "/execute_tool", json={"tool": "secretkit_fail_with", "arguments": {"password": SECRET}}
            ),
            500,
            "EXECUTION_ERROR",
        )
        deliveries = await receiver.received(2)
        db = server.runtime.settings.db
    assert job["result"]["digest"] == DIGEST
    assert direct["result"]["digest"] == DIGEST
    assert later["result"]["digest"] == DIGEST
    assert "[redacted]" in failed["message"]
    assert {delivery.path for delivery in deliveries} == {"/own", "/registered"}
    for delivery in deliveries:
        assert delivery.json()["job"]["result"]["echo"] == "password was [redacted]"
    assert_hidden(
        accepted, job, listed, stream, direct, queued, later, failed, all_logs.text, stored_bytes(db),
        *(delivery.body for delivery in deliveries),
    )  # fmt: skip


# -- a worker process ------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_worker_process_runs_the_job_with_its_secret_and_logs_none(tmp_path: Path) -> None:
    settings = secret_settings(tmp_path)
    env = env_with_testkit(toolkits=",".join(TOOLKITS))
    async with open_runtime(settings, run_workers=False) as front:
        login = await front.engine.submit("secretkit_login", LOGIN, owner="alice")
        failing = await front.engine.submit("secretkit_fail_with", {"password": SECRET}, owner="alice")
        async with conveyor_worker(tmp_path, signal.SIGTERM, env=env) as worker:
            done = await front.engine.wait(login.job_id, owner="alice", timeout_s=15)
            failed = await front.engine.wait(failing.job_id, owner="alice", timeout_s=15)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result is not None
    assert done.result["digest"] == DIGEST
    assert failed.status is JobStatus.FAILED
    logged = "".join(worker.stderr)
    assert "a library logs [redacted]" in logged
    assert "wrong password '[redacted]'" in logged  # the traceback of the failure, redacted
    assert_hidden(logged, stored_bytes(settings.db))


# -- PostgreSQL ------------------------------------------------------------------------------


async def test_postgres_keeps_the_secret_sealed_and_stores_none_in_clear(tmp_path: Path) -> None:
    with databases.fresh_database("postgres", tmp_path) as db:
        assert is_postgres_url(db)
        settings = secret_settings(tmp_path, db=db, credentials_key=Fernet.generate_key().decode())
        async with open_runtime(settings, run_workers=False) as front:
            job = await front.engine.submit("secretkit_login", LOGIN, owner="alice")
            waiting = await stored_row(db, job.job_id)
        async with open_runtime(settings) as worker:
            done = await worker.engine.wait(job.job_id, owner="alice", timeout_s=15)
        ended = await stored_row(db, job.job_id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result is not None
    assert done.result["digest"] == DIGEST
    assert waiting["sealed_credentials"] is not None
    assert json.loads(waiting["arguments"]) == {"user": "ada", "password": SECRET_MARKER}
    assert ended["sealed_credentials"] is None
    assert_hidden(waiting, ended)


async def test_postgres_without_a_key_refuses_a_job_with_a_secret_but_runs_a_direct_call(
    tmp_path: Path,
) -> None:
    with databases.fresh_database("postgres", tmp_path) as db:
        async with (
            open_runtime(secret_settings(tmp_path, db=db)) as runtime,
            Client(build_server(runtime)) as client,
        ):
            refused = await call_error(client, "jobs_submit", {"tool": "secretkit_login", "arguments": LOGIN})
            direct = await call(client, "secretkit_login", LOGIN)
    assert refused["code"] == ErrorCode.INVALID_ARGUMENTS
    assert refused["argument"] == "password"
    assert "credentials_key" in refused["suggested_fix"]
    assert direct["digest"] == DIGEST
    assert_hidden(refused)
