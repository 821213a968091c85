from __future__ import annotations

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.anyio


async def test_healthz_answers_without_a_key_over_real_http(live: LiveServer) -> None:
    async with live.client() as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"]


async def test_submit_then_poll_a_job_over_real_http(live: LiveServer) -> None:
    async with live.client(live.admin_key) as http:
        submitted = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1, "b": 2}})
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        polled = await http.get(f"/jobs/{job_id}", params={"wait_seconds": 10})
    assert polled.json()["status"] == "completed"
    assert polled.json()["result"] == {"sum": 3.0}
