"""The store's tables as typed SQLAlchemy 2.0 models (DESIGN §3).

Schema changes go through Alembic (`outreach/migrations`); a test checks that the
migrations and these models agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from outreach.tracking import visitor_key


def utcnow() -> datetime:
    """Aware current time in UTC, the only zone the store holds."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL.

    SQLite keeps no zone, so values are stored as naive UTC there and given their
    zone back on the way out; a naive value on the way in is a bug and refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stable constraint names so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER


class Base(DeclarativeBase):
    """Declarative base with the project's naming convention and time type."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[int]: JSON(),
    }


class CampaignStatus(enum.StrEnum):
    """DESIGN §4; approval and scheduling use the middle states in a later issue."""

    draft = "draft"
    approved = "approved"
    scheduled = "scheduled"
    sending = "sending"
    done = "done"
    done_with_errors = "done_with_errors"
    cancelled = "cancelled"
    rejected = "rejected"  # a second person said no: kept, with the reason in the audit trail


class DeliveryStatus(enum.StrEnum):
    """One message's life; `unknown` means it may have gone out: an operator decides."""

    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"
    unknown = "unknown"


FINAL_DELIVERY = frozenset({DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.skipped})


class ClickKind(enum.StrEnum):
    """Only `human` counts as a visit; previews and bots are kept apart."""

    human = "human"
    preview = "preview"
    bot = "bot"
    head = "head"


def _enum(cls: type[enum.StrEnum]) -> Enum:
    # Plain VARCHAR on every database: adding a state later needs no ALTER TYPE.
    return Enum(cls, native_enum=False, length=24, values_callable=lambda e: [m.value for m in e])


class Source(Base):
    """A polled feed; mirrors its config entry plus what polling learned."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    default_topics: Mapped[list[str]] = mapped_column(default=list)
    poll_minutes: Mapped[int] = mapped_column(default=30)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    last_polled_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the last poll read but had to work around (a wrong charset, undeclared entities, an
    # unreadable date): the items are stored and the validators saved; staff may want to tell the portal.
    last_warning: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="feed", server_default="feed")  # feed, sitemap, html
    # A digest of the source's settings: when staff change selectors or filters, the validators are dropped
    # so the next poll reads the source afresh rather than hearing "not modified".
    spec_hash: Mapped[str | None] = mapped_column(String(16))
    # The newest sitemap `lastmod` seen: later polls take only URLs changed after it.
    watermark: Mapped[datetime | None]


class Item(Base):
    """One portal article, deduplicated by (source, guid)."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "guid"),
        Index("ix_items_published_at", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    guid: Mapped[str] = mapped_column(String(1024))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime]
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
    language: Mapped[str] = mapped_column(String(8))
    topics: Mapped[list[str]] = mapped_column(default=list)
    search_text: Mapped[str] = mapped_column(Text, default="")
    # When the portal last changed the title, summary or image of an item already stored (it is updated
    # in place; campaigns made before say so).
    changed_at: Mapped[datetime | None]
    # The article page's validators, for a conditional GET when it is read again.
    page_etag: Mapped[str | None] = mapped_column(String(512))
    page_last_modified: Mapped[str | None] = mapped_column(String(128))

    source: Mapped[Source] = relationship()


class CampaignKind(enum.StrEnum):
    """What a campaign announces: one item, several items as a digest, or a staff message."""

    item = "item"
    digest = "digest"
    message = "message"
    survey = "survey"  # an invitation to answer a survey of information needs


class SubscriberStatus(enum.StrEnum):
    """Whether a subscriber gets messages: `stopped` by their own /stop, `blocked` when they blocked the bot."""

    active = "active"
    stopped = "stopped"
    blocked = "blocked"


class DeliveryMode(enum.StrEnum):
    """Each item as it comes, or one message a day listing them."""

    instant = "instant"
    digest = "digest"


class Campaign(Base):
    """What to announce, where, and how far along it is."""

    __tablename__ = "campaigns"
    # A rule makes at most one campaign per item, however often the item is seen again.
    __table_args__ = (UniqueConstraint("rule", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CampaignKind] = mapped_column(_enum(CampaignKind), default=CampaignKind.item)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="RESTRICT"))
    item_ids: Mapped[list[int]] = mapped_column(default=list)  # a digest's items, in order
    body: Mapped[str | None] = mapped_column(Text)  # a staff message's text
    url: Mapped[str | None] = mapped_column(Text)  # the portal page a staff message links to
    rule: Mapped[str | None] = mapped_column(String(120))  # the rule that made it, if any
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id", ondelete="RESTRICT"))
    title: Mapped[str] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(default=list)
    language: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(120), default="post")
    status: Mapped[CampaignStatus] = mapped_column(_enum(CampaignStatus), default=CampaignStatus.draft)
    scheduled_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(120))
    created_as: Mapped[str | None] = mapped_column(String(120))  # the name given with --as, if any
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(120))
    approved_as: Mapped[str | None] = mapped_column(String(120))
    approved_at: Mapped[datetime | None]

    item: Mapped[Item | None] = relationship()

    @property
    def utm_campaign(self) -> str:
        """The campaign's name in the portal's analytics."""
        return f"outreach-{self.id}"


class Link(Base):
    """A short code people tap; the destination is fixed when the link is made."""

    __tablename__ = "links"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    destination: Mapped[str] = mapped_column(Text)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    channel: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Whose link it is, when it went to one subscriber: the key to counting businesses reached.
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="SET NULL"), index=True)


class Subscriber(Base):
    """A chat that asked the bot for the portal's news (DESIGN §3).

    `channel` and `chat_id` name the chat on its platform, so a Zalo or web front
    end could keep its subscribers here too. The tax code is optional; only with
    `consent` are the chat's clicks counted for the business it names.
    """

    __tablename__ = "subscribers"
    __table_args__ = (UniqueConstraint("channel", "chat_id"), Index("ix_subscribers_tax_code", "tax_code"))

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(40))
    chat_id: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="vi")
    topics: Mapped[list[str]] = mapped_column(default=list)
    mode: Mapped[DeliveryMode] = mapped_column(_enum(DeliveryMode), default=DeliveryMode.instant)
    status: Mapped[SubscriberStatus] = mapped_column(_enum(SubscriberStatus), default=SubscriberStatus.active)
    tax_code: Mapped[str | None] = mapped_column(String(14))  # compact: 10 or 13 digits
    consent: Mapped[bool] = mapped_column(default=False, server_default=false())
    consent_at: Mapped[datetime | None]
    # What the chat's next plain-text message answers ("tax_code", "survey:3:q2"), if anything.
    awaiting: Mapped[str | None] = mapped_column(String(120))
    digest_until: Mapped[datetime | None]  # items approved before this went out in an earlier digest
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Survey(Base):
    """A survey of information needs as staff described it (the YAML, checked and stored as sent)."""

    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    definition: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyAnswer(Base):
    """One subscriber's answer to one question; answering again replaces it."""

    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("survey_id", "subscriber_id", "question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    question: Mapped[str] = mapped_column(String(60))
    choices: Mapped[list[str]] = mapped_column(default=list)  # the option ids picked
    text: Mapped[str | None] = mapped_column(Text)  # a free-text answer
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One message to one target; the unique key stops a second copy at the database."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "channel", "target"),
        Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)  # posted with the text when the template asks
    link_code: Mapped[str | None] = mapped_column(ForeignKey("links.code"))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus), default=DeliveryStatus.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]  # when the current `sending` began
    last_error: Mapped[str | None] = mapped_column(Text)
    platform_id: Mapped[str | None] = mapped_column(String(255))
    transport: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    campaign: Mapped[Campaign] = relationship()
    link: Mapped[Link | None] = relationship()


def _visitor_of(context: Any) -> int:
    """A click's visitor key from its own network hash and agent (an INSERT that gives none)."""
    parameters = context.get_current_parameters()
    return visitor_key(parameters.get("ip_hash"), parameters.get("user_agent"))


class Click(Base):
    """Append-only log of taps on a link; never a raw IP address."""

    __tablename__ = "clicks"
    __table_args__ = (
        # Covering: the report reads every figure of a period from the index alone (bench/report.py).
        # Time first, so a batch of clicks fills the index's last page rather than one page per link
        # (0013), and the 8-byte visitor key in place of the hash and the agent (0011).
        Index("ix_clicks_report", "at", "code", "kind", "repeat", "visitor"),
        Index("uq_clicks_uid", "uid", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A link's code, with no foreign key: checking it cost PostgreSQL a locked lookup per click.
    # Links are never deleted, the tracker writes only codes it read from them, and a replayed
    # spool is checked against them first (0013).
    code: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[ClickKind] = mapped_column(_enum(ClickKind))
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    referrer_host: Mapped[str | None] = mapped_column(String(255))
    # One of a burst from one visitor on one link: kept as evidence, never counted as a visit.
    repeat: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Given by the tracker: the same click stored twice (a lost commit answer, then the spool) is one row.
    uid: Mapped[str | None] = mapped_column(String(32))
    # `tracking.visitor_key(ip_hash, user_agent)`: who, for the report's unique visitors, in 8 bytes.
    # Every writer fills it (here: from the row's own hash and agent); NULL only on a row written
    # by an outreach older than migration 0011 while it upgraded; `outreach clicks reclassify` keys those.
    visitor: Mapped[int | None] = mapped_column(BigInteger, default=_visitor_of)


class ClickSpoolReplay(Base):
    """A spool segment already replayed: the same file replayed again adds nothing."""

    __tablename__ = "click_spool_replays"

    segment: Mapped[str] = mapped_column(String(120), primary_key=True)
    clicks: Mapped[int]
    replayed_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One state change of a campaign, a delivery or a channel: when, who, from, to, why.

    `actor` is the OS login (or "system" for the runner); `acting_as` the name given
    with --as / OUTREACH_STAFF, kept apart so a name typed on a shared account is
    never the only evidence.
    """

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    entity: Mapped[str] = mapped_column(String(16))  # campaign, delivery, channel
    entity_id: Mapped[str] = mapped_column(String(300))
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(120))
    acting_as: Mapped[str | None] = mapped_column(String(120))
    note: Mapped[str | None] = mapped_column(Text)


class ChannelPause(Base):
    """A target (or a whole channel, target "*") whose token was refused: nothing goes until resumed."""

    __tablename__ = "channel_pauses"

    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(default=utcnow)


class JobState(Base):
    """The runner's jobs as `outreach status` shows them: when each runs next, and how it went last."""

    __tablename__ = "runner_jobs"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- the portal's access logs (outreach/portal_logs.py) ----------------------------


class SitemapUrl(Base):
    """A URL a sitemap source has listed, by a 64-bit key: what is not here is new.

    A sitemap lists the portal's whole archive and its `lastmod` is often the time
    the sitemap was generated, so "new" cannot be read off it: the first poll
    records every URL (and stores only the most recent few), later polls take
    the URLs not recorded yet.
    """

    __tablename__ = "sitemap_urls"

    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True)
    url_key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class LogImport(Base):
    """One imported access-log file, named by the SHA-256 of its (decompressed) content.

    The same content imported again adds nothing; `size` lets a later, longer copy
    of the same log (the live file, then its rotated copy) skip what was counted.
    """

    __tablename__ = "log_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)  # the path as given
    size: Mapped[int] = mapped_column(BigInteger)  # decompressed bytes
    lines: Mapped[int]
    overlap_lines: Mapped[int] = mapped_column(default=0)  # leading lines an earlier import counted
    kept: Mapped[int]
    malformed: Mapped[int]
    first_at: Mapped[datetime | None]
    last_at: Mapped[datetime | None]
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class PortalHit(Base):
    """Portal requests that came from our outreach, per local day, channel and kind; never an address."""

    __tablename__ = "portal_hits"
    __table_args__ = (UniqueConstraint("day", "channel", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date]  # the calendar day in the install's zone
    channel: Mapped[str] = mapped_column(String(40))
    kind: Mapped[ClickKind] = mapped_column(_enum(ClickKind))
    hits: Mapped[int]
    visitors: Mapped[int]  # distinct rows of portal_visitors for the same key


class PortalVisitor(Base):
    """One visitor (keyed hash of network + agent) seen on a day: a second file of that day counts them once."""

    __tablename__ = "portal_visitors"

    day: Mapped[date] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[ClickKind] = mapped_column(_enum(ClickKind), primary_key=True)
    visitor: Mapped[str] = mapped_column(String(32), primary_key=True)
