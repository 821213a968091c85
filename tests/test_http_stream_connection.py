"""``GET /jobs/{job_id}/stream`` as a connection: keep-alive comments while nothing changes, and a
client that leaves in the middle of a job gives its stream slot and its subscription back."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from conveyor.http_api import stream
from tests import toolkits
from tests.conftest import FREE
from tests.http_helpers import error_of, started_hold
from tests.live_server import LiveServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]


async def test_a_stream_with_nothing_to_say_sends_keep_alive_comments_until_the_job_ends(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "KEEP_ALIVE_SECONDS", 0.05)  # what proxies see every 15 s, made quick
    async with live.client(live.admin_key) as http:
        job_id = await started_hold(http)
        lines: list[str] = []
        with anyio.fail_after(10):
            async with http.stream("GET", f"/jobs/{job_id}/stream") as response:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == ": keep-alive" and lines.count(line) == 2:
                        toolkits.release.set()  # two pings while the job held still: now let it end
    assert lines[0] == "id: 1"
    assert lines.count(": keep-alive") >= 2
    assert lines[-2].startswith("data: ")
    assert '"status":"completed"' in lines[-2]


async def open_stream(http: httpx2.AsyncClient, job_id: str) -> httpx2.Response:
    """The stream's response as soon as its head has come (its body is read, or not, later)."""
    return await http.send(http.build_request("GET", f"/jobs/{job_id}/stream"), stream=True)


async def test_a_client_that_leaves_a_running_jobs_stream_gives_its_slot_back(live: LiveServer) -> None:
    key = await live.new_key(plan="free")
    async with live.client(key) as http:
        job_id = await started_hold(http)
        held = [await open_stream(http, job_id) for _ in range(FREE.max_streams)]
        try:
            refused = await http.get(f"/jobs/{job_id}/stream")
            await held.pop().aclose()  # this client leaves while the job still runs
            with anyio.fail_after(10):
                # The server learns of it from the closed connection: ask until it has.
                while (again := await open_stream(http, job_id)).status_code == 429:
                    await again.aclose()
            held.append(again)
        finally:
            for response in held:
                await response.aclose()
    error_of(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert [response.status_code for response in held] == [200] * FREE.max_streams
