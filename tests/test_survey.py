"""Surveys of information needs: a YAML file, `survey send` through campaigns, answers in the bot, results."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from cli import main
from outreach.bot_texts import BotTexts
from outreach.conversation import Conversation, Incoming
from outreach.db import Access, Store
from outreach.models import Campaign, CampaignKind, Delivery, Subscriber, SurveyAnswer
from outreach.subscribers import Chat
from tests.conftest import base_config

SURVEY = {
    "title": {"vi": "Nhu cầu thông tin của doanh nghiệp 2026", "en": "Business information needs 2026"},
    "intro": {"vi": "Ba câu hỏi ngắn.", "en": "Three short questions."},
    "questions": [
        {
            "id": "size",
            "kind": "single",
            "text": {"vi": "Doanh nghiệp của bạn có bao nhiêu lao động?", "en": "How many people work for you?"},
            "options": [
                {"id": "micro", "vi": "Dưới 10", "en": "Under 10"},
                {"id": "small", "vi": "10 đến 100", "en": "10 to 100"},
                {"id": "large", "vi": "Trên 100", "en": "Over 100"},
            ],
        },
        {
            "id": "needs",
            "kind": "multiple",
            "text": {"vi": "Bạn cần thông tin gì?", "en": "What information do you need?"},
            "options": [
                {"id": "tax", "vi": "Thuế", "en": "Tax"},
                {"id": "land", "vi": "Đất đai", "en": "Land"},
                {"id": "bids", "vi": "Đấu thầu", "en": "Procurement"},
            ],
        },
        {"id": "other", "kind": "text", "text": {"vi": "Góp ý khác?", "en": "Anything else?"}},
    ],
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = base_config()
    data["channels"]["outbox"] = {"dir": str(tmp_path / "outbox")}
    data["sources"] = []
    data["require_approval"] = False
    (tmp_path / "schedules.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (tmp_path / "surveys").mkdir()
    (tmp_path / "surveys" / "needs-2026.yaml").write_text(yaml.safe_dump(SURVEY, allow_unicode=True), encoding="utf-8")
    return tmp_path


@pytest.fixture
def run(folder: Path) -> Callable[..., Result]:
    def invoke(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(
            main,
            ["--config", str(folder / "schedules.yaml"), "--db", f"sqlite:///{folder / 'o.db'}", *args],
            env={"OUTREACH_TELEGRAM_TOKEN": "", "COLUMNS": "200"},
        )
        assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
        return result

    return invoke


def _subscribe(store: Store, chats: dict[str, str]) -> None:
    with store.sessions.begin() as session:
        for chat, language in chats.items():
            session.add(Subscriber(channel="telegram_bot", chat_id=chat, language=language, topics=["tax"]))


def _conversation(store: Store, folder: Path) -> Conversation:
    from channels import SETTINGS_MODELS
    from outreach.config import load_settings

    settings = load_settings(folder / "schedules.yaml", store.url, None, env={}, channel_models=SETTINGS_MODELS)
    return Conversation(store.sessions, settings, BotTexts())


def test_a_survey_is_sent_answered_in_the_bot_and_summarised(run: Callable[..., Result], folder: Path) -> None:
    run("init")
    with Store.open(f"sqlite:///{folder / 'o.db'}", Access.write) as store:
        _subscribe(store, {"11": "vi", "12": "vi", "21": "en"})
    sent = run("survey", "send", "needs-2026")
    assert "survey needs-2026 (vi): campaign" in sent.output
    assert "survey needs-2026 (en): campaign" in sent.output

    with Store.open(f"sqlite:///{folder / 'o.db'}", Access.write) as store:
        with store.sessions() as session:
            invitations = {d.target: d.text for d in session.scalars(select(Delivery))}
            kinds = set(session.scalars(select(Campaign.kind)))
        assert kinds == {CampaignKind.survey}
        assert set(invitations) == {"11", "12", "21"}
        assert "Nhu cầu thông tin của doanh nghiệp 2026" in invitations["11"]
        assert "/survey" in invitations["21"]
        assert "Business information needs 2026" in invitations["21"]

        bot = _conversation(store, folder)
        first = Chat("telegram_bot", "11")
        asked = bot.handle(Incoming(first, "11", command="survey"))
        assert "Câu 1/3" in asked.replies[0].text
        assert "Ba câu hỏi ngắn." in asked.replies[0].text
        assert [row[0].label for row in asked.replies[0].buttons] == ["Dưới 10", "10 đến 100", "Trên 100"]
        data = asked.replies[0].buttons[0][0].data
        second = bot.handle(Incoming(first, "11", button=data)).replies[0]  # micro
        assert "Câu 2/3" in second.text
        toggle_tax, toggle_land = second.buttons[0][0].data, second.buttons[1][0].data
        bot.handle(Incoming(first, "11", button=toggle_tax))
        shown = bot.handle(Incoming(first, "11", button=toggle_land)).replies[0]
        assert shown.buttons[0][0].label.startswith("✅")
        assert shown.buttons[1][0].label.startswith("✅")
        third = bot.handle(Incoming(first, "11", button=shown.buttons[-1][0].data)).replies[0]  # done
        assert "Câu 3/3" in third.text
        done = bot.handle(Incoming(first, "11", text="Cần thêm tin về   hóa đơn điện tử")).replies[0]
        assert "Cảm ơn" in done.text
        # A changed answer replaces the earlier one.
        bot.handle(Incoming(first, "11", button=data.rsplit(":", 1)[0] + ":1"))  # small instead of micro

        other = Chat("telegram_bot", "21")
        asked = bot.handle(Incoming(other, "21", command="survey")).replies[0]
        assert "Question 1/3" in asked.text
        bot.handle(Incoming(other, "21", button=asked.buttons[1][0].data))  # small
        with store.sessions() as session:
            assert session.scalar(select(func.count()).select_from(SurveyAnswer)) == 4

    out = folder / "answers.csv"
    results = run("survey", "results", "needs-2026", "--csv", str(out))
    assert "2 respondents" in results.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in results.output.splitlines()
        if line.startswith("│")
    }
    assert rows["10 đến 100 / 10 to 100"] == "2"
    assert rows["Dưới 10 / Under 10"] == "0"
    assert rows["Thuế / Tax"] == "1"
    assert rows["Cần thêm tin về hóa đơn điện tử"] == ""
    with out.open(encoding="utf-8-sig", newline="") as lines:
        exported = list(csv.DictReader(lines))
    assert len(exported) == 4
    assert {row["choices"] for row in exported if row["question"] == "needs"} == {"tax;land"}
    assert "respondent" in exported[0]
    assert not any(row["respondent"] == "11" for row in exported)  # numbered, never the chat

    report = json.loads(run("report", "--format", "json").output)
    [summary] = report["surveys"]
    assert (summary["title"], summary["respondents"]) == ("Nhu cầu thông tin của doanh nghiệp 2026", 2)
    assert summary["questions"][0]["counts"] == [
        {"label": "Dưới 10", "count": 0},
        {"label": "10 đến 100", "count": 2},
        {"label": "Trên 100", "count": 0},
    ]
    assert report["subscribers"]["by_status"] == {"active": 3}
    assert report["subscribers"]["by_language"] == {"vi": 2, "en": 1}


def test_a_broken_survey_file_says_where(run: Callable[..., Result], folder: Path) -> None:
    run("init")
    broken = dict(SURVEY, questions=[{"id": "x", "kind": "single", "text": {"vi": "a", "en": "b"}, "options": []}])
    (folder / "surveys" / "broken.yaml").write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = run("survey", "send", "broken", expect=1)
    assert "broken.yaml: questions.0" in result.output
    assert "at least two options" in result.output
    assert "no such survey file" in run("survey", "send", "missing", expect=1).output


def test_changed_questions_need_a_new_name(run: Callable[..., Result], folder: Path) -> None:
    run("init")
    run("survey", "send", "needs-2026")
    changed = dict(SURVEY, title={"vi": "Khác", "en": "Other"})
    (folder / "surveys" / "needs-2026.yaml").write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")
    assert "give the changed survey a new name" in run("survey", "send", "needs-2026", expect=1).output


def test_results_of_a_survey_never_sent(run: Callable[..., Result]) -> None:
    run("init")
    assert "no survey 'nope' was sent" in run("survey", "results", "nope", expect=1).output
