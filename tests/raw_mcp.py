"""A bare JSON-RPC MCP client over in-memory streams, for wire shapes the SDK client refuses.

The Python SDK's client checks results against its own models, so it cannot receive a
2025 ``CreateTaskResult`` to a ``tools/call`` or speak ``tasks/*``. Tests use this to see
exactly what Conveyor puts on the wire, in either era.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.server import Server
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
TASKS_EXTENSION = "io.modelcontextprotocol/tasks"


class RawError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.code: int = error["code"]
        self.data: Any = error.get("data")


@dataclass
class RawClient:
    era: str
    send: Any
    extensions: bool = False
    notifications: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = field(default_factory=dict)
    _notified: anyio.Event = field(default_factory=anyio.Event)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        params = dict(params or {})
        if self.era == MODERN:
            meta = dict(params.get("_meta") or {})
            capabilities: dict[str, Any] = {"extensions": {TASKS_EXTENSION: {}}} if self.extensions else {}
            meta.setdefault(types.PROTOCOL_VERSION_META_KEY, MODERN)
            meta.setdefault(types.CLIENT_CAPABILITIES_META_KEY, capabilities)
            meta.setdefault(types.CLIENT_INFO_META_KEY, {"name": "raw-tests", "version": "1"})
            params["_meta"] = meta
        done, box = anyio.Event(), []
        self._waiting[request_id] = (done, box)
        message = types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params)
        await self.send(SessionMessage(message))
        await done.wait()
        answer = box[0]
        if "error" in answer:
            raise RawError(answer["error"])
        return answer["result"]

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.send(
            SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method=method, params=params))
        )

    async def next_notification(self, method: str) -> dict[str, Any]:
        """The first notification of this method not taken yet."""
        while True:
            for index, note in enumerate(self.notifications):
                if note["method"] == method:
                    return self.notifications.pop(index)
            self._notified = anyio.Event()
            await self._notified.wait()

    def _receive(self, data: dict[str, Any]) -> None:
        if "id" in data and ("result" in data or "error" in data):
            done, box = self._waiting.pop(data["id"])
            box.append(data)
            done.set()
        elif "method" in data and "id" not in data:
            self.notifications.append(data)
            self._notified.set()


@asynccontextmanager
async def raw_client(server: Server[Any], *, era: str, extensions: bool = False) -> AsyncIterator[RawClient]:
    async with create_client_server_memory_streams() as (client_streams, server_streams):
        client_read, client_write = client_streams
        server_read, server_write = server_streams
        client = RawClient(era=era, send=client_write.send, extensions=extensions)

        async def read() -> None:
            async for message in client_read:
                if isinstance(message, Exception):
                    raise message
                client._receive(message.message.model_dump(by_alias=True, mode="json", exclude_none=True))

        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run, server_read, server_write, server.create_initialization_options())
            tg.start_soon(read)
            if era == LEGACY:
                await client.request(
                    "initialize",
                    {
                        "protocolVersion": LEGACY,
                        "capabilities": {},
                        "clientInfo": {"name": "raw-tests", "version": "1"},
                    },
                )
                await client.notify("notifications/initialized")
            yield client
            tg.cancel_scope.cancel()
