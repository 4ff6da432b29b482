"""Both emulators running, with the pages, channels and tokens a config names: the demo's platforms.

`EmulatedPlatforms` starts a Graph API and a Bot API emulator, creates a page or
a chat for each configured target, and gives back the same settings pointed at
them with tokens in the environment, so the demo runs the production adapters and
client libraries end to end. One target is left without a token on purpose: it
shows the outbox standing in for a platform.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

from outreach.channel_config import RateSettings, Target
from outreach.config import Secrets, Settings
from outreach.sandbox.graph import GraphEmulator
from outreach.sandbox.telegram import TelegramEmulator

# Which setting of each platform's block says where its API is.
ENDPOINT_SETTING = {"facebook": "graph_url", "telegram_channel": "api_url", "telegram_bot": "api_url"}
TokenVariable = Callable[[str, Target], str]  # (channel, target) -> the variable holding its token
NO_TOKEN = "OUTREACH_DEMO_UNSET_TOKEN"  # noqa: S105 - a variable name, left unset on purpose
# The emulators take posts as fast as they come: the demo need not wait at a real page's pace.
EMULATOR_RATE = RateSettings(per_second=100, burst=100, per_target_per_second=100, per_target_burst=100)


class EmulatedPlatforms:
    """A running Graph API and Bot API emulator, set up for a config's targets."""

    def __init__(self) -> None:
        self.graph = GraphEmulator()
        self.telegram = TelegramEmulator()
        self._bot_token = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> EmulatedPlatforms:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.graph)
            stack.enter_context(self.telegram)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def point(self, settings: Settings, token_variable: TokenVariable) -> Settings:
        """The settings with each emulated channel's API here and a token for all but the last target."""
        enabled = settings.schedule.channels.enabled()
        emulated = [(name, t) for name, block in enabled.items() if name in ENDPOINT_SETTING for t in block.targets]
        if len(emulated) > 1:  # the last target gets a variable of its own, left unset: the outbox
            name, target = emulated[-1]
            emulated[-1] = (name, target.model_copy(update={"token_env": NO_TOKEN}))
        environment: dict[str, str | None] = {}
        bot_token = self._bot_token = f"7000000001:{secrets.token_urlsafe(27)}"
        self.telegram.add_bot(bot_token)
        for number, (name, target) in enumerate(emulated):
            if target.token_env == NO_TOKEN:
                continue
            if name == "facebook":
                token = f"EAAdemo{secrets.token_hex(20)}"
                self.graph.add_page(target.id, target.name or target.id, token)
            else:
                token = bot_token
                username = target.id.removeprefix("@") if target.id.startswith("@") else None
                chat_id = int(target.id) if not username else -1_001_000_000_000 - number
                self.telegram.add_chat(chat_id, username=username, title=target.name or target.id)
            environment[token_variable(name, target)] = token
        targets: dict[str, list[Target]] = {}
        for name, target in emulated:
            targets.setdefault(name, []).append(target)
        platforms = {}
        for name, block in settings.schedule.channels.platforms.items():
            update: dict[str, object] = {}
            if name in targets:
                update = {ENDPOINT_SETTING[name]: self._endpoint(name), "targets": targets[name], "rate": EMULATOR_RATE}
            elif block.enabled and block.audience == "subscribers" and name in ENDPOINT_SETTING:
                # A bot: its subscribers are its targets; the same emulated bot answers them.
                environment[token_variable(name, Target(id="*"))] = bot_token
                update = {ENDPOINT_SETTING[name]: self._endpoint(name), "rate": EMULATOR_RATE}
            platforms[name] = block.model_copy(update=update) if update else block
        channels = settings.schedule.channels.model_copy(update={"platforms": platforms})
        return replace(
            settings,
            schedule=settings.schedule.model_copy(update={"channels": channels}),
            secrets=Secrets(environment),
        )

    def first_posts(self) -> list[tuple[str, str]]:
        """What each emulated platform shows first: (where, text), for people to see."""
        shown: list[tuple[str, str]] = []
        page = self.graph.posts()
        if page:
            shown.append(
                (f"the emulated Facebook Page {page[0].page_id} now shows (post {page[0].id})", page[0].message or "")
            )
        texts = [message for message in self.telegram.messages if message.text]
        posts = [message for message in texts if message.chat_id < 0]  # channels and groups
        if posts:
            shown.append((f"the emulated Telegram channel {posts[0].chat_id} now shows", posts[0].text or ""))
        # A subscriber's chat: the bot's last message there is the news it was sent.
        private = [message for message in texts if message.chat_id > 0 and "/r/" in (message.text or "")]
        if private:
            shown.append((f"the bot's message in subscriber {private[-1].chat_id}'s chat", private[-1].text or ""))
        return shown

    def _endpoint(self, channel: str) -> str:
        return self.graph.url if channel == "facebook" else self.telegram.url

    @property
    def bot_token(self) -> str:
        """The emulated bot's token (in the environment `point` returned)."""
        return self._bot_token
