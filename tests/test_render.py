"""Rendering posts: escaping per channel, language, topics, fitting the limit, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from channels import LIMITS
from outreach.config import Settings
from outreach.render import ELLIPSIS, CampaignView, ItemView, PostContext, Renderer, RenderError, visible_length
from tests.conftest import base_config

LINK = "https://go.quangngai.gov.vn/r/AbCdEf1234"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
LONG_SUMMARY = " ".join(
    f"Doanh nghiệp số {n} được hỗ trợ vay vốn, đào tạo và tư vấn pháp lý miễn phí." for n in range(1, 15)
)


def item(
    title: str = "Hội nghị đối thoại doanh nghiệp", summary: str = "Tóm tắt ngắn.", language: str = "vi"
) -> ItemView:
    return ItemView(
        title=title,
        summary=summary,
        url="https://quangngai.gov.vn/tin-tuc/hoi-nghi-1.html",
        image_url=None,
        published=datetime(2026, 11, 27, 1, 30, tzinfo=UTC).astimezone(ZONE),
        language=language,
    )


def context(view: ItemView, topics: list[str] | None = None, renderer: Renderer | None = None) -> PostContext:
    labels = renderer.topic_views(topics or [], view.language) if renderer else []
    return PostContext(
        item=view, topics=labels, link=LINK, campaign=CampaignView(7, view.title, "outreach-7"), language=view.language
    )


def with_channel_limit(make_settings: Callable[..., Settings], channel: str, max_text: int) -> Settings:
    channels = base_config()["channels"]
    channels[channel]["max_text"] = max_text
    return make_settings(channels=channels)


@pytest.fixture
def renderer(make_settings: Callable[..., Settings]) -> Renderer:
    return Renderer(make_settings().schedule, LIMITS)


# --- escaping per channel ------------------------------------------------------


def test_telegram_escapes_item_text_and_keeps_template_tags(renderer: Renderer) -> None:
    view = item(title="Thuế & phí <2027>", summary="Mức a < b & c > d áp dụng từ 01/01.")
    text = renderer.render("telegram_channel", "post", context(view)).text
    assert "📢 <b>Thuế &amp; phí &lt;2027&gt;</b>" in text
    assert "Mức a &lt; b &amp; c &gt; d áp dụng từ 01/01." in text
    assert f'<a href="{LINK}">' in text
    assert "</a>" in text
    assert "<2027>" not in text
    assert " & " not in text


def test_facebook_is_plain_text_without_escaping(renderer: Renderer) -> None:
    view = item(title="Thuế & phí <2027>", summary="Mức a < b & c > d.")
    text = renderer.render("facebook", "post", context(view)).text
    assert text.startswith("📢 Thuế & phí <2027>\n")
    assert "Mức a < b & c > d." in text
    assert "&amp;" not in text
    assert "&lt;" not in text
    assert f"👉 Xem chi tiết: {LINK}" in text


# --- language and topics -------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "language", "expected", "absent"),
    [
        ("telegram_channel", "vi", "Xem chi tiết trên Cổng thông tin điện tử tỉnh", "Read more"),
        ("telegram_channel", "en", "Read more on the Quang Ngai Provincial Portal", "Xem chi tiết"),
        ("facebook", "vi", "Cổng thông tin điện tử tỉnh Quảng Ngãi", "Read more"),
        ("facebook", "en", "27 Nov 2026 · Quang Ngai Provincial Portal", "Xem chi tiết"),
    ],
)
def test_template_is_chosen_by_language(
    renderer: Renderer, channel: str, language: str, expected: str, absent: str
) -> None:
    text = renderer.render(channel, "post", context(item(language=language))).text
    assert expected in text
    assert absent not in text


def test_topic_labels_are_in_the_posts_language(renderer: Renderer) -> None:
    assert [t.label for t in renderer.topic_views(["tax", "no-such-topic", "investment"], "en")] == [
        "Tax",
        "Investment",
    ]
    vi = renderer.render("facebook", "post", context(item(), ["tax", "investment"], renderer)).text
    en = renderer.render("facebook", "post", context(item(language="en"), ["tax", "investment"], renderer)).text
    assert "🗂 Thuế và cuộc sống · Đầu tư" in vi
    assert "🗂 Tax · Investment" in en
    assert "Thuế và cuộc sống" not in en


# --- fitting the channel's limit -----------------------------------------------


def test_long_summary_is_cut_at_a_word_boundary_and_link_kept(make_settings: Callable[..., Settings]) -> None:
    renderer = Renderer(with_channel_limit(make_settings, "telegram_channel", 200).schedule, LIMITS)
    assert renderer.limits("telegram_channel").max_text == 200
    view = item(summary=LONG_SUMMARY)
    text = renderer.render("telegram_channel", "post", context(view, ["tax"], renderer)).text

    assert visible_length(text, "html") <= 200
    assert f'<a href="{LINK}">Xem chi tiết trên Cổng thông tin điện tử tỉnh</a>' in text
    assert f"<b>{view.title}</b>" in text  # the title was not needed to shorten
    summary = text.split("\n\n")[1]
    assert summary.endswith(ELLIPSIS)
    kept = summary.removesuffix(ELLIPSIS)
    assert kept
    assert LONG_SUMMARY.startswith(kept)
    assert LONG_SUMMARY[len(kept)] == " "  # the cut falls between words


def test_facebook_limit_counts_plain_text(make_settings: Callable[..., Settings]) -> None:
    renderer = Renderer(with_channel_limit(make_settings, "facebook", 250).schedule, LIMITS)
    # Tag-like text is text on Facebook: counted in full, where an HTML count would drop it.
    summary = LONG_SUMMARY.replace("vốn", "<b>vốn</b>")
    text = renderer.render("facebook", "post", context(item(summary=summary))).text
    assert "<b>vốn</b>" in text
    assert visible_length(text, "plain") <= 250
    assert ELLIPSIS in text
    assert f"👉 Xem chi tiết: {LINK}\n" in text


def test_title_is_shortened_when_dropping_the_summary_is_not_enough(make_settings: Callable[..., Settings]) -> None:
    renderer = Renderer(with_channel_limit(make_settings, "telegram_channel", 120).schedule, LIMITS)
    title = "Ủy ban nhân dân tỉnh Quảng Ngãi tổ chức hội nghị đối thoại với doanh nghiệp về thủ tục hành chính năm 2026"
    text = renderer.render("telegram_channel", "post", context(item(title=title, summary=LONG_SUMMARY))).text

    assert visible_length(text, "html") <= 120
    assert "Doanh nghiệp số 1" not in text  # the summary went first
    shown = text.split("<b>", 1)[1].split("</b>", 1)[0]
    assert shown.endswith(ELLIPSIS)
    assert title.startswith(shown.removesuffix(ELLIPSIS))
    assert f'<a href="{LINK}">' in text


def test_text_that_fits_is_left_alone(renderer: Renderer) -> None:
    view = item(summary=LONG_SUMMARY)
    text = renderer.render("telegram_channel", "post", context(view)).text
    assert LONG_SUMMARY in text
    assert ELLIPSIS not in text


@pytest.mark.parametrize(
    ("text", "markup", "length"),
    [
        ("<b>A &amp; B</b>", "html", 5),
        ("<b>A &amp; B</b>", "plain", 16),
        (f'<a href="{LINK}">Xem</a>', "html", 3),
        ("📢", "plain", 2),  # outside the BMP: two UTF-16 units
        ("📢 <i>Thuế</i>", "html", 7),
        ("Quảng Ngãi", "plain", 10),
    ],
)
def test_visible_length(text: str, markup: str, length: int) -> None:
    assert visible_length(text, markup) == length


# --- templates folders and errors ----------------------------------------------


def test_override_folder_wins_over_builtin(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    folder = tmp_path / "my-templates"
    (folder / "telegram_channel").mkdir(parents=True)
    (folder / "telegram_channel" / "post.vi.j2").write_text(
        "Tin mới: <b>{{ item.title }}</b> {{ link }}\n", encoding="utf-8"
    )
    renderer = Renderer(make_settings().schedule, LIMITS, override_dir=folder)

    text = renderer.render("telegram_channel", "post", context(item(title="A & B"))).text
    assert text == f"Tin mới: <b>A &amp; B</b> {LINK}"  # still escaped: it is a Telegram template
    # Templates not overridden still come from the built-in folder.
    english = renderer.render("telegram_channel", "post", context(item(language="en"))).text
    assert "Read more on the Quang Ngai Provincial Portal" in english


def test_missing_template_names_its_path(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match=r"telegram_channel/digest\.vi\.j2"):
        renderer.render("telegram_channel", "digest", context(item()))


def facebook_override(make_settings: Callable[..., Settings], tmp_path: Path, text: str) -> Renderer:
    """A renderer whose facebook/post.vi.j2 is the given text."""
    (tmp_path / "tpl" / "facebook").mkdir(parents=True)
    (tmp_path / "tpl" / "facebook" / "post.vi.j2").write_text(text, encoding="utf-8")
    return Renderer(make_settings().schedule, LIMITS, override_dir=tmp_path / "tpl")


def test_undefined_variable_is_an_error(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    renderer = facebook_override(make_settings, tmp_path, "{{ item.title }} {{ organisation }}\n")
    with pytest.raises(RenderError, match=r"facebook/post\.vi\.j2.*organisation"):
        renderer.render("facebook", "post", context(item()))


def test_template_syntax_error_names_file_and_line(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    renderer = facebook_override(make_settings, tmp_path, "{{ item.title }}\n{% if %}\n")
    with pytest.raises(RenderError, match=r"post\.vi\.j2:2:"):
        renderer.render("facebook", "post", context(item()))


def test_shorten_cuts_inside_a_first_word_too_long_or_drops_the_text() -> None:
    from outreach.render import shorten

    url = "https://quangngai.gov.vn/" + "a" * 200
    cut = shorten(url, 60)
    assert cut.endswith(" …")
    assert len(cut) <= 60
    assert cut.startswith("https://quangngai.gov.vn/aaa")
    assert shorten(url, 10) == ""
    assert shorten("Hạn nộp tờ khai thuế tháng 10", 200) == "Hạn nộp tờ khai thuế tháng 10"
    assert shorten("Hạn nộp tờ khai thuế giá trị gia tăng tháng 10", 30) == "Hạn nộp tờ khai thuế giá trị …"
