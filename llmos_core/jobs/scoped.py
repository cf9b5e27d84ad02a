"""The scheduler as one user sees it (`engine.scheduler.for_user(actor)`): what the pages, the CLI and the API use.

A user lists, reads, cancels, resumes, deletes and reads the logs of their own jobs only; another user's
job id answers "there is no job N", as a missing one does. An admin sees every job (each row carries its
`owner` id; `Accounts.names()` names it). Submitting counts the user's queued jobs against their limit.
"""
from __future__ import annotations

from ..accounts import LimitReached, User, may_see
from ..errors import JobError


class UserJobs:
    def __init__(self, scheduler, actor: User):
        """`scheduler`: the JobScheduler (scheduler.py) this view is of; not imported here, since scheduler.py
        imports this module for `for_user`."""
        if not isinstance(actor, User):
            raise TypeError(f"an acting User is required, got {actor!r}")
        self.scheduler, self.actor = scheduler, actor

    def get(self, job_id: int) -> dict:
        job = self.scheduler.get(job_id)
        if not may_see(self.actor, job.get("owner", 0)):
            raise JobError(f"there is no job {job_id}", "see `python -m llmos_core jobs list` or the Jobs page")
        return job

    def list(self, states=None, kind: str | None = None, limit: int = 500) -> list[dict]:
        owner = None if self.actor.is_admin else self.actor.id
        return self.scheduler.jobs.list(states, kind, limit, owner=owner)

    def queue(self) -> list[dict]:
        return [j for j in self.scheduler.queue() if may_see(self.actor, j.get("owner", 0))]

    def submit(self, kind: str, params: dict, priority: int = 0, **options) -> int:
        limit = self.scheduler.limits_for(self.actor).queued_jobs if self.scheduler.limits_for else None
        if limit is not None:
            waiting = len(self.scheduler.jobs.list(states=("queued",), owner=self.actor.id, limit=limit + 1))
            if waiting >= limit:
                raise LimitReached(f"you have {waiting} jobs queued, your limit is {limit}")
        return self.scheduler.submit(kind, params, priority, actor=self.actor, **options)

    # the rest: checked by get() first, then the scheduler's own
    def cancel(self, job_id: int) -> dict:
        self.get(job_id)
        return self.scheduler.cancel(job_id)

    def resume(self, job_id: int) -> None:
        self.get(job_id)
        self.scheduler.resume(job_id)

    def delete(self, job_id: int, remove_files: bool = True) -> None:
        self.get(job_id)
        self.scheduler.delete(job_id, remove_files)

    def metrics(self, job_id: int) -> list[dict]:
        self.get(job_id)
        return self.scheduler.metrics(job_id)

    def usage(self, job_id: int) -> list[dict]:
        self.get(job_id)
        return self.scheduler.usage(job_id)

    def log_tail(self, job_id: int, lines: int = 50) -> str:
        self.get(job_id)
        return self.scheduler.log_tail(job_id, lines)

    def waiting_reason(self, job_id: int) -> str | None:
        self.get(job_id)
        return self.scheduler.waiting_reason(job_id)

    # what every user may see of the machine
    def capacity(self, device: str = "cpu") -> dict:
        return self.scheduler.capacity(device)

    def is_alive(self) -> bool:
        return self.scheduler.is_alive()
