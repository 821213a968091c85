"""OpenAPI 3.1, generated from the endpoint declarations and the pydantic models they validate with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from conveyor.http_api.endpoints import Endpoint
from conveyor.http_api.models import ErrorBody

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    200: "OK",
    202: "Accepted",
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "This key may not do that",
    404: "Not found",
    409: "Idempotency key reused differently",
    413: "Payload too large",
    429: "Rate limit exceeded",
    500: "Tool execution failed",
    504: "Tool timed out",
}


def build_openapi(endpoints: tuple[Endpoint, ...], *, version: str) -> dict[str, Any]:
    refs, defs = _schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor Tool Execution & Jobs API",
            "version": version,
            "description": "Run tools now (POST /execute_tool) or as durable background jobs (/jobs). "
            "MCP over streamable HTTP is served at /mcp.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


def _schemas(
    endpoints: tuple[Endpoint, ...],
) -> tuple[dict[tuple[type[BaseModel], str], Any], dict[str, Any]]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for endpoint in endpoints:
        if endpoint.body is not None:
            wanted.add((endpoint.body, "validation"))
        for answer in endpoint.responses.values():
            if not isinstance(answer, str):
                wanted.add((answer, "serialization"))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs: Any
    refs, top = models_json_schema(ordered, ref_template=REF)
    return dict(refs), top.get("$defs", {})


def _operation(endpoint: Endpoint, refs: dict[tuple[type[BaseModel], str], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.handler.__name__,
        "summary": endpoint.summary,
        "parameters": _path_parameters(endpoint) + _query_parameters(endpoint),
        "responses": {},
    }
    if endpoint.access == "public":
        operation["security"] = []
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    for status, answer in endpoint.responses.items():
        if isinstance(answer, str):
            content = {answer: {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": refs[(answer, "serialization")]}}
        operation["responses"][str(status)] = {
            "description": STATUS_TEXT.get(status, "OK"),
            "content": content,
        }
    error = {"application/json": {"schema": refs[(ErrorBody, "serialization")]}}
    for status in endpoint.errors:
        operation["responses"][str(status)] = {"description": STATUS_TEXT[status], "content": error}
    return operation


def _path_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in endpoint.path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def _query_parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    if endpoint.query is None:
        return []
    schema = endpoint.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters
