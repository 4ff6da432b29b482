"""A Telegram user, played by a test or the demo, talking to a bot through the Bot API emulator."""

from __future__ import annotations

import time
from collections.abc import Callable

from outreach.sandbox.telegram import TelegramEmulator, TelegramMessage


class ChatUser:
    """A person in a private chat with a bot on the emulator: writes, taps buttons, reads the answers.

    The tests and the demo's scripted subscriber; every wait is bounded, so a bot that
    does not answer fails the caller with what it said last.
    """

    def __init__(self, emulator: TelegramEmulator, user_id: int, language: str = "vi") -> None:
        self.emulator, self.id, self.language = emulator, user_id, language

    def _latest(self) -> list[TelegramMessage]:
        try:
            return self.emulator.posts(self.id)
        except KeyError:
            return []

    def says(self, words: str) -> TelegramMessage:
        """Write to the bot; the bot's newest message after it answered."""
        before = len(self._latest())
        self.emulator.user_sends(self.id, words, language_code=self.language)
        return self._wait(lambda: len(self._latest()) > before)

    def tap(self, message: TelegramMessage, label_part: str) -> TelegramMessage:
        """Tap the button whose label holds `label_part`."""
        return self.taps(message, self.button(message, label_part))

    def taps(self, message: TelegramMessage, data: str) -> TelegramMessage:
        """Tap a button (its data as given, so it can be forged); the bot's newest message after it."""
        answered = len(self.emulator.callback_answers)
        self.emulator.user_taps(self.id, message.message_id, data)
        self._wait(lambda: len(self.emulator.callback_answers) > answered)
        time.sleep(0.15)  # an edit or a new message follows the answer
        return self._latest()[-1]

    def button(self, message: TelegramMessage, label_part: str) -> str:
        """The data of the button whose label holds `label_part`."""
        for row in (message.reply_markup or {}).get("inline_keyboard", []):
            for button in row:
                if label_part in button["text"]:
                    return str(button["callback_data"])
        raise LookupError(f"no button {label_part!r} in {message.reply_markup}")

    def labels(self, message: TelegramMessage) -> list[str]:
        """The button labels under a message, row by row."""
        return [b["text"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for b in row]

    def _wait(self, condition: Callable[[], bool]) -> TelegramMessage:
        deadline = time.monotonic() + 10
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not answer; it last said {self._latest()[-1:]}")
            time.sleep(0.01)
        time.sleep(0.05)  # a second message of the same answer
        return self._latest()[-1]
