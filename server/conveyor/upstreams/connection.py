"""One upstream MCP server: a connection kept up, and calls forwarded over it.

``run`` connects (stdio: it starts the command; HTTP: it reaches the URL) with the SDK's
client, in whichever protocol era the server speaks, lists its tools into the registry, and
follows their changes (``notifications/tools/list_changed``, or a 2026 listen stream). A lost
connection (the process died, the server stopped answering pings) is made again, with backoff;
meanwhile the rest of Conveyor serves on, and a call waits a little for the connection, then
answers ``UPSTREAM_UNAVAILABLE``. Ending ``run`` ends the connection (and a stdio server's process).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

import conveyor
from conveyor.context import ToolContext
from conveyor.credentials import redact
from conveyor.errors import ConveyorError, ExecutionError, InvalidArguments, UpstreamUnavailable
from conveyor.events import Wakeup
from conveyor.registry import Registry
from conveyor.settings import UpstreamConfig, credential_names, fill_credentials
from conveyor.toolkit import Toolkit
from conveyor.upstreams import tools

logger = logging.getLogger("conveyor.upstream")

PING_INTERVAL_S = 5.0  # how soon a server that died between calls is noticed
PING_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
LIST_PAGES_MAX = 100
PROGRESS_SETTLE_TURNS = 3
CLIENT_INFO = types.Implementation(name="conveyor", version=conveyor.__version__)


class UpstreamConnection:
    def __init__(self, config: UpstreamConfig, registry: Registry, *, connect_timeout_s: float) -> None:
        self.config = config
        self.registry = registry
        self.connect_timeout_s = connect_timeout_s
        self.toolkit = Toolkit(config.name, description=f"The tools of the MCP server {config.name!r}.")
        self.clashes: list[str] = []  # served names that were taken: by another of its tools, or toolkit
        self._client: Client | None = None
        self._connected = anyio.Event()
        self._attention = Wakeup()  # wakes the follower: the connection was lost, or the tools changed
        self._lost = False
        self._relist = False

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep connected until cancelled; ``started`` once the first attempt ended, either way."""
        backoff = BACKOFF_FIRST_S
        started = anyio.Event()

        def first_attempt_over() -> None:
            if not started.is_set():
                started.set()
                task_status.started()

        while True:
            try:
                await self._connect_and_follow(first_attempt_over)
                backoff = BACKOFF_FIRST_S  # it was connected: the next attempt soon
            except Exception as exc:  # unreachable, refused, crashed: try again later
                logger.warning(
                    "upstream unavailable",
                    extra={
                        "action": "upstream.unavailable",
                        "upstream": self.config.name,
                        "error": _reason(exc),
                    },
                )
            first_attempt_over()
            await anyio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _connect_and_follow(self, on_connected: Callable[[], None]) -> None:
        """Connect, list the tools into the registry (both within the connect timeout), then
        follow the server until the connection is lost. Its tools stay listed afterwards: a call
        then waits for the next connection."""
        timed_out = False
        connected = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                nonlocal timed_out
                with anyio.move_on_after(self.connect_timeout_s):
                    await connected.wait()
                    return
                timed_out = True
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            async with self._server() as server, self._new_client(server) as client:
                await self._take_tools(client)
                connected.set()
                self._lost = False
                self._client = client
                self._connected.set()
                logger.info(
                    "upstream connected",
                    extra={
                        "action": "upstream.connected",
                        "upstream": self.config.name,
                        "tools": len(self.toolkit.tools),
                    },
                )
                on_connected()
                try:
                    await self._follow(client)
                finally:
                    self._client = None
                    self._connected = anyio.Event()
            tg.cancel_scope.cancel()
        if timed_out:
            raise TimeoutError(f"no answer within {self.connect_timeout_s:g} s")

    def _new_client(self, server: Any) -> Client:
        return Client(
            server,
            mode=self.config.protocol,
            message_handler=self._on_message,
            client_info=CLIENT_INFO,
            cache=None,  # the listing is fetched again when the server says it changed
        )

    @asynccontextmanager
    async def _server(
        self, headers: dict[str, str] | None = None
    ) -> AsyncIterator[StdioServerParameters | Any]:
        """What the SDK's client connects to: a command to start, or a URL (through an HTTP client
        of ours, for the configured headers and these, closed with the connection)."""
        if self.config.command is not None:
            command, *args = self.config.command
            yield StdioServerParameters(
                command=command, args=args, env=self.config.env or None, cwd=self.config.cwd
            )
            return
        assert self.config.url is not None
        async with httpx2.AsyncClient(
            headers={**self.config.headers, **(headers or {})}, timeout=httpx2.Timeout(30, read=None)
        ) as http:
            yield streamable_http_client(self.config.url, http_client=http)

    async def _take_tools(self, client: Client) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(LIST_PAGES_MAX):
            page = await client.list_tools(cursor=cursor)
            listed += page.tools
            cursor = page.next_cursor
            if cursor is None:
                break
        self.toolkit.tools, clashes = tools.define(self.toolkit, listed, self.call)
        self.clashes = clashes + self.registry.refresh(self.toolkit)
        for name in clashes:
            logger.error(
                "upstream tool name taken",
                extra={"action": "upstream.collision", "upstream": self.config.name, "tool": name},
            )

    async def _follow(self, client: Client) -> None:
        """Until the connection is lost: list the tools again when they change, ping when quiet."""
        async with anyio.create_task_group() as tg:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                tg.start_soon(self._listen, client)
            while True:
                with anyio.move_on_after(PING_INTERVAL_S):
                    await self._attention.wait()
                self._attention.clear()
                if self._lost:
                    self._lost = False
                    tg.cancel_scope.cancel()
                    return
                if self._relist:
                    self._relist = False
                    await self._take_tools(client)
                    continue
                if not await _answers(client):
                    tg.cancel_scope.cancel()
                    return

    def _lose(self, client: Client) -> None:
        """A call found its connection gone: the next call waits for it to be made again. Only
        the connection the call used is given up: a newer one may already be up."""
        if client is not self._client:
            return
        self._client = None
        self._connected = anyio.Event()
        self._lost = True
        self._attention.set()

    async def _listen(self, client: Client) -> None:
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _event in events:
                    self._relist = True
                    self._attention.set()
        except Exception:  # no listen stream: changes are heard by the legacy notification, if at all
            logger.debug("upstream listen ended", exc_info=True, extra={"action": "upstream.listen_ended"})

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._relist = True
            self._attention.set()

    async def call(self, upstream_tool: str, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        """Forward a call; its progress comes back through ``ctx``, and cancelling the caller
        cancels the call upstream (``notifications/cancelled``). With ``credential_headers``, the
        call goes over a connection of its own, whose headers carry the run's credentials."""
        if self.config.credential_headers:
            return await self._call_with_credentials(upstream_tool, arguments, ctx)
        return await self._forward(await self._client_or_unavailable(), upstream_tool, arguments, ctx)

    async def _call_with_credentials(
        self, upstream_tool: str, arguments: dict[str, Any], ctx: ToolContext
    ) -> Any:
        headers = self._credential_headers(ctx)
        secrets = list(headers.values())
        failed: ConveyorError | None = None
        try:
            async with self._server(headers) as server, self._new_client(server) as client:
                try:
                    result = await self._forward(client, upstream_tool, arguments, ctx)
                except ConveyorError as exc:  # kept out of the client's task group, as it is
                    failed = exc
        except Exception as exc:  # the connection of its own could not be made, or broke
            if failed is None:
                raise UpstreamUnavailable(
                    redact(
                        f"The upstream server {self.config.name!r} cannot be reached: {_reason(exc)}", secrets
                    ),
                    upstream=self.config.name,
                ) from None
        if failed is not None:  # the upstream's error text may repeat what it was sent
            failed.message = redact(failed.message, secrets)
            raise failed
        return redact(result, secrets)

    def _credential_headers(self, ctx: ToolContext) -> dict[str, str]:
        for template in self.config.credential_headers.values():
            for name in credential_names(template):
                if name not in ctx.credentials:
                    raise InvalidArguments(
                        f"The upstream server {self.config.name!r} needs the credential {name!r}",
                        argument="credentials",
                        credential=name,
                        suggested_fix=f'Pass credentials={{"{name}": "…"}} with the call or the job.',
                    )
        return {
            header: fill_credentials(template, ctx.credentials)
            for header, template in self.config.credential_headers.items()
        }

    async def _forward(
        self, client: Client, upstream_tool: str, arguments: dict[str, Any], ctx: ToolContext
    ) -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            ctx.report_progress(progress, total, message)

        try:
            result = await client.call_tool(upstream_tool, arguments, progress_callback=on_progress)
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED:
                self._lose(client)
                raise UpstreamUnavailable(
                    f"The upstream server {self.config.name!r} closed the connection during the call",
                    upstream=self.config.name,
                ) from None
            raise ExecutionError(
                f"The upstream server {self.config.name!r} refused the call: {exc.error.message}",
                details={"upstream": self.config.name, "code": exc.error.code},
            ) from None
        except ConveyorError:
            raise
        except (OSError, httpx2.TransportError) as exc:
            self._lose(client)
            raise UpstreamUnavailable(
                f"The upstream server {self.config.name!r} cannot be reached: {_reason(exc)}",
                upstream=self.config.name,
            ) from None
        # The SDK runs each progress callback as a task of its own, so the last report can still be
        # on its way when the result is back: a few turns of the loop let it land in this run.
        for _ in range(PROGRESS_SETTLE_TURNS):
            await anyio.lowlevel.checkpoint()
        return tools.result_of(result, upstream=self.config.name, tool=upstream_tool)

    async def _client_or_unavailable(self) -> Client:
        if self._client is None:
            with anyio.move_on_after(self.connect_timeout_s):
                await self._connected.wait()
        if self._client is None:
            raise UpstreamUnavailable(
                f"The upstream server {self.config.name!r} is not connected; Conveyor keeps trying",
                upstream=self.config.name,
            )
        return self._client


async def _answers(client: Client) -> bool:
    """Whether the server still answers: a 2025 ``ping``, or a 2026-07-28 ``server/discover``
    (that era has no ping). An error answer is an answer too; none within the timeout, or a
    closed connection, is a lost server."""
    try:
        with anyio.fail_after(PING_TIMEOUT_S):
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await client.session.send_discover(client.protocol_version)
            else:
                await client.session.send_ping()
    except MCPError as exc:
        return exc.error.code != CONNECTION_CLOSED
    except TimeoutError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
