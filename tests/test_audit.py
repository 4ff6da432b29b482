"""The coverage audit on a small fixed data set, every figure counted by hand, on SQLite and PostgreSQL.

The set, as of 28 November 2026 noon in Quảng Ngãi: items 5, 40, 45 and 120 days
old, one 400 days old, one dated in the future; sections mapped by a URL path, by
topics, by a topic and a source; a required section published only long ago
(missing), two published only 40-45 days ago (stale), and two optional sections.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outreach.audit import Coverage, Row, coverage, exit_code, render_json, render_text
from outreach.config import Schedule
from outreach.db import Store
from outreach.models import Item, Source
from tests.conftest import base_config

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=ZONE)
PORTAL = "https://quangngai.gov.vn"

TOPICS = [
    {"id": "tax", "label": {"vi": "Thuế", "en": "Tax"}, "keywords": ["thuế"]},
    {"id": "investment", "label": {"vi": "Đầu tư", "en": "Investment"}, "keywords": ["đầu tư"]},
    {"id": "procurement", "label": {"vi": "Đấu thầu", "en": "Procurement"}, "keywords": ["đấu thầu"]},
    {"id": "planning-land", "label": {"vi": "Đất đai", "en": "Land"}, "keywords": ["đất đai"]},
]
SOURCES = [
    {"name": "portal-news", "url": f"{PORTAL}/rss/tin-tuc.rss"},
    {"name": "portal-english", "url": f"{PORTAL}/en/rss/news.rss", "language": "en"},
]
SECTIONS = [
    {"id": "legal", "label": {"vi": "Văn bản pháp luật", "en": "Legal documents"}, "paths": ["/van-ban-phap-luat/"]},
    {"id": "procurement", "label": {"vi": "Mua sắm công", "en": "Public procurement"}, "topics": ["procurement"]},
    {
        "id": "investment",
        "label": {"vi": "Thu hút đầu tư", "en": "Investment promotion"},
        "topics": ["investment"],
        "sources": ["portal-english"],
    },
    {"id": "budget", "label": {"vi": "Ngân sách", "en": "Budget"}, "paths": ["^/ngan-sach/"]},
    {"id": "tax", "label": {"vi": "Chính sách thuế", "en": "Tax policy"}, "topics": ["tax"]},
    {"id": "news", "label": {"vi": "Tin tức", "en": "News"}, "sources": ["portal-news"], "required": False},
    {"id": "land", "label": {"vi": "Đất đai", "en": "Land"}, "topics": ["planning-land"], "required": False},
]


def schedule(**audit: Any) -> Schedule:
    """The repository's config with these topics, sources and audit sections."""
    data = base_config()
    data.update(topics=TOPICS, sources=SOURCES, audit={"sections": SECTIONS, **audit})
    return Schedule.model_validate(data)


def ago(days: int, hours: int = 0) -> datetime:
    """A moment before NOW, as the store keeps it (UTC)."""
    return (NOW - timedelta(days=days, hours=hours)).astimezone(UTC)


# (source, guid, path, topics, published)
ITEMS = [
    # 2026-11-23 06:00 local is still 22 November in UTC: the newest date must be the local one.
    ("portal-news", "law-5", "/van-ban-phap-luat/quyet-dinh-12.html", [], ago(5, 6)),
    ("portal-news", "law-120", "/van-ban-phap-luat/nghi-quyet-3.html", ["tax"], ago(120)),
    ("portal-news", "bid-5", "/tin-tuc/moi-thau.html", ["procurement"], ago(5)),
    ("portal-news", "bid-45", "/tin-tuc/dau-thau-du-an.html", ["procurement", "investment"], ago(45)),
    ("portal-english", "invest-40", "/en/news/investors.html", [], ago(40)),
    ("portal-news", "tax-45", "/tin-tuc/hoan-thue.html", ["tax"], ago(45)),
    ("portal-news", "tax-120", "/tin-tuc/to-khai-thue.html", ["tax"], ago(120)),
    ("portal-news", "budget-400", "/ngan-sach/du-toan-2025.html", [], ago(400)),
    ("portal-news", "tax-future", "/tin-tuc/thue-sap-toi.html", ["tax"], ago(-2)),  # misdated: not counted
]


def add(store: Store, *items: tuple[str, str, str, list[str], datetime]) -> None:
    """Store items, creating their sources on first use."""
    with store.sessions.begin() as session:
        sources = {source.name: source for source in session.query(Source)}
        for name, guid, path, topics, published in items:
            if name not in sources:
                sources[name] = Source(name=name, url=f"{PORTAL}/rss/{name}.rss", language="vi")
                session.add(sources[name])
                session.flush()
            session.add(
                Item(
                    source_id=sources[name].id,
                    guid=guid,
                    url=PORTAL + path,
                    title=guid,
                    published_at=published,
                    language="vi",
                    topics=topics,
                )
            )


def audit(store: Store, configured: Schedule | None = None) -> Coverage:
    with store.sessions() as session:
        return coverage(session, configured or schedule(), NOW)


def by_id(rows: tuple[Row, ...]) -> dict[str, tuple[tuple[int, ...], str | None, str]]:
    """Each row's counts, newest local date and state."""
    return {
        row.id: (
            row.tally.counts,
            None if row.tally.newest is None else row.tally.newest.astimezone(ZONE).date().isoformat(),
            row.state,
        )
        for row in rows
    }


@pytest.fixture
def filled(store: Store) -> Store:
    add(store, *ITEMS)
    return store


def test_sections_by_path_topic_and_source(filled: Store) -> None:
    result = audit(filled)
    assert result.windows_days == (30, 90)
    assert by_id(result.sections) == {
        "legal": ((1, 1), "2026-11-23", "ok"),  # by path; the 120-day one is outside both windows
        "procurement": ((1, 2), "2026-11-23", "ok"),
        "investment": ((0, 2), "2026-10-19", "stale"),  # a topic and a source, each once
        "budget": ((0, 0), "2025-10-24", "missing"),  # newest found beyond the windows
        "tax": ((0, 1), "2026-10-14", "stale"),  # the future item counts nowhere
        "news": ((2, 4), "2026-11-23", "ok"),
        "land": ((0, 0), None, "missing"),
    }
    assert [row.id for row in result.sections if row.problem] == ["investment", "budget", "tax"]
    assert [row.id for row in result.required] == ["legal", "procurement", "investment", "budget", "tax"]


def test_topics_and_unfiled(filled: Store) -> None:
    result = audit(filled)
    assert by_id(result.topics) == {
        "tax": ((0, 1), "2026-10-14", "stale"),
        "investment": ((0, 1), "2026-10-14", "stale"),
        "procurement": ((1, 2), "2026-11-23", "ok"),
        "planning-land": ((0, 0), None, "missing"),
    }
    assert not any(row.problem for row in result.topics)  # for information only
    assert result.unfiled.counts == (1, 2)  # law-5 and invest-40; budget-400 is outside
    assert result.unfiled.newest == ago(5, 6)


def test_window_edges_and_configured_windows(store: Store) -> None:
    add(
        store,
        ("portal-news", "at-30", "/tin-tuc/a.html", ["tax"], ago(30)),
        ("portal-news", "past-30", "/tin-tuc/b.html", ["tax"], ago(30) - timedelta(seconds=1)),
        ("portal-news", "at-now", "/tin-tuc/c.html", ["tax"], ago(0)),
    )
    result = audit(store, schedule(windows_days=[90, 7, 30]))
    assert result.windows_days == (7, 30, 90)
    assert by_id(result.topics)["tax"] == ((1, 2, 3), "2026-11-28", "ok")
    assert "7 ngày qua" in render_text(result, "vi", width=200)


def test_exit_code_fails_only_for_a_missing_required_section(filled: Store) -> None:
    assert exit_code(audit(filled)) == 1
    add(filled, ("portal-news", "budget-60", "/ngan-sach/quyet-toan.html", [], ago(60)))
    result = audit(filled)
    assert by_id(result.sections)["budget"] == ((0, 1), "2026-09-29", "stale")
    assert exit_code(result) == 0  # stale sections and the missing optional one do not fail cron


def cells(text: str, label: str) -> list[str]:
    """The cells of the table line that starts with `label`."""
    for line in text.splitlines():
        parts = [part.strip() for part in re.split("[│┃]", line)[1:-1]]
        if parts and parts[0] == label:
            return parts
    raise AssertionError(f"no row {label!r} in:\n{text}")


def test_text_in_vietnamese(filled: Store) -> None:
    text = render_text(audit(filled), "vi", width=200)
    assert "Độ phủ thông tin trên Cổng (chỉ số 3.11; Nghị định 42/2022/NĐ-CP), tính đến 2026-11-28 12:00" in text
    assert cells(text, "Mục") == ["Mục", "30 ngày qua", "90 ngày qua", "Mới nhất", "Trạng thái"]
    assert cells(text, "Văn bản pháp luật") == ["Văn bản pháp luật", "1", "1", "2026-11-23", "đạt"]
    assert cells(text, "Thu hút đầu tư") == ["Thu hút đầu tư", "0", "2", "2026-10-19", "chưa cập nhật"]
    assert cells(text, "Ngân sách") == ["Ngân sách", "0", "0", "2025-10-24", "thiếu"]
    assert cells(text, "Đất đai (không bắt buộc)") == ["Đất đai (không bắt buộc)", "0", "0", "-", "thiếu"]
    assert cells(text, "Chủ đề")[0] == "Chủ đề"
    assert cells(text, "Đất đai") == ["Đất đai", "0", "0", "-", "thiếu"]  # the topic, not the section
    assert cells(text, "Chưa xếp chủ đề nào") == ["Chưa xếp chủ đề nào", "1", "2", "2026-11-23", ""]
    assert "1 trên 5 mục bắt buộc không có tin nào trong 90 ngày qua: Ngân sách" in text
    assert "Chưa cập nhật trong 30 ngày qua: Thu hút đầu tư, Chính sách thuế" in text


def test_text_in_english(filled: Store) -> None:
    text = render_text(audit(filled), "en", width=200)
    assert "Portal coverage (indicator 3.11; Decree 42/2022/NĐ-CP) as of 2026-11-28 12:00 (Asia/Ho_Chi_Minh)" in text
    assert cells(text, "Section") == ["Section", "last 30 days", "last 90 days", "Newest", "State"]
    assert cells(text, "Public procurement") == ["Public procurement", "1", "2", "2026-11-23", "ok"]
    assert cells(text, "Tax policy") == ["Tax policy", "0", "1", "2026-10-14", "stale"]
    assert cells(text, "Budget") == ["Budget", "0", "0", "2025-10-24", "missing"]
    assert cells(text, "News (optional)") == ["News (optional)", "2", "4", "2026-11-23", "ok"]
    assert cells(text, "Filed under no topic") == ["Filed under no topic", "1", "2", "2026-11-23", ""]
    assert "1 of 5 required sections have nothing in 90 days: Budget" in text
    assert "Nothing in the last 30 days: Investment promotion, Tax policy" in text


def test_text_fits_a_narrow_terminal(filled: Store) -> None:
    text = render_text(audit(filled), "vi", width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "2025-10-24" in text  # dates never wrap


def test_json(filled: Store) -> None:
    data = json.loads(render_json(audit(filled)))
    assert data["at"] == "2026-11-28T12:00:00+07:00"
    assert data["timezone"] == "Asia/Ho_Chi_Minh"
    assert data["windows_days"] == [30, 90]
    assert data["required"] == 5
    assert data["missing"] == ["budget"]
    assert data["stale"] == ["investment", "tax"]
    investment = data["sections"][2]
    assert investment == {
        "id": "investment",
        "label": {"vi": "Thu hút đầu tư", "en": "Investment promotion"},
        "required": True,
        "counts": {"30": 0, "90": 2},
        "newest": "2026-10-19T12:00:00+07:00",
        "state": "stale",
        "problem": True,
    }
    land = data["sections"][6]
    assert (land["newest"], land["state"], land["problem"]) == (None, "missing", False)
    assert [topic["id"] for topic in data["topics"]] == ["tax", "investment", "procurement", "planning-land"]
    assert data["unfiled"] == {"counts": {"30": 1, "90": 2}, "newest": "2026-11-23T06:00:00+07:00"}
    assert "Thu hút đầu tư" in render_json(audit(filled))  # Vietnamese as written, not \\u escapes


def test_no_sections_configured(store: Store) -> None:
    add(store, ("portal-news", "tax-5", "/tin-tuc/thue.html", ["tax"], ago(5)))
    result = audit(store, schedule(sections=[]))
    assert result.sections == ()
    assert exit_code(result) == 0
    text = render_text(result, "en", width=200)
    assert "No required sections are configured (audit.sections in schedules.yaml)" in text
    assert cells(text, "Tax") == ["Tax", "1", "1", "2026-11-23", "ok"]
    assert json.loads(render_json(result))["missing"] == []
