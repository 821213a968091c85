"""Jobs as MCP resources: ``conveyor://jobs/{job_id}``, the caller's recent jobs, and updates.

Reading answers the job as JSON (owner-scoped, like every door). A client that subscribes
hears of every change of that job in its era's own way: 2025-11-25 by ``resources/subscribe``
and ``notifications/resources/updated`` on the connection; 2026-07-28 by a
``subscriptions/listen`` stream, fed from the job events through the SDK's subscription bus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST

from conveyor import strict_json
from conveyor.auth import Principal
from conveyor.errors import JobNotFound, RateLimitExceeded
from conveyor.events import Subscription
from conveyor.jobs.models import Job
from conveyor.mcp_server.connections import connection_of
from conveyor.mcp_server.eras import era_of
from conveyor.runtime import Runtime
from conveyor.schemas import JobView

logger = logging.getLogger("conveyor.mcp.resources")

SCHEME = "conveyor://jobs/"
TEMPLATE = SCHEME + "{job_id}"
MIME = "application/json"
RECENT = 50
RESOURCE_NOT_FOUND_2025 = -32002  # 2025-11-25's code for an unknown resource; 2026-07-28 uses -32602


def job_uri(job_id: str) -> str:
    return SCHEME + job_id


class JobResources:
    def __init__(
        self, runtime: Runtime, resolve: Callable[[ServerRequestContext[Any, Any]], Principal]
    ) -> None:
        self.runtime = runtime
        self.resolve = resolve
        self.bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus, max_subscriptions=runtime.settings.max_streams)
        self._tg: anyio.abc.TaskGroup | None = None
        self._watches: dict[tuple[int, str], anyio.CancelScope] = {}  # (session, job id) -> its watch

    def install(self, server: Server[Any]) -> None:
        server.add_request_handler("resources/list", types.PaginatedRequestParams, self.list)
        server.add_request_handler("resources/templates/list", types.PaginatedRequestParams, self.templates)
        server.add_request_handler("resources/read", types.ReadResourceRequestParams, self.read)
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self.subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self.unsubscribe)
        server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, self.listen
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Owns the watches, and forwards every job change to 2026 listen streams."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._publish_changes)
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def list(self, ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        jobs, _ = await self.runtime.engine.list(owner=self.resolve(ctx).visible_owner, limit=RECENT)
        return types.ListResourcesResult(resources=[_resource(job) for job in jobs])

    async def templates(
        self, ctx: ServerRequestContext[Any, Any], params: Any
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=TEMPLATE,
            name="job",
            title="A Conveyor job",
            description="A job's status, progress, and its result or error once finished, as JSON.",
            mime_type=MIME,
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        job = await self._job(ctx, str(params.uri))
        text = strict_json.dumps(JobView.of(job))
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=job_uri(job.job_id), mime_type=MIME, text=text)]
        )

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        job = await self._job(ctx, str(params.uri))
        if job.status.terminal:
            return types.EmptyResult()  # it will never change again: nothing to watch
        key = (_connection_id(ctx.session), job.job_id)
        if key not in self._watches and self._tg is not None:
            principal = self.resolve(ctx)
            try:
                self.runtime.streams.acquire(principal)  # a watch is a stream: within the key's share
            except RateLimitExceeded as exc:
                raise MCPError(INVALID_REQUEST, exc.message, exc.to_payload()) from None
            scope = anyio.CancelScope()
            self._watches[key] = scope
            # Subscribed before the reply: every change after it reaches the client.
            subscribing = self.runtime.events.subscribe(job.job_id)
            updates = subscribing.__enter__()
            self._tg.start_soon(self._watch, key, scope, ctx.session, subscribing, updates, principal)
        return types.EmptyResult()

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A 2026 listen stream, for job resources the caller may read, within the key's share of streams."""
        for uri in params.notifications.resource_subscriptions or ():
            await self._job(ctx, uri)  # another key's job (or no job) is not found, as on read
        principal = self.resolve(ctx)
        try:
            self.runtime.streams.acquire(principal)
        except RateLimitExceeded as exc:
            raise MCPError(INVALID_REQUEST, exc.message, exc.to_payload()) from None
        try:
            return await self._listen(ctx, params)
        finally:
            self.runtime.streams.release(principal)

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        job_id = _job_id(str(params.uri))
        scope = self._watches.pop((_connection_id(ctx.session), job_id or ""), None)
        if scope is not None:
            scope.cancel()
        return types.EmptyResult()

    async def _watch(
        self,
        key: tuple[int, str],
        scope: anyio.CancelScope,
        session: ServerSession,
        subscribing: AbstractContextManager[Subscription],
        updates: Subscription,
        principal: Principal,
    ) -> None:
        try:
            with scope:
                while True:
                    job = await updates.next()
                    await session.send_resource_updated(job_uri(job.job_id))
                    if job.status.terminal:
                        return
        except Exception:  # the client went away
            logger.debug("resource watch stopped", exc_info=True, extra={"action": "resource.watch_stopped"})
        finally:
            subscribing.__exit__(None, None, None)  # entered by subscribe(), before its reply
            self._watches.pop(key, None)
            self.runtime.streams.release(principal)

    async def _publish_changes(self) -> None:
        with self.runtime.events.subscribe() as changes:
            while True:
                job = await changes.next()
                await self.bus.publish(ResourceUpdated(uri=job_uri(job.job_id)))

    async def _job(self, ctx: ServerRequestContext[Any, Any], uri: str) -> Job:
        job_id = _job_id(uri)
        try:
            if job_id is None:
                raise JobNotFound()
            return await self.runtime.engine.get(job_id, owner=self.resolve(ctx).visible_owner)
        except JobNotFound:
            code = RESOURCE_NOT_FOUND_2025 if era_of(ctx) == "2025" else INVALID_PARAMS
            raise MCPError(code, f"Resource not found: {uri}", {"uri": uri}) from None


def _resource(job: Job) -> types.Resource:
    return types.Resource(
        uri=job_uri(job.job_id),
        name=job.job_id,
        title=f"{job.tool} job ({job.status})",
        mime_type=MIME,
    )


def _job_id(uri: str) -> str | None:
    return uri[len(SCHEME) :] if uri.startswith(SCHEME) and len(uri) > len(SCHEME) else None


def _connection_id(session: ServerSession) -> int:
    return id(connection_of(session))
