"""The served OpenAPI document is valid OpenAPI 3.1 and tells the truth about every operation.

Schemathesis reads ``/openapi.json`` from a live server and sends it generated requests (the
document's examples, boundary and invalid values, undeclared methods, missing and wrong keys,
random data, then chains that follow the document's links from a new job to its operations),
with an admin key and with a user key. Every response must be documented: its status code, content
type, headers and body schema; and none may be a 5xx. Its CLI runs in a subprocess, so its threads
and warnings stay its own while the server runs in this test's event loop.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from tests.live_server import LiveServer

pytestmark = pytest.mark.anyio

EXAMPLES_PER_OPERATION = 25
CONFIG = Path(__file__).parent / "schemathesis.toml"  # the checks that do not apply, and why


async def served_document(live: LiveServer) -> Any:
    async with live.client() as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_the_served_document_is_valid_openapi_3_1(live: LiveServer) -> None:
    document = await served_document(live)
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_the_document_declares_every_rest_endpoint(live: LiveServer) -> None:
    document = await served_document(live)
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("POST", "/execute_tool"),
        ("POST", "/jobs/submit"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("DELETE", "/jobs/{job_id}"),
        ("GET", "/jobs/{job_id}/stream"),
        ("GET", "/tools"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks"),
        ("DELETE", "/webhooks/{webhook_id}"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "user"])
async def test_every_operation_answers_as_the_document_says(
    live: LiveServer, tmp_path: Path, role: str
) -> None:
    # An enterprise plan, so the rate limit never gets in the way of the run.
    key = live.admin_key if role == "admin" else await live.new_key(role="user", plan="enterprise")
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{live.url}/openapi.json"),
        *("--header", f"Authorization: Bearer {key}"),
        *("--max-examples", str(EXAMPLES_PER_OPERATION)),
        *("--seed", "20250101"),  # the same cases every run; raise the examples to explore more
        *("--generation-database", "none"),
        *("--request-timeout", "30"),
    ]
    with anyio.fail_after(120):
        # In tmp_path, so whatever it writes (reports, caches) stays out of the repository.
        run = await anyio.run_process(command, cwd=tmp_path, check=False)
    report = run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace")
    assert run.returncode == 0, report


# -- what the property test found, pinned down ------------------------------------------------------


async def test_an_offset_beyond_the_documented_maximum_is_400_not_a_server_error(live: LiveServer) -> None:
    async with live.client(live.admin_key) as http:
        response = await http.get("/jobs", params={"offset": 2**63})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ARGUMENTS"
    assert response.json()["error"]["argument"] == "offset"


async def test_a_405_lists_every_method_of_the_path_in_allow(live: LiveServer) -> None:
    async with live.client(live.admin_key) as http:
        response = await http.put("/jobs/job_123")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}


@pytest.mark.parametrize("field", ["wait_seconds", "timeout_ms"])
@pytest.mark.parametrize("value", [True, "5"])
async def test_a_number_field_refuses_booleans_and_strings(
    live: LiveServer, field: str, value: object
) -> None:
    async with live.client(live.admin_key) as http:
        response = await http.post("/jobs/submit", json={"tool": "demo_add", field: value})
    assert response.status_code == 400
    assert response.json()["error"]["argument"] == field


async def test_a_negative_wait_is_refused_as_the_document_says(live: LiveServer) -> None:
    async with live.client(live.admin_key) as http:
        response = await http.post("/jobs/submit", json={"tool": "demo_add", "wait_seconds": -1})
    assert response.status_code == 400
    assert response.json()["error"]["argument"] == "wait_seconds"
