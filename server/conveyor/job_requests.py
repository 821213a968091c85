"""Job requests carried out the same way whichever front door (MCP or REST) they came through."""

from __future__ import annotations

from dataclasses import replace

from conveyor.auth import Principal
from conveyor.jobs.models import Job
from conveyor.runtime import Runtime
from conveyor.schemas import SubmitJobRequest


async def submit_job(
    runtime: Runtime, principal: Principal, request: SubmitJobRequest, *, dedupe: bool = False
) -> Job:
    """Commit the job under the principal's plan limit; with ``wait_seconds``, wait for it to end.
    ``dedupe``: an identical job of the principal still queued or running is answered instead."""
    job = await runtime.engine.submit(
        request.tool,
        request.arguments,
        owner=principal.id,
        idempotency_key=request.idempotency_key,
        timeout_ms=request.timeout_ms,
        webhook_url=request.webhook_url,
        max_concurrent=runtime.limiter.max_concurrent_jobs(principal),
        dedupe=dedupe,
    )
    if request.wait_seconds:
        waited = await runtime.engine.wait(job.job_id, owner=principal.id, timeout_s=request.wait_seconds)
        job = replace(waited, reused=job.reused)
    return job


async def job_status(runtime: Runtime, principal: Principal, job_id: str, wait_seconds: float) -> Job:
    """The job as its owner (or an admin) sees it; with ``wait_seconds``, once it ends or the wait runs out."""
    owner = principal.visible_owner
    if wait_seconds > 0:
        return await runtime.engine.wait(job_id, owner=owner, timeout_s=wait_seconds)
    return await runtime.engine.get(job_id, owner=owner)
