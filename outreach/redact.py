"""Keeping tokens out of log records that client libraries write.

Telegram puts the bot token in every request URL and facebook-sdk the Page token
in every GET's query string; httpx, urllib3 and PTB log those URLs. A filter on
those loggers replaces each known token with stars before any handler sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable


class HiddenSecrets(logging.Filter):
    """Replaces the given secrets with stars in the records of the given loggers, until `remove()`."""

    def __init__(self, secrets: Iterable[str], loggers: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]
        self.loggers = [logging.getLogger(name) for name in loggers]
        for logger in self.loggers:
            logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, ()
        return True

    def remove(self) -> None:
        """Stop filtering (the adapter is closed)."""
        for logger in self.loggers:
            logger.removeFilter(self)
