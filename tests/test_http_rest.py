"""The REST API over real HTTP: every endpoint, every job state, every error code it answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor.jobs.models import JobStatus
from tests import toolkits
from tests.conftest import make_settings
from tests.http_helpers import UNKNOWN_JOB, error_of, finished, ok, started_hold, submit
from tests.live_server import LiveServer, live_server
from tests.metrics_text import samples

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fresh_toolkit_events")]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveServer]:
    """One server for the module (each test ends its jobs and uses its own keys where it counts).

    It has one worker, so a held job keeps every later job queued.
    """
    async with live_server(make_settings(tmp_path_factory.mktemp("rest"), concurrency=1)) as server:
        yield server


@pytest.fixture
async def single(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """A server of the test's own, with one worker, for tests that count every job in it."""
    async with live_server(make_settings(tmp_path, concurrency=1)) as server:
        yield server


# -- POST /execute_tool ---------------------------------------------------------------------


async def test_execute_tool_answers_the_result_and_its_execution_time(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1, "b": 2}})
    answer = ok(response)
    assert answer["tool"] == "demo_add"
    assert answer["status"] == "success"
    assert answer["result"] == {"sum": 3.0}
    assert isinstance(answer["execution_time_ms"], int)
    assert answer["execution_time_ms"] >= 0


async def test_execute_tool_of_an_unknown_tool_is_404_tool_not_found(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post("/execute_tool", json={"tool": "demo_nope", "arguments": {}})
    error_of(response, 404, "TOOL_NOT_FOUND")
    assert response.json()["tool"] == "demo_nope"
    assert response.json()["status"] == "error"


async def test_execute_tool_with_a_missing_argument_is_400_invalid_arguments_naming_it(
    server: LiveServer,
) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post("/execute_tool", json={"tool": "demo_add", "arguments": {"a": 1}})
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == "b"
    assert response.json()["status"] == "error"


async def test_execute_tool_with_an_argument_of_the_wrong_type_is_400_naming_it(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/execute_tool", json={"tool": "demo_add", "arguments": {"a": "one", "b": 2}}
        )
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == "a"


async def test_execute_tool_whose_tool_raises_is_500_execution_error_without_a_traceback(
    server: LiveServer,
) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/execute_tool", json={"tool": "demo_fail", "arguments": {"message": "no"}}
        )
    error = error_of(response, 500, "EXECUTION_ERROR")
    assert error["details"] == {"exception": "DemoFailure"}


async def test_execute_tool_past_its_timeout_is_504_execution_timeout(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/execute_tool",
            json={"tool": "demo_sleep", "arguments": {"seconds": 30, "steps": 1}, "timeout_ms": 50},
        )
    error = error_of(response, 504, "EXECUTION_TIMEOUT")
    assert error["retryable"] is True
    assert response.json()["status"] == "timeout"


async def test_execute_tool_in_async_mode_submits_a_job_instead(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/execute_tool", json={"tool": "demo_add", "arguments": {"a": 2, "b": 2}, "mode": "async"}
        )
        job = ok(response, 202)
        assert (await finished(http, job["job_id"]))["result"] == {"sum": 4.0}


# -- bodies that are not what the endpoint takes -----------------------------------------------


@pytest.mark.parametrize("path", ["/execute_tool", "/jobs/submit"])
@pytest.mark.parametrize(
    ("content", "argument"),
    [
        pytest.param(b'{"tool": "demo_add", "arguments": {', "body", id="malformed-json"),
        pytest.param(b"\xff\xfe not utf-8", "body", id="not-utf-8"),
        pytest.param(b'["demo_add"]', "body", id="not-an-object"),
        pytest.param(b"", "body", id="empty"),
        pytest.param(b'{"tool": 5, "arguments": {}}', "tool", id="wrong-type"),
        pytest.param(b'{"tool": "demo_add", "arguments": [1, 2]}', "arguments", id="arguments-not-an-object"),
        pytest.param(b'{"tool": "demo_add", "arguments": {}, "colour": "red"}', "colour", id="unknown-field"),
        pytest.param(
            b'{"tool": "demo_add", "arguments": {}, "timeout_ms": -1}', "timeout_ms", id="bad-value"
        ),
    ],
)
async def test_a_body_that_is_not_the_request_is_400_invalid_arguments_naming_the_field(
    server: LiveServer, path: str, content: bytes, argument: str
) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == argument


async def test_bodies_and_arguments_over_their_size_limits_are_413_payload_too_large(tmp_path: Path) -> None:
    big_arguments = {"tool": "demo_echo", "arguments": {"text": "x" * 200}}
    big_body = json.dumps({"tool": "demo_echo", "arguments": {"text": "x" * 2000}}).encode()

    async def in_chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows only as it arrives
        for start in range(0, len(big_body), 256):
            yield big_body[start : start + 256]

    settings = make_settings(tmp_path, max_argument_bytes=100, max_request_bytes=1000)
    async with live_server(settings) as live, live.client(live.admin_key) as http:
        answers = [
            await http.post("/execute_tool", json=big_arguments),
            await http.post("/jobs/submit", json=big_arguments),
            await http.post("/jobs/submit", content=big_body, headers={"Content-Type": "application/json"}),
            await http.post(
                "/execute_tool", content=in_chunks(), headers={"Content-Type": "application/json"}
            ),
        ]
        listed = ok(await http.get("/jobs"))
    for response in answers:
        error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert listed["pagination"]["total"] == 0


# -- POST /jobs/submit --------------------------------------------------------------------------


async def test_submit_answers_202_with_the_queued_job(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        await started_hold(http)  # the only worker is busy, so the next job stays queued
        before = int(time.time())
        response = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1, "b": 1}})
        job = ok(response, 202)
    assert job["job_id"].startswith("job_")
    assert job["status"] == "queued"
    assert job["tool"] == "demo_add"
    assert before <= job["created_at"] <= int(time.time())
    assert "estimated_duration_ms" in job
    assert job["position_in_queue"] == 1


async def test_submit_with_wait_answers_200_with_the_finished_job(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 2, "b": 3}, "wait_seconds": 10}
        )
    job = ok(response, 200)
    assert job["status"] == "completed"
    assert job["result"] == {"sum": 5.0}


async def test_submit_of_an_unknown_tool_is_404_and_of_bad_arguments_400_and_no_job_is_made(
    server: LiveServer,
) -> None:
    async with server.client(await server.new_key()) as http:
        unknown = await http.post("/jobs/submit", json={"tool": "demo_nope", "arguments": {}})
        bad = await http.post("/jobs/submit", json={"tool": "demo_add", "arguments": {"a": 1}})
        bad_hook = await http.post(
            "/jobs/submit", json={"tool": "demo_echo", "arguments": {"text": "x"}, "webhook_url": "ftp://x"}
        )
        listed = ok(await http.get("/jobs"))
    error_of(unknown, 404, "TOOL_NOT_FOUND")
    assert error_of(bad, 400, "INVALID_ARGUMENTS")["argument"] == "b"
    assert error_of(bad_hook, 400, "INVALID_ARGUMENTS")["argument"] == "webhook_url"
    assert listed["pagination"]["total"] == 0


async def test_the_same_idempotency_key_returns_the_same_job_and_with_another_request_409(
    server: LiveServer,
) -> None:
    body: dict[str, Any] = {"tool": "demo_echo", "arguments": {"text": "a"}, "idempotency_key": "k-1"}
    async with server.client(await server.new_key()) as http:
        first = ok(await http.post("/jobs/submit", json=body), 202)
        again = await http.post("/jobs/submit", json=body)
        other = await http.post("/jobs/submit", json={**body, "arguments": {"text": "b"}})
    assert again.json()["job_id"] == first["job_id"]
    assert error_of(other, 409, "IDEMPOTENCY_CONFLICT")["job_id"] == first["job_id"]


# -- GET /jobs/{job_id}: every state ------------------------------------------------------------


async def test_a_queued_job_shows_its_position_in_the_queue(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        await started_hold(http)
        first = await submit(http, "demo_add", {"a": 1, "b": 1})
        second = await submit(http, "demo_add", {"a": 2, "b": 2})
        queued = ok(await http.get(f"/jobs/{second}"))
        assert queued["status"] == "queued"
        assert queued["position_in_queue"] == 2
        assert "started_at" not in queued
        ok(await http.delete(f"/jobs/{first}"))
        assert ok(await http.get(f"/jobs/{second}"))["position_in_queue"] == 1
        toolkits.release.set()
        assert (await finished(http, second))["status"] == "completed"


async def test_a_running_job_shows_its_progress(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        with server.runtime.events.subscribe() as changes:
            job_id = await submit(http, "testkit_hold")
            with anyio.fail_after(5):
                while (change := await changes.next()).job_id != job_id or change.progress is None:
                    pass
        running = ok(await http.get(f"/jobs/{job_id}"))
        toolkits.release.set()
        await finished(http, job_id)
    assert running["status"] == "running"
    assert isinstance(running["started_at"], int)
    assert running["progress"] == {
        "current_step": 1,
        "total_steps": 2,
        "percentage": 50.0,
        "message": "holding",
    }
    assert "position_in_queue" not in running
    assert "result" not in running


async def test_a_completed_job_shows_its_result_and_execution_time(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        job_id = await submit(http, "demo_add", {"a": 1, "b": 2})
        await finished(http, job_id)
        job = ok(await http.get(f"/jobs/{job_id}"))
    assert job["status"] == "completed"
    assert job["result"] == {"sum": 3.0}
    assert isinstance(job["execution_time_ms"], int)
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]
    assert "error" not in job


async def test_a_failed_job_shows_its_error_code_message_and_details(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        job = await finished(http, await submit(http, "demo_fail", {"message": "boom"}))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "EXECUTION_ERROR"
    assert job["error"]["message"]
    assert job["error"]["details"] == {"exception": "DemoFailure"}
    assert "result" not in job


async def test_a_job_past_its_timeout_ends_timeout(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.post(
            "/jobs/submit",
            json={"tool": "demo_sleep", "arguments": {"seconds": 30, "steps": 1}, "timeout_ms": 50},
        )
        job = await finished(http, ok(response, 202)["job_id"])
    assert job["status"] == "timeout"
    assert job["error"]["code"] == "EXECUTION_TIMEOUT"
    assert job["attempts"] == 1


async def test_a_canceled_job_reads_back_canceled(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        await started_hold(http)
        job_id = await submit(http, "demo_add", {"a": 1, "b": 1})
        ok(await http.delete(f"/jobs/{job_id}"))
        job = ok(await http.get(f"/jobs/{job_id}"))
    assert job["status"] == "canceled"
    assert job["error"]["code"] == "CANCELED"


async def test_an_unknown_job_is_404_job_not_found(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        error = error_of(await http.get(f"/jobs/{UNKNOWN_JOB}"), 404, "JOB_NOT_FOUND")
    assert error["job_id"] == UNKNOWN_JOB


async def test_a_bad_wait_seconds_is_400_invalid_arguments(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.get(f"/jobs/{UNKNOWN_JOB}", params={"wait_seconds": "soon"})
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == "wait_seconds"


async def test_a_wait_over_25_seconds_is_capped_not_refused(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        job_id = await submit(http, "demo_add", {"a": 1, "b": 2})
        job = ok(await http.get(f"/jobs/{job_id}", params={"wait_seconds": 60}))
    assert job["status"] == "completed"


# -- DELETE /jobs/{job_id} ----------------------------------------------------------------------


async def test_cancel_of_a_queued_job_cancels_it_at_once_and_it_never_runs(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        held = await started_hold(http)
        job_id = await submit(http, "demo_add", {"a": 1, "b": 1})
        answer = ok(await http.delete(f"/jobs/{job_id}"))
        toolkits.release.set()
        await finished(http, held)
        job = ok(await http.get(f"/jobs/{job_id}"))
    assert answer["job_id"] == job_id
    assert answer["status"] == "canceled"
    assert answer["message"]
    assert job["status"] == "canceled"
    assert "started_at" not in job
    assert job["attempts"] == 0


async def test_cancel_of_a_running_cancellable_job_ends_it_canceled(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        job_id = await started_hold(http)
        answer = ok(await http.delete(f"/jobs/{job_id}"))
        job = ok(await http.get(f"/jobs/{job_id}"))
    assert answer["status"] == "canceled"
    assert job["status"] == "canceled"


async def test_cancel_of_a_running_job_that_cannot_be_interrupted_is_400_cannot_cancel_running(
    server: LiveServer,
) -> None:
    async with server.client(server.admin_key) as http:
        job_id = await started_hold(http, "testkit_hold_uncancellable")
        refused = await http.delete(f"/jobs/{job_id}")
        toolkits.release.set()
        job = await finished(http, job_id)
    error_of(refused, 400, "CANNOT_CANCEL_RUNNING")
    assert job["status"] == "completed"


async def test_cancel_of_a_finished_job_answers_it_unchanged(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        job_id = await submit(http, "demo_add", {"a": 1, "b": 1})
        await finished(http, job_id)
        answer = ok(await http.delete(f"/jobs/{job_id}"))
    assert answer["status"] == "completed"
    assert answer["result"] == {"sum": 2.0}
    assert answer["message"]


async def test_cancel_of_an_unknown_job_is_404_job_not_found(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        error_of(await http.delete(f"/jobs/{UNKNOWN_JOB}"), 404, "JOB_NOT_FOUND")


# -- GET /jobs ------------------------------------------------------------------------------------


async def test_list_pages_newest_first_and_filters_by_status_and_tool(server: LiveServer) -> None:
    async with server.client(await server.new_key()) as http:
        adds = [await submit(http, "demo_add", {"a": n, "b": 0}) for n in range(3)]
        failed = await submit(http, "demo_fail", {"message": "no"})
        for job_id in [*adds, failed]:
            await finished(http, job_id)
        first_page = ok(await http.get("/jobs", params={"limit": 2}))
        second_page = ok(await http.get("/jobs", params={"limit": 2, "offset": 2}))
        only_failed = ok(await http.get("/jobs", params={"status": "failed"}))
        only_adds = ok(await http.get("/jobs", params={"tool": "demo_add", "status": "completed"}))
        nothing = ok(await http.get("/jobs", params={"status": "running"}))
    newest_first = [failed, *reversed(adds)]
    assert [job["job_id"] for job in first_page["jobs"]] == newest_first[:2]
    assert [job["job_id"] for job in second_page["jobs"]] == newest_first[2:]
    assert first_page["pagination"] == {"limit": 2, "offset": 0, "total": 4}
    assert second_page["pagination"] == {"limit": 2, "offset": 2, "total": 4}
    assert [job["job_id"] for job in only_failed["jobs"]] == [failed]
    assert sorted(job["job_id"] for job in only_adds["jobs"]) == sorted(adds)
    assert only_adds["pagination"]["total"] == 3
    assert nothing == {"jobs": [], "pagination": {"limit": 20, "offset": 0, "total": 0}}


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
    ],
)
async def test_list_with_a_bad_query_is_400_invalid_arguments_naming_it(
    server: LiveServer, params: dict[str, Any], argument: str
) -> None:
    async with server.client(server.admin_key) as http:
        response = await http.get("/jobs", params=params)
    assert error_of(response, 400, "INVALID_ARGUMENTS")["argument"] == argument


async def test_list_accepts_the_largest_page_of_100(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        page = ok(await http.get("/jobs", params={"limit": 100}))
    assert page["pagination"]["limit"] == 100


# -- GET /tools, /openapi.json, /healthz, /metrics ------------------------------------------------


async def test_tools_lists_every_tool_with_its_schemas(server: LiveServer) -> None:
    key = await server.new_key()
    async with server.client(key) as http:
        tools = {tool["name"]: tool for tool in ok(await http.get("/tools"))["tools"]}
    assert set(tools) == {tool.wire_name for tool in server.runtime.registry}
    add = tools["demo_add"]
    assert add["toolkit"] == "demo"
    assert add["input_schema"]["required"] == ["a", "b"]
    assert add["output_schema"]["properties"]["sum"]["type"] == "number"
    assert add["annotations"]["read_only"] is True
    assert tools["testkit_hold_uncancellable"]["cancellable"] is False


async def test_tools_with_q_ranks_the_tools_matching_its_words_best_first(server: LiveServer) -> None:
    key = await server.new_key()
    async with server.client(key) as http:
        sleep = ok(await http.get("/tools", params={"q": "SLEEP progress"}))
        hold = ok(await http.get("/tools", params={"q": "hold"}))
        none = ok(await http.get("/tools", params={"q": "no-such-words-anywhere"}))
    assert sleep["tools"][0]["name"] == "demo_sleep"
    assert {tool["name"] for tool in hold["tools"][:4]} == {
        "testkit_hold",
        "testkit_hold_uncancellable",
        "testkit_hold_observed",
        "testkit_hold_big",
    }
    assert all(tool["score"] > 0 for tool in sleep["tools"] + hold["tools"])
    assert none["tools"] == []


async def test_openapi_is_public_and_describes_every_endpoint(server: LiveServer) -> None:
    async with server.client() as http:
        document = ok(await http.get("/openapi.json"))
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/execute_tool",
        "/jobs/submit",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/stream",
        "/tools",
        "/healthz",
        "/metrics",
    }
    assert set(document["paths"]["/jobs/{job_id}"]) >= {"get", "delete"}


async def test_healthz_is_public_and_shows_the_queue_depth(single: LiveServer) -> None:
    async with single.client(single.admin_key) as http:
        await started_hold(http)
        await submit(http, "demo_add", {"a": 1, "b": 1})
    async with single.client() as anonymous:
        health = ok(await anonymous.get("/healthz"))
    assert health["status"] == "ok"
    assert health["tools"] == len(single.runtime.registry)
    assert health["queue_depth"] == 1
    assert health["version"]


async def test_healthz_answers_head_without_a_key_too(single: LiveServer) -> None:
    async with single.client() as anonymous:
        response = await anonymous.head("/healthz")
    assert response.status_code == 200


async def test_metrics_shows_jobs_by_status_queue_depth_run_durations_and_requests(
    single: LiveServer,
) -> None:
    async with single.client(single.admin_key) as http:
        completed = await submit(http, "demo_add", {"a": 1, "b": 1})
        await finished(http, completed)
        await started_hold(http)
        await submit(http, "demo_add", {"a": 2, "b": 2})
        await http.get("/jobs/job_missing")
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = set(response.text.splitlines())
    series = samples(response.text)
    for status in JobStatus:
        assert f'conveyor_jobs{{status="{status}"}}' in series
    assert series['conveyor_jobs{status="completed"}'] == 1
    assert series['conveyor_jobs{status="running"}'] == 1
    assert series["conveyor_queue_depth"] == 1
    assert series['conveyor_job_run_seconds_count{status="completed",tool="demo_add"}'] == 1
    assert series['conveyor_http_requests_total{method="POST",route="/jobs/submit",status="202"}'] == 3
    assert series['conveyor_http_requests_total{method="GET",route="/jobs/{job_id}",status="404"}'] == 1
    assert "# TYPE conveyor_http_requests_total counter" in lines
    assert series["process_cpu_seconds_total"] > 0  # the library's process collector
    assert "python_info" in response.text


async def test_made_up_http_methods_do_not_grow_the_metrics(single: LiveServer) -> None:
    async with single.client() as anonymous:
        for method in ("BREW", "WHEN"):
            await anonymous.request(method, "/jobs")
    async with single.client(single.admin_key) as http:
        text = (await http.get("/metrics")).text
    assert 'method="BREW"' not in text
    assert 'method="OTHER"' in text


# -- request ids, unknown routes and the safety net ----------------------------------------------


async def test_every_response_carries_a_request_id_and_a_valid_client_id_is_kept(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        plain = await http.get("/healthz")
        mine = await http.get(f"/jobs/{UNKNOWN_JOB}", headers={"X-Request-Id": "trace-42.a"})
        hostile = await http.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert plain.headers["x-request-id"].startswith("req_")
    assert mine.headers["x-request-id"] == "trace-42.a"
    assert error_of(mine, 404, "JOB_NOT_FOUND")["request_id"] == "trace-42.a"
    assert hostile.headers["x-request-id"].startswith("req_")


async def test_an_unknown_route_is_404_not_found_and_a_wrong_method_405(server: LiveServer) -> None:
    async with server.client(server.admin_key) as http:
        missing = await http.get("/nowhere")
        wrong_method = await http.put("/jobs/submit", json={})
    error_of(missing, 404, "NOT_FOUND")
    error_of(wrong_method, 405, "METHOD_NOT_ALLOWED")


async def test_an_unexpected_failure_is_a_coded_500_without_a_traceback(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError("the store caught fire")

    monkeypatch.setattr(server.runtime.engine, "list", broken)
    async with server.client(server.admin_key) as http:
        response = await http.get("/jobs")
    error = error_of(response, 500, "INTERNAL_ERROR")
    assert "fire" not in response.text
    assert error["retryable"] is True


async def test_each_refusal_suggests_the_fix_for_what_was_wrong(server: LiveServer) -> None:
    key = await server.new_key()
    async with server.client(key) as http:
        body = await http.post(
            "/jobs/submit", content=b"[1, 2]", headers={"content-type": "application/json"}
        )
        url = await http.post("/webhooks", json={"url": "ftp://example.com/x"})
        arguments = await http.post(
            "/jobs/submit", json={"tool": "demo_add", "arguments": {"a": "x", "b": 1}}
        )
    fixes = [
        error_of(response, 400, "INVALID_ARGUMENTS")["suggested_fix"] for response in (body, url, arguments)
    ]
    assert "request body as one JSON object" in fixes[0]
    assert "http(s) URL" in fixes[1]
    assert "input schema" in fixes[2]
    assert len(set(fixes)) == 3
