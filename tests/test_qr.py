"""`outreach qr`: a poster's QR code decodes to a tracked link of its own, counted as channel qr."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import resvg_py
import yaml
import zxingcpp
from click.testing import CliRunner, Result
from PIL import Image

from cli import main
from outreach.db import Access, Store
from outreach.links import short_url
from outreach.models import Click, ClickKind, utcnow
from outreach.packaged import SAMPLES
from tests.conftest import base_config

Run = Callable[..., Result]
STAFF = {"OUTREACH_TELEGRAM_TOKEN": "", "COLUMNS": "200"}
PUBLIC_URL = base_config()["tracker"]["public_url"]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def run(tmp_path: Path, database: Path) -> Run:
    """`outreach ARGS` on a config reading the bundled sample feed, checking the exit code."""
    data = base_config()
    data["sources"] = [{"name": "portal", "url": (SAMPLES / "portal-vi.rss").as_uri(), "language": "vi"}]
    data["channels"]["outbox"] = {"dir": str(tmp_path / "outbox")}
    config = tmp_path / "schedules.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def invoke(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(main, ["--config", str(config), "--db", f"sqlite:///{database}", *args], env=STAFF)
        assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
        return result

    return invoke


@pytest.fixture
def announced(run: Run) -> Run:
    """Item 2 announced on Facebook (campaign 1, approved): it has a facebook link."""
    run("init")
    run("sources", "poll")
    run("campaign", "create", "--item", "2", "--channels", "facebook")
    run("--as", "Lan", "campaign", "approve", "1")
    return run


def sql(database: Path, statement: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as connection:
        return connection.execute(statement, args).fetchall()


def links(database: Path, channel: str) -> list[tuple[object, ...]]:
    """A channel's links as (code, destination, campaign id)."""
    return sql(database, "SELECT code, destination, campaign_id FROM links WHERE channel = ? ORDER BY code", channel)


def decoded(image: Image.Image) -> list[str]:
    """What a real QR reader (zxing-cpp) finds in the picture."""
    return [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_a_png_and_an_svg_decode_to_one_qr_link(announced: Run, database: Path, tmp_path: Path) -> None:
    [(facebook_code, facebook_page, _)] = links(database, "facebook")
    png = tmp_path / "poster.png"
    out = announced("qr", facebook_code, "-o", str(png)).output

    [(code, destination, campaign_id)] = links(database, "qr")
    url = short_url(PUBLIC_URL, str(code))
    assert f"short link  {url} (channel qr, campaign 1; new link)" in out
    assert f"destination {destination}" in out
    assert f"written     {png} (" in out
    assert campaign_id == 1
    page = str(facebook_page).split("?")[0]
    assert destination == f"{page}?utm_source=qr&utm_medium=qr&utm_campaign=outreach-1"

    image = Image.open(png)
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert decoded(image) == [url]

    # The campaign's own page is the same page: the same link, now drawn as SVG.
    svg = tmp_path / "poster.svg"
    again = announced("qr", "--campaign", "1", "-o", str(svg)).output
    assert f"{url} (channel qr, campaign 1; reused, made " in again
    assert links(database, "qr") == [(code, destination, 1)]
    text = svg.read_text(encoding="utf-8")
    assert 'width="' in text
    assert 'mm"' in text
    rendered = Image.open(io.BytesIO(resvg_py.svg_to_bytes(svg_path=str(svg), dpi=150)))
    assert decoded(rendered) == [url]


def test_asking_twice_reuses_the_link(announced: Run, database: Path, tmp_path: Path) -> None:
    [(facebook_code, _, _)] = links(database, "facebook")
    first = announced("qr", facebook_code, "-o", str(tmp_path / "a.png")).output
    [(code, _, _)] = links(database, "qr")
    second = announced("qr", facebook_code, "-o", str(tmp_path / "b.PNG")).output
    # The short link as copied from a post works as well as its code, and so does the QR link's own code.
    third = announced("qr", f"{PUBLIC_URL}/r/{facebook_code}", "-o", str(tmp_path / "c.svg")).output
    fourth = announced("qr", code, "-o", str(tmp_path / "d.svg")).output
    assert "new link" in first
    for later in (second, third, fourth):
        assert f"/r/{code} (channel qr, campaign 1; reused, made " in later
    assert len(links(database, "qr")) == 1
    assert decoded(Image.open(tmp_path / "b.PNG")) == [short_url(PUBLIC_URL, str(code))]


def test_unknown_code_or_campaign_is_refused(announced: Run, database: Path, tmp_path: Path) -> None:
    target = tmp_path / "poster.png"
    unknown = announced("qr", "Nope12345", "-o", str(target), expect=1)
    assert "error: no link with code 'Nope12345'" in unknown.output
    missing = announced("qr", "--campaign", "99", "-o", str(target), expect=1)
    assert "error: no campaign with id 99 (see `outreach campaign list`)" in missing.output
    assert not target.exists()
    assert links(database, "qr") == []


def test_usage_errors(announced: Run, database: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "poster.pdf"
    bad = announced("qr", "--campaign", "1", "-o", str(pdf), expect=2).output
    assert f"Invalid value for '-o' / '--output': {pdf}: give a file ending in .png or .svg" in bad
    assert "give exactly one of CODE, --campaign" in announced("qr", "-o", "x.png", expect=2).output
    both = announced("qr", "abcdefgh", "--campaign", "1", "-o", "x.png", expect=2).output
    assert "give exactly one of CODE, --campaign" in both
    assert "Missing option '-o' / '--output'" in announced("qr", "--campaign", "1", expect=2).output
    unwritable = announced("qr", "--campaign", "1", "-o", str(tmp_path / "no" / "such" / "x.png"), expect=1).output
    assert f"error: cannot write {tmp_path / 'no' / 'such' / 'x.png'}: No such file or directory" in unwritable
    assert not pdf.exists()
    # The link was committed before the write failed: the next run reuses it.
    assert len(links(database, "qr")) == 1


def test_digests_messages_and_closed_campaigns(announced: Run, database: Path, tmp_path: Path) -> None:
    announced("campaign", "create", "--items", "1,3", "--channels", "telegram_channel")
    digest = announced("qr", "--campaign", "2", "-o", str(tmp_path / "d.png"), expect=1).output
    assert "campaign 2 is a digest of 2 items, and a QR code leads to one page" in digest
    assert "it has no links until it is approved" in digest
    announced("--as", "Lan", "campaign", "approve", "2")
    digest = announced("qr", "--campaign", "2", "-o", str(tmp_path / "d.png"), expect=1).output
    item_links = sql(database, "SELECT code FROM links WHERE campaign_id = 2 ORDER BY created_at, code")
    assert "item 1: " in digest
    assert "item 3: " in digest
    named = digest.split("item 1: ")[1].split(";")[0]
    assert (named,) in item_links
    made = announced("qr", named, "-o", str(tmp_path / "d.png")).output  # one of its items, by its link
    assert "(channel qr, campaign 2; new link)" in made

    message = tmp_path / "hoi-nghi.txt"
    message.write_text("Kính mời doanh nghiệp dự Hội nghị đối thoại ngày 05/12.\n", encoding="utf-8")
    page = "https://quangngai.gov.vn/hoi-nghi?id=5"
    announced("campaign", "create", "--message-file", str(message), "--url", page)
    out = announced("qr", "--campaign", "3", "-o", str(tmp_path / "m.svg")).output
    assert f"destination {page}&utm_source=qr&utm_medium=qr&utm_campaign=outreach-3" in out

    announced("campaign", "cancel", "3")
    closed = announced("qr", "--campaign", "3", "-o", str(tmp_path / "m.svg"), expect=1).output
    assert "error: campaign 3 is cancelled: nothing more of it goes out" in closed


def test_the_report_shows_qr_as_a_channel(announced: Run, database: Path, tmp_path: Path) -> None:
    announced("qr", "--campaign", "1", "-o", str(tmp_path / "poster.png"))
    assert " qr " not in announced("report").output
    [(code, _, _)] = links(database, "qr")
    store = Store.open(f"sqlite:///{database}", Access.write)
    try:
        with store.sessions.begin() as session:
            session.add(Click(code=code, at=utcnow(), kind=ClickKind.human))
    finally:
        store.close()
    lines = announced("report").output.splitlines()
    header = next(cells(line, "┃") for line in lines if "channel" in cells(line, "┃"))
    [qr_row] = [dict(zip(header, cells(line, "│"), strict=True)) for line in lines if cells(line, "│")[:1] == ["qr"]]
    assert qr_row["sent"] == "0"
    # One person's scan, under the report's name for human clicks.
    assert qr_row["clicks"] == "1"


def cells(line: str, bar: str) -> list[str]:
    """A rich table row's cells, stripped."""
    return [cell.strip() for cell in line.strip().strip(bar).split(bar)] if line.strip().startswith(bar) else []
