"""A tool's arguments: the schema it advertises, and how a call's JSON is checked against it.

A Python tool's parameters are a pydantic model (``ModelArguments``); a tool defined elsewhere
(an upstream MCP server, an OpenAPI operation) brings a JSON Schema (``SchemaArguments``),
checked with ``jsonschema``. Either way a bad call is one ``InvalidArguments`` naming the argument.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from conveyor.errors import InvalidArguments
from conveyor.portable_schema import portable

logger = logging.getLogger("conveyor.arguments")


class Arguments(Protocol):
    @property
    def schema(self) -> dict[str, Any]:
        """The arguments' JSON Schema as advertised (portable: see ``portable_schema``)."""
        ...

    def parse(self, text: str) -> dict[str, Any]:
        """The keyword arguments of the tool's function for this call's JSON object text."""
        ...


class ModelArguments:
    """A Python function's parameters, as the pydantic model built from its type hints."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self._names = tuple(model.model_fields)  # looked up once: parse runs for every call and job

    @cached_property
    def schema(self) -> dict[str, Any]:
        return portable(self.model.model_json_schema())

    def parse(self, text: str) -> dict[str, Any]:
        try:
            # Strict, and as JSON: a number is a JSON number (no "1", no true), as the schema says,
            # while a string still names an enum member or a date, as JSON has no other way to.
            parsed = self.model.model_validate_json(text, strict=True)
        except ValidationError as exc:
            raise invalid_arguments(exc) from None
        return {name: getattr(parsed, name) for name in self._names}


class SchemaArguments:
    """Arguments described by a JSON Schema of another's: the tool's function gets them whole, as
    its ``into`` parameter."""

    def __init__(self, schema: dict[str, Any], *, into: str = "arguments") -> None:
        self.original = schema
        self.into = into

    @cached_property
    def schema(self) -> dict[str, Any]:
        return portable(self.original)

    @cached_property
    def _validator(self) -> Any:
        import jsonschema  # only servers with tools of another's schema pay for its import
        from jsonschema.exceptions import SchemaError

        try:
            cls = jsonschema.validators.validator_for(self.original, default=jsonschema.Draft202012Validator)
            cls.check_schema(self.original)
            return cls(self.original)
        except SchemaError as exc:  # the other side's mistake: let its own checks judge the call
            logger.warning(
                "schema not checkable", extra={"action": "arguments.bad_schema", "error": exc.message}
            )
            return None

    def parse(self, text: str) -> dict[str, Any]:
        value = json.loads(text)
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(value), key=lambda e: (len(e.path), e.message))
            if errors:
                problems = [_describe_schema_error(error) for error in errors]
                first = problems[0]
                raise InvalidArguments(
                    first["message"], argument=first["argument"], details={"errors": problems}
                )
        return {self.into: value}


def invalid_arguments(exc: ValidationError) -> InvalidArguments:
    problems = [_describe(error) for error in exc.errors(include_url=False, include_input=False)]
    first = problems[0]
    return InvalidArguments(first["message"], argument=first["argument"], details={"errors": problems})


def _describe(error: Any) -> dict[str, Any]:
    location = [str(part) for part in error.get("loc", ())]
    argument = location[0] if location else None
    kind = error.get("type", "")
    if kind == "missing":
        message = f"Missing required argument: {argument}"
    elif kind == "extra_forbidden":
        message = f"Unknown argument: {argument}"
    else:
        message = f"Invalid argument {'.'.join(location) or argument}: {error.get('msg', 'invalid value')}"
    return {"argument": argument, "message": message, "type": kind}


def _describe_schema_error(error: Any) -> dict[str, Any]:  # a jsonschema.ValidationError
    path = [str(part) for part in error.absolute_path]
    argument = path[0] if path else None
    if error.validator == "required" and not path:
        missing = error.message.split("'")[1] if "'" in error.message else None
        return {"argument": missing, "message": f"Missing required argument: {missing}", "type": "missing"}
    if error.validator == "additionalProperties" and not path:
        return {"argument": None, "message": f"Unknown argument: {error.message}", "type": "extra_forbidden"}
    where = ".".join(path) or "arguments"
    return {
        "argument": argument,
        "message": f"Invalid argument {where}: {error.message}",
        "type": str(error.validator),
    }
