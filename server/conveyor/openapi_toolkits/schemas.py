"""OpenAPI schema objects as plain JSON Schema (2020-12), the dialect tool arguments are
checked in: OpenAPI 3.1 schemas already are, nearly; 3.0's ``nullable`` and boolean
``exclusiveMinimum``/``exclusiveMaximum`` are rewritten, and what only documents (``example``,
``xml``, ``discriminator``…) is dropped. Expects references already resolved."""

from __future__ import annotations

from typing import Any

_DOCUMENTATION_ONLY = ("example", "xml", "externalDocs", "discriminator")
_SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "propertyNames", "unevaluatedProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")


def json_schema(node: Any) -> dict[str, Any]:
    """The JSON Schema of an OpenAPI schema object (a new object; ``{}`` when there is none)."""
    if not isinstance(node, dict):
        return {} if node is None or node is True else {"not": {}}
    schema = {key: value for key, value in node.items() if key not in _DOCUMENTATION_ONLY}
    for key in _SUBSCHEMA:
        if isinstance(schema.get(key), dict):
            schema[key] = json_schema(schema[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            schema[key] = [json_schema(child) for child in schema[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            schema[key] = {name: json_schema(child) for name, child in schema[key].items()}
    _exclusive_bounds(schema)
    return _nullable(schema)


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    # 3.0: ``exclusiveMinimum: true`` qualifies ``minimum``; in JSON Schema it is the bound itself.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool) and schema.pop(exclusive) and bound in schema:
            schema[exclusive] = schema.pop(bound)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema.pop("nullable", False):
        return schema
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
        return schema
    if isinstance(kind, list):
        schema["type"] = [*kind, "null"] if "null" not in kind else kind
        return schema
    return {"anyOf": [schema, {"type": "null"}]}
