"""Who tapped a tracked link: a person, a chat app fetching a link card, or a bot.

Every chat and social app fetches a posted link to draw its card, and crawlers
fetch everything: counted as visits they would make every post look read. A
substring list misses most of them (crawlers name themselves in hundreds of
ways), so the decision combines the project's rules (`agent_rules.yaml`, data
shipped in the package, extended by the install's `tracker.agents`), the
community-kept `crawler-user-agents` list, and a positive check that the agent
is shaped like a person's browser (`ua-parser`): anything unrecognised is a bot,
not a visit. The order of the steps is explained at the top of the YAML file.

Agents repeat (a few thousand distinct ones a day), so each is judged once and
cached: on the tracker's hot path a known agent costs a dict lookup.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import ua_parser
import yaml
from pydantic import ValidationError, field_validator

from outreach.channel_config import Strict
from outreach.config import AgentPatterns, regular_expressions
from outreach.models import ClickKind

RULES_FILE = "agent_rules.yaml"  # in the `outreach` package
AGENT_LIMIT = 255  # the length of clicks.user_agent: agents are judged as they are stored
CACHE_SIZE = 65_536  # distinct agents remembered; a day's traffic has far fewer
_CACHED_LENGTH = 1024  # longer (hostile) agents are judged uncached, so the cache's memory stays bounded
_CHUNK = 25  # patterns per compiled regex: measured fastest for the ~1,500 of crawler-user-agents
_UNKNOWN = frozenset({"", "Other"})  # ua-parser's "no idea"
# A realistic browser, parsed once at start-up: ua-parser compiles its rules on first use (~0.3 s).
_WARM_UP = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"
)


class LibraryRules(Strict):
    """How the crawler-user-agents list is read: which tags mean a link card, which entries to leave out."""

    preview_tags: list[str]
    skip: list[str]  # exact pattern strings of the list


class AgentRules(AgentPatterns):
    """The packaged rules file: the install's three pattern lists plus the library and browser-shape settings."""

    crawler_user_agents: LibraryRules
    generic_bot: list[str]
    browser_shape: list[str]
    not_browsers: list[str]  # ua-parser families

    @field_validator("generic_bot", "browser_shape")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        return regular_expressions(value)


def load_rules() -> AgentRules:
    """The packaged rules; a broken file is a bug in the release, reported with its name."""
    text = resources.files("outreach").joinpath(RULES_FILE).read_text(encoding="utf-8")
    try:
        return AgentRules.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as error:
        raise ValueError(f"outreach/{RULES_FILE}: {error}") from None


# --- cleaning ------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1
_SURROGATES = re.compile(r"[\ud800-\udfff]")  # unencodable: a database driver would refuse the row


def clean_agent(raw: str) -> str:
    """The agent as people wrote it, fit to store and to judge.

    ASGI servers decode header bytes as Latin-1, so an agent sent in UTF-8
    ("Trình duyệt") arrives as mojibake: the bytes are recovered and decoded as
    UTF-8 (invalid sequences become U+FFFD). Text that cannot be Latin-1 bytes
    was decoded properly already and is kept. Control characters go, white
    space is collapsed, the text is NFC (as all stored text), and it is cut to
    the column's 255 characters.
    """
    try:
        text = raw.encode("latin-1").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        text = raw
    return _tidy(text)


def _tidy(text: str) -> str:
    """Everything `clean_agent` does but the re-decoding, which must happen once only."""
    text = _CONTROLS.sub("", _SPACES.sub(" ", text))  # tabs and newlines become spaces first
    text = unicodedata.normalize("NFC", _SURROGATES.sub("\ufffd", text))
    return _SPACES.sub(" ", text).strip()[:AGENT_LIMIT].rstrip()


# --- patterns --------------------------------------------------------------------


class Searcher(Protocol):
    """A compiled pattern of `re` or of RE2."""

    def search(self, text: str) -> object: ...


def _folded(pattern: str) -> str | None:
    """The pattern for lowercased text, or None where lowercasing could change what it means.

    Matching lowercased text with lowercased patterns is about ten times faster
    than re.IGNORECASE over ~1,500 alternatives. Escapes keep their case (`\\S`
    is not `\\s`); escapes that name characters by number are left to IGNORECASE.
    """
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped in ("x", "u", "U", "N") or escaped.isdigit():
                return None
            out.append(char + escaped)
        else:
            out.append(char.lower())
    folded = "".join(out)
    try:
        re.compile(folded)
    except re.error:
        return None
    return folded


def _re2_joined(patterns: Sequence[str]) -> tuple[list[Searcher], list[str]]:
    """All patterns RE2 reads in one RE2 alternation, and the patterns left for `re`.

    RE2 searches an alternation of hundreds of patterns in one linear pass, where
    `re` tries them one after another: a never-seen agent costs ~0.1 ms, not ~0.6 ms.
    Without google-re2 installed, everything is left for `re`.
    """
    try:
        import re2
    except ImportError:
        return [], list(patterns)
    options = re2.Options()
    options.max_mem = 64 << 20  # room for the DFA of ~1,500 alternatives
    options.log_errors = False  # a pattern RE2 cannot read goes to `re`, without a line on stderr
    accepted, rest = [], []
    for pattern in patterns:
        try:
            re2.compile(pattern, options)
            accepted.append(pattern)
        except re2.error:  # look-arounds, back-references: `re` keeps them
            rest.append(pattern)
    if not accepted:
        return [], rest
    return [re2.compile("|".join(f"(?:{p})" for p in accepted), options)], rest


def _compiled(patterns: Sequence[str], flags: int) -> list[Searcher]:
    """Patterns joined into a few big alternations; one that will not join is compiled on its own."""
    regexes: list[Searcher] = []
    if not flags:
        regexes, patterns = _re2_joined(patterns)
    for start in range(0, len(patterns), _CHUNK):
        chunk = patterns[start : start + _CHUNK]
        try:
            regexes.append(re.compile("|".join(f"(?:{p})" for p in chunk), flags))
        except re.error:  # e.g. a global inline flag, valid only at the start of a pattern
            regexes += [re.compile(p, flags | re.IGNORECASE) for p in chunk]
    return regexes


@dataclass(frozen=True)
class PatternSet:
    """Case-insensitive regular expressions, searched anywhere in an agent."""

    patterns: tuple[str, ...]
    _lowered: tuple[Searcher, ...]  # for the lowercased agent
    _as_is: tuple[Searcher, ...]  # IGNORECASE, for the agent as it is

    @classmethod
    def of(cls, patterns: Iterable[str]) -> PatternSet:
        kept = tuple(dict.fromkeys(patterns))  # a pattern given twice is searched once
        folded = [_folded(p) for p in kept]
        lowered = _compiled([f for f in folded if f is not None], 0)
        as_is = _compiled([p for p, f in zip(kept, folded, strict=True) if f is None], re.IGNORECASE)
        return cls(kept, tuple(lowered), tuple(as_is))

    def search(self, agent: str, lowered: str) -> bool:
        """Whether any pattern matches (`lowered` is `agent.lower()`, computed once by the caller)."""
        return any(r.search(lowered) for r in self._lowered) or any(r.search(agent) for r in self._as_is)

    def which(self, agent: str) -> str | None:
        """The first pattern that matches, to explain a decision (slow: one search per pattern)."""
        return next((p for p in self.patterns if re.search(p, agent, re.IGNORECASE)), None)


@dataclass(frozen=True)
class _Step:
    """One step of the decision: if a pattern matches, the agent is `kind`."""

    name: str
    kind: ClickKind
    patterns: PatternSet


def _library() -> list[dict[str, Any]]:
    """crawler-user-agents' entries (pattern, instances, tags, ...), imported when first needed."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    return [entry for entry in CRAWLER_USER_AGENTS_DATA if isinstance(entry, dict) and entry.get("pattern")]


# --- the classifier ----------------------------------------------------------------


class Classifier:
    """Decides a click's kind from its method and user agent; build one per process and reuse it.

    Construction compiles every pattern and warms ua-parser (about half a second),
    so the first click does not pay for it. `extra` is the install's
    `tracker.agents`: its patterns are tried before all others.
    """

    def __init__(self, extra: AgentPatterns | None = None) -> None:
        rules = load_rules()
        extra = extra or AgentPatterns()
        self._first = (
            _Step("the install's preview patterns", ClickKind.preview, PatternSet.of(extra.preview)),
            _Step("the install's bot patterns", ClickKind.bot, PatternSet.of(extra.bot)),
            _Step("the install's human patterns", ClickKind.human, PatternSet.of(extra.human)),
            _Step("a packaged preview rule", ClickKind.preview, PatternSet.of(rules.preview)),
            _Step("a packaged bot rule", ClickKind.bot, PatternSet.of(rules.bot)),
        )
        self._in_app = PatternSet.of(rules.human)
        library = rules.crawler_user_agents
        skipped, preview_tags = set(library.skip), set(library.preview_tags)
        entries = [e for e in _library() if e["pattern"] not in skipped]
        is_preview = [bool(preview_tags & set(e.get("tags") or ())) for e in entries]
        self._library = (
            _Step(
                "crawler-user-agents (link card)",
                ClickKind.preview,
                PatternSet.of(e["pattern"] for e, p in zip(entries, is_preview, strict=True) if p),
            ),
            _Step(
                "crawler-user-agents",
                ClickKind.bot,
                PatternSet.of(e["pattern"] for e, p in zip(entries, is_preview, strict=True) if not p),
            ),
        )
        self._generic = _Step("a generic bot rule", ClickKind.bot, PatternSet.of(rules.generic_bot))
        self._shape = PatternSet.of(rules.browser_shape)
        self._not_browsers = frozenset(rules.not_browsers) | _UNKNOWN
        ua_parser.parse(_WARM_UP)
        self._cached = functools.lru_cache(maxsize=CACHE_SIZE)(self._decide)

    def kind(self, method: str, user_agent: str) -> ClickKind:
        """human, preview (a chat or social app fetching a link card), bot, or head (never a click).

        `user_agent` is best given as `clean_agent` stored it, so that a stored
        click is judged again (`outreach clicks reclassify`) exactly as it was live.
        """
        if method.upper() == "HEAD":
            return ClickKind.head
        return self._judged(user_agent)[0]

    def explain(self, user_agent: str) -> str:
        """Why a GET with this agent gets its kind, naming the rule, for people checking a decision (slow)."""
        kind, why = self._decide(user_agent, explain=True)
        return f"{kind.value}: {why}"

    def _judged(self, user_agent: str) -> tuple[ClickKind, str]:
        if len(user_agent) <= _CACHED_LENGTH:
            return self._cached(user_agent)
        return self._decide(user_agent)

    def _decide(self, raw: str, explain: bool = False) -> tuple[ClickKind, str]:
        """The kind and, in words, why; `explain` also names the pattern (one search per pattern: slow)."""

        def named(step: str, patterns: PatternSet) -> str:
            return f"{step} ({patterns.which(agent)!r})" if explain else step

        agent = _tidy(raw)
        if not agent:
            return ClickKind.bot, "no user agent"
        lowered = agent.lower()
        for step in self._first:
            if step.patterns.search(agent, lowered):
                return step.kind, named(step.name, step.patterns)
        in_app = self._in_app.search(agent, lowered)
        if not in_app:
            for step in self._library:
                if step.patterns.search(agent, lowered):
                    return step.kind, named(step.name, step.patterns)
        if self._generic.patterns.search(agent, lowered):
            return self._generic.kind, named(self._generic.name, self._generic.patterns)
        return self._by_shape(agent, lowered, named("an in-app browser", self._in_app) if in_app else None)

    def _by_shape(self, agent: str, lowered: str, in_app: str | None) -> tuple[ClickKind, str]:
        """A person needs a browser's layout, a browser (or in-app token), and an OS; a bot is anything else."""
        if self._shape.patterns and not self._shape.search(agent, lowered):  # an empty list: no layout check
            return ClickKind.bot, "not shaped like a browser's agent"
        parsed = ua_parser.parse(agent)
        if parsed.device is not None and parsed.device.family == "Spider":
            return ClickKind.bot, "ua-parser: a spider"
        family = parsed.user_agent.family if parsed.user_agent else ""
        if in_app is None and family in self._not_browsers:
            return ClickKind.bot, f"ua-parser: not a browser ({family or 'unknown'})"
        system = parsed.os.family if parsed.os else ""
        if system in _UNKNOWN:
            return ClickKind.bot, f"ua-parser: no operating system ({family or 'unknown'})"
        return ClickKind.human, f"{in_app or family} on {system}"
