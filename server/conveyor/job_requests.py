"""Job requests carried out the same way whichever front door (MCP or REST) they came through."""

from __future__ import annotations

from dataclasses import replace

from conveyor.auth import Principal
from conveyor.errors import Forbidden, InvalidArguments
from conveyor.jobs.models import Job, JobStatus
from conveyor.runtime import Runtime
from conveyor.schemas import SubmitJobRequest
from conveyor.toolkit import RESERVED_PREFIXES


async def submit_job(
    runtime: Runtime, principal: Principal, request: SubmitJobRequest, *, dedupe: bool = False
) -> Job:
    """Commit the job under the principal's plan limit; with ``wait_seconds``, wait for it to end.
    ``dedupe``: an identical job of the principal still queued or running is answered instead."""
    if request.tool.split("_", 1)[0] in RESERVED_PREFIXES:
        raise InvalidArguments(
            f"{request.tool} is one of Conveyor's own tools, which run directly, never as a job",
            argument="tool",
            suggested_fix=f"Call {request.tool} directly; submit only the other tools of tools/list.",
        )
    job = await runtime.engine.submit(
        request.tool,
        request.arguments,
        owner=principal.id,
        idempotency_key=request.idempotency_key,
        timeout_ms=request.timeout_ms,
        webhook_url=request.webhook_url,
        max_concurrent=runtime.limiter.max_concurrent_jobs(principal),
        dedupe=dedupe,
        credentials=request.credentials,
        caller=principal,
        version=request.version,
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


async def cancel_job(runtime: Runtime, principal: Principal, job_id: str) -> tuple[Job, str]:
    """Cancel a job of the principal's: the job as it is now, and what became of the cancel.

    Only its owner cancels a job. Another key's job is not found, as everywhere, except for an
    admin, who can see it, and so is told it may not.
    """
    job = await runtime.engine.get(job_id, owner=principal.visible_owner)
    if job.owner != principal.id:
        raise Forbidden("Only the key that submitted a job can cancel it", job_id=job_id)
    if job.status.terminal:
        return job, f"Job already {job.status}; nothing to cancel"
    job = await runtime.engine.cancel(job_id, owner=principal.id)
    if job.status is JobStatus.CANCELED:
        return job, "Job canceled successfully"  # the seed API's words
    if job.status is JobStatus.RUNNING:  # a sync tool, which stops when it returns or checks
        return job, "Cancel requested; the job ends canceled when its tool next checks or returns"
    return job, f"Job {job.status} before the cancel took effect"
