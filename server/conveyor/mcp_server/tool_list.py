"""The ``tools/list`` answer, and telling clients when it changed (an upstream's tools came or went).

The MCP definitions are worked out again only when the registry changed; so is each tool's input
schema, which the SDK looks up for every 2026-07-28 ``tools/call`` over HTTP (to check
``Mcp-Param-*`` headers): without it, the SDK would run a whole ``tools/list`` to find it. 2025-11-25 sessions
that listed the tools get ``notifications/tools/list_changed``; 2026-07-28 clients get it on
their ``subscriptions/listen`` streams (``toolsListChanged``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp.server.subscriptions import SubscriptionBus, ToolsListChanged

from conveyor.events import Wakeup
from conveyor.mcp_server.connections import connection_of
from conveyor.registry import Registry

logger = logging.getLogger("conveyor.mcp")

LIST_CHANGED = types.ToolListChangedNotification().method


Define = Callable[[Registry, Collection[str] | None], list[types.Tool]]


class ToolList:
    def __init__(
        self, registry: Registry, define: Define, bus: SubscriptionBus, *, listed: Collection[str] | None
    ) -> None:
        self.registry = registry
        self._define = define
        self._bus = bus
        self._shown = listed  # the toolkits tools/list shows (None: all)
        self._listed: tuple[int, list[types.Tool]] = (-1, [])
        self._schemas: tuple[int, dict[str, dict[str, Any]]] = (-1, {})
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()  # 2025 clients that listed
        self._changed = Wakeup()

    def tools(self) -> list[types.Tool]:
        version, tools = self._listed
        if version != self.registry.version:
            tools = self._define(self.registry, self._shown)
            self._listed = (self.registry.version, tools)
        return tools

    def input_schema(self, name: str) -> Mapping[str, Any] | None:
        """The input schema a tool is advertised with, listed or not (a tool left out of
        tools/list is still callable, once found with tools_search)."""
        version, schemas = self._schemas
        if version != self.registry.version:
            schemas = {tool.name: tool.input_schema for tool in self._define(self.registry, None)}
            self._schemas = (self.registry.version, schemas)
        return schemas.get(name)

    def listed_by(self, session: ServerSession) -> None:
        """A 2025-11-25 client listed the tools: it is told when they change, for as long as
        its connection lasts."""
        self._connections.add(connection_of(session))

    @asynccontextmanager
    async def announcing(self) -> AsyncIterator[None]:
        """For as long as the server runs, tell clients of every change of the tools."""
        unsubscribe = self.registry.on_change(self._changed.set)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._announce)
                yield
                tg.cancel_scope.cancel()
        finally:
            unsubscribe()

    async def _announce(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._bus.publish(ToolsListChanged())
            for connection in list(self._connections):
                try:
                    await connection.outbound.notify(LIST_CHANGED, None)
                except Exception:  # a client that went away
                    logger.debug(
                        "tool list change not sent", exc_info=True, extra={"action": "mcp.list_changed_lost"}
                    )
                    self._connections.discard(connection)
