"""`outreach campaign show`: the campaign, its deliveries, what happens next and why, and its audit trail.

Everything shown is read from the store and the config as they are now, so what
staff read is what the dispatcher will do: a draft waits for approval, a target
may be paused, held by the platform, outside its posting window, or due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.campaigns import get_campaign
from outreach.config import Settings
from outreach.dispatch import DispatchPlan
from outreach.dispatch_store import EVERY_TARGET, posts_on
from outreach.models import (
    AuditEntry,
    Campaign,
    CampaignStatus,
    ChannelPause,
    Delivery,
    DeliveryStatus,
    Item,
    utcnow,
)
from outreach.routing import Route
from outreach.tables import fitted_table
from outreach.windows import Holidays, next_slot


@dataclass(frozen=True)
class Shown:
    """A campaign as `campaign show` prints it."""

    campaign: Campaign
    deliveries: list[Delivery]
    next_steps: list[str]  # per target (or the campaign): what happens next, and why
    audit: list[AuditEntry]
    # Items the portal changed after the campaign was made: what went out may differ from the portal now.
    changed: list[Item] = field(default_factory=list)


def explain(
    session: Session,
    settings: Settings,
    plan: DispatchPlan,
    routes: Mapping[tuple[str, str], Route],
    campaign_id: int,
    now: datetime | None = None,
) -> Shown:
    """Read a campaign and say, for each of its targets, what happens next (from `now`) and why."""
    campaign = get_campaign(session, campaign_id)
    deliveries = list(
        session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id).order_by(Delivery.id))
    )
    audit = list(
        session.scalars(select(AuditEntry).where(AuditEntry.campaign_id == campaign_id).order_by(AuditEntry.id))
    )
    pauses = {(p.channel, p.target): p.reason for p in session.scalars(select(ChannelPause))}
    steps = _next(session, settings, plan, routes, campaign, deliveries, pauses, now or utcnow())
    return Shown(campaign, deliveries, steps, audit, _changed_items(session, campaign))


def _changed_items(session: Session, campaign: Campaign) -> list[Item]:
    """The campaign's items whose title, summary or image the portal changed after it was made."""
    ids = [campaign.item_id] if campaign.item_id is not None else list(campaign.item_ids)
    if not ids:
        return []
    query = select(Item).where(Item.id.in_(ids), Item.changed_at > campaign.created_at).order_by(Item.id)
    return list(session.scalars(query))


def _next(
    session: Session,
    settings: Settings,
    plan: DispatchPlan,
    routes: Mapping[tuple[str, str], Route],
    campaign: Campaign,
    deliveries: list[Delivery],
    pauses: dict[tuple[str, str], str],
    now: datetime,
) -> list[str]:
    if campaign.status is CampaignStatus.draft:
        creator = campaign.created_as or campaign.created_by
        if settings.schedule.require_approval:
            return [f"waits for approval by someone other than {creator}: outreach campaign approve {campaign.id}"]
        return ["waits for approval: outreach campaign approve " + str(campaign.id)]
    if campaign.status in (CampaignStatus.done, CampaignStatus.cancelled, CampaignStatus.rejected):
        return [f"nothing more: the campaign is {campaign.status.value}"]
    steps: list[str] = []
    for delivery in deliveries:
        where = f"{delivery.channel} → {delivery.target}"
        if delivery.status is DeliveryStatus.unknown:
            steps.append(
                f"{where}: may or may not be on the target ({delivery.last_error or 'interrupted'}); check it, then "
                f"outreach campaign settle {campaign.id} --delivery {delivery.id} --sent (or --not-sent)"
            )
        elif delivery.status is DeliveryStatus.failed:
            steps.append(
                f"{where}: failed ({delivery.last_error}); outreach campaign retry {campaign.id} sends it again"
            )
        elif delivery.status is DeliveryStatus.pending:
            steps.append(f"{where}: {_why_waiting(session, plan, routes, campaign, delivery, pauses, now)}")
        elif delivery.status is DeliveryStatus.sending and delivery.claimed_at is not None:
            lease_end = delivery.claimed_at + plan.lease
            steps.append(
                f"{where}: being sent since {_clock(delivery.claimed_at, plan)}; unless a dispatcher records it by "
                f"{_clock(lease_end, plan)}, it is taken as interrupted (unknown: check the target, then settle)"
            )
    return steps or ["nothing pending"]


def _clock(moment: datetime, plan: DispatchPlan) -> str:
    return moment.astimezone(plan.zone).strftime("%a %d/%m %H:%M:%S")


def _why_waiting(
    session: Session,
    plan: DispatchPlan,
    routes: Mapping[tuple[str, str], Route],
    campaign: Campaign,
    delivery: Delivery,
    pauses: dict[tuple[str, str], str],
    now: datetime,
) -> str:
    def show(moment: datetime) -> str:
        return moment.astimezone(plan.zone).strftime("%a %d/%m %H:%M")

    key = (delivery.channel, delivery.target)
    paused = pauses.get(key) or pauses.get((delivery.channel, EVERY_TARGET))
    if paused:
        return f"paused ({paused}); fix it, then outreach channel resume {delivery.channel}"
    if key not in routes:
        return "waits: this target is no longer an enabled target in the config"
    start, due = now, ""
    if campaign.scheduled_at is not None and campaign.scheduled_at > start:
        start, due = campaign.scheduled_at, f"due {show(campaign.scheduled_at)} (--at)"
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > start:
        start, due = delivery.next_attempt_at, f"retry {show(delivery.next_attempt_at)} after: {delivery.last_error}"
    pacing = plan.pacing.get(delivery.channel)
    if pacing is not None:
        day_start = start.astimezone(plan.zone).replace(hour=0, minute=0, second=0, microsecond=0)
        today, last = posts_on(session, delivery.channel, delivery.target, day_start)
        verdict = next_slot(pacing, plan.holidays or Holidays(), plan.zone, start, today, last)
        if verdict.when > start:
            return f"{due}, then waits: {verdict.why}" if due else verdict.why
    if due:
        return due
    return f"due now, via {routes[key].transport.name}: the next `outreach send` (or a running `outreach run`) sends it"


def print_campaign(out: Console, shown: Shown, zone: ZoneInfo) -> None:
    """The campaign, its deliveries, next steps and audit trail, readable at 80 columns."""
    campaign = shown.campaign

    def when(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "-"

    out.print(f"[b]campaign {campaign.id}[/b] · {campaign.kind.value} · {campaign.status.value}", highlight=False)
    facts = [
        ("title", campaign.title),
        ("channels", f"{', '.join(campaign.channels)} ({campaign.language})"),
        ("created", f"{when(campaign.created_at)} by {_who(campaign.created_by, campaign.created_as)}"),
        ("approved", f"{when(campaign.approved_at)} by {_who(campaign.approved_by, campaign.approved_as)}")
        if campaign.approved_by
        else ("approved", "not yet"),
        ("due", when(campaign.scheduled_at) if campaign.scheduled_at else "as soon as approved"),
    ]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=10, justify="right")
    grid.add_column()
    for label, value in facts:
        grid.add_row(label, Text(value))
    out.print(grid)
    for item in shown.changed:
        # Not resent by itself: staff decide whether the change is worth a correction.
        note = f"! the portal changed item {item.id} on {when(item.changed_at)}, after this campaign was made: "
        out.print(Text(note + item.title, style="yellow"))
    out.print("[b]next[/b]")
    for step in shown.next_steps:
        out.print(Padding(Text(step), (0, 0, 0, 2)))
    if shown.deliveries:
        table = fitted_table(
            "id",
            "channel",
            "target",
            "status",
            "tries",
            "last error",
            "platform id",
            wide="last error",
            wrap={"channel", "target", "platform id"},
            right={"id", "tries"},
        )
        for d in shown.deliveries:
            table.add_row(
                str(d.id), d.channel, d.target, d.status.value, str(d.attempts), d.last_error or "", d.platform_id or ""
            )
        out.print(table)
    trail = fitted_table("when", "who", "change", "note", wide="note", wrap={"who", "change"}, title="Audit trail")
    for entry in shown.audit:
        what = "" if entry.entity == "campaign" else f"{entry.entity} {entry.entity_id}: "
        change = f"{what}{entry.from_state or '·'} → {entry.to_state}"
        trail.add_row(when(entry.at), _who(entry.actor, entry.acting_as), change, entry.note or "")
    out.print(trail)


def _who(login: str | None, acting_as: str | None) -> str:
    if not acting_as:
        return login or "?"
    return f"{acting_as} ({login})"
