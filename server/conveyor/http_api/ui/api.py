"""The page's JSON endpoints under ``/ui/api/``: the REST API's own handlers, reached with the
session cookie instead of a Bearer key, plus what only the page needs (who is signed in, the
header figures, a job's webhook deliveries)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from conveyor.auth import Principal
from conveyor.http_api import endpoints
from conveyor.http_api.endpoints import Handler
from conveyor.http_api.responses import JSONResponse
from conveyor.http_api.ui.figures import Figures
from conveyor.jobs.models import Delivery
from conveyor.runtime import Runtime

API = "/ui/api"
SUBMIT_PATH = f"{API}/jobs/submit"


def signed_in(principal: Principal | None) -> Principal:
    assert principal is not None, "SessionAccess signs in every data request"
    return principal


def api_handlers(figures: Figures) -> dict[str, dict[str, Handler]]:
    """Handlers by path and method; the submit path comes before ``{job_id}``, which would take it."""

    async def me(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        who = signed_in(principal)
        return JSONResponse({"key_id": who.id, "role": who.role, "sees_all_jobs": who.is_admin})

    async def header_figures(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
        return JSONResponse(await figures.of(signed_in(principal)))

    return {
        f"{API}/me": {"GET": me},
        f"{API}/figures": {"GET": header_figures},
        SUBMIT_PATH: {"POST": endpoints.submit_job},
        f"{API}/jobs": {"GET": endpoints.list_jobs},
        f"{API}/jobs/{{job_id}}": {"GET": endpoints.get_job, "DELETE": endpoints.cancel_job},
        f"{API}/jobs/{{job_id}}/deliveries": {"GET": job_deliveries},
        f"{API}/tools": {"GET": endpoints.list_tools},
    }


async def job_deliveries(request: Request, runtime: Runtime, principal: Principal | None) -> Response:
    """The webhook deliveries of a job the caller may see. A webhook's URL is its owner's
    business: an admin looking at another key's job sees only where it points (scheme and host)."""
    who = signed_in(principal)
    job = await runtime.engine.get(request.path_params["job_id"], owner=who.visible_owner)
    deliveries = await runtime.webhooks.store.deliveries_of_job(job.job_id)
    mine = job.owner == who.id
    return JSONResponse({"deliveries": [_delivery_view(d, full_url=mine) for d in deliveries]})


def _delivery_view(delivery: Delivery, *, full_url: bool) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "url": _shown_url(delivery.url, full=full_url),
        "event": str(delivery.event),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "created_at": _seconds(delivery.created_at),
        "last_attempt_at": _seconds(delivery.last_attempt_at),
        "next_attempt_at": _seconds(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "delivered_at": _seconds(delivery.delivered_at),
        "last_error": delivery.last_error,
    }


def _shown_url(url: str, *, full: bool) -> str:
    """The URL without its user:password part (a secret), and without its path and query unless ``full``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if not full:
        return f"{parts.scheme}://{host}/…"
    return parts._replace(netloc=host).geturl()


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000
