"""Filing items under topics: a source's defaults plus keyword rules."""

from __future__ import annotations

import re
from collections.abc import Iterable

from outreach.config import Topic
from outreach.text import fold


class TopicMatcher:
    """Matches folded keywords as whole words: 'dat dai' finds 'Đất đai'.

    Folding also makes 'thuế' (tax) and 'thuê' (rent) one word; that is the price of
    accent-free rules, so prefer keywords of two words where one is ambiguous.
    Each topic's keywords compile once into one alternation.
    """

    def __init__(self, topics: Iterable[Topic]) -> None:
        self._rules: list[tuple[str, re.Pattern[str]]] = []
        for topic in topics:
            words = sorted({fold(k).strip() for k in topic.keywords if k.strip()}, key=len, reverse=True)
            if words:
                alternation = "|".join(re.escape(w) for w in words)
                self._rules.append((topic.id, re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")))

    def match(self, text: str, defaults: Iterable[str] = ()) -> list[str]:
        """Topic ids for a text: the defaults first, then keyword hits, no repeats."""
        return self.match_folded(fold(text), defaults)

    def match_folded(self, folded: str, defaults: Iterable[str] = ()) -> list[str]:
        """`match` for text already passed through `fold` (ingest folds once for both)."""
        found = list(dict.fromkeys(defaults))
        for topic_id, pattern in self._rules:
            if topic_id not in found and pattern.search(folded):
                found.append(topic_id)
        return found
