"""An upstream server's tools as Conveyor tools: their names, their definitions, their results.

Each upstream tool is served as ``<upstream>_<tool>``: characters outside ``[a-zA-Z0-9_-]``
become ``_``, and a name past 64 characters is shortened with a stable hash of the original, so
the same upstream tool always gets the same name. Schemas, descriptions, titles and annotations
pass through; a call's result comes back as the upstream gave it (its structured content, its
text), and ``isError`` as an ``EXECUTION_ERROR`` carrying the upstream's text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types

from conveyor.context import ToolContext
from conveyor.errors import ExecutionError
from conveyor.toolkit import Tool, ToolAnnotations, Toolkit, served_name

Forward = Callable[[str, dict[str, Any], ToolContext], Awaitable[Any]]


def define(toolkit: Toolkit, listed: list[types.Tool], forward: Forward) -> tuple[dict[str, Tool], list[str]]:
    """The toolkit's tools for the upstream's listing, and the upstream names left out because
    another of its tools got the same served name first."""
    tools: dict[str, Tool] = {}
    clashes = []
    for upstream_tool in listed:
        name = served_name(toolkit.name, upstream_tool.name)
        if name in tools:
            clashes.append(upstream_tool.name)
            continue
        tools[name] = _tool(toolkit, name, upstream_tool, forward)
    return tools, clashes


def _tool(toolkit: Toolkit, name: str, upstream: types.Tool, forward: Forward) -> Tool:
    hints = upstream.annotations or types.ToolAnnotations()
    upstream_name = upstream.name

    async def call(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        return await forward(upstream_name, arguments, ctx)

    read_only = bool(hints.read_only_hint)
    return Tool.forwarding(
        toolkit,
        name,
        call,
        title=upstream.title or hints.title or upstream.name,
        description=upstream.description or upstream.title or upstream.name,
        input_schema=dict(upstream.input_schema),
        # The spec's defaults for hints a server leaves out.
        annotations=ToolAnnotations(
            read_only=read_only,
            destructive=False if read_only else hints.destructive_hint is not False,
            idempotent=bool(hints.idempotent_hint) or read_only,
            open_world=hints.open_world_hint is not False,
        ),
        output_schema=dict(upstream.output_schema) if upstream.output_schema else None,
    )


def result_of(result: types.CallToolResult, *, upstream: str, tool: str) -> Any:
    """What a tool call's result is to Conveyor: its structured content if it has some, its
    text if that is all, else its content blocks; ``isError`` fails the run."""
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if result.is_error:
        raise ExecutionError(
            "\n".join(texts) or f"The upstream tool {tool} failed",
            details={"upstream": upstream, "tool": tool},
        )
    if result.structured_content is not None:
        return result.structured_content
    if len(result.content) == 1 and texts:
        return texts[0]
    return {
        "content": [
            block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
        ]
    }
