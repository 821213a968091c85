"""``GET /jobs/{job_id}/stream``: Server-Sent Events over real HTTP, from queued to the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from httpx2 import ServerSentEvent

from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import UNKNOWN_JOB, error_of, finished, ok, started_hold, submit
from tests.live_server import LiveServer, live_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    """One worker: a held job keeps the next one queued until the test releases it."""
    async with live_server(make_settings(tmp_path_factory.mktemp("stream"), concurrency=1)) as server:
        yield server


def job_of(event: ServerSentEvent) -> dict[str, Any]:
    assert event.event == "message"  # unnamed, so a browser's EventSource.onmessage gets it
    data: dict[str, Any] = event.json()  # type: ignore[assignment]
    return data


async def read_all(events: AsyncIterator[ServerSentEvent]) -> list[dict[str, Any]]:
    """The rest of the stream; returns only if the server ends it."""
    with anyio.fail_after(10):
        return [job_of(event) async for event in events]


def statuses(jobs: list[dict[str, Any]]) -> list[str]:
    """The status changes, without the progress events in between."""
    changes: list[str] = []
    for job in jobs:
        if not changes or changes[-1] != job["status"]:
            changes.append(job["status"])
    return changes


async def test_a_stream_follows_a_job_from_queued_through_running_to_completed(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        await started_hold(http)  # holds the only worker
        job_id = await submit(http, "demo_sleep", {"seconds": 0.02, "steps": 2})
        async with http.sse(f"/jobs/{job_id}/stream") as source:
            response = source.response
            events = aiter(source)
            with anyio.fail_after(5):
                first = await anext(events)
            toolkits.release.set()  # the held job ends, so ours runs
            rest = await read_all(events)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-request-id"]
    assert response.headers["x-ratelimit-limit"] == "100"
    assert first.id == "1"
    queued = job_of(first)
    assert queued["status"] == "queued"
    assert queued["position_in_queue"] == 1
    jobs = [queued, *rest]
    assert statuses(jobs) == ["queued", "running", "completed"]
    assert any(job.get("progress", {}).get("percentage") == 50.0 for job in jobs)
    assert jobs[-1]["result"] == {"slept_seconds": 0.02, "steps": 2}
    assert jobs[-1]["execution_time_ms"] >= 0


async def test_event_ids_count_up_one_per_event(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        await started_hold(http)
        job_id = await submit(http, "demo_sleep", {"seconds": 0, "steps": 3})
        async with http.sse(f"/jobs/{job_id}/stream") as source:
            events = aiter(source)
            with anyio.fail_after(5):
                first = await anext(events)
            toolkits.release.set()
            with anyio.fail_after(10):
                ids = [first.id] + [event.id async for event in events]
    assert ids == [str(n) for n in range(1, len(ids) + 1)]
    assert len(ids) >= 3


async def test_a_late_client_of_a_finished_job_gets_its_final_state_and_the_stream_ends(
    server: LiveServer,
) -> None:
    async with server.client(await server.new_key()) as http:
        completed = await submit(http, "demo_add", {"a": 1, "b": 2})
        failed = await submit(http, "demo_fail", {"message": "no"})
        await finished(http, completed)
        await finished(http, failed)
        async with http.sse(f"/jobs/{completed}/stream") as source:
            completed_events = await read_all(aiter(source))
        async with http.sse(f"/jobs/{failed}/stream") as source:
            failed_events = await read_all(aiter(source))
    assert [job["status"] for job in completed_events] == ["completed"]
    assert completed_events[0]["result"] == {"sum": 3.0}
    assert [job["status"] for job in failed_events] == ["failed"]
    assert failed_events[0]["error"]["code"] == "EXECUTION_ERROR"


async def test_a_late_client_of_a_running_job_gets_its_current_progress_first(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        with server.runtime.events.subscribe() as changes:
            job_id = await submit(http, "testkit_hold")
            with anyio.fail_after(5):
                while (change := await changes.next()).job_id != job_id or change.progress is None:
                    pass
        async with http.sse(f"/jobs/{job_id}/stream") as source:
            events = aiter(source)
            with anyio.fail_after(5):
                current = job_of(await anext(events))
            toolkits.release.set()
            rest = await read_all(events)
    assert current["status"] == "running"
    assert current["progress"]["message"] == "holding"
    assert statuses(rest) == ["completed"]


async def test_a_queued_job_canceled_while_streaming_ends_the_stream_canceled(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        await started_hold(http)
        job_id = await submit(http, "demo_add", {"a": 1, "b": 1})
        async with http.sse(f"/jobs/{job_id}/stream") as source:
            events = aiter(source)
            with anyio.fail_after(5):
                first = job_of(await anext(events))
            ok(await http.delete(f"/jobs/{job_id}"))
            rest = await read_all(events)
    assert first["status"] == "queued"
    assert [job["status"] for job in rest] == ["canceled"]


async def test_two_clients_of_one_job_see_the_same_changes(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        await started_hold(http)
        job_id = await submit(http, "demo_add", {"a": 1, "b": 1})
        async with http.sse(f"/jobs/{job_id}/stream") as one, http.sse(f"/jobs/{job_id}/stream") as two:
            first, second = aiter(one), aiter(two)
            with anyio.fail_after(5):
                heads = [job_of(await anext(first)), job_of(await anext(second))]
            toolkits.release.set()
            seen_by_one, seen_by_two = await read_all(first), await read_all(second)
    assert heads[0] == heads[1]
    assert seen_by_one == seen_by_two
    assert statuses(seen_by_one) == ["running", "completed"]


async def test_a_stream_of_another_keys_job_is_404_and_an_admin_may_follow_it(server: LiveServer) -> None:
    owner, other = await server.new_key(), await server.new_key()
    async with (
        server.client(owner) as mine,
        server.client(other) as theirs,
        server.client(server.admin_key) as admin,
    ):
        job_id = await submit(mine, "demo_echo", {"text": "private"})
        await finished(mine, job_id)
        foreign = await theirs.get(f"/jobs/{job_id}/stream")
        unknown = await theirs.get(f"/jobs/{UNKNOWN_JOB}/stream")
        async with admin.sse(f"/jobs/{job_id}/stream") as source:
            seen_by_admin = await read_all(aiter(source))
    error_of(foreign, 404, "JOB_NOT_FOUND")
    assert "private" not in foreign.text
    error_of(unknown, 404, "JOB_NOT_FOUND")
    assert [job["result"] for job in seen_by_admin] == ["private"]


async def test_a_stream_without_a_key_is_401(server: LiveServer) -> None:
    async with server.client() as http:
        response = await http.get(f"/jobs/{UNKNOWN_JOB}/stream")
    error_of(response, 401, "UNAUTHORIZED")
