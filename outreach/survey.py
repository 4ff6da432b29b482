"""Surveys of information needs (the seed letter's plan, 2.2(b)): described in YAML, answered in the bot.

Staff write `surveys/NAME.yaml` beside schedules.yaml: a title and questions
(single or multiple choice, or free text), each in Vietnamese and English. The
survey is stored as sent, so answers always refer to the questions people saw;
sending changed questions under the same name is refused. Each subscriber has
at most one answer per question: answering again replaces it.
"""

from __future__ import annotations

import csv
import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from outreach.models import Subscriber, Survey, SurveyAnswer, utcnow
from outreach.text import nfc, squash

MAX_TEXT_ANSWER = 1000
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,59}$"


class SurveyError(Exception):
    """A survey file that cannot be used, or a survey that cannot be sent or read; says what and where."""


class Both(BaseModel):
    """A text in both languages."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vi: str = Field(min_length=1, max_length=1000)
    en: str = Field(min_length=1, max_length=1000)

    def get(self, language: str) -> str:
        """The text in a language (Vietnamese when unknown)."""
        return self.en if language == "en" else self.vi


class Kind(enum.StrEnum):
    """How a question is answered."""

    single = "single"
    multiple = "multiple"
    text = "text"


class Option(BaseModel):
    """One choice of a question; its id is what is stored and exported."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,19}$")
    vi: str = Field(min_length=1, max_length=60)
    en: str = Field(min_length=1, max_length=60)

    def label(self, language: str) -> str:
        """The option's words in a language."""
        return self.en if language == "en" else self.vi


class Question(BaseModel):
    """One question; choices need options, free text must have none."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    kind: Kind
    text: Both
    options: list[Option] = Field(default=[], max_length=12)

    @model_validator(mode="after")
    def _options_fit_kind(self) -> Question:
        if self.kind is Kind.text and self.options:
            raise ValueError("a free-text question has no options")
        if self.kind is not Kind.text and len(self.options) < 2:
            raise ValueError(f"a {self.kind.value}-choice question needs at least two options")
        ids = [option.id for option in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError("option ids must differ")
        return self


class Definition(BaseModel):
    """A whole survey as its YAML file describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN)
    title: Both
    intro: Both | None = None
    questions: list[Question] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _unique_questions(self) -> Definition:
        ids = [question.id for question in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must differ")
        return self

    def question(self, index: int) -> Question:
        """The question at a position (IndexError when there is none)."""
        return self.questions[index]


def survey_path(folder: Path, name_or_path: str) -> Path:
    """A survey named NAME lives in `<folder>/surveys/NAME.yaml`; a path is taken as given."""
    given = Path(name_or_path)
    if given.suffix in (".yaml", ".yml") or given.exists():
        return given if given.is_absolute() else Path.cwd() / given
    return folder / "surveys" / f"{name_or_path}.yaml"


def load_definition(path: Path) -> Definition:
    """The survey in a YAML file, checked; SurveyError names the file and the key that is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SurveyError(f"{path}: no such survey file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SurveyError(f"{path}: cannot be read: {exc}") from None
    if isinstance(raw, dict) and "name" not in raw:
        raw = {"name": path.stem, **raw}
    try:
        definition = Definition.model_validate(_nfc(raw))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'top'}: {err['msg']}" for err in exc.errors())
        raise SurveyError(f"{path}: {problems}") from None
    if definition.name != path.stem:
        raise SurveyError(f"{path}: name {definition.name!r} differs from the file's name ({path.stem})")
    return definition


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, list):
        return [_nfc(each) for each in value]
    if isinstance(value, dict):
        return {key: _nfc(each) for key, each in value.items()}
    return value


def store(session: Session, definition: Definition) -> Survey:
    """The survey's row: made on first send; the same questions again reuse it; changed ones are refused."""
    stored = session.scalar(select(Survey).where(Survey.name == definition.name))
    wanted = definition.model_dump(mode="json")
    if stored is None:
        stored = Survey(name=definition.name, definition=wanted)
        session.add(stored)
        session.flush()
    elif stored.definition != wanted:
        raise SurveyError(
            f"survey {definition.name!r} was sent before with other questions; answers must match the questions "
            "people saw: give the changed survey a new name"
        )
    return stored


def definition_of(survey: Survey) -> Definition:
    """The questions a stored survey asked."""
    return Definition.model_validate(survey.definition)


def by_name(session: Session, name: str) -> Survey:
    """A stored (sent) survey, or SurveyError listing the ones there are."""
    found = session.scalar(select(Survey).where(Survey.name == name))
    if found is None:
        known = ", ".join(session.scalars(select(Survey.name).order_by(Survey.id))) or "none yet"
        raise SurveyError(f"no survey {name!r} was sent (sent: {known}); send one with `outreach survey send NAME`")
    return found


def newest(session: Session) -> Survey | None:
    """The survey sent last, which a bare /survey opens."""
    return session.scalar(select(Survey).order_by(Survey.id.desc()).limit(1))


def answer(
    session: Session,
    survey: Survey,
    subscriber: Subscriber,
    question: Question,
    choices: list[str] | None = None,
    text: str | None = None,
) -> None:
    """Store (or replace) one subscriber's answer to one question."""
    known = {option.id for option in question.options}
    picked = [choice for choice in dict.fromkeys(choices or []) if choice in known]
    if question.kind is Kind.single and len(picked) > 1:
        picked = picked[:1]
    note = nfc(squash(text))[:MAX_TEXT_ANSWER] if text else None
    session.execute(
        delete(SurveyAnswer).where(
            SurveyAnswer.survey_id == survey.id,
            SurveyAnswer.subscriber_id == subscriber.id,
            SurveyAnswer.question == question.id,
        )
    )
    session.add(
        SurveyAnswer(
            survey_id=survey.id,
            subscriber_id=subscriber.id,
            question=question.id,
            choices=picked,
            text=note,
            answered_at=utcnow(),
        )
    )
    session.flush()


def answers_of(session: Session, survey: Survey, subscriber: Subscriber) -> dict[str, SurveyAnswer]:
    """What one subscriber answered so far, by question id."""
    rows = session.scalars(
        select(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id, SurveyAnswer.subscriber_id == subscriber.id)
    )
    return {row.question: row for row in rows}


@dataclass
class QuestionResult:
    """One question's answers: counts per option, or the free texts."""

    question: Question
    respondents: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


@dataclass
class Results:
    """A survey's answers, summarised per question."""

    name: str
    title: Both
    respondents: int
    questions: list[QuestionResult]
    rows: list[tuple[int, str, list[str], str | None, str]]  # (respondent no., question, choices, text, when)


def results(session: Session, name: str) -> Results:
    """Counts per option and free texts per question; respondents are numbered, never named."""
    survey = by_name(session, name)
    definition = definition_of(survey)
    by_question = {
        q.id: QuestionResult(q, counts=dict.fromkeys((o.id for o in q.options), 0)) for q in definition.questions
    }
    numbers: dict[int, int] = {}
    rows: list[tuple[int, str, list[str], str | None, str]] = []
    query = (
        select(SurveyAnswer)
        .where(SurveyAnswer.survey_id == survey.id)
        .order_by(SurveyAnswer.subscriber_id, SurveyAnswer.id)
    )
    picked: Counter[tuple[str, str]] = Counter()
    for row in session.scalars(query):
        number = numbers.setdefault(row.subscriber_id, len(numbers) + 1)
        rows.append((number, row.question, list(row.choices), row.text, row.answered_at.isoformat()))
        result = by_question.get(row.question)
        if result is None:
            continue
        result.respondents += 1
        picked.update((row.question, choice) for choice in row.choices)
        if row.text:
            result.texts.append(row.text)
    for (question, choice), count in picked.items():
        if choice in by_question[question].counts:
            by_question[question].counts[choice] = count
    return Results(definition.name, definition.title, len(numbers), list(by_question.values()), rows)


def write_csv(found: Results, path: Path) -> int:
    """One line per answer (respondent number, question, choices, text, time); returns the lines written."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:  # the BOM lets Excel read Vietnamese right
        writer = csv.writer(out)
        writer.writerow(["survey", "respondent", "question", "choices", "text", "answered_at"])
        for number, question, choices, text, when in found.rows:
            writer.writerow([found.name, number, question, ";".join(choices), text or "", when])
    return len(found.rows)
