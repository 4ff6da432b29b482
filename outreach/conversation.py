"""What the bot does when a business writes to it: subscribe, register, search, answer surveys.

Front-end neutral (DESIGN §2): a front end (the Telegram `Application` in
`channels/telegram_bot.py`; a Zalo or web one later) turns what arrived into a
command, a button press or a text, names the chat from the platform's own
update (never from a button's data, so a forged button cannot touch another
chat), and shows the `Reply`s it gets back. Each call is one short transaction;
call it from a worker thread, not the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach import business, search, subscribers, survey
from outreach.bot_texts import BotTexts
from outreach.config import Settings
from outreach.lifecycle import OPEN_CAMPAIGNS, Actor
from outreach.links import DestinationNotAllowed, check_destination, new_code, short_url, with_utm
from outreach.models import (
    Campaign,
    CampaignStatus,
    Click,
    ClickKind,
    DeliveryMode,
    Item,
    Link,
    Subscriber,
    Survey,
    utcnow,
)
from outreach.subscribers import Chat

SEARCH_CAMPAIGN = "bot-search"  # utm_campaign of links answered to /search and /latest
RESULTS = 5
WAITING_CAMPAIGNS = (CampaignStatus.draft, CampaignStatus.approved, *OPEN_CAMPAIGNS)
TAX_CODE = "tax_code"
COMMANDS = ("start", "topics", "lang", "mode", "stop", "forget", "business", "search", "latest", "survey", "help")
STAFF_COMMANDS = ("stats", "queue")
# In a group any member could register the group's clicks to a firm, delete it, or read staff figures.
PRIVATE_ONLY = frozenset({"business", "forget", *STAFF_COMMANDS})
PRIVATE_BUTTONS = ("consent:", "forget:", "biz:")
TEMPLATES = (
    "welcome",
    "language_set",
    "topics",
    "topics_saved",
    "mode",
    "mode_set",
    "stopped",
    "not_started",
    "forget_confirm",
    "forgotten",
    "forget_kept",
    "business_ask",
    "business_status",
    "tax_code_refused",
    "consent_ask",
    "consent_set",
    "business_removed",
    "search_results",
    "search_refused",
    "latest",
    "survey_question",
    "survey_done",
    "survey_none",
    "help",
    "unknown",
    "expired",
    "text_hint",
    "stats",
    "queue",
    "private_only",
)
_BUTTON = re.compile(
    r"^(?:lang:(?P<lang>vi|en)(?P<first>:start)?"
    r"|topic:(?P<topic>[A-Za-z0-9_-]{1,40})"
    r"|topics:done"
    r"|mode:(?P<mode>instant|digest)"
    r"|forget:(?P<forget>yes|no)"
    r"|consent:(?P<consent>yes|no)"
    r"|biz:(?P<biz>change|remove)"
    r"|sv:(?P<survey>\d{1,9}):(?P<question>\d{1,2})(?::(?P<option>\d{1,2}|done))?)$"
)


@dataclass(frozen=True)
class Button:
    """A button under a reply; `data` comes back when it is tapped (at most 64 bytes)."""

    label: str
    data: str


@dataclass(frozen=True)
class Reply:
    """One message to show; `replace` edits the message whose button was tapped instead of sending anew."""

    text: str
    buttons: tuple[tuple[Button, ...], ...] = ()
    replace: bool = False


@dataclass
class Answer:
    """Everything to show for one event, and a short notice for the tapped button."""

    replies: list[Reply] = field(default_factory=list)
    toast: str | None = None


@dataclass(frozen=True)
class Incoming:
    """One event from a chat: a command with its words, a button's data, or plain text."""

    chat: Chat
    user_id: str  # who acted (staff commands are allowed per user, not per chat)
    command: str | None = None
    args: str = ""
    button: str | None = None
    text: str | None = None


class Conversation:
    """The bot's logic over the store; `handle` is its one entry point."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        settings: Settings,
        texts: BotTexts,
        staff: Sequence[str] = (),
        digest_at: str = "17:00",
        actor: Actor | None = None,
    ) -> None:
        self.sessions, self.settings, self.texts = sessions, settings, texts
        self.staff = frozenset(staff)
        self.digest_at = digest_at
        self.actor = actor or Actor("bot")
        self.topic_ids = [topic.id for topic in settings.schedule.topics]

    def handle(self, event: Incoming) -> Answer:
        """The replies to one event, its changes committed."""
        with self.sessions() as session, session.begin():
            if event.command is not None:
                return self._command(session, event)
            if event.button is not None:
                return self._button(session, event)
            return self._text(session, event)

    # --- commands ---------------------------------------------------------------------------

    def _command(self, session: Session, event: Incoming) -> Answer:
        name = event.command or ""
        if name in PRIVATE_ONLY and not event.chat.private:
            return self._say(self._language(session, event.chat), "private_only")
        if name in STAFF_COMMANDS and event.user_id in self.staff:
            return self._staff(session, name, event)
        if name not in COMMANDS:
            return self._say(self._language(session, event.chat), "unknown")
        if name == "start":
            return self._start(session, event)
        subscriber = subscribers.find(session, event.chat)
        if name in ("search", "latest", "help"):
            language = subscriber.language if subscriber else self._hinted(event.chat)
            if name == "help":
                return self._say(language, "help")
            if name == "search":
                return self._search(session, subscriber, language, event.args)
            return self._latest(session, subscriber, language, event.args)
        if subscriber is None:
            return self._say(self._hinted(event.chat), "not_started")
        subscriber.awaiting = None  # a command ends whatever the chat was in the middle of
        if name == "forget":
            return Answer([self._forget_question(subscriber.language)])
        language = subscriber.language
        if name == "topics":
            return Answer([self._topics(subscriber)])
        if name == "lang":
            return Answer([self._languages(language, first=False)])
        if name == "mode":
            return Answer([self._modes(subscriber)])
        if name == "stop":
            subscribers.stop(session, subscriber, self.actor)
            return self._say(language, "stopped")
        if name == "business":
            return self._business(subscriber, event.args)
        return self._survey_start(session, subscriber, event.args)

    def _start(self, session: Session, event: Incoming) -> Answer:
        subscriber, new = subscribers.start(session, event.chat)
        subscriber.awaiting = None
        text = self.texts.say("welcome", subscriber.language, new=new, topics=self._catalogue(subscriber.language))
        return Answer([Reply(text, self._language_buttons(subscriber.language, first=True))])

    def _staff(self, session: Session, name: str, event: Incoming) -> Answer:
        language = self._language(session, event.chat)
        if name == "stats":
            counts = subscribers.counts(session, event.chat.channel)
            day = self._yesterday()
            clicks = session.execute(
                select(Link.channel, func.count())
                .join(Click, Click.code == Link.code)
                .where(Click.kind == ClickKind.human, Click.repeat.is_(False), Click.at >= day[0], Click.at < day[1])
                .group_by(Link.channel)
            ).all()
            by_channel = {channel or "-": count for channel, count in clicks}
            labels = {topic.id: topic.label.get(language) for topic in self.settings.schedule.topics}
            return self._say(language, "stats", counts=counts, labels=labels, clicks=by_channel, day=day[2])
        waiting = session.execute(
            select(Campaign.id, Campaign.status, Campaign.title, Campaign.scheduled_at)
            .where(Campaign.status.in_(WAITING_CAMPAIGNS))
            .order_by(Campaign.id)
            .limit(20)
        ).all()
        total = session.scalar(select(func.count()).where(Campaign.status.in_(WAITING_CAMPAIGNS)))
        rows = [
            {"id": i, "status": status.value, "title": title, "at": self._local(at)} for i, status, title, at in waiting
        ]
        return self._say(language, "queue", campaigns=rows, total=total or 0)

    def _yesterday(self) -> tuple[datetime, datetime, str]:
        zone = self.settings.zone
        today = utcnow().astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=1)
        return start, today, start.strftime("%d/%m/%Y")

    def _local(self, when: datetime | None) -> str:
        return when.astimezone(self.settings.zone).strftime("%d/%m/%Y %H:%M") if when else ""

    # --- buttons ----------------------------------------------------------------------------

    def _button(self, session: Session, event: Incoming) -> Answer:
        subscriber = subscribers.find(session, event.chat)
        found = _BUTTON.match(event.button or "")
        language = subscriber.language if subscriber else self._hinted(event.chat)
        if subscriber is None or found is None:
            return Answer(toast=self.texts.say("expired", language))
        data = event.button or ""
        if not event.chat.private and data.startswith(PRIVATE_BUTTONS):
            return Answer(toast=self.texts.say("private_only", language))
        if found["lang"]:
            subscribers.set_language(subscriber, found["lang"])
            done = Reply(self.texts.say("language_set", subscriber.language), replace=True)
            return Answer([done, self._topics(subscriber)] if found["first"] else [done])
        if found["topic"]:
            if found["topic"] not in self.topic_ids:
                return Answer(toast=self.texts.say("expired", language))
            subscribers.toggle_topic(subscriber, found["topic"], self.topic_ids)
            return Answer([self._topics(subscriber, replace=True)])
        if data == "topics:done":
            return self._say(language, "topics_saved", replace=True, **self._summary(subscriber))
        if found["mode"]:
            subscribers.set_mode(subscriber, DeliveryMode(found["mode"]))
            return self._say(language, "mode_set", replace=True, mode=found["mode"], at=self.digest_at)
        if found["forget"]:
            if found["forget"] == "yes":
                subscribers.forget(session, event.chat, self.actor)
                return self._say(language, "forgotten", replace=True)
            return self._say(language, "forget_kept", replace=True)
        if found["consent"]:
            business.set_consent(subscriber, found["consent"] == "yes")
            return self._say(language, "consent_set", replace=True, given=subscriber.consent, **self._firm(subscriber))
        if found["biz"] == "change":
            subscriber.awaiting = TAX_CODE
            return self._say(language, "business_ask", replace=True)
        if found["biz"] == "remove":
            business.unregister(subscriber)
            return self._say(language, "business_removed", replace=True)
        return self._survey_button(session, subscriber, found)

    # --- text -------------------------------------------------------------------------------

    def _text(self, session: Session, event: Incoming) -> Answer:
        subscriber = subscribers.find(session, event.chat)
        text = (event.text or "").strip()
        if subscriber is None:
            return self._say(self._hinted(event.chat), "not_started") if event.chat.private else Answer()
        if subscriber.awaiting == TAX_CODE:
            return self._tax_code(subscriber, text)
        if subscriber.awaiting and subscriber.awaiting.startswith("survey:"):
            return self._survey_text(session, subscriber, text)
        if not event.chat.private:  # a group's talk is not for the bot
            return Answer()
        return self._say(subscriber.language, "text_hint")

    # --- subscriptions ----------------------------------------------------------------------

    def _catalogue(self, language: str) -> list[str]:
        return [topic.label.get(language) for topic in self.settings.schedule.topics]

    def _language_buttons(self, language: str, first: bool) -> tuple[tuple[Button, ...], ...]:
        suffix = ":start" if first else ""
        return (
            (
                Button(self.texts.label("lang_vi", language), f"lang:vi{suffix}"),
                Button(self.texts.label("lang_en", language), f"lang:en{suffix}"),
            ),
        )

    def _languages(self, language: str, first: bool) -> Reply:
        return Reply(self.texts.say("language_set", language, asking=True), self._language_buttons(language, first))

    def _topics(self, subscriber: Subscriber, replace: bool = False) -> Reply:
        language = subscriber.language
        rows = []
        for topic in self.settings.schedule.topics:
            mark = self.texts.label("on" if topic.id in subscriber.topics else "off", language)
            rows.append((Button(f"{mark} {topic.label.get(language)}", f"topic:{topic.id}"),))
        rows.append((Button(self.texts.label("done", language), "topics:done"),))
        text = self.texts.say("topics", language, **self._summary(subscriber))
        return Reply(text, tuple(rows), replace=replace)

    def _summary(self, subscriber: Subscriber) -> dict[str, object]:
        labels = {topic.id: topic.label.get(subscriber.language) for topic in self.settings.schedule.topics}
        return {
            "chosen": [labels[t] for t in subscriber.topics if t in labels],
            "mode": subscriber.mode.value,
            "at": self.digest_at,
        }

    def _modes(self, subscriber: Subscriber) -> Reply:
        language = subscriber.language
        buttons = (
            (Button(self.texts.label("instant", language), "mode:instant"),),
            (Button(self.texts.label("digest", language).replace("{at}", self.digest_at), "mode:digest"),),
        )
        return Reply(self.texts.say("mode", language, mode=subscriber.mode.value, at=self.digest_at), buttons)

    def _forget_question(self, language: str) -> Reply:
        buttons = (
            (
                Button(self.texts.label("forget_yes", language), "forget:yes"),
                Button(self.texts.label("forget_no", language), "forget:no"),
            ),
        )
        return Reply(self.texts.say("forget_confirm", language), buttons)

    # --- business ---------------------------------------------------------------------------

    def _firm(self, subscriber: Subscriber) -> dict[str, object]:
        code = subscriber.tax_code
        return {"code": business.display(code) if code else None, "consent": subscriber.consent}

    def _business(self, subscriber: Subscriber, args: str) -> Answer:
        language = subscriber.language
        if args.strip():
            return self._tax_code(subscriber, args)
        if subscriber.tax_code is None:
            subscriber.awaiting = TAX_CODE
            return self._say(language, "business_ask")
        buttons = (
            (
                Button(
                    self.texts.label("consent_no" if subscriber.consent else "consent_yes", language),
                    "consent:no" if subscriber.consent else "consent:yes",
                ),
            ),
            (
                Button(self.texts.label("change_code", language), "biz:change"),
                Button(self.texts.label("remove_code", language), "biz:remove"),
            ),
        )
        return Answer([Reply(self.texts.say("business_status", language, **self._firm(subscriber)), buttons)])

    def _tax_code(self, subscriber: Subscriber, text: str) -> Answer:
        language = subscriber.language
        try:
            business.register(subscriber, text)
        except business.TaxCodeRefused as refused:
            subscriber.awaiting = TAX_CODE  # the next message is another try
            return self._say(language, "tax_code_refused", reason=refused.reason.value, given=refused.given[:40])
        subscriber.awaiting = None
        buttons = (
            (
                Button(self.texts.label("consent_yes", language), "consent:yes"),
                Button(self.texts.label("consent_no", language), "consent:no"),
            ),
        )
        return Answer([Reply(self.texts.say("consent_ask", language, **self._firm(subscriber)), buttons)])

    # --- search -----------------------------------------------------------------------------

    def _search(self, session: Session, subscriber: Subscriber | None, language: str, words: str) -> Answer:
        found = search.search_items(session, words, limit=RESULTS)
        if found.reason is not None:
            return self._say(language, "search_refused", reason=found.reason, limit=search.MAX_QUERY_LENGTH)
        hits = [self._entry(session, subscriber, hit.item_id) for hit in found.hits]
        return self._say(language, "search_results", query=words.strip(), hits=[h for h in hits if h])

    def _latest(self, session: Session, subscriber: Subscriber | None, language: str, args: str) -> Answer:
        topic = self._topic_named(args.strip(), language) if args.strip() else None
        if args.strip() and topic is None:
            return self._say(
                language, "latest", hits=[], topic=None, unknown=args.strip()[:60], topics=self._catalogue(language)
            )
        items = search.latest_items(session, limit=RESULTS, topic=topic)
        hits = [self._entry(session, subscriber, item.item_id) for item in items]
        label = next((t.label.get(language) for t in self.settings.schedule.topics if t.id == topic), None)
        return self._say(language, "latest", hits=[h for h in hits if h], topic=label, unknown=None, topics=[])

    def _topic_named(self, words: str, language: str) -> str | None:
        """A topic by its id or the start of its label in either language, accents or not."""
        from outreach.text import fold

        wanted = fold(words)
        for topic in self.settings.schedule.topics:
            names = (topic.id, topic.label.vi, topic.label.en)
            if any(fold(name) == wanted or fold(name).startswith(wanted) for name in names):
                return topic.id
        return None

    def _entry(self, session: Session, subscriber: Subscriber | None, item_id: int) -> dict[str, object] | None:
        item = session.get(Item, item_id)
        if item is None:
            return None
        link = self._link(session, subscriber, item.url)
        if link is None:
            return None
        return {
            "title": item.title,
            "link": link,
            "published": item.published_at.astimezone(self.settings.zone).strftime("%d/%m/%Y"),
        }

    def _link(self, session: Session, subscriber: Subscriber | None, url: str) -> str | None:
        """A tracked link to a portal page for this chat, made once and reused."""
        tracker = self.settings.schedule.tracker
        channel = subscriber.channel if subscriber else "bot"
        destination = with_utm(url, channel, tracker.utm_medium, SEARCH_CAMPAIGN)
        try:
            check_destination(destination, tracker.allowed_domains)
        except DestinationNotAllowed:
            return None
        owner = subscriber.id if subscriber else None
        code = session.scalar(
            select(Link.code).where(
                Link.destination == destination,
                Link.campaign_id.is_(None),
                Link.subscriber_id.is_(owner) if owner is None else Link.subscriber_id == owner,
            )
        )
        if code is None:
            code = new_code()
            session.add(Link(code=code, destination=destination, channel=channel, subscriber_id=owner))
        return short_url(tracker.public_url, code)

    # --- surveys ----------------------------------------------------------------------------

    def _survey_start(self, session: Session, subscriber: Subscriber, name: str) -> Answer:
        chosen = survey.newest(session) if not name.strip() else None
        if name.strip():
            try:
                chosen = survey.by_name(session, name.strip())
            except survey.SurveyError:
                chosen = None
        if chosen is None:
            return self._say(subscriber.language, "survey_none")
        return Answer([self._question(session, subscriber, chosen, 0)])

    def _question(
        self, session: Session, subscriber: Subscriber, chosen: Survey, index: int, replace: bool = False
    ) -> Reply:
        definition = survey.definition_of(chosen)
        language = subscriber.language
        if index >= len(definition.questions):
            subscriber.awaiting = None
            return Reply(self.texts.say("survey_done", language, title=definition.title.get(language)), replace=replace)
        question = definition.question(index)
        earlier = survey.answers_of(session, chosen, subscriber).get(question.id)
        picked = set(earlier.choices) if earlier else set()
        rows: list[tuple[Button, ...]] = []
        if question.kind is survey.Kind.text:
            subscriber.awaiting = f"survey:{chosen.id}:{index}"
        else:
            subscriber.awaiting = None
            for number, option in enumerate(question.options):
                mark = ""
                if question.kind is survey.Kind.multiple:
                    mark = self.texts.label("on" if option.id in picked else "off", language) + " "
                rows.append((Button(mark + option.label(language), f"sv:{chosen.id}:{index}:{number}"),))
            if question.kind is survey.Kind.multiple:
                rows.append((Button(self.texts.label("done", language), f"sv:{chosen.id}:{index}:done"),))
        text = self.texts.say(
            "survey_question",
            language,
            title=definition.title.get(language),
            intro=definition.intro.get(language) if definition.intro and index == 0 else None,
            number=index + 1,
            count=len(definition.questions),
            question=question.text.get(language),
            kind=question.kind.value,
            earlier=earlier.text if earlier and earlier.text else None,
        )
        return Reply(text, tuple(rows), replace=replace)

    def _survey_button(self, session: Session, subscriber: Subscriber, found: re.Match[str]) -> Answer:
        chosen = session.get(Survey, int(found["survey"]))
        language = subscriber.language
        if chosen is None:
            return Answer(toast=self.texts.say("expired", language))
        definition = survey.definition_of(chosen)
        index = int(found["question"])
        if index >= len(definition.questions):
            return Answer(toast=self.texts.say("expired", language))
        question = definition.question(index)
        option = found["option"]
        if option is None or question.kind is survey.Kind.text:
            return Answer([self._question(session, subscriber, chosen, index)])
        if option == "done":
            return Answer([self._question(session, subscriber, chosen, index + 1, replace=True)])
        number = int(option)
        if number >= len(question.options):
            return Answer(toast=self.texts.say("expired", language))
        picked = question.options[number].id
        if question.kind is survey.Kind.single:
            survey.answer(session, chosen, subscriber, question, [picked])
            return Answer([self._question(session, subscriber, chosen, index + 1, replace=True)])
        earlier = survey.answers_of(session, chosen, subscriber).get(question.id)
        choices = list(earlier.choices) if earlier else []
        choices = [c for c in choices if c != picked] if picked in choices else [*choices, picked]
        survey.answer(session, chosen, subscriber, question, choices)
        return Answer([self._question(session, subscriber, chosen, index, replace=True)])

    def _survey_text(self, session: Session, subscriber: Subscriber, text: str) -> Answer:
        _, survey_id, index = (subscriber.awaiting or "").split(":")
        chosen = session.get(Survey, int(survey_id))
        if chosen is None:
            subscriber.awaiting = None
            return self._say(subscriber.language, "survey_none")
        question = survey.definition_of(chosen).question(int(index))
        if text:
            survey.answer(session, chosen, subscriber, question, text=text)
        return Answer([self._question(session, subscriber, chosen, int(index) + 1)])

    # --- helpers ----------------------------------------------------------------------------

    def _say(self, language: str, name: str, replace: bool = False, **context: object) -> Answer:
        return Answer([Reply(self.texts.say(name, language, **context), replace=replace)])

    def _language(self, session: Session, chat: Chat) -> str:
        found = subscribers.find(session, chat)
        return found.language if found else self._hinted(chat)

    @staticmethod
    def _hinted(chat: Chat) -> str:
        return "en" if chat.language_hint == "en" else "vi"
