"""The retry policy (gateway.jobs.backoff_delay / plan_failure): pure, so tested exhaustively."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import (
    CircuitOpen,
    StoreUnavailable,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from gateway.jobs import DEFAULT_DEFER_SECONDS, NoHandler, backoff_delay, plan_failure
from gateway.settings import JobKindPolicy
from gateway.store.base import Attempt, Job, JobState

NOW = 1_800_000_000.0


def make_job(attempts: int = 0, first_at: float = NOW) -> Job:
    return Job(
        id="01JOB",
        kind="national_portal.sync_dossier",
        payload={},
        state=JobState.LEASED,
        created_at=first_at,
        updated_at=first_at,
        run_at=first_at,
        attempts=[Attempt(at=first_at + i, error="x", retryable=True) for i in range(attempts)],
    )


@given(
    failures=st.integers(min_value=1, max_value=200),
    initial=st.floats(min_value=0, max_value=100),
    maximum=st.floats(min_value=0, max_value=10_000),
    seed=st.integers(),
)
def test_full_jitter_stays_within_the_exponential_cap(
    failures: int, initial: float, maximum: float, seed: int
) -> None:
    policy = JobKindPolicy(max_attempts=1000, backoff_initial=initial, backoff_max=maximum)
    delay = backoff_delay(policy, failures, random.Random(seed))
    assert delay is not None
    cap = min(maximum, initial * 2 ** (failures - 1))
    assert 0.0 <= delay <= cap + 1e-9


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = JobKindPolicy(max_attempts=100, backoff_initial=1.0, backoff_max=300.0)
    rng = random.Random(7)
    delays = [backoff_delay(policy, 4, rng) for _ in range(2000)]
    values = [d for d in delays if d is not None]
    # cap after the 4th failure is 8 s: full jitter covers [0, 8), not just its top
    assert min(values) < 0.5
    assert max(values) > 7.5
    assert all(v <= 8.0 for v in values)
    # the cap stops at backoff_max
    assert all((backoff_delay(policy, 30, rng) or 0) <= 300.0 for _ in range(100))


def test_attempts_are_bounded_by_max_attempts() -> None:
    policy = JobKindPolicy(max_attempts=3, backoff_initial=1.0)
    rng = random.Random(1)
    assert backoff_delay(policy, 1, rng) is not None
    assert backoff_delay(policy, 2, rng) is not None
    assert backoff_delay(policy, 3, rng) is None  # the 3rd attempt was the last
    with pytest.raises(ValueError):
        backoff_delay(policy, 0, rng)


def test_an_explicit_schedule_overrides_the_backoff_and_sets_the_retries() -> None:
    policy = JobKindPolicy(max_attempts=2, schedule=[0.0, 5.0, 300.0])
    rng = random.Random(1)
    assert [backoff_delay(policy, n, rng) for n in (1, 2, 3, 4)] == [0.0, 5.0, 300.0, None]


def test_circuit_open_defers_without_counting_an_attempt() -> None:
    job = make_job(attempts=2)
    plan = plan_failure(
        job,
        CircuitOpen(retry_after=30),
        JobKindPolicy(),
        now=NOW,
        started_at=NOW,
        request_id="r1",
        rng=random.Random(3),
    )
    assert plan.action == "defer"
    assert plan.attempt is None
    assert plan.run_at is not None
    assert NOW + 30 <= plan.run_at <= NOW + 36  # Retry-After plus at most 20 % spread

    plan = plan_failure(
        job,
        CircuitOpen(),
        JobKindPolicy(),
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(3),
    )
    assert plan.run_at is not None
    assert NOW + DEFAULT_DEFER_SECONDS <= plan.run_at <= NOW + DEFAULT_DEFER_SECONDS * 1.2


@pytest.mark.parametrize(
    "error",
    [UpstreamRejected("dossier code unknown"), ValidationFailed("bad field")],
)
def test_a_permanent_error_dead_letters_at_once_with_its_detail(error: Exception) -> None:
    plan = plan_failure(
        make_job(),
        error,
        JobKindPolicy(),
        now=NOW,
        started_at=NOW - 1,
        request_id="req-9",
        rng=random.Random(),
    )
    assert plan.action == "dead"
    assert plan.attempt is not None
    assert plan.attempt.error == str(error)
    assert plan.attempt.retryable is False
    assert plan.attempt.request_id == "req-9"
    assert plan.attempt.at == NOW - 1


@pytest.mark.parametrize(
    "error",
    [UpstreamTimeout(), UpstreamUnavailable(), StoreUnavailable(), NoHandler(), TimeoutError()],
)
def test_retryable_errors_are_retried_with_backoff(error: Exception) -> None:
    policy = JobKindPolicy(max_attempts=5, backoff_initial=2.0, backoff_max=100.0)
    plan = plan_failure(
        make_job(attempts=1),
        error,
        policy,
        now=NOW,
        started_at=NOW,
        request_id="r",
        rng=random.Random(5),
    )
    assert plan.action == "retry"
    assert plan.attempt is not None
    assert plan.attempt.retryable is True
    assert plan.run_at is not None
    assert NOW <= plan.run_at <= NOW + 4.0  # second failure: cap 2 * 2


def test_retry_after_from_the_error_is_honoured() -> None:
    policy = JobKindPolicy(backoff_initial=0.1, backoff_max=1.0)
    plan = plan_failure(
        make_job(),
        UpstreamUnavailable(retry_after=120),
        policy,
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(),
    )
    assert plan.action == "retry"
    assert plan.run_at == NOW + 120


def test_the_last_allowed_attempt_dead_letters() -> None:
    policy = JobKindPolicy(max_attempts=3)
    plan = plan_failure(
        make_job(attempts=2),
        UpstreamTimeout(),
        policy,
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(),
    )
    assert plan.action == "dead"
    assert "exhausted" in plan.reason
    assert plan.attempt is not None
    assert plan.attempt.retryable is True  # dead although the error itself was retryable


def test_the_deadline_bounds_retries_from_the_first_attempt() -> None:
    policy = JobKindPolicy(max_attempts=100, deadline=3600, backoff_initial=10, backoff_max=10)
    old = make_job(attempts=3, first_at=NOW - 3595)
    plan = plan_failure(
        old,
        UpstreamTimeout(retry_after=60),
        policy,
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(),
    )
    assert plan.action == "dead"
    assert plan.reason == "deadline exceeded"
    young = make_job(attempts=3, first_at=NOW - 100)
    plan = plan_failure(
        young,
        UpstreamTimeout(retry_after=60),
        policy,
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(),
    )
    assert plan.action == "retry"


def test_an_unexpected_exception_dead_letters_without_its_message() -> None:
    # a bug's message may carry personal data: the attempt names the class only
    error = KeyError("079123456789 Nguyen Van A")
    plan = plan_failure(
        make_job(),
        error,
        JobKindPolicy(),
        now=NOW,
        started_at=NOW,
        request_id=None,
        rng=random.Random(),
    )
    assert plan.action == "dead"
    assert plan.attempt is not None
    assert plan.attempt.error_type == "KeyError"
    assert "079123456789" not in (plan.attempt.error or "")
    assert "Nguyen" not in (plan.attempt.error or "")
