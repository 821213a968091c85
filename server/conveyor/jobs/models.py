"""Job rows as frozen dataclasses, statuses as an enum, times as epoch milliseconds."""

from __future__ import annotations

import dataclasses
import enum
import operator
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.random_hex import random_hex

JobKind = Literal["job", "task"]  # a task is a job an MCP client created as a task


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_job_id() -> str:
    return f"job_{random_hex(16)}"


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a submit commits; the store fills in status, times and counters."""

    tool: str
    arguments: dict[str, Any]
    owner: str
    queue: str = "default"
    idempotency_key: str | None = None
    trace_id: str | None = None
    timeout_ms: int | None = None
    webhook_url: str | None = None
    estimated_duration_ms: int | None = None
    max_concurrent: int | None = None  # the owner's plan limit; None: unlimited
    kind: JobKind = "job"
    ttl_ms: int | None = None  # tasks: how long the client asked for it to be kept
    dedupe_key: str | None = None  # set: an identical active job of the owner is answered instead
    sealed_credentials: str | None = field(default=None, repr=False)  # see credentials.py
    tool_version: str | None = None  # the version of the tool it runs
    requested_version: str | None = None  # the version the submit named, if it named one
    job_id: str = field(default_factory=new_job_id)
    created_at: int = field(default_factory=now_ms)

    def queued(self, *, version: int, position_in_queue: int) -> Job:
        """The job as its insert stored it: queued, due at once, with the store's ``version``."""
        return job_of_fields(
            job_id=self.job_id,
            tool=self.tool,
            arguments=self.arguments,
            owner=self.owner,
            status=JobStatus.QUEUED,
            queue=self.queue,
            created_at=self.created_at,
            run_after=self.created_at,
            estimated_duration_ms=self.estimated_duration_ms,
            idempotency_key=self.idempotency_key,
            trace_id=self.trace_id,
            timeout_ms=self.timeout_ms,
            webhook_url=self.webhook_url,
            position_in_queue=position_in_queue,
            kind=self.kind,
            ttl_ms=self.ttl_ms,
            max_concurrent=self.max_concurrent,
            version=version,
            sealed_credentials=self.sealed_credentials,
            tool_version=self.tool_version,
            requested_version=self.requested_version,
        )


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    tool: str
    arguments: dict[str, Any]
    owner: str
    status: JobStatus
    queue: str
    created_at: int
    started_at: int | None = None
    completed_at: int | None = None
    run_after: int = 0
    progress: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    step_results: list[dict[str, Any]] | None = None
    execution_time_ms: int | None = None
    estimated_duration_ms: int | None = None
    attempts: int = 0
    idempotency_key: str | None = None
    trace_id: str | None = None
    timeout_ms: int | None = None
    webhook_url: str | None = None
    position_in_queue: int | None = None
    kind: JobKind = "job"
    ttl_ms: int | None = None
    max_concurrent: int | None = None  # the owner's plan limit when submitted (the claim honours it)
    cancel_requested_at: int | None = None  # a cancel asked of the running job, not yet carried out
    version: int = 0  # the store's change counter when this row was last written
    lease_owner: str | None = None  # the worker running it
    lease_expires_at: int | None = None
    # The run's credentials, sealed (credentials.py); erased when the job ends; in no view.
    sealed_credentials: str | None = field(default=None, repr=False)
    # The version of the tool it runs (the newest when submitted, unless the submit named one:
    # requested_version; only a worker that has that version claims such a job).
    tool_version: str | None = None
    requested_version: str | None = None
    # Not stored, and not part of a job's identity: how a door came to answer it.
    status_message: str | None = field(
        default=None, compare=False
    )  # why a queued job waits, if no worker can run it
    reused: bool = field(
        default=False, compare=False
    )  # a submit answered this existing job rather than make one


# Job is frozen, so its __init__ sets each of its ~35 fields through object.__setattr__. Jobs made
# on the hot path (a row decoded, a job inserted or ended: three a job at least) are set through
# the slots' own descriptors instead, in about half the time. Job has no __post_init__ to skip.
JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_JOB_SETTERS = tuple(getattr(Job, name).__set__ for name in JOB_FIELDS)
_JOB_DEFAULTS = tuple(f.default for f in dataclasses.fields(Job))
_JOB_VALUES = operator.attrgetter(*JOB_FIELDS)
_FIELD_AT = {name: index for index, name in enumerate(JOB_FIELDS)}


def job_of(values: Iterable[Any]) -> Job:
    """A Job from the values of all its fields, in ``JOB_FIELDS`` order."""
    job: Job = object.__new__(Job)
    for set_field, value in zip(_JOB_SETTERS, values, strict=True):
        set_field(job, value)
    return job


def _pickled_job(job: Job) -> tuple[Any, ...]:
    # A job crosses to and from the database process (sqlite_process.py) as its values in order,
    # its status as text (an enum member pickles slowly), and is made again by ``job_of``: about a
    # third of the time of the dataclass's own pickling.
    values = _JOB_VALUES(job)
    return _unpickled_job, ((*values[:_STATUS_AT], values[_STATUS_AT].value, *values[_STATUS_AT + 1 :]),)


def _unpickled_job(values: tuple[Any, ...]) -> Job:
    return job_of((*values[:_STATUS_AT], _STATUSES[values[_STATUS_AT]], *values[_STATUS_AT + 1 :]))


_STATUS_AT = _FIELD_AT["status"]
_STATUSES = {status.value: status for status in JobStatus}


Job.__reduce__ = _pickled_job  # type: ignore[assignment,method-assign]


def job_of_fields(**given: Any) -> Job:
    """``Job(**given)``: the fields not given take their defaults (required ones must be given)."""
    values = _with(list(_JOB_DEFAULTS), given)
    lacking = [name for name, value in zip(JOB_FIELDS, values, strict=True) if value is dataclasses.MISSING]
    if lacking:
        raise TypeError(f"a Job needs {lacking}")
    return job_of(values)


def job_changed(job: Job, **changes: Any) -> Job:
    """``dataclasses.replace(job, **changes)``."""
    return job_of(_with(list(_JOB_VALUES(job)), changes))


def _with(values: list[Any], changes: dict[str, Any]) -> list[Any]:
    for name, value in changes.items():
        values[_FIELD_AT[name]] = value
    return values


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def claim_name(job: Job) -> str:
    """What a worker must have to run the job: its tool, or the version of it the submit named
    (``tool@version``; a worker lists both forms for every tool it has)."""
    return job.tool if job.requested_version is None else f"{job.tool}@{job.requested_version}"


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A process that runs jobs, as its heartbeat last recorded it."""

    worker_id: str
    pid: int
    host: str
    queues: tuple[str, ...] | None  # None: every queue
    tools: tuple[str, ...]
    started_at: int
    seen_at: int

    def can_run(self, job: Job) -> bool:
        return claim_name(job) in self.tools and (self.queues is None or job.queue in self.queues)

    def to_public(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "pid": self.pid,
            "host": self.host,
            "queues": list(self.queues) if self.queues is not None else None,
            "tools": sum("@" not in name for name in self.tools),  # tools, not their versions
            "started_at": _seconds(self.started_at),
            "seen_at": _seconds(self.seen_at),
        }


# -- webhooks ---------------------------------------------------------------------------------


class WebhookEvent(enum.StrEnum):
    """What a webhook can be told: a job reached this terminal status."""

    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELED = "job.canceled"
    JOB_TIMEOUT = "job.timeout"

    @classmethod
    def of(cls, status: JobStatus) -> WebhookEvent:
        return cls(f"job.{status}")


DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Webhook:
    """A registration: the owner's terminal jobs with one of ``events`` are POSTed to ``url``.

    Its secret is not a field: it is shown once, at registration, and read only to sign.
    """

    webhook_id: str
    owner: str
    url: str
    events: tuple[WebhookEvent, ...]
    created_at: int

    def to_public(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "url": self.url,
            "events": [str(event) for event in self.events],
            "created_at": _seconds(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one URL, in the outbox until it is delivered or given up."""

    delivery_id: str
    job_id: str
    webhook_id: str | None  # None: the job's own webhook_url
    url: str
    event: WebhookEvent
    payload: str  # the JSON body, byte for byte what is signed and sent on every attempt
    status: DeliveryStatus
    attempts: int
    created_at: int
    next_attempt_at: int | None = None
    last_attempt_at: int | None = None
    delivered_at: int | None = None
    last_error: str | None = None


def new_delivery_id() -> str:
    return f"whd_{secrets.token_hex(16)}"
