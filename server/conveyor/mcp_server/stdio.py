"""MCP over stdio: one runtime, one connection, until the client closes stdin."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from conveyor.mcp_server.server import build_server
from conveyor.runtime import open_runtime
from conveyor.settings import Settings


async def serve_stdio(settings: Settings) -> None:
    async with open_runtime(settings) as runtime:
        server = build_server(runtime)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
