"""A real uvicorn on 127.0.0.1 (a free port) serving Conveyor's HTTP app, for HTTP tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import anyio
import httpx2
import uvicorn
from starlette.types import ASGIApp

from conveyor.auth import PlanName, Role
from conveyor.http_api import build_app
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import Settings


@dataclass
class LiveServer:
    url: str
    runtime: Runtime
    admin_key: str

    async def new_key(self, *, role: Role = "user", plan: PlanName = "pro") -> str:
        _, secret = await self.runtime.keys.create(role=role, plan=plan)
        return secret

    def client(self, key: str | None = None, **kwargs: object) -> httpx2.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx2.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with open_runtime(settings) as runtime:
        _, admin_key = await runtime.keys.create(role="admin", plan="enterprise", name="tests")
        async with serving(build_app(runtime), lifespan="on") as url:
            yield LiveServer(url, runtime, admin_key)


@asynccontextmanager
async def serving(app: ASGIApp, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """``app`` under uvicorn on 127.0.0.1 (a free port); its base URL."""
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets that do, and without
    # it every response on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # clients queue in the backlog until uvicorn has started: no need to poll for it
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan=lifespan, ws="none", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(server.serve, sockets=[sock]))
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            server.should_exit = True
    finally:
        sock.close()
