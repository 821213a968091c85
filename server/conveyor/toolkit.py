"""The ``Toolkit`` blueprint and its ``@toolkit.tool`` decorator.

A tool is a plain function; its type hints become the input JSON Schema (through a
pydantic model), its docstring the description. Nothing here runs a tool: that is
the executor's job.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeVar, get_type_hints, overload

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, create_model

from conveyor.arguments import Arguments, ModelArguments, SchemaArguments
from conveyor.context import ToolContext
from conveyor.errors import ConfigError
from conveyor.portable_schema import portable
from conveyor.secret_arguments import secret_parameters

WIRE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RESERVED_PREFIXES = ("jobs", "tools")
TaskSupport = Literal["optional", "required", "forbidden"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often an idempotent tool's job is tried, and how long to wait in between."""

    max_attempts: int = 3
    backoff_ms: int = 1000
    max_backoff_ms: int = 60_000

    def delay_ms(self, attempt: int) -> int:
        """Exponential back-off after the given (1-based) failed attempt."""
        return int(min(self.max_backoff_ms, self.backoff_ms * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class ToolAnnotations:
    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True


@dataclass(frozen=True, eq=False)
class Tool:
    """One tool of a toolkit, with everything the executor and the front doors need."""

    toolkit: str
    name: str
    func: Callable[..., Any]
    description: str
    arguments: Arguments
    output_model: type[BaseModel] | None
    title: str
    annotations: ToolAnnotations
    version: str
    timeout_ms: int | None
    cancellable: bool
    retry: RetryPolicy | None
    queue: str
    task_support: TaskSupport
    context_parameter: str | None
    is_async: bool
    toolkit_ref: Toolkit = field(repr=False)
    declared_output: dict[str, Any] | None = None  # a tool defined elsewhere: its output schema

    @property
    def wire_name(self) -> str:
        return f"{self.toolkit}_{self.name}"

    @property
    def input_schema(self) -> dict[str, Any]:
        """The arguments' schema as advertised: portable (see ``portable_schema``)."""
        return self.arguments.schema

    @cached_property
    def output_schema(self) -> dict[str, Any] | None:
        if self.output_model is not None:
            return portable(self.output_model.model_json_schema())
        return None if self.declared_output is None else portable(self.declared_output)

    @property
    def structured(self) -> bool:
        """Its results are JSON objects of a declared schema (MCP ``structuredContent``)."""
        return self.output_model is not None or self.declared_output is not None

    @cached_property
    def secret_arguments(self) -> frozenset[str]:
        """The parameters marked secret (``Secret()``, ``SecretStr``): sealed in a job, redacted
        from whatever a run shows (``secret_arguments``). A schema of another's (an upstream's,
        an OpenAPI operation's) marks none: its ``writeOnly`` means other things there."""
        if not isinstance(self.arguments, ModelArguments):
            return frozenset()
        return secret_parameters(self.input_schema)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version of this tool its toolkit serves, newest first."""
        return tuple(self.toolkit_ref.tool_versions.get(self.name, {self.version: self}))

    @classmethod
    def forwarding(
        cls,
        toolkit: Toolkit,
        name: str,
        call: Callable[[dict[str, Any], ToolContext], Awaitable[Any]],
        *,
        title: str,
        description: str,
        input_schema: dict[str, Any],
        annotations: ToolAnnotations,
        output_schema: dict[str, Any] | None = None,
    ) -> Tool:
        """A tool defined elsewhere (an upstream MCP server's, an OpenAPI operation) whose run
        forwards its arguments, checked against ``input_schema``: ``call(arguments, ctx)``."""
        return cls(
            toolkit=toolkit.name,
            name=name,
            func=call,
            description=description,
            arguments=SchemaArguments(input_schema),
            output_model=None,
            title=title,
            annotations=annotations,
            version=toolkit.version,
            timeout_ms=None,
            cancellable=True,
            retry=None,
            queue="default",
            task_support="optional",
            context_parameter="ctx",
            is_async=True,
            toolkit_ref=toolkit,
            declared_output=output_schema,
        )


AsyncLifespan = Callable[["Toolkit"], AbstractAsyncContextManager[Any]]


class Toolkit:
    """A named set of tools, e.g. ``toolkit = Toolkit("github")`` then ``@toolkit.tool``.

    ``lifespan`` (optional) is entered once when the server starts; what it yields is
    available to tools as ``ctx.state``. ``settings`` (optional) is a pydantic model of the
    toolkit's own settings, read from ``[toolkit_settings.<name>]`` and handed to tools as
    ``ctx.settings``; ``allowed_roles`` the key roles that may call its tools over HTTP unless
    that table says otherwise (None: every role). See ``conveyor.toolkit_settings``.
    """

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        version: str = "0.1.0",
        lifespan: AsyncLifespan | None = None,
        settings: type[BaseModel] | None = None,
        allowed_roles: tuple[str, ...] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9-]{1,32}", name):
            raise ConfigError(f"toolkit name {name!r} must be 1-32 letters, digits or '-'")
        if name in RESERVED_PREFIXES:
            raise ConfigError(f"toolkit name {name!r} is reserved for Conveyor's meta-tools")
        self.name = name
        self.description = description
        self.version = version
        self.lifespan = lifespan
        self.settings_model = settings
        self.allowed_roles = allowed_roles
        self.tools: dict[str, Tool] = {}  # by name: the newest version of each
        # Tools published in several versions (``@toolkit.tool(version=...)`` once per version),
        # by name, then version, newest first. A tool of one version need not be here.
        self.tool_versions: dict[str, dict[str, Tool]] = {}

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        output: type[BaseModel] | None = None,
        read_only: bool = False,
        destructive: bool | None = None,
        idempotent: bool = False,
        open_world: bool = True,
        version: str | None = None,
        timeout_ms: int | None = None,
        cancellable: bool = True,
        retry: RetryPolicy | None = None,
        queue: str = "default",
        task_support: TaskSupport = "optional",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: Any = None,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        output: type[BaseModel] | None = None,
        read_only: bool = False,
        destructive: bool | None = None,
        idempotent: bool = False,
        open_world: bool = True,
        version: str | None = None,
        timeout_ms: int | None = None,
        cancellable: bool = True,
        retry: RetryPolicy | None = None,
        queue: str = "default",
        task_support: TaskSupport = "optional",
    ) -> Any:
        """Register a function as a tool; usable bare (``@toolkit.tool``) or with options."""

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            tool_version = version or self.version
            same_name = self.tools.get(tool_name)
            if same_name is not None and tool_version in same_name.versions:
                raise ConfigError(
                    f"toolkit {self.name!r} defines tool {tool_name!r} twice"
                    f" (to publish several versions, give each its own version=)"
                )
            wire = f"{self.name}_{tool_name}"
            if not WIRE_NAME.fullmatch(wire):  # checked before registering, so a refused tool leaves no trace
                raise ConfigError(f"tool name {wire!r} must match {WIRE_NAME.pattern}")
            if retry is not None and not idempotent:
                raise ConfigError(f"tool {self.name}_{tool_name}: a retry policy needs idempotent=True")
            if timeout_ms is not None and timeout_ms <= 0:
                raise ConfigError(f"tool {self.name}_{tool_name}: timeout_ms must be positive")
            arguments_model, context_parameter = _arguments_model(fn, f"{self.name}_{tool_name}")
            tool = Tool(
                toolkit=self.name,
                name=tool_name,
                func=fn,
                description=description or inspect.cleandoc(fn.__doc__ or "") or tool_name,
                arguments=ModelArguments(arguments_model),
                output_model=output or _output_model(fn),
                title=title or tool_name.replace("_", " ").capitalize(),
                annotations=ToolAnnotations(
                    read_only=read_only,
                    destructive=(not read_only) if destructive is None else destructive,
                    idempotent=idempotent or read_only,
                    open_world=open_world,
                ),
                version=tool_version,
                timeout_ms=timeout_ms,
                cancellable=cancellable,
                retry=retry,
                queue=queue,
                task_support=task_support,
                context_parameter=context_parameter,
                is_async=inspect.iscoroutinefunction(fn),
                toolkit_ref=self,
            )
            if same_name is None:
                self.tools[tool_name] = tool
            else:
                self._add_version(same_name, tool)
            return fn

        return register(func) if func is not None else register

    def _add_version(self, published: Tool, tool: Tool) -> None:
        """Another version of a published tool: both kept, the newest the one ``tools`` names."""
        versions = {**self.tool_versions.get(tool.name, {published.version: published}), tool.version: tool}
        try:
            order = sorted(versions, key=Version, reverse=True)
        except InvalidVersion as exc:
            raise ConfigError(
                f"tool {self.name}_{tool.name}: versions must be comparable (PEP 440, such as 1.2.0): {exc}"
            ) from None
        self.tool_versions[tool.name] = {number: versions[number] for number in order}
        self.tools[tool.name] = versions[order[0]]


def _arguments_model(fn: Callable[..., Any], model_name: str) -> tuple[type[BaseModel], str | None]:
    """Build the pydantic model of a function's parameters; the ToolContext one is left out."""
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_parameter = None
    for param in inspect.signature(fn).parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_parameter = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"tool {model_name}: *args and **kwargs cannot be described as a schema")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{model_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model, context_parameter


def _output_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    returns = get_type_hints(fn).get("return")
    if inspect.isclass(returns) and issubclass(returns, BaseModel):
        return returns
    return None


MAX_WIRE_NAME = 64
_OUTSIDE_WIRE_ALPHABET = re.compile(r"[^a-zA-Z0-9_-]")


def served_name(toolkit: str, upstream_name: str) -> str:
    """The name part (after ``<toolkit>_``) a tool defined elsewhere (an upstream server's, an
    OpenAPI operation) is served under: characters outside ``[a-zA-Z0-9_-]`` become ``_``, and a
    name too long for 64 characters in all is cut, with a stable hash of the original."""
    name = _OUTSIDE_WIRE_ALPHABET.sub("_", upstream_name) or "_"
    room = MAX_WIRE_NAME - len(toolkit) - 1
    if len(name) > room:
        digest = hashlib.sha256(upstream_name.encode()).hexdigest()[:8]
        name = f"{name[: room - 9]}_{digest}"
    return name
