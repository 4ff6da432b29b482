"""Folding, NFC and HTML-to-text for Vietnamese feed content; topic rules."""

from __future__ import annotations

import unicodedata

from outreach.config import Labels, Topic
from outreach.text import fold, html_to_text, nfc
from outreach.topics import TopicMatcher


def test_fold_drops_marks_and_maps_d_bar() -> None:
    assert fold("Đất đai") == "dat dai"
    assert fold("Thủ tục hành chính") == "thu tuc hanh chinh"
    assert fold("NGHỆ") == "nghe"  # two marks on one letter


def test_fold_treats_old_and_new_tone_placement_alike() -> None:
    assert fold("hoà") == fold("hòa") == "hoa"


def test_nfc_composes_decomposed_input() -> None:
    decomposed = unicodedata.normalize("NFD", "Quảng Ngãi")
    assert decomposed != "Quảng Ngãi"
    assert nfc(decomposed) == "Quảng Ngãi"


def test_html_to_text_plain_nfc_single_spaced() -> None:
    fragment = unicodedata.normalize(
        "NFD", "<p>Doanh thu &lt; 1 tỷ&nbsp;đồng</p><p>Tiếp <strong>theo</strong></p><script>x()</script>"
    )
    text = html_to_text(fragment)
    assert text == "Doanh thu < 1 tỷ đồng Tiếp theo"  # nbsp folds to a space too
    assert unicodedata.is_normalized("NFC", text)
    assert "x()" not in text


def topics() -> list[Topic]:
    return [
        Topic(id="land", label=Labels(vi="Đất đai", en="Land"), keywords=["đất đai", "bảng giá đất"]),
        Topic(id="tax", label=Labels(vi="Thuế", en="Tax"), keywords=["hoàn thuế"]),
        Topic(id="law", label=Labels(vi="Luật", en="Law"), keywords=["luật"]),
    ]


def test_keywords_match_accent_free_and_case_free() -> None:
    matcher = TopicMatcher(topics())
    assert matcher.match("DỰ THẢO BẢNG GIÁ ĐẤT NĂM 2027") == ["land"]
    assert matcher.match("bang gia dat nam 2027") == ["land"]
    assert matcher.match("Đẩy nhanh hoàn thuế GTGT") == ["tax"]


def test_keywords_match_whole_words_only() -> None:
    matcher = TopicMatcher(topics())
    assert matcher.match("Hội thảo luật mới") == ["law"]
    assert matcher.match("Chương trình luậtsư trẻ") == []


def test_defaults_come_first_without_repeats() -> None:
    matcher = TopicMatcher(topics())
    assert matcher.match("Luật Đất đai", defaults=["land", "land"]) == ["land", "law"]
