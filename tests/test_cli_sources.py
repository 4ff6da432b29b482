"""Staff tools for sources through the CLI: test a section with selectors, add it keeping the file's comments, audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import CliRunner

from cli import main
from outreach.config import Settings, load_schedule
from tests.conftest import FeedServer
from tests.test_feeds_real import cp1258

HTML = {"Content-Type": "text/html; charset=windows-1258"}

# A plain CMS list in windows-1258 (the Vietnamese Windows code page), as older district portals still serve it.
PLAIN_CMS = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1258"></head><body>
<ul class="list-news">
  <li><a href="/tin/123/thong-bao-dau-thau.html">Thông báo mời thầu gói thầu số 5</a>
      <span class="date">Ngày đăng: 26-11-2026</span><p class="sapo">Ban QLDA tỉnh mời thầu</p>
      <img data-src="/upload/dau-thau.jpg"></li>
  <li><a href="/tin/124/ho-tro-doanh-nghiep.html">Hỗ trợ doanh nghiệp nhỏ và vừa</a>
      <span class="date">Ngày đăng: 25-11-2026</span><p class="sapo">Chương trình hỗ trợ</p></li>
</ul></body></html>"""


def run(config: Path, *args: str, status: int = 0) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == status, result.output
    return result.output


def test_sources_test_shows_what_a_listing_would_give_and_stores_nothing(
    feed_server: FeedServer, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    url = feed_server.serve("/dau-thau", body=cp1258(PLAIN_CMS), headers=HTML)
    settings = make_settings(fetch={"article_delay_seconds": 0})
    selectors = ["--item", "ul.list-news li", "--date", ".date", "--summary", ".sapo", "--image", "img"]

    out = run(settings.config_path, "sources", "test", url, "--kind", "html", "--no-metadata", *selectors)

    flat = " ".join(out.split())
    assert "charset cp1258" in flat or "charset windows-1258" in flat
    assert "1. Thông báo mời thầu gói thầu số 5" in flat
    assert "2. Hỗ trợ doanh nghiệp nhỏ và vừa" in flat
    assert f"link: {feed_server.url}/tin/123/thong-bao-dau-thau.html" in flat
    assert "date: 2026-11-26 00:00" in flat
    assert "summary: Ban QLDA tỉnh mời thầu" in flat
    assert f"image: {feed_server.url}/upload/dau-thau.jpg" in flat
    assert not (tmp_path / "outreach.db").exists()  # nothing stored, no database needed


def test_sources_test_names_the_selector_that_matched_nothing(
    feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    url = feed_server.serve("/dau-thau", body=cp1258(PLAIN_CMS), headers=HTML)
    settings = make_settings()

    out = run(settings.config_path, "sources", "test", url, "--kind", "html", "--item", ".news-row", status=1)

    assert "'.news-row'" in out
    assert "matched nothing" in out


def test_sources_test_refuses_a_bad_selector_and_an_unknown_name(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()

    bad = run(settings.config_path, "sources", "test", "https://x.gov.vn/", "--kind", "html", "--item", "li[", status=2)
    unknown = run(settings.config_path, "sources", "test", "no-such-source", status=2)

    assert "'li[' is not a CSS selector" in bad
    assert "no source named 'no-such-source'" in unknown


COMMENTED = """\
# Quảng Ngãi portal outreach: edited by hand, comments matter.
version: 1
timezone: Asia/Ho_Chi_Minh   # the province's clock

topics:
  - id: procurement
    label: {vi: Đấu thầu, en: Procurement}
    keywords: [đấu thầu, mời thầu]

sources:
  # The news feed.
  - name: portal-news
    url: https://quangngai.gov.vn/rss/tin-tuc.rss

tracker:
  public_url: https://go.quangngai.gov.vn
  allowed_domains: [quangngai.gov.vn]
"""


def test_sources_add_keeps_comments_and_layout_and_validates_first(tmp_path: Path) -> None:
    config = tmp_path / "schedules.yaml"
    config.write_text(COMMENTED, encoding="utf-8")

    out = run(
        config,
        "sources",
        "add",
        "dau-thau",
        "https://quangngai.gov.vn/dau-thau",
        "--kind",
        "html",
        "--topic",
        "procurement",
        "--item",
        "ul.list-news li",
        "--date",
        ".date",
    )

    assert "added source dau-thau (html)" in " ".join(out.split())
    text = config.read_text(encoding="utf-8")
    last_source = "    url: https://quangngai.gov.vn/rss/tin-tuc.rss\n"
    head, tail = COMMENTED.split(last_source)
    assert text.startswith(head + last_source + "  - name: dau-thau\n")  # right after the last source
    assert text.endswith("\n\n" + tail.lstrip("\n"))  # the blank line and what follows the list stay after it
    for comment in ("# Quảng Ngãi portal outreach", "# the province's clock", "# The news feed."):
        assert comment in text
    schedule = load_schedule(config)
    added = schedule.source("dau-thau")
    assert added.kind == "html"
    assert added.topics == ["procurement"]
    assert added.listing is not None
    assert (added.listing.item, added.listing.date) == ("ul.list-news li", ".date")
    assert yaml.safe_load(text)["sources"][1] == {
        "name": "dau-thau",
        "url": "https://quangngai.gov.vn/dau-thau",
        "kind": "html",
        "topics": ["procurement"],
        "listing": {"item": "ul.list-news li", "date": ".date"},
    }


def test_sources_add_refuses_what_would_break_the_file_and_leaves_it_alone(tmp_path: Path) -> None:
    config = tmp_path / "schedules.yaml"
    config.write_text(COMMENTED, encoding="utf-8")

    unknown_topic = run(config, "sources", "add", "x", "https://quangngai.gov.vn/x", "--topic", "tax", status=2)
    duplicate = run(config, "sources", "add", "portal-news", "https://quangngai.gov.vn/y", status=2)
    no_item = run(config, "sources", "add", "z", "https://quangngai.gov.vn/z", "--kind", "html", status=2)

    assert "unknown topic id 'tax'" in unknown_topic
    assert str(config) in unknown_topic  # named as the file staff edit, not a temporary one
    assert "already there" in duplicate
    assert "needs `listing:`" in no_item
    assert config.read_text(encoding="utf-8") == COMMENTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schedules.yaml"]  # no temporary file left behind


def test_audit_flags_required_sections_with_nothing_published(make_settings: Callable[..., Settings]) -> None:
    audit = {
        "sections": [
            {"id": "budget", "label": {"vi": "Ngân sách", "en": "Budget"}, "paths": ["/ngan-sach/"]},
            {"id": "news", "label": {"vi": "Tin tức", "en": "News"}, "sources": ["portal-news"], "required": False},
        ]
    }
    settings = make_settings(audit=audit)
    run(settings.config_path, "init")

    out = run(settings.config_path, "audit", "--lang", "en", status=1)

    assert "Budget" in out
    assert "missing" in out


def test_sources_add_writes_through_a_symlink_keeping_mode_and_indentation(tmp_path: Path) -> None:
    flat = COMMENTED.replace("\n  - ", "\n- ").replace("\n    ", "\n  ")  # sequences not indented
    real = tmp_path / "etc" / "schedules.yaml"
    real.parent.mkdir()
    real.write_text(flat, encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "schedules.yaml"
    link.symlink_to(real)

    run(link, "sources", "add", "sitemap", "https://quangngai.gov.vn/sitemap.xml", "--kind", "sitemap")

    assert link.is_symlink()
    assert real.stat().st_mode & 0o777 == 0o640
    text = real.read_text(encoding="utf-8")
    assert "\n- name: sitemap\n  url: https://quangngai.gov.vn/sitemap.xml\n  kind: sitemap\n" in text
    assert text.replace("- name: sitemap\n  url: https://quangngai.gov.vn/sitemap.xml\n  kind: sitemap\n", "") == flat


def test_config_check_names_the_audit_and_a_missing_contact(make_settings: Callable[..., Settings]) -> None:
    sitemap = {"name": "sm", "url": "https://quangngai.gov.vn/sitemap.xml", "kind": "sitemap"}
    settings = make_settings(sources=[sitemap])

    out = run(settings.config_path, "config", "check")

    assert "audit: 7 required sections" in out
    assert "fetch.contact is not set" in out


def test_sources_add_quotes_what_yaml_would_misread_and_keeps_quotes_staff_wrote(tmp_path: Path) -> None:
    config = tmp_path / "schedules.yaml"
    config.write_text(COMMENTED.replace("tracker:", 'digests:\n  - {name: morning, at: "07:30"}\ntracker:'), "utf-8")

    run(
        config,
        "sources",
        "add",
        "x",
        "https://quangngai.gov.vn/x",
        "--kind",
        "html",
        "--item",
        "#main li",
        "--date",
        "no",
    )

    schedule = load_schedule(config)  # "07:30" still a time, not the number 450
    assert schedule.digests[0].at == "07:30"
    listing = schedule.source("x").listing
    assert listing is not None
    assert (listing.item, listing.date) == ("#main li", "no")
