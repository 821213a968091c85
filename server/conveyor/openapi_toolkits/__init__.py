"""REST APIs described by OpenAPI 3.x documents, served as toolkits: each operation a tool named
``<name>_<operationId>``, called over HTTP under the outbound rules.

``[[openapi]]`` tables in the settings name them; ``load_toolkit`` reads a document (at start: a
document that cannot be used, or two operations with one served name, fail the start) and builds
its toolkit, whose lifespan holds the HTTP client its calls share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2

from conveyor.context import ToolContext
from conveyor.errors import ConfigError
from conveyor.openapi_toolkits import calls, spec
from conveyor.openapi_toolkits.operations import Operation, operations
from conveyor.settings import OpenAPIConfig
from conveyor.toolkit import Tool, Toolkit, served_name

__all__ = ["load_toolkit"]


async def load_toolkit(config: OpenAPIConfig, *, max_result_bytes: int) -> Toolkit:
    """The toolkit of the API ``config`` names, its document read and its operations defined."""
    document = await spec.load(config)
    components = document.data.get("components")
    try:
        schemes = document.resolve(
            components.get("securitySchemes", {}) if isinstance(components, dict) else {}
        )
    except spec.SpecError as exc:
        raise ConfigError(f"openapi {config.name}: its security schemes cannot be used: {exc}") from None
    api = calls.Api(
        name=config.name,
        base_url=document.base_url,
        headers=dict(config.headers),
        schemes=schemes if isinstance(schemes, dict) else {},
        allow_private=config.allow_private_addresses,
        timeout_s=config.timeout_seconds,
        max_body_bytes=max_result_bytes,
    )

    @asynccontextmanager
    async def shared_client(_: Toolkit) -> AsyncIterator[httpx2.AsyncClient]:
        async with api.client() as client:
            yield client

    info = document.data.get("info")
    info = info if isinstance(info, dict) else {}
    version = info.get("version")
    toolkit = Toolkit(
        config.name,
        description=str(info.get("description") or info.get("title") or f"The operations of {config.spec}."),
        version=version if isinstance(version, str) and version else "0.1.0",
        lifespan=shared_client,
    )
    for operation in operations(document, toolkit=config.name):
        name = served_name(config.name, operation.key)
        if name in toolkit.tools:
            raise ConfigError(
                f"openapi {config.name}: two operations are served as {config.name}_{name} "
                f"({toolkit.tools[name].title!r} and {operation.method} {operation.path}); give them distinct operationIds"
            )
        toolkit.tools[name] = _tool(toolkit, name, operation, api)
    return toolkit


def _tool(toolkit: Toolkit, name: str, operation: Operation, api: calls.Api) -> Tool:
    async def call(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        return await calls.call(api, operation, arguments, ctx)

    return Tool.forwarding(
        toolkit,
        name,
        call,
        title=operation.title,
        description=operation.description,
        input_schema=operation.input_schema,
        annotations=operation.annotations,
    )
