"""What an install holds right now, for `outreach status`: one look before acting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from outreach.models import Campaign, ChannelPause, Click, Delivery, DeliveryStatus, Item, JobState, Source

RUNNER_HEARTBEAT = timedelta(seconds=30)  # how often `outreach run` writes its jobs' next runs
DISPATCH_JOB = "dispatch"  # the dispatcher is no scheduled job; its health is shown beside them


def job_line(job: JobState, now: datetime, local: Callable[[datetime | None], str]) -> str:
    """One job as `status` shows it: when it runs next (or that the runner stopped, or went silent), and last."""
    if job.id == DISPATCH_JOB and job.next_run_at is not None:
        return f"{job.id}: {job.last_outcome or 'ok'} (as of {local(job.updated_at)})"
    if job.next_run_at is None:
        when = f"stopped {local(job.updated_at)} (`outreach run` is not running)"
    elif job.updated_at < now - 4 * RUNNER_HEARTBEAT:
        when = f"next {local(job.next_run_at)}, but the runner is silent since {local(job.updated_at)}"
    else:
        when = f"next {local(job.next_run_at)}"
    return f"{job.id}: {when}, last {local(job.last_run_at)} {job.last_outcome or ''}".rstrip()


@dataclass(frozen=True)
class Status:
    """Counts by state, and when the last poll and the last click happened."""

    items: int
    campaigns: dict[str, int]
    deliveries: dict[str, int]
    clicks: dict[str, int]
    last_poll: datetime | None
    last_click: datetime | None
    jobs: list[JobState]  # the runner's, with their next and last runs
    pauses: dict[tuple[str, str], str]  # (channel, target or "*") -> why
    source_errors: dict[str, str]  # source -> its last poll's error
    channel_errors: dict[tuple[str, str], str]  # (channel, target) -> the latest error of a delivery waiting there


def _by(session: Session, column: InstrumentedAttribute[Any]) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column).order_by(column))
    return {(key.value if isinstance(key, StrEnum) else str(key)): n for key, n in rows}


def read_status(session: Session) -> Status:
    """The store's contents in a few grouped counts (cheap: one query per table)."""
    return Status(
        items=session.scalar(select(func.count()).select_from(Item)) or 0,
        campaigns=_by(session, Campaign.status),
        deliveries=_by(session, Delivery.status),
        clicks=_by(session, Click.kind),
        last_poll=session.scalar(select(func.max(Source.last_polled_at))),
        last_click=session.scalar(select(func.max(Click.at))),
        jobs=list(session.scalars(select(JobState).order_by(JobState.id))),
        pauses={(p.channel, p.target): p.reason for p in session.scalars(select(ChannelPause))},
        source_errors={s.name: s.last_error for s in session.scalars(select(Source)) if s.last_error},
        channel_errors=_channel_errors(session),
    )


def _channel_errors(session: Session) -> dict[tuple[str, str], str]:
    """Per target, the error of the most recently tried delivery that has not gone out."""
    stuck = [DeliveryStatus.pending, DeliveryStatus.failed, DeliveryStatus.unknown]
    rows = session.execute(
        select(Delivery.channel, Delivery.target, Delivery.last_error)
        .where(Delivery.status.in_(stuck), Delivery.last_error.is_not(None))
        .order_by(Delivery.claimed_at.desc())
    )
    found: dict[tuple[str, str], str] = {}
    for channel, target, error in rows:
        found.setdefault((channel, target), error or "")
    return found
