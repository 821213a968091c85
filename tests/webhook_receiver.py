"""A real webhook receiver for tests: uvicorn on 127.0.0.1 (a free port) recording every POST."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import uvicorn
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # the statuses of the next requests, in order
    status: int = 200  # the status once ``answers`` are used up
    hold: anyio.Event | None = None  # when set to an Event, requests wait for it before answering
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    async def received(self, count: int) -> list[Received]:
        """The first ``count`` requests, once they have arrived."""
        with anyio.fail_after(10):
            while len(self.requests) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.requests[:count]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.requests.append(Received(scope["path"], headers, bytes(body)))
        self._arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status = self.answers.pop(0) if self.answers else self.status
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # requests wait in the backlog until uvicorn has started
    receiver = Receiver(f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = uvicorn.Server(
        uvicorn.Config(
            receiver,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(server.serve, sockets=[sock]))
            yield receiver
            if receiver.hold is not None:
                receiver.hold.set()  # a held request must not keep the server from stopping
            server.should_exit = True
    finally:
        sock.close()
