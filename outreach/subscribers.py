"""Subscribers of the bot: who gets what, in which language, and what is kept about them.

Front-end neutral: a chat is named by its channel ("telegram_bot") and its id on
that platform, so a Zalo or web front end keeps its subscribers the same way.
Nothing here writes a chat id into the audit trail: `/forget` must be able to
remove every trace of a chat, and the audit trail is never rewritten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from outreach.lifecycle import Actor, move_deliveries
from outreach.models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Link,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

LANGUAGES = ("vi", "en")
FORGOTTEN = "forgotten"  # what a forgotten chat's deliveries keep as their target


@dataclass(frozen=True)
class Chat:
    """A chat on a platform, as the front end names it (never taken from a button's data)."""

    channel: str
    chat_id: str
    language_hint: str | None = None  # the app's language, for a first greeting
    private: bool = True  # a one-to-one chat; in a group any member could act for everyone


@dataclass(frozen=True)
class Recipient:
    """An active subscriber a broadcast goes to."""

    id: int
    chat_id: str
    language: str
    topics: tuple[str, ...]


def find(session: Session, chat: Chat) -> Subscriber | None:
    """The chat's subscriber row, if it ever started the bot (and did not ask to be forgotten)."""
    return session.scalar(
        select(Subscriber).where(Subscriber.channel == chat.channel, Subscriber.chat_id == chat.chat_id)
    )


def start(session: Session, chat: Chat) -> tuple[Subscriber, bool]:
    """The chat's subscriber, made active (created when new); True when it is new."""
    found = find(session, chat)
    if found is not None:
        if found.status is not SubscriberStatus.active:
            found.status = SubscriberStatus.active
            touch(found)
        return found, False
    language = chat.language_hint if chat.language_hint in LANGUAGES else "vi"
    subscriber = Subscriber(channel=chat.channel, chat_id=chat.chat_id, language=language, topics=[])
    session.add(subscriber)
    session.flush()
    return subscriber, True


def touch(subscriber: Subscriber) -> None:
    """Note that the subscriber changed something (for `/stats` and the report's over-time view)."""
    subscriber.updated_at = utcnow()


def set_language(subscriber: Subscriber, language: str) -> None:
    """Vietnamese or English, for every message from now on."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}")
    subscriber.language = language
    touch(subscriber)


def toggle_topic(subscriber: Subscriber, topic_id: str, known: Sequence[str]) -> bool:
    """Subscribe to a topic or leave it; True when now subscribed. Unknown topics are refused."""
    if topic_id not in known:
        raise ValueError(f"unknown topic {topic_id!r}")
    topics = list(subscriber.topics)
    if topic_id in topics:
        topics.remove(topic_id)
    else:
        topics.append(topic_id)
    subscriber.topics = [t for t in known if t in topics]  # catalogue order, whatever the taps
    touch(subscriber)
    return topic_id in topics


def set_mode(subscriber: Subscriber, mode: DeliveryMode) -> None:
    """Each item as it comes, or a daily digest."""
    subscriber.mode = mode
    touch(subscriber)


def stop(session: Session, subscriber: Subscriber, actor: Actor) -> int:
    """No more messages (the data stays until /forget); pending ones are skipped. Returns how many."""
    subscriber.status = SubscriberStatus.stopped
    subscriber.awaiting = None
    touch(subscriber)
    return _skip_pending(session, subscriber.channel, subscriber.chat_id, actor, "the subscriber stopped the bot")


def forget(session: Session, chat: Chat, actor: Actor) -> bool:
    """Delete everything held about a chat; False when nothing was held.

    The subscriber row goes (its survey answers with it, by cascade); links made
    for it stay for the click counts but no longer name it; deliveries to it keep
    their outcome for the campaign's figures under an anonymous target, so no row
    refers to the chat any more.
    """
    subscriber = find(session, chat)
    deliveries = select(Delivery.id).where(Delivery.channel == chat.channel, Delivery.target == chat.chat_id)
    ids = list(session.scalars(deliveries))
    if subscriber is None and not ids:
        return False
    _skip_pending(session, chat.channel, chat.chat_id, actor, "the subscriber asked to be forgotten")
    for delivery_id in ids:  # one by one: the target is unique per campaign and channel
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(target=f"{FORGOTTEN}-{delivery_id}", text="", last_error=None, platform_id=None)
            .execution_options(synchronize_session=False)
        )
    if subscriber is not None:
        session.execute(
            update(Link)
            .where(Link.subscriber_id == subscriber.id)
            .values(subscriber_id=None)
            .execution_options(synchronize_session=False)
        )
        session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
    session.expunge_all()
    return True


def mark_gone(session: Session, channel: str, chat_id: str, actor: Actor) -> bool:
    """The chat blocked the bot (or was deleted): `blocked`, and nothing more is tried. True if a subscriber."""
    changed = session.execute(
        update(Subscriber)
        .where(Subscriber.channel == channel, Subscriber.chat_id == chat_id)
        .values(status=SubscriberStatus.blocked, awaiting=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if changed:
        _skip_pending(session, channel, chat_id, actor, "the subscriber blocked the bot")
    return bool(changed)


def move_chat(session: Session, channel: str, old: str, new: str, actor: Actor) -> None:
    """A group became a supergroup with a new id: the subscription and its messages follow.

    When the new chat subscribed on its own already (someone sent /start there),
    the old subscription stops and its pending messages are skipped where the new
    chat has the same campaign's: one group, one subscription, one copy.
    """
    taken = find(session, Chat(channel, new)) is not None
    if taken:
        # What the new chat was to get under its own id and has just got under the old one: skipped.
        arrived = select(Delivery.campaign_id).where(
            Delivery.channel == channel,
            Delivery.target == old,
            Delivery.status.in_([DeliveryStatus.sent, DeliveryStatus.sending]),
        )
        move_deliveries(
            session,
            [Delivery.channel == channel, Delivery.target == new, Delivery.campaign_id.in_(arrived)],
            DeliveryStatus.pending,
            DeliveryStatus.skipped,
            actor,
            "the group got it under its old id",
        )
        session.execute(
            update(Subscriber)
            .where(Subscriber.channel == channel, Subscriber.chat_id == old)
            .values(status=SubscriberStatus.stopped, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    else:
        session.execute(
            update(Subscriber)
            .where(Subscriber.channel == channel, Subscriber.chat_id == old)
            .values(chat_id=new, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    both = select(Delivery.campaign_id).where(Delivery.channel == channel, Delivery.target == new)
    move_deliveries(
        session,
        [Delivery.channel == channel, Delivery.target == old, Delivery.campaign_id.in_(both)],
        DeliveryStatus.pending,
        DeliveryStatus.skipped,
        actor,
        "the group moved to a supergroup that has this message already",
    )
    session.execute(
        update(Delivery)
        .where(Delivery.channel == channel, Delivery.target == old, Delivery.campaign_id.not_in(both))
        .values(target=new)
        .execution_options(synchronize_session=False)
    )


def _skip_pending(session: Session, channel: str, chat_id: str, actor: Actor, why: str) -> int:
    skipped = move_deliveries(
        session,
        [Delivery.channel == channel, Delivery.target == chat_id],
        DeliveryStatus.pending,
        DeliveryStatus.skipped,
        actor,
        why,
    )
    return len(skipped)


def recipients(
    session: Session,
    channel: str,
    language: str,
    topics: Sequence[str] | None,
    mode: DeliveryMode | None = DeliveryMode.instant,
) -> list[Recipient]:
    """Active subscribers of a channel in a language, on any of `topics` (None: whatever their topics)."""
    query = select(Subscriber.id, Subscriber.chat_id, Subscriber.language, Subscriber.topics).where(
        Subscriber.channel == channel,
        Subscriber.status == SubscriberStatus.active,
        Subscriber.language == language,
    )
    if mode is not None:
        query = query.where(Subscriber.mode == mode)
    wanted = set(topics) if topics is not None else None
    found = []
    for subscriber_id, chat_id, lang, theirs in session.execute(query.order_by(Subscriber.id)):
        if wanted is None or wanted.intersection(theirs or ()):
            found.append(Recipient(subscriber_id, chat_id, lang, tuple(theirs or ())))
    return found


@dataclass(frozen=True)
class Counts:
    """Subscribers by status, by language and by topic (active ones), for `/stats` and reports."""

    by_status: dict[str, int]
    by_language: dict[str, int]
    by_topic: dict[str, int]
    businesses: int  # distinct tax codes with consent among active subscribers


def counts(session: Session, channel: str | None = None) -> Counts:
    """How many subscribers there are, and of what kind."""
    query = select(Subscriber.status, Subscriber.language, Subscriber.topics, Subscriber.tax_code, Subscriber.consent)
    if channel is not None:
        query = query.where(Subscriber.channel == channel)
    status: Counter[str] = Counter()
    language: Counter[str] = Counter()
    topic: Counter[str] = Counter()
    codes: set[str] = set()
    for state, lang, topics, code, consent in session.execute(query):
        status[state.value] += 1
        if state is SubscriberStatus.active:
            language[lang] += 1
            topic.update(topics or ())
            if code and consent:
                codes.add(code)
    return Counts(dict(status), dict(language), dict(topic), len(codes))


def total(session: Session) -> int:
    """Every subscriber row, whatever its state."""
    return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)
