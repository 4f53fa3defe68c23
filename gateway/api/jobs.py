"""``GET /v1/jobs/{id}``: a command's job, for the client that created it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request, get

from gateway.api.openapi import AUTHENTICATED, problem_responses, secured
from gateway.errors import NotFound
from gateway.runtime import Runtime
from gateway.store.base import Attempt, Job

__all__ = ["AttemptView", "JobView", "attempt_view", "get_job", "iso", "job_view", "routes"]


def iso(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC, the API's time format."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AttemptView:
    at: str | None
    #: null for a successful attempt
    error: str | None
    error_type: str | None
    retryable: bool | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    kind: str
    #: queued | leased | succeeded | dead | discarded
    state: str
    created_at: str | None
    updated_at: str | None
    #: when it runs (again), for queued jobs
    run_at: str | None
    ordering_key: str | None
    request_id: str | None
    attempt_count: int
    attempts: list[AttemptView]
    last_error: str | None
    #: what the handler returned, once succeeded
    result: dict[str, Any] | None


def attempt_view(attempt: Attempt) -> AttemptView:
    return AttemptView(
        at=iso(attempt.at),
        error=attempt.error,
        error_type=attempt.error_type,
        retryable=attempt.retryable,
        request_id=attempt.request_id,
    )


def job_view(job: Job) -> JobView:
    """A job as callers see it. Never the payload: it may hold personal data."""
    last_error = job.last_error
    if last_error is None:
        last_error = next((a.error for a in reversed(job.attempts) if a.error), None)
    return JobView(
        id=job.id,
        kind=job.kind,
        state=job.state.value,
        created_at=iso(job.created_at),
        updated_at=iso(job.updated_at),
        run_at=iso(job.run_at),
        ordering_key=job.ordering_key,
        request_id=job.request_id,
        attempt_count=job.attempt_count,
        attempts=[attempt_view(a) for a in job.attempts],
        last_error=last_error,
        result=job.result,
    )


def _caller_id(request: Request[Any, Any, Any]) -> str | None:
    client_id = getattr(request.scope.get("user"), "id", None)
    return str(client_id) if client_id else None


@get(
    "/v1/jobs/{job_id:str}",
    tags=["jobs"],
    summary="A command's job: state, attempts, last error",
    description=(
        "`state` is `queued` (waiting, or waiting for a retry at `run_at`), `leased` (running), "
        "`succeeded` (`result` holds what the national side confirmed), `dead` (failed for "
        "good: `last_error`; the gateway's operators may replay or discard it) or `discarded`. "
        "`attempts` lists every try with its `error`, `error_type` (a problem slug) and whether "
        "it was `retryable`. Only the client that created the job sees it; for any other "
        "caller it does not exist (404). Any scope will do."
    ),
    responses=problem_responses(AUTHENTICATED, NotFound),
    security=secured(),
    # any authenticated client: the handler checks the job's owner
    opt={"scopes": []},
)
async def get_job(job_id: str, request: Request[Any, Any, Any], runtime: Runtime) -> JobView:
    job = await runtime.store.jobs.get(job_id)
    caller = _caller_id(request)
    if job is None or caller is None or job.client_id != caller:
        raise NotFound(f"no job {job_id}")
    return job_view(job)


routes = [get_job]
