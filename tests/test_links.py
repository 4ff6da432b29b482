"""Tracked links: codes, UTM parameters, and the destination check (no open redirect)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from outreach.links import DestinationNotAllowed, check_destination, new_code, short_url, with_utm

ALLOWED = ["quangngai.gov.vn"]


def test_new_code_is_long_base62_and_random() -> None:
    codes = [new_code() for _ in range(200)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{8,}", code) for code in codes)
    assert len(set(codes)) == len(codes)


def test_new_code_honours_a_given_length() -> None:
    assert len(new_code(16)) == 16


def test_short_url_joins_without_double_slash() -> None:
    assert short_url("https://go.quangngai.gov.vn/", "AbCd1234") == "https://go.quangngai.gov.vn/r/AbCd1234"


def test_with_utm_adds_the_three_parameters() -> None:
    url = with_utm("https://quangngai.gov.vn/tin-tuc/a.html", "telegram_channel", "social", "outreach-3")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "quangngai.gov.vn", "/tin-tuc/a.html")
    assert parse_qs(parts.query) == {
        "utm_source": ["telegram_channel"],
        "utm_medium": ["social"],
        "utm_campaign": ["outreach-3"],
    }


def test_with_utm_keeps_other_parameters_and_fragment() -> None:
    url = with_utm("https://quangngai.gov.vn/tin?id=18293&cat=thue&empty=#muc-2", "facebook", "social", "outreach-4")
    parts = urlsplit(url)
    assert parts.fragment == "muc-2"
    query = parse_qsl(parts.query, keep_blank_values=True)
    assert query[:3] == [("id", "18293"), ("cat", "thue"), ("empty", "")]
    assert dict(query)["utm_campaign"] == "outreach-4"


def test_with_utm_replaces_an_existing_utm_source() -> None:
    url = with_utm(
        "https://quangngai.gov.vn/a?utm_source=newsletter&utm_medium=email&id=5", "facebook", "social", "outreach-5"
    )
    query = parse_qs(urlsplit(url).query)
    assert query["utm_source"] == ["facebook"]
    assert query["utm_medium"] == ["social"]
    assert query["id"] == ["5"]


@pytest.mark.parametrize(
    "url",
    [
        "https://quangngai.gov.vn/tin-tuc/a.html",
        "http://quangngai.gov.vn/",
        "https://sokhdt.quangngai.gov.vn/thong-bao?id=1",
        "https://a.b.quangngai.gov.vn/x",
        "https://QuangNgai.Gov.VN/Tin",
        "https://quangngai.gov.vn:8443/x",
    ],
)
def test_check_destination_accepts_the_domain_and_subdomains(url: str) -> None:
    check_destination(url, ALLOWED)  # no exception


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/quangngai.gov.vn",
        "https://quangngai.gov.vn.evil.com/",
        "https://evilquangngai.gov.vn/",
        "https://quangngai.gov.vn@evil.com/",
        "https://gov.vn/",
        "ftp://quangngai.gov.vn/file",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "//quangngai.gov.vn/a",
        "quangngai.gov.vn/a",
        "https:///nohost",
    ],
)
def test_check_destination_refuses_other_hosts_and_schemes(url: str) -> None:
    with pytest.raises(DestinationNotAllowed):
        check_destination(url, ALLOWED)


def test_refusal_is_a_value_error_naming_the_host() -> None:
    with pytest.raises(ValueError, match=r"evil\.com is not in tracker\.allowed_domains"):
        check_destination("https://quangngai.gov.vn.evil.com/", ALLOWED)


def test_check_destination_refuses_a_backslash_lookalike() -> None:
    with pytest.raises(DestinationNotAllowed):
        check_destination("https://evil.com\\.quangngai.gov.vn/", ALLOWED)


def test_with_utm_keeps_the_portals_query_byte_for_byte() -> None:
    url = with_utm(
        "https://quangngai.gov.vn/tim-kiem?q=thu%E1%BA%BF%20m%E1%BB%9Bi&flag&utm_medium=old#top",
        "facebook",
        "social",
        "outreach-3",
    )
    assert (
        url
        == "https://quangngai.gov.vn/tim-kiem?q=thu%E1%BA%BF%20m%E1%BB%9Bi&flag&utm_source=facebook&utm_medium=social&utm_campaign=outreach-3#top"
    )
