"""Durable jobs: models, the store protocol and its implementations, and the engine."""

from conveyor.jobs.models import Job, JobStatus, NewJob

__all__ = ["Job", "JobStatus", "NewJob"]
