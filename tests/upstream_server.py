"""An MCP server for the upstream tests, written with the Python SDK as a user's own would be.

``python -m tests.upstream_server`` serves it over stdio; ``--http PORT`` over streamable HTTP
at ``/mcp``. ``--marks DIR`` is where its tools leave files a test reads: a ``slow`` run that was
cancelled leaves ``cancelled-<key>``, each start of the server ``started-<pid>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("upstream-for-tests", instructions="Tools for Conveyor's upstream tests.")
MARKS = Path(os.environ.get("UPSTREAM_MARKS", "."))


class Sum(BaseModel):
    total: int


@server.tool(description="Echo the text back, as it was sent.")
def echo(text: str) -> str:
    return text


@server.tool(description="Add two whole numbers; the sum comes back as structured content.")
def add(a: int, b: int) -> Sum:
    return Sum(total=a + b)


@server.tool(description="Fail with the given message, as a tool error (isError).")
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(description="Work for a while in steps, reporting progress after each one.")
async def slow(ctx: Context, seconds: float, steps: int = 4, key: str = "slow") -> str:
    try:
        for step in range(steps):
            await anyio.sleep(seconds / steps)
            await ctx.report_progress(step + 1, steps, f"step {step + 1} of {steps}")
    except anyio.get_cancelled_exc_class():
        (MARKS / f"cancelled-{key}").write_text("")
        raise
    return f"slept {seconds}s"


@server.tool(
    description="What Authorization header this call came with (over HTTP): its SHA-256, and as sent."
)
def authorization(ctx: Context, refuse: bool = False) -> dict[str, str | None]:
    request = ctx.request_context.request
    header = request.headers.get("authorization") if request is not None else None
    if refuse:
        raise ToolError(f"not with {header}")
    digest = hashlib.sha256(header.encode()).hexdigest() if header is not None else None
    return {"digest": digest, "sent": header}


@server.tool(description="End this server's process at once, in the middle of the call.")
def die() -> str:
    os._exit(1)


@server.tool(description="Add a tool named extra to this server, and say that the tools changed.")
async def grow(ctx: Context) -> str:
    def extra(word: str) -> str:
        """A tool added while the server runs."""
        return word.upper()

    if "extra" not in {tool.name for tool in await server.list_tools()}:
        server.add_tool(extra, name="extra")
    await ctx.notify_tools_changed()  # 2026-07-28 listen streams
    with contextlib.suppress(Exception):  # a 2026 request has no session to notify
        await ctx.request_context.session.send_tool_list_changed()  # 2025-11-25 sessions
    return "grown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT")
    args = parser.parse_args(argv)
    (MARKS / f"started-{os.getpid()}").write_text("")
    if args.http is None:
        server.run("stdio")
    else:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": args.http}
        server.run("streamable-http", **options)


if __name__ == "__main__":
    main()
