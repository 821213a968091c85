"""The ``tools/list`` answer, and telling clients when it changed (an upstream's tools came or went).

The MCP definitions are worked out again only when the registry changed. 2025-11-25 sessions
that listed the tools get ``notifications/tools/list_changed``; 2026-07-28 clients get it on
their ``subscriptions/listen`` streams (``toolsListChanged``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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


class ToolList:
    def __init__(
        self, registry: Registry, define: Callable[[Registry], list[types.Tool]], bus: SubscriptionBus
    ) -> None:
        self.registry = registry
        self._define = define
        self._bus = bus
        self._listed: tuple[int, list[types.Tool]] = (-1, [])
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()  # 2025 clients that listed
        self._changed = Wakeup()

    def tools(self) -> list[types.Tool]:
        version, tools = self._listed
        if version != self.registry.version:
            tools = self._define(self.registry)
            self._listed = (self.registry.version, tools)
        return tools

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
