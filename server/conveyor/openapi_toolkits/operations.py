"""The operations of an OpenAPI document, each as what a tool needs: its name, description,
input schema and annotations, and how its arguments become a request.

The input is one object: a property per path, query, header and cookie parameter (by its name,
with its schema and description; required ones required) and ``body`` for the request body
(JSON: its schema; ``text/plain``: a string). An operation whose body is of another media type,
or that refers outside the document, is left out with a logged warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.openapi_toolkits.schemas import json_schema
from conveyor.openapi_toolkits.spec import Document, SpecError
from conveyor.toolkit import ToolAnnotations

logger = logging.getLogger("conveyor.openapi")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
Location = Literal["path", "query", "header", "cookie"]
Requirement = dict[str, list[str]]
_SAFE = {"get", "head", "options", "trace"}
_IDEMPOTENT = _SAFE | {"put", "delete"}
# Header parameters the OpenAPI specification says to ignore: the request's own machinery sets them.
_IGNORED_HEADERS = {"accept", "content-type", "authorization"}
_OUTSIDE = re.compile(r"[^a-zA-Z0-9_-]+")
_NOT_NEEDED = {"responses", "callbacks"}
_LOCATIONS: dict[str, Location] = {"path": "path", "query": "query", "header": "header", "cookie": "cookie"}


class Unsupported(Exception):
    """Why an operation cannot be a tool."""


@dataclass(frozen=True, slots=True)
class Parameter:
    argument: str  # its property in the tool's input
    name: str  # its name in the request
    location: Location
    explode: bool
    as_json: bool  # described by ``content`` rather than ``schema``: sent as JSON text


@dataclass(frozen=True, slots=True)
class Body:
    argument: str
    media_type: str
    kind: Literal["json", "text"]


@dataclass(frozen=True, slots=True)
class Operation:
    key: str  # its operationId, or method_path without one
    method: str
    path: str
    title: str
    description: str
    parameters: tuple[Parameter, ...]
    body: Body | None
    security: tuple[Requirement, ...]
    input_schema: dict[str, Any]
    annotations: ToolAnnotations


def operations(document: Document, *, toolkit: str) -> list[Operation]:
    """Every operation of the document that can be a tool, in document order."""
    found = []
    default_security = document.data.get("security", [])
    for path, raw_item in (document.data.get("paths") or {}).items():
        for method in METHODS:
            if not isinstance(raw_item, dict) or not isinstance(raw_item.get(method), dict):
                continue
            # Only what the tool needs is resolved: not the responses, which may be large.
            needed = {key: value for key, value in raw_item[method].items() if key not in _NOT_NEEDED}
            try:
                item = document.resolve({"parameters": raw_item.get("parameters", []), method: needed})
                found.append(_operation(path, method, item, item[method], default_security))
            except (
                Unsupported,
                SpecError,
                TypeError,
                KeyError,
                AttributeError,
            ) as exc:  # malformed: left out
                logger.warning(
                    "operation left out",
                    extra={
                        "action": "openapi.operation_skipped",
                        "toolkit": toolkit,
                        "operation": f"{method.upper()} {path}",
                        "reason": str(exc),
                    },
                )
    return found


def _operation(
    path: str, method: str, item: dict[str, Any], operation: dict[str, Any], default_security: Any
) -> Operation:
    key = operation.get("operationId") or _method_path(method, path)
    parameters, properties, required = _parameters(item, operation)
    body = _body(operation.get("requestBody"), taken=set(properties))
    if body is not None:
        content = operation["requestBody"]["content"][body.media_type] or {}
        schema = json_schema(content.get("schema")) if body.kind == "json" else {"type": "string"}
        description = operation["requestBody"].get("description")
        properties[body.argument] = {**schema, "description": description} if description else schema
        if operation["requestBody"].get("required"):
            required.append(body.argument)
    security = operation.get("security", default_security)
    summary = str(operation.get("summary") or "").strip()
    details = str(operation.get("description") or "").strip()
    input_schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        input_schema["required"] = required
    return Operation(
        key=str(key),
        method=method.upper(),
        path=path,
        title=summary or str(key),
        description="\n\n".join(part for part in (summary, details) if part) or f"{method.upper()} {path}",
        parameters=tuple(parameters),
        body=body,
        security=tuple(r for r in security if isinstance(r, dict)) if isinstance(security, list) else (),
        input_schema=input_schema,
        annotations=ToolAnnotations(
            read_only=method in _SAFE,
            destructive=method not in _SAFE,
            idempotent=method in _IDEMPOTENT,
            open_world=True,
        ),
    )


def _method_path(method: str, path: str) -> str:
    """``get_pets_petId`` for ``GET /pets/{petId}``: a name for an operation without an id."""
    return "_".join(part for part in [method, *_OUTSIDE.split(path)] if part)


def _parameters(
    item: dict[str, Any], operation: dict[str, Any]
) -> tuple[list[Parameter], dict[str, Any], list[str]]:
    # The operation's parameters override the path item's of the same name and location.
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*item.get("parameters", []), *operation.get("parameters", [])]:
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            merged[(raw["name"], raw.get("in", ""))] = raw
    parameters: list[Parameter] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for (name, where), raw in merged.items():
        location = _LOCATIONS.get(where)
        if location is None:
            raise Unsupported(f"parameter {name!r} is in {where!r}")
        if location == "header" and name.lower() in _IGNORED_HEADERS:
            continue
        argument = name if name not in properties else f"{location}_{name}"
        schema, as_json = _parameter_schema(raw)
        description = raw.get("description")
        properties[argument] = {**schema, "description": description} if description else schema
        if raw.get("required") or location == "path":
            required.append(argument)
        style = raw.get("style", "form" if location in ("query", "cookie") else "simple")
        explode = raw.get("explode", style == "form")
        parameters.append(Parameter(argument, name, location, bool(explode), as_json))
    return parameters, properties, required


def _parameter_schema(raw: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    if "schema" in raw:
        return json_schema(raw["schema"]), False
    content = raw.get("content")
    if isinstance(content, dict) and content:
        media = next(iter(content.values())) or {}
        return json_schema(media.get("schema")), True
    return {}, False


def _body(request_body: Any, *, taken: set[str]) -> Body | None:
    if not isinstance(request_body, dict) or not request_body.get("content"):
        return None
    argument = "body" if "body" not in taken else "request_body"
    content = request_body["content"]
    if not isinstance(content, dict):
        raise Unsupported("its request body's content is not an object")
    for media_type in content:
        base = media_type.split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return Body(argument, media_type, "json")
    for media_type in content:
        if media_type.split(";")[0].strip().lower() == "text/plain":
            return Body(argument, media_type, "text")
    raise Unsupported(f"its request body is {', '.join(content)}, not JSON or text/plain")
