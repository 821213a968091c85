"""Tool parameters marked secret: ``api_key: Annotated[str, Secret()]``, or pydantic's ``SecretStr``.

The tool gets the clear value (a ``str``, or the ``SecretStr`` it asked for); nobody else sees it.
A job stores a marker in its place and keeps the value sealed with the run's credentials
(``credentials.py``) until the job ends. Whatever a run hands back or logs (result, step results,
progress, errors, log records) has every secret value replaced by ``[redacted]``, at every door.

A parameter is secret when its schema, anywhere within, says ``writeOnly`` (what ``Secret()`` and
``SecretStr`` write, with ``format: password``, so that form UIs render a hidden field). The whole
top-level argument is then sealed: a model or a list with one secret field in it is kept whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from conveyor.credentials import redact
from conveyor.errors import ConveyorError
from conveyor.progress import Progress

SECRET_MARKER = "[secret]"  # a job's stored arguments hold this where a secret's value was
E = TypeVar("E", bound=ConveyorError)


class Secret:
    """Marks a tool parameter secret: ``def login(user: str, password: Annotated[str, Secret()])``."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(writeOnly=True, format="password")  # as pydantic writes SecretStr's
        return schema

    def __repr__(self) -> str:
        return "Secret()"


def secret_parameters(schema: Mapping[str, Any]) -> frozenset[str]:
    """The top-level properties of an input schema that hold a secret somewhere within."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return frozenset()
    return frozenset(name for name, node in properties.items() if _holds_secret(node))


def _holds_secret(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("writeOnly") is True or any(_holds_secret(child) for child in node.values())
    if isinstance(node, list):
        return any(_holds_secret(child) for child in node)
    return False


def split(arguments: dict[str, Any], names: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A job's arguments as stored (each secret given replaced by the marker), and the secrets."""
    secrets = {name: arguments[name] for name in names if arguments.get(name) is not None}
    if not secrets:
        return arguments, {}
    return {**arguments, **dict.fromkeys(secrets, SECRET_MARKER)}, secrets


def restore(arguments: dict[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """A job's stored arguments with its secrets back in place, for its run."""
    return {**arguments, **secrets} if secrets else arguments


def secret_values(arguments: Any, names: frozenset[str]) -> tuple[str, ...]:
    """The text of the secret arguments given (every string within them), longest first, which
    is what redaction looks for."""
    if not names or not isinstance(arguments, dict):
        return ()
    found: set[str] = set()
    for name in names:
        _strings(arguments.get(name), found)
    found.discard("")  # an empty secret hides nothing, and replacing "" would mangle every text
    return tuple(sorted(found, key=len, reverse=True))


def _strings(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        into.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, list):
        for item in value:
            _strings(item, into)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        into.add(str(value))  # a secret PIN given as a number is as secret in a message


def redacted_error(error: E, values: tuple[str, ...]) -> E:
    """The error with the secret values taken out of what it says (a validation message or a
    tool's exception may quote an argument)."""
    if values:
        error.message = redact(error.message, values)
        error.details = redact(error.details, values)
        error.extra = redact(error.extra, values)
        error.args = (error.message,)
    return error


def redacted_progress(
    sink: Callable[[Progress], Awaitable[None]], values: tuple[str, ...]
) -> Callable[[Progress], Awaitable[None]]:
    async def redacting(progress: Progress) -> None:
        message = progress.message if progress.message is None else redact(progress.message, values)
        step = progress.step if progress.step is None else redact(progress.step, values)
        await sink(Progress(progress.current, progress.total, message, step))

    return redacting


# -- log records ------------------------------------------------------------------------------

# The secret values of the runs in this context (a task and what it starts, a tool's thread): log
# records made here have them replaced, whichever logger (the tool's own, a library's) made them.
_hidden: ContextVar[tuple[str, ...]] = ContextVar("conveyor_secret_values", default=())
_factory_lock = threading.Lock()
_factory_installed = False


@contextmanager
def redacting_logs(values: tuple[str, ...]) -> Iterator[None]:
    """Log records made within have ``values`` replaced, wherever they are then handled."""
    if not values:
        yield
        return
    _install_record_factory()
    token = _hidden.set(tuple(sorted({*_hidden.get(), *values}, key=len, reverse=True)))
    try:
        yield
    finally:
        _hidden.reset(token)


def redacted_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A log call's ``extra`` fields, secrets of the current run replaced (they join the record
    after the record factory has run, so they are redacted here)."""
    values = _hidden.get()
    redacted: dict[str, Any] = redact(fields, values) if values else fields
    return redacted


def _install_record_factory() -> None:
    """Installed on the first run with secrets: a server that has none pays nothing per record."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        made = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = made(*args, **kwargs)
            values = _hidden.get()
            if values:
                _redact_record(record, values)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _factory_installed = True


def _redact_record(record: logging.LogRecord, values: tuple[str, ...]) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: logging reports that itself
        message = str(record.msg)
    record.msg, record.args = redact(message, values), None
    if record.exc_info and not record.exc_text:
        # The traceback as text, now: formatters print exc_text when it is set.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info), values)
    if record.stack_info:
        record.stack_info = redact(record.stack_info, values)
