"""Everything the bot says, from templates under `templates/bot/` (`NAME.vi.j2`, `NAME.en.j2`).

No user-facing string lives in handler code: staff reword the bot by copying a
template into their own `--templates` folder. Button labels are one template per
language (`labels.LANG.j2`) that renders to a YAML mapping, so a label can use
the same Jinja as a reply. The markup is the front end's: Telegram's HTML mode
escapes values; a plain-text front end would not.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from outreach.packaged import TEMPLATES

FOLDER = "bot"


class BotTextError(Exception):
    """A bot template is missing or broken; names the file."""


class BotTexts:
    """Renders the bot's replies and button labels in a subscriber's language."""

    def __init__(self, override_dir: Path | None = None, markup: Literal["html", "plain"] = "html") -> None:
        self.folders = [str(p) for p in (override_dir, TEMPLATES) if p is not None]
        self.markup = markup
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.folders),
            autoescape=markup == "html",  # noqa: S701 - a plain-text front end shows no markup to escape
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._labels = lru_cache(maxsize=4)(self._load_labels)

    def say(self, name: str, language: str, **context: Any) -> str:
        """One reply's text."""
        template = self._template(name, language)
        try:
            return template.render(language=language, **context).strip()
        except jinja2.TemplateError as exc:
            raise BotTextError(f"{FOLDER}/{name}.{language}.j2: {exc}") from None

    def label(self, key: str, language: str) -> str:
        """A button's words."""
        labels = self._labels(language)
        if key not in labels:
            raise BotTextError(f"{FOLDER}/labels.{language}.j2 has no label {key!r}")
        return labels[key]

    def check(self, names: Sequence[str], languages: Sequence[str] = ("vi", "en")) -> None:
        """Compile every template the bot needs, so a broken one is found at start, not by a subscriber."""
        for language in languages:
            for name in names:
                self._template(name, language)
            self._labels(language)

    def _template(self, name: str, language: str) -> jinja2.Template:
        path = f"{FOLDER}/{name}.{language}.j2"
        try:
            return self.env.get_template(path)
        except jinja2.TemplateNotFound:
            raise BotTextError(f"no bot template {path} in {', '.join(self.folders)}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise BotTextError(f"{exc.filename or path}:{exc.lineno}: {exc.message}") from None

    def _load_labels(self, language: str) -> dict[str, str]:
        text = self._template("labels", language).render(language=language)
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BotTextError(f"{FOLDER}/labels.{language}.j2 is not a YAML mapping: {exc}") from None
        if not isinstance(loaded, dict):
            raise BotTextError(f"{FOLDER}/labels.{language}.j2 is not a YAML mapping")
        return {str(key): str(value) for key, value in loaded.items()}
