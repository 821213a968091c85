"""The peers' servers, each with the same no-op tool ``bench_noop`` (no arguments, returns "ok").

Imported by the driver for in-memory runs, and run as a script for stdio and HTTP:
``python bench/peers_servers.py PEER stdio`` or ``python bench/peers_servers.py PEER http PORT
[LOOP HTTP]`` (LOOP ``asyncio`` or ``uvloop``, HTTP ``h11``, ``httptools`` or ``auto``: the
event loop and HTTP implementation Conveyor's HTTP server runs on, so that every peer runs on the
same).
Runs under the peers' virtual environment (mcp, fastmcp); the low-level SDK peer imports only
``mcp.server`` — that is the floor Conveyor builds on, and the cold-start baseline.
"""

from __future__ import annotations

import sys
from typing import Any

PEERS = ("sdk-lowlevel", "sdk-mcpserver", "fastmcp")
TOOL = "bench_noop"


def lowlevel_server() -> Any:
    import mcp_types as types
    from mcp.server import Server

    tool = types.Tool(
        name=TOOL,
        description="Do nothing.",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
    )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])

    return Server("bench-sdk-lowlevel", on_list_tools=list_tools, on_call_tool=call_tool)


def mcpserver_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench-sdk-mcpserver")

    @server.tool(name=TOOL)
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    return server


def fastmcp_server(tasks_url: str | None = None) -> Any:
    """FastMCP with the no-op tool; with ``tasks_url`` also a task tool on Docket at that URL."""
    from fastmcp import FastMCP

    server = FastMCP("bench-fastmcp")

    @server.tool(name=TOOL)
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    if tasks_url is not None:
        from fastmcp_tasks import TasksExtension

        server.add_extension(TasksExtension(url=tasks_url, concurrency=_docket_concurrency()))

        @server.tool(name="bench_noop_task", task=True)
        async def noop_task() -> str:
            """Do nothing, as a background task."""
            return "ok"

        @server.tool(name="bench_sleep_task", task=True)
        async def sleep_task(seconds: float) -> str:
            """Sleep, as a background task."""
            import anyio

            await anyio.sleep(seconds)
            return "ok"

    return server


def _docket_concurrency() -> int:
    import os

    return int(os.environ.get("BENCH_DOCKET_CONCURRENCY", "32"))


def lowlevel_of(peer: str, server: Any) -> Any:
    """The SDK ``Server`` an in-process ``mcp.Client`` connects to."""
    if peer == "fastmcp":
        return server._mcp_server
    return server


def build(peer: str) -> Any:
    if peer == "sdk-lowlevel":
        return lowlevel_server()
    if peer == "sdk-mcpserver":
        return mcpserver_server()
    if peer == "fastmcp":
        return fastmcp_server()
    raise SystemExit(f"unknown peer {peer!r}")


def http_app(peer: str) -> Any:
    """Each peer's ASGI app as its own documentation serves it, with its documented defaults
    (``stateless_http=False``, ``json_response=False``, the endpoint at ``/mcp``): the SDK's
    ``streamable_http_app()`` (a plain route, for the low-level ``Server`` and ``MCPServer``
    alike) and FastMCP's ``http_app()``."""
    server = build(peer)
    if peer == "fastmcp":
        return server.http_app()
    return server.streamable_http_app()


def main(argv: list[str]) -> None:
    peer, transport = argv[0], argv[1]
    if transport == "stdio":
        if peer == "sdk-lowlevel":
            import anyio
            from mcp.server.stdio import stdio_server

            server = lowlevel_server()

            async def serve() -> None:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())

            anyio.run(serve)
        elif peer == "sdk-mcpserver":
            mcpserver_server().run("stdio")
        else:
            fastmcp_server().run(transport="stdio", show_banner=False)
        return
    loop, http = (argv[3], argv[4]) if len(argv) > 4 else ("asyncio", "auto")
    serve_http(http_app(peer), int(argv[2]), loop=loop, http=http)


# Conveyor's own uvicorn settings (``conveyor.http_api.app.serve_http``), given to every peer.
UVICORN_SETTINGS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "lifespan": "on",
    "timeout_graceful_shutdown": 5,
}


def serve_http(app: Any, port: int, *, loop: str = "asyncio", http: str = "auto") -> None:
    """uvicorn as Conveyor runs it: ``Server.serve`` under ``anyio.run`` (on uvloop if ``loop``
    says so), the HTTP implementation Conveyor's server runs on (``http``: ``h11``,
    ``httptools`` or uvicorn's ``auto``), the same settings, on a socket made with
    IPPROTO_TCP and a backlog of 2048 as Conveyor's is (asyncio sets TCP_NODELAY only on such
    sockets; without it small responses can wait ~40 ms for a delayed ACK)."""
    import socket

    import anyio
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(app, http=http, **UVICORN_SETTINGS)
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]), backend_options=options)


if __name__ == "__main__":
    main(sys.argv[1:])
