"""Every advertised schema is portable: no ``$ref``/``$defs``, no type arrays, nothing OpenAI's strict
mode refuses; tools whose inputs can be strict convert to strict form losing nothing; and a client
in strict mode, which closes free-form objects, still submits a job with arguments."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from mcp import Client

from conveyor.mcp_server import build_server
from conveyor.portable_schema import portable
from conveyor.runtime import Runtime
from tests.conftest import ERAS
from tests.live_server import LiveServer
from tests.mcp_calls import call

pytestmark = pytest.mark.anyio

# OpenAI's structured outputs take these keywords in strict mode (its documentation, "Supported
# schemas"); a schema with any other one is not strict as it stands.
STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
    "description", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minItems", "maxItems", "pattern", "format",
}  # fmt: skip


class Unconvertible(Exception):
    """The schema would lose something in OpenAI's strict form."""


def nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every schema object within a schema."""
    if isinstance(schema, dict):
        yield schema
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for child in value.values():
                    yield from nodes(child)
            elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
                yield from nodes(value)
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
                for child in value:
                    yield from nodes(child)


def openai_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict form of a tool's input schema, by the rules its documentation gives: every
    object closed (``additionalProperties: false``) with all its properties required, an optional
    one made nullable instead. Raises ``Unconvertible`` where that would lose something: a
    free-form object (strict clients close it: no value can be given any more), or a keyword
    strict mode does not take (strict clients drop it)."""
    strict = copy.deepcopy(schema)
    for node in list(nodes(strict)):
        unknown = set(node) - STRICT_KEYWORDS
        if unknown:
            raise Unconvertible(f"keywords strict mode does not take: {sorted(unknown)}")
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                raise Unconvertible("a free-form object, which strict mode closes")
            optional = set(node.get("properties", {})) - set(node.get("required", []))
            for name in optional:
                node["properties"][name] = {"anyOf": [node["properties"][name], {"type": "null"}]}
            node["required"] = list(node.get("properties", {}))
    return strict


def lossy_strict(schema: dict[str, Any]) -> dict[str, Any]:
    """What a strict client such as langchain's ``bind_tools(strict=True)`` sends instead: the same
    rules, free-form objects closed anyway."""
    strict = copy.deepcopy(schema)
    for node in list(nodes(strict)):
        if node.get("type") == "object":
            node["additionalProperties"] = False
            node.setdefault("properties", {})
            optional = set(node["properties"]) - set(node.get("required", []))
            for name in optional:
                node["properties"][name] = {"anyOf": [node["properties"][name], {"type": "null"}]}
            node["required"] = list(node["properties"])
    return strict


async def advertised(runtime: Runtime, era: str) -> list[Any]:
    async with Client(build_server(runtime), mode=era) as client:
        return list((await client.list_tools()).tools)


# -- portable --------------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_no_advertised_schema_has_a_reference_a_definition_or_a_type_array(
    runtime: Runtime, era: str
) -> None:
    for tool in await advertised(runtime, era):
        for which, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
            for node in nodes(schema or {}):
                assert "$ref" not in node, (tool.name, which, node)
                assert "$defs" not in node, (tool.name, which)
                assert not isinstance(node.get("type"), list), (tool.name, which, node)


async def test_rest_tools_describes_every_tool_with_the_same_portable_schemas(
    live: LiveServer, runtime: Runtime
) -> None:
    async with live.client(live.admin_key) as http:
        listed = (await http.get("/tools")).json()["tools"]
    for tool in listed:
        registry_tool = live.runtime.registry.get(tool["name"])
        assert tool["input_schema"] == registry_tool.input_schema
        for node in nodes(tool["input_schema"]):
            assert "$ref" not in node
            assert not isinstance(node.get("type"), list)


def test_portable_inlines_references_splits_type_arrays_and_spells_out_any_value() -> None:
    schema = {
        "$defs": {"Color": {"enum": ["red", "blue"], "type": "string", "title": "Color"}},
        "properties": {
            "color": {"$ref": "#/$defs/Color", "description": "Which one."},
            "label": {"type": ["string", "null"], "maxLength": 10, "default": None},
            "anything": {"description": "Whatever you like."},
        },
        "type": "object",
        "title": "Model",
    }
    assert portable(schema) == {
        "properties": {
            "color": {"enum": ["red", "blue"], "type": "string", "description": "Which one."},
            "label": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "At most 10 characters.",
            },
            "anything": {
                "description": "Whatever you like.",
                "anyOf": [{"type": t} for t in ("object", "array", "string", "number", "boolean", "null")],
            },
        },
        "type": "object",
    }


# -- OpenAI's strict mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_every_tool_whose_inputs_can_be_strict_converts_to_openai_strict_form_losing_nothing(
    runtime: Runtime, era: str
) -> None:
    refused: dict[str, str] = {}
    for tool in await advertised(runtime, era):
        try:
            strict = openai_strict(tool.input_schema)
        except Unconvertible as exc:
            refused[tool.name] = str(exc)
            continue
        jsonschema.Draft202012Validator.check_schema(strict)
    # Only jobs_submit, for its free-form arguments: arguments_json is the strict way to give them.
    assert refused == {"jobs_submit": "a free-form object, which strict mode closes"}


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_in_strict_mode_submits_a_job_with_arguments_through_arguments_json(
    runtime: Runtime, era: str
) -> None:
    async with Client(build_server(runtime), mode=era) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        strict = lossy_strict(tools["jobs_submit"].input_schema)
        assert "arguments_json" in tools["jobs_submit"].description  # said where the model reads it
        # What a strict model must send: every parameter, null for those it would leave out, and
        # the free-form arguments (closed by its client) empty.
        sent = {
            "tool": "demo_add",
            "arguments": {},
            "arguments_json": '{"a": 2, "b": 3}',
            "idempotency_key": None,
            "timeout_ms": None,
            "webhook_url": None,
            "wait_seconds": 5,
            "credentials": None,
            "version": None,
        }
        jsonschema.validate(sent, strict)
        job = await call(client, "jobs_submit", sent)
        listed = await call(
            client, "jobs_list", {"status": None, "tool": None, "limit": None, "offset": None}
        )
    assert job["status"] == "completed"
    assert job["result"] == {"sum": 5.0}
    assert listed["pagination"]["total"] == 1
