"""Calling tools through an SDK client in tests: succeed with structure, or fail with a coded error."""

from __future__ import annotations

from typing import Any

from mcp import Client


async def call(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed with structured content, and return that content."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must fail with a structured error, and return that error."""
    result = await client.call_tool(name, arguments or {})
    assert result.is_error, result.content
    assert result.structured_content is not None
    error: dict[str, Any] = result.structured_content["error"]
    return error
