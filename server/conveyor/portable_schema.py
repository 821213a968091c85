"""JSON schemas every MCP client can use, made from the ones pydantic writes.

Clients map tool schemas onto narrower dialects: some cannot follow ``$ref`` (llama-index handed
the model ``{"JobStatus": enum}``), some take one ``type`` per schema (Gemini's OpenAPI subset),
and OpenAI's strict mode refuses keywords such as ``default`` or ``maxLength`` (strict clients
drop them, or give up strict mode for the whole tool). So an advertised schema has its
references inlined, type arrays split into ``anyOf`` branches, an "any JSON value" spelled out as
the six JSON types, and the keywords strict mode does not take moved into the description, where
the model still reads them. Validation is unchanged: the server checks every request against the
full model, constraints included.
"""

from __future__ import annotations

import copy
import json
from typing import Any

JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")
ANY_JSON: dict[str, Any] = {"anyOf": [{"type": name} for name in JSON_TYPES]}

# What OpenAI's strict mode does not take (as strict clients such as pydantic-ai list them).
_STRICT_UNSUPPORTED = {
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "minProperties": "at least {} properties",
    "maxProperties": "at most {} properties",
    "uniqueItems": "items unique",
    "default": "defaults to {}",
}
_STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
_DROPPED = ("title", "$schema", "examples")  # for people reading pydantic's output, not for models
_VALIDATING = {
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "not", "properties", "items", "prefixItems",
    "additionalProperties", "required", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minItems", "maxItems", "pattern", "$ref",
}  # fmt: skip


def portable(schema: dict[str, Any]) -> dict[str, Any]:
    """The portable form of a (pydantic) JSON schema; the input is left unchanged."""
    definitions = schema.get("$defs", {})
    node: dict[str, Any] = _node(copy.deepcopy(schema), definitions, depth=0)
    return node


def _node(node: Any, definitions: dict[str, Any], *, depth: int) -> Any:
    if not isinstance(node, dict):
        return node
    if depth > 64:
        raise ValueError("schema nested too deep (a recursive model cannot be inlined)")
    node.pop("$defs", None)
    ref = node.pop("$ref", None)
    if isinstance(ref, str):
        target = copy.deepcopy(definitions[ref.rsplit("/", 1)[-1]])
        node = {**target, **node}  # the reference's own description wins over the definition's
    for key in _DROPPED:
        node.pop(key, None)
    kind = node.get("type")
    if isinstance(kind, list):  # a type array: one anyOf branch per type
        del node["type"]
        node["anyOf"] = [{"type": name} for name in kind]
    _move_to_description(node)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {
            name: _node(child, definitions, depth=depth + 1) for name, child in node["properties"].items()
        }
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _node(node[key], definitions, depth=depth + 1)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            node[key] = [_node(child, definitions, depth=depth + 1) for child in node[key]]
    if "oneOf" in node:  # the same set of values for our schemas, and what strict mode takes
        node["anyOf"] = node.pop("oneOf")
    if not _VALIDATING & node.keys():  # "any JSON value", said in a way every client reads
        node.update(copy.deepcopy(ANY_JSON))
    return node


def _move_to_description(node: dict[str, Any]) -> None:
    if node.get("default", 0) is None:
        del node["default"]  # "absent means null" says nothing a model needs
    notes = []
    if node.get("minLength") == 1:
        del node["minLength"]
        notes.append("not empty")
    notes += [text.format(_shown(node.pop(key))) for key, text in _STRICT_UNSUPPORTED.items() if key in node]
    form = node.get("format")
    # A secret keeps ``format: password`` beside ``writeOnly``: what form UIs render as a hidden
    # field. Both only annotate; a strict client that does not take them drops them.
    secret = form == "password" and node.get("writeOnly") is True
    if isinstance(form, str) and form not in _STRICT_FORMATS and not secret:
        notes.append(f"format {node.pop('format')}")
    if not notes:
        return
    said = "; ".join(notes)
    said = f"{said[0].upper()}{said[1:]}."
    description = node.get("description")
    node["description"] = f"{description.rstrip()} {said}" if description else said


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
