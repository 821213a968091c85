"""Conveyor in front of a REST API described by OpenAPI 3.1: a small pet service written for these
tests (Starlette under a real uvicorn on 127.0.0.1), its operations served as ``pets_<operationId>``,
called through the runtime and over MCP, with a bearer credential passed per run or from settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp_types import TextContent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor import outbound
from conveyor.errors import AddressNotAllowed, ConfigError, ConveyorError, ErrorCode
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import OpenAPIConfig
from tests.conftest import ERAS, make_settings
from tests.live_server import serving

pytestmark = pytest.mark.anyio

TOKEN = "tok-5be1c0ffee-only-for-tests"
WRONG_TOKEN = "tok-wrong-9d2e71aa"

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Pets", "version": "1.2.0", "description": "A pet store written for the tests."},
    "servers": [{"url": "/"}],
    "security": [{"petAuth": []}],
    "paths": {
        "/pets/{petId}": {
            "parameters": [
                {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}},
            ],
            "get": {
                "operationId": "getPet",
                "summary": "Fetch one pet",
                "description": "The pet with this id, and its owner if asked for.",
                "parameters": [
                    {
                        "name": "include",
                        "in": "query",
                        "description": "Extra parts to include",
                        "schema": {"type": "string", "enum": ["owner"]},
                    }
                ],
                "responses": {"200": {"description": "The pet"}},
            },
        },
        "/pets": {
            "post": {
                "operationId": "createPet",
                "summary": "Add a pet",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                },
                "responses": {"201": {"description": "The pet as stored"}},
            },
        },
        "/pets/{petId}/photo": {
            "put": {
                "summary": "Upload a photo",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "requestBody": {"content": {"image/png": {}}},
                "responses": {"204": {"description": "Stored"}},
            },
        },
        "/health": {
            "get": {"security": [], "responses": {"204": {"description": "Up"}}},
        },
    },
    "components": {
        "schemas": {
            "NewPet": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "tag": {"type": ["string", "null"]},
                },
                "required": ["name"],
                "additionalProperties": False,
            }
        },
        "securitySchemes": {"petAuth": {"type": "http", "scheme": "bearer"}},
    },
}


def pet_service() -> Starlette:
    """The API: bearer-guarded pets, an open health check, and its own document."""

    def refused(request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        if authorization != f"Bearer {TOKEN}":
            # Echoes what it was sent, as careless APIs do: Conveyor must not pass that on.
            return JSONResponse({"error": f"bad credentials: {authorization}"}, status_code=401)
        return None

    async def get_pet(request: Request) -> Response:
        pet = {"id": int(request.path_params["petId"]), "name": "Rex"}
        if request.query_params.get("include") == "owner":
            pet["owner"] = "Ada"
        return refused(request) or JSONResponse(pet)

    async def create_pet(request: Request) -> Response:
        return refused(request) or JSONResponse({"id": 8, **(await request.json())}, status_code=201)

    async def health(request: Request) -> Response:
        return Response(status_code=204)

    async def document(request: Request) -> Response:
        return JSONResponse(DOCUMENT)

    return Starlette(
        routes=[
            Route("/pets/{petId:int}", get_pet, methods=["GET"]),
            Route("/pets", create_pet, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", document, methods=["GET"]),
        ]
    )


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    async with serving(pet_service()) as url:
        yield url


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "pets.json"
    path.write_text(json.dumps(DOCUMENT))
    return path


def pets(spec: Path | str, base_url: str | None, **overrides: Any) -> OpenAPIConfig:
    values: dict[str, Any] = {"allow_private_addresses": True, "timeout_seconds": 10, **overrides}
    return OpenAPIConfig(name="pets", spec=str(spec), base_url=base_url, **values)


@pytest.fixture
async def runtime(tmp_path: Path, spec_file: Path, api_url: str) -> AsyncIterator[Runtime]:
    async with open_runtime(make_settings(tmp_path, openapi=(pets(spec_file, api_url),))) as runtime:
        yield runtime


async def failure(runtime: Runtime, tool: str, arguments: dict[str, Any], **options: Any) -> ConveyorError:
    with pytest.raises(ConveyorError) as raised:
        await runtime.executor.run(tool, arguments, **options)
    return raised.value


# -- the tools ----------------------------------------------------------------------------------------


async def test_each_operation_is_a_tool_named_after_its_operation_id_with_the_documents_words(
    runtime: Runtime,
) -> None:
    tools = {tool.wire_name: tool for tool in runtime.registry if tool.toolkit == "pets"}
    # The photo upload takes image/png, which a tool cannot pass: it is left out.
    assert set(tools) == {"pets_getPet", "pets_createPet", "pets_get_health"}
    get_pet = tools["pets_getPet"]
    assert get_pet.description == "Fetch one pet\n\nThe pet with this id, and its owner if asked for."
    assert get_pet.title == "Fetch one pet"
    schema = get_pet.input_schema
    assert schema["required"] == ["petId"]
    assert schema["properties"]["petId"]["type"] == "integer"
    assert schema["properties"]["include"] == {
        "type": "string",
        "enum": ["owner"],
        "description": "Extra parts to include",
    }
    assert get_pet.annotations.read_only
    assert get_pet.annotations.idempotent
    create = tools["pets_createPet"]
    assert create.input_schema["required"] == ["body"]
    assert create.input_schema["properties"]["body"]["required"] == ["name"]
    assert not create.annotations.read_only
    assert not create.annotations.idempotent


async def test_two_operations_are_called_with_a_credential_passed_per_run(runtime: Runtime) -> None:
    credentials = {"petAuth": TOKEN}
    fetched = await runtime.executor.run(
        "pets_getPet", {"petId": 7, "include": "owner"}, credentials=credentials
    )
    assert fetched.result == {"id": 7, "name": "Rex", "owner": "Ada"}
    created = await runtime.executor.run(
        "pets_createPet", {"body": {"name": "Tom", "tag": "cat"}}, credentials=credentials
    )
    assert created.result == {"id": 8, "name": "Tom", "tag": "cat"}
    health = await runtime.executor.run("pets_get_health", {})
    assert health.result is None  # 204, and no credential needed: the operation's security is empty


@pytest.mark.parametrize("mode", ERAS)
async def test_as_jobs_two_operations_get_the_credential_which_the_database_file_never_holds(
    runtime: Runtime, mode: str
) -> None:
    async with Client(build_server(runtime), mode=mode) as client:
        answers = [
            await client.call_tool(
                "jobs_submit",
                {"tool": tool, "arguments": arguments, "credentials": {"petAuth": TOKEN}, "wait_seconds": 10},
            )
            for tool, arguments in (
                ("pets_getPet", {"petId": 7}),
                ("pets_createPet", {"body": {"name": "Tom"}}),
            )
        ]
    fetched, created = [answer.structured_content or {} for answer in answers]
    assert (fetched["status"], created["status"]) == ("completed", "completed")
    assert fetched["result"] == {"id": 7, "name": "Rex"}
    assert created["result"]["name"] == "Tom"
    db = Path(runtime.settings.db)
    stored = b"".join([await anyio.Path(path).read_bytes() for path in db.parent.glob(db.name + "*")])
    assert TOKEN.encode() not in stored
    assert all(TOKEN not in answer.model_dump_json() for answer in answers)


async def test_arguments_are_checked_against_the_operations_schema_before_any_request(
    runtime: Runtime,
) -> None:
    error = await failure(runtime, "pets_getPet", {"petId": "seven"}, credentials={"petAuth": TOKEN})
    assert error.code == ErrorCode.INVALID_ARGUMENTS
    error = await failure(runtime, "pets_createPet", {"body": {"tag": "cat"}}, credentials={"petAuth": TOKEN})
    assert error.code == ErrorCode.INVALID_ARGUMENTS


async def test_a_missing_credential_is_invalid_arguments_naming_it(runtime: Runtime) -> None:
    error = await failure(runtime, "pets_getPet", {"petId": 7})
    assert error.code == ErrorCode.INVALID_ARGUMENTS
    payload = error.to_payload()
    assert payload["argument"] == "credentials"
    assert payload["credential"] == "petAuth"
    assert "petAuth" in payload["suggested_fix"]


@pytest.mark.parametrize("source", ["per run", "settings"])
async def test_a_wrong_token_is_the_apis_401_as_an_execution_error_that_does_not_show_the_token(
    tmp_path: Path, spec_file: Path, api_url: str, source: str
) -> None:
    headers = {"Authorization": f"Bearer {WRONG_TOKEN}"} if source == "settings" else {}
    credentials = {"petAuth": WRONG_TOKEN} if source == "per run" else None
    config = pets(spec_file, api_url, headers=headers)
    async with open_runtime(make_settings(tmp_path, openapi=(config,))) as runtime:
        error = await failure(runtime, "pets_getPet", {"petId": 7}, credentials=credentials)
    payload = error.to_payload()
    assert payload["code"] == ErrorCode.EXECUTION_ERROR
    assert payload["details"]["status"] == 401
    assert payload["retryable"] is False
    assert "bad credentials" in payload["details"]["body"]  # the API's words come through…
    assert WRONG_TOKEN not in json.dumps(payload)  # …but not the token it echoed


@pytest.mark.parametrize("mode", ERAS)
async def test_an_mcp_client_calls_an_operation_with_the_auth_header_from_settings(
    tmp_path: Path, spec_file: Path, api_url: str, mode: str
) -> None:
    config = pets(spec_file, api_url, headers={"Authorization": f"Bearer {TOKEN}"})
    async with (
        open_runtime(make_settings(tmp_path, openapi=(config,))) as runtime,
        Client(build_server(runtime), mode=mode) as client,
    ):
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert listed["pets_createPet"].description == "Add a pet"
        assert listed["pets_getPet"].annotations is not None
        assert listed["pets_getPet"].annotations.read_only_hint is True
        result = await client.call_tool("pets_createPet", {"body": {"name": "Kit"}})
    assert not result.is_error
    [content] = result.content
    assert isinstance(content, TextContent)
    assert json.loads(content.text) == {"id": 8, "name": "Kit"}


async def test_the_document_can_be_fetched_from_a_url_and_its_server_is_the_default_base_url(
    tmp_path: Path, api_url: str
) -> None:
    config = pets(f"{api_url}/openapi.json", None)
    async with open_runtime(make_settings(tmp_path, openapi=(config,))) as runtime:
        outcome = await runtime.executor.run("pets_getPet", {"petId": 3}, credentials={"petAuth": TOKEN})
    assert outcome.result == {"id": 3, "name": "Rex"}


# -- outbound rules -----------------------------------------------------------------------------------


async def test_a_call_to_a_loopback_address_is_refused_unless_private_addresses_are_allowed(
    tmp_path: Path, spec_file: Path, api_url: str
) -> None:
    config = pets(spec_file, api_url, allow_private_addresses=False)
    async with open_runtime(make_settings(tmp_path, openapi=(config,))) as runtime:
        error = await failure(runtime, "pets_getPet", {"petId": 7}, credentials={"petAuth": TOKEN})
    assert isinstance(error, AddressNotAllowed)
    assert error.code == ErrorCode.FORBIDDEN
    assert "allow_private_addresses" in (error.suggested_fix or "")
    assert TOKEN not in json.dumps(error.to_payload())


def redirecting_transport(
    seen: list[httpx2.Request], location: str, status: int = 302
) -> httpx2.MockTransport:
    """Answers a request to the public host with a redirect to ``location``; anything else 200."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.headers["host"] == "93.184.215.14":
            return httpx2.Response(status, headers={"Location": location})
        return httpx2.Response(200, json={"reached": request.headers["host"]})

    return httpx2.MockTransport(answer)


async def test_a_redirect_to_a_private_address_is_refused_though_the_first_host_was_public() -> None:
    seen: list[httpx2.Request] = []
    async with httpx2.AsyncClient(
        transport=redirecting_transport(seen, "http://127.0.0.1:8080/admin")
    ) as client:
        with pytest.raises(AddressNotAllowed):
            await outbound.request(
                client, "GET", "http://93.184.215.14/start", allow_private=False, max_body_bytes=1000
            )
    assert [str(request.url) for request in seen] == ["http://93.184.215.14/start"]  # never sent on


async def test_a_redirect_to_another_origin_leaves_the_credentials_behind_and_303_turns_into_get() -> None:
    seen: list[httpx2.Request] = []
    transport = redirecting_transport(seen, "http://93.184.215.15/next", status=303)
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await outbound.request(
            client,
            "POST",
            "http://93.184.215.14/start",
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "X-Api-Key": TOKEN,
                "Content-Type": "application/json",
            },
            content=b"{}",
            allow_private=False,
            max_body_bytes=1000,
        )
    assert response.status == 200
    assert json.loads(response.body) == {"reached": "93.184.215.15"}
    first, second = seen
    assert first.method == "POST"
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert second.method == "GET"
    assert second.content == b""
    assert "authorization" not in second.headers
    assert "x-api-key" not in second.headers


async def test_redirects_are_followed_at_most_five_times_and_bodies_are_capped() -> None:
    seen: list[httpx2.Request] = []
    loop = redirecting_transport(seen, "/again")
    async with httpx2.AsyncClient(transport=loop) as client:
        with pytest.raises(ConveyorError) as raised:
            await outbound.request(
                client, "GET", "http://93.184.215.14/", allow_private=False, max_body_bytes=1000
            )
    assert raised.value.code == ErrorCode.EXECUTION_ERROR
    assert len(seen) == 6  # the request and five redirects

    big = httpx2.MockTransport(lambda request: httpx2.Response(200, content=b"x" * 2000))
    async with httpx2.AsyncClient(transport=big) as client:
        with pytest.raises(ConveyorError) as raised:
            await outbound.request(
                client, "GET", "http://93.184.215.14/", allow_private=False, max_body_bytes=1000
            )
    assert raised.value.code == ErrorCode.PAYLOAD_TOO_LARGE


# -- start-up -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("broken.json", '{"openapi": "3.1.0", "paths": '),
        ("pets.yaml", "openapi: 3.1.0\npaths: {}\n"),
        ("swagger.json", json.dumps({"swagger": "2.0", "paths": {}})),
        (
            "twice.json",
            json.dumps(
                {
                    "openapi": "3.0.3",
                    "paths": {
                        "/a": {"get": {"operationId": "list", "responses": {}}},
                        "/b": {"get": {"operationId": "list", "responses": {}}},
                    },
                }
            ),
        ),
        ("missing.json", None),
    ],
)
async def test_a_document_that_cannot_be_used_fails_the_start_with_a_config_error(
    tmp_path: Path, name: str, text: str | None
) -> None:
    spec = tmp_path / name
    if text is not None:
        spec.write_text(text)
    settings = make_settings(tmp_path, openapi=(pets(spec, "http://127.0.0.1:9"),))
    with pytest.raises(ConfigError) as raised:
        async with open_runtime(settings):
            pass
    assert "openapi pets" in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_without_base_url_a_local_document_needs_an_absolute_server_url(
    tmp_path: Path, spec_file: Path
) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        async with open_runtime(make_settings(tmp_path, openapi=(pets(spec_file, None),))):
            pass
