"""The platform emulators over real loopback HTTP: shapes, validation, limits, scripted faults.

Plain httpx here, so the wire format itself is pinned down; the client libraries
are tested against the emulators elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from outreach.sandbox import Fault, FaultScript, GraphEmulator, GraphPost, TelegramEmulator, TelegramMessage, Window

NOW = 1_800_000_000.0  # Friday, 15-Jan-27 08:00:00 UTC
TOKEN = "123456:AAHtest-token_secret"
OTHER_TOKEN = "654321:AAHother-token"
CHANNEL = -1001234567890
CHANNEL_JSON = {
    "id": CHANNEL,
    "type": "channel",
    "title": "Doanh nghiệp Quảng Ngãi",
    "username": "quangngai_doanhnghiep",
}
HANG = 0.3
SHORT_TIMEOUT = 0.1


def loopback(base_url: str) -> httpx.Client:
    """A new connection per request: BackgroundServer's accepted sockets lack TCP_NODELAY, so a
    kept-alive connection waits out delayed ACKs (about 40 ms a call)."""
    return httpx.Client(base_url=base_url, timeout=2, limits=httpx.Limits(max_keepalive_connections=0))


# --- shared pieces -------------------------------------------------------------------------


def test_fault_script_takes_matching_faults_in_order() -> None:
    script = FaultScript()
    first, second, anywhere = Fault("error", status=502), Fault("not_json"), Fault("hang", seconds=1)
    script.add(first, method="sendMessage", target="@a", times=2)
    script.add(second, method="sendPhoto")
    script.add(anywhere)
    assert len(script) == 4
    assert script.take("sendPhoto", "@a") is second
    assert script.take("sendMessage", "@a") is first
    assert script.take("sendMessage", "@b") is anywhere
    assert script.take("sendMessage", "@b") is None
    assert script.take("sendMessage", "@a") is first
    assert script.take("sendMessage", "@a") is None
    script.add(first)
    script.clear()
    assert script.take("getMe", None) is None


def test_fault_default_statuses() -> None:
    assert [
        Fault(kind).status_code for kind in ("error", "hang", "accept_then_error", "not_json", "no_content_type")
    ] == [
        500,
        504,
        500,
        502,
        200,
    ]
    assert Fault("not_json", status=503).status_code == 503


def test_window_allows_ceil_limit_calls_per_second_per_key() -> None:
    window = Window(1.5)
    assert window.hit("a", 10.0) is None
    assert window.hit("a", 10.25) is None
    assert window.hit("a", 10.5) == pytest.approx(0.5)
    assert window.hit("b", 10.5) is None
    assert window.hit("a", 11.0) is None  # the call at 10.0 has left the window
    assert window.hit("a", 11.1) == pytest.approx(0.15)
    unlimited = Window(None)
    assert all(unlimited.hit("a", 1.0) is None for _ in range(100))


# --- Telegram ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tg_server() -> Iterator[TelegramEmulator]:
    """One server for the module: stopping uvicorn takes a few tenths of a second."""
    with TelegramEmulator(clock=lambda: NOW) as emulator:
        yield emulator


@pytest.fixture
def tg(tg_server: TelegramEmulator) -> TelegramEmulator:
    tg_server.reset()
    tg_server.add_bot(TOKEN)
    tg_server.add_chat(CHANNEL, username="quangngai_doanhnghiep", title="Doanh nghiệp Quảng Ngãi")
    return tg_server


@pytest.fixture(scope="module")
def bot(tg_server: TelegramEmulator) -> Iterator[httpx.Client]:
    # httpx would put a slash after base_url's "/bot": the token goes in the path instead.
    with loopback(tg_server.url) as http:
        yield http


def send(http: httpx.Client, method: str, token: str = TOKEN, **params: str) -> httpx.Response:
    """A form-encoded call, as python-telegram-bot makes it."""
    return http.post(f"/bot{token}/{method}", data=params)


def failure(status: int, description: str, **parameters: int) -> dict[str, object]:
    body: dict[str, object] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def test_get_me_and_get_chat(tg: TelegramEmulator, bot: httpx.Client) -> None:
    assert tg.base_url == f"{tg.url}/bot"
    me = send(bot, "getMe")
    assert me.status_code == 200
    assert me.json() == {
        "ok": True,
        "result": {
            "id": 123456,
            "is_bot": True,
            "first_name": "Quảng Ngãi Outreach",
            "username": "quangngai_outreach_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        },
    }
    chat = send(bot, "getChat", chat_id="@QuangNgai_DoanhNghiep")
    gifts = dict.fromkeys(
        ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"), False
    )
    assert chat.json() == {
        "ok": True,
        "result": {**CHANNEL_JSON, "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts},
    }


def test_send_message_is_kept_and_echoed(tg: TelegramEmulator, bot: httpx.Client) -> None:
    preview = {"is_disabled": False, "url": "https://quangngai.gov.vn/tin/1.html", "prefer_small_media": True}
    response = send(
        bot,
        "sendMessage",
        chat_id="@quangngai_doanhnghiep",
        text="<b>Hướng dẫn hoàn thuế</b> &amp; hồ sơ <a href='https://quangngai.gov.vn/tin/1.html'>xem</a>",
        parse_mode="HTML",
        link_preview_options=json.dumps(preview),
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "ok": True,
        "result": {
            "message_id": 1,
            "date": 1_800_000_000,
            "chat": CHANNEL_JSON,
            "sender_chat": CHANNEL_JSON,
            "text": "Hướng dẫn hoàn thuế & hồ sơ xem",
            "link_preview_options": preview,
        },
    }
    assert tg.messages == [
        TelegramMessage(
            chat_id=CHANNEL,
            message_id=1,
            date=1_800_000_000,
            bot_id=123456,
            text="<b>Hướng dẫn hoàn thuế</b> &amp; hồ sơ <a href='https://quangngai.gov.vn/tin/1.html'>xem</a>",
            parse_mode="HTML",
            link_preview=preview,
        )
    ]
    assert tg.requests == [("sendMessage", "@quangngai_doanhnghiep")]


def test_json_body_and_message_ids_count_per_chat(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.add_chat(-42, kind="group", title="Nhóm")
    for chat_id in (CHANNEL, CHANNEL, -42):
        assert bot.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": chat_id, "text": "Xin chào"}).status_code == 200
    assert [(m.chat_id, m.message_id, m.text) for m in tg.messages] == [
        (CHANNEL, 1, "Xin chào"),
        (CHANNEL, 2, "Xin chào"),
        (-42, 1, "Xin chào"),
    ]
    assert [m.message_id for m in tg.posts("@quangngai_doanhnghiep")] == [1, 2]
    assert [m.chat_id for m in tg.posts(-42)] == [-42]


def test_group_messages_come_from_the_bot(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.add_chat(-42, kind="group", title="Nhóm")
    result = send(bot, "sendMessage", chat_id="-42", text="x").json()["result"]
    assert result["from"] == {
        "id": 123456,
        "is_bot": True,
        "first_name": "Quảng Ngãi Outreach",
        "username": "quangngai_outreach_bot",
    }
    assert "sender_chat" not in result


def test_send_photo_by_url(tg: TelegramEmulator, bot: httpx.Client) -> None:
    response = send(
        bot,
        "sendPhoto",
        chat_id=str(CHANNEL),
        photo="https://quangngai.gov.vn/a.jpg",
        caption="<i>Ảnh</i>",
        parse_mode="HTML",
    )
    result = response.json()["result"]
    photo = result.pop("photo")
    assert response.status_code == 200
    assert result == {
        "message_id": 1,
        "date": 1_800_000_000,
        "chat": CHANNEL_JSON,
        "sender_chat": CHANNEL_JSON,
        "caption": "Ảnh",
    }
    assert [(size["width"], size["height"]) for size in photo] == [(90, 60), (320, 213), (800, 533)]
    assert all(set(size) == {"file_id", "file_unique_id", "width", "height"} for size in photo)
    assert len({size["file_id"] for size in photo}) == 3
    # The same picture again gets the same file ids, as on Telegram.
    again = send(bot, "sendPhoto", chat_id=str(CHANNEL), photo="https://quangngai.gov.vn/a.jpg")
    assert again.json()["result"]["photo"] == photo
    assert "caption" not in again.json()["result"]
    assert tg.messages == [
        TelegramMessage(
            chat_id=CHANNEL,
            message_id=1,
            date=1_800_000_000,
            bot_id=123456,
            caption="<i>Ảnh</i>",
            photo="https://quangngai.gov.vn/a.jpg",
            parse_mode="HTML",
        ),
        TelegramMessage(
            chat_id=CHANNEL, message_id=2, date=1_800_000_000, bot_id=123456, photo="https://quangngai.gov.vn/a.jpg"
        ),
    ]


def test_send_photo_upload_and_missing_photo(tg: TelegramEmulator, bot: httpx.Client) -> None:
    uploaded = bot.post(
        f"/bot{TOKEN}/sendPhoto",
        data={"chat_id": str(CHANNEL)},
        files={"photo": ("pic.jpg", b"\xff\xd8\xff", "image/jpeg")},
    )
    assert uploaded.status_code == 200
    assert tg.messages[0].photo == "upload:pic.jpg"
    missing = send(bot, "sendPhoto", chat_id=str(CHANNEL))
    assert (missing.status_code, missing.json()) == (400, failure(400, "Bad Request: there is no photo in the request"))


def test_unknown_method_token_and_chat(tg: TelegramEmulator, bot: httpx.Client) -> None:
    unknown_method = send(bot, "sendCarrierPigeon", chat_id=str(CHANNEL))
    assert (unknown_method.status_code, unknown_method.json()) == (404, failure(404, "Not Found"))
    unknown_token = send(bot, "getMe", token="999:nope")
    assert (unknown_token.status_code, unknown_token.json()) == (401, failure(401, "Unauthorized"))
    no_chat = send(bot, "sendMessage", chat_id="@khong_co", text="x")
    assert (no_chat.status_code, no_chat.json()) == (400, failure(400, "Bad Request: chat not found"))
    tg.revoke(TOKEN)
    revoked = send(bot, "sendMessage", chat_id=str(CHANNEL), text="x")
    assert (revoked.status_code, revoked.json()) == (401, failure(401, "Unauthorized"))
    assert tg.messages == []


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        (
            "Quảng Ngãi: giá lúa &lt; 7.000đ/kg &amp; &quot;ổn định&quot; &#8212; &#x1F33E; 5 > 4",
            'Quảng Ngãi: giá lúa < 7.000đ/kg & "ổn định" — 🌾 5 > 4',
        ),
        (
            "<strong>Đậm</strong> <em>nghiêng</em> <u>gạch</u> <s>xoá</s> <tg-spoiler>ẩn</tg-spoiler>",
            "Đậm nghiêng gạch xoá ẩn",
        ),
        ('<span class="tg-spoiler">bí mật</span> <pre><code class="language-python">x</code></pre>', "bí mật x"),
        ("<blockquote expandable>Trích dẫn</blockquote>\n<ins>a</ins><del>b</del><strike>c</strike>", "Trích dẫn\nabc"),
    ],
)
def test_html_that_telegram_accepts(tg: TelegramEmulator, bot: httpx.Client, text: str, visible: str) -> None:
    response = send(bot, "sendMessage", chat_id=str(CHANNEL), text=text, parse_mode="HTML")
    assert response.status_code == 200
    assert response.json()["result"]["text"] == visible


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("Giá lúa < 7.000đ", 'Unsupported start tag "" at byte offset 10'),
        ("Tỉ lệ <3 lần", 'Unsupported start tag "3" at byte offset 10'),
        ("<div>Tin</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("Dòng một<br/>hai", 'Unsupported start tag "br" at byte offset 11'),
        ("<b>Đậm", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>Đậm</i>", 'Unmatched end tag at byte offset 9, expected "</b>", found "</i>"'),
        ("Đậm</b>", "Unexpected end tag at byte offset 6"),
        ("Sở KH & ĐT", "Unsupported HTML entity at byte offset 8"),
        ("Sở KH&nbsp;ĐT", "Unsupported HTML entity at byte offset 7"),
        ("Sở KH &amp ĐT", "Unsupported HTML entity at byte offset 8"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<!-- ghi chú -->x", 'Unsupported start tag "!--" at byte offset 0'),
    ],
)
def test_html_that_telegram_refuses(tg: TelegramEmulator, bot: httpx.Client, text: str, error: str) -> None:
    response = send(bot, "sendMessage", chat_id=str(CHANNEL), text=text, parse_mode="HTML")
    assert (response.status_code, response.json()) == (400, failure(400, f"Bad Request: can't parse entities: {error}"))
    assert tg.messages == []


def test_plain_text_is_not_parsed_and_unknown_parse_mode_fails(tg: TelegramEmulator, bot: httpx.Client) -> None:
    assert send(bot, "sendMessage", chat_id=str(CHANNEL), text="a < b & c").json()["result"]["text"] == "a < b & c"
    bad = send(bot, "sendMessage", chat_id=str(CHANNEL), text="x", parse_mode="BBCode")
    assert (bad.status_code, bad.json()) == (400, failure(400, "Bad Request: unsupported parse_mode"))


def test_text_length_counts_utf16_units_after_parsing(tg: TelegramEmulator, bot: httpx.Client) -> None:
    chat = str(CHANNEL)
    assert send(bot, "sendMessage", chat_id=chat, text="😀" * 2048).status_code == 200
    assert (
        send(bot, "sendMessage", chat_id=chat, text="<b>" + "&lt;" * 4096 + "</b>", parse_mode="HTML").status_code
        == 200
    )
    too_long = send(bot, "sendMessage", chat_id=chat, text="😀" * 2048 + "a")
    assert (too_long.status_code, too_long.json()) == (400, failure(400, "Bad Request: message is too long"))
    for empty in ("", "<b></b>", "  "):
        response = send(bot, "sendMessage", chat_id=chat, text=empty, parse_mode="HTML")
        assert (response.status_code, response.json()) == (400, failure(400, "Bad Request: message text is empty"))
    assert len(tg.messages) == 2


def test_caption_length_limit(tg: TelegramEmulator, bot: httpx.Client) -> None:
    photo = "https://quangngai.gov.vn/a.jpg"
    assert send(bot, "sendPhoto", chat_id=str(CHANNEL), photo=photo, caption="😀" * 512).status_code == 200
    too_long = send(bot, "sendPhoto", chat_id=str(CHANNEL), photo=photo, caption="ệ" * 1025)
    assert (too_long.status_code, too_long.json()) == (400, failure(400, "Bad Request: message caption is too long"))
    bad_markup = send(bot, "sendPhoto", chat_id=str(CHANNEL), photo=photo, caption="a < b", parse_mode="HTML")
    assert bad_markup.json() == failure(
        400, 'Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 2'
    )
    assert len(tg.messages) == 1


def test_flood_control_per_chat() -> None:
    emulator = TelegramEmulator(rate_per_chat=2)
    emulator.add_bot(TOKEN)
    emulator.add_chat(CHANNEL, username="quangngai_doanhnghiep")
    emulator.add_chat(-1009, username="quangngai_english")
    with emulator, loopback(emulator.url) as http:
        allowed = [send(http, "sendMessage", chat_id=str(CHANNEL), text=f"tin {n}").status_code for n in (1, 2)]
        refused = send(http, "sendMessage", chat_id="@quangngai_doanhnghiep", text="tin 3")
        other_chat = send(http, "sendMessage", chat_id="-1009", text="news")
    assert allowed == [200, 200]
    assert (refused.status_code, refused.json()) == (
        429,
        failure(429, "Too Many Requests: retry after 1", retry_after=1),
    )
    assert other_chat.status_code == 200
    assert [m.text for m in emulator.messages] == ["tin 1", "tin 2", "news"]


def test_migrated_group(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.add_chat(-4001, kind="group", title="Nhóm doanh nghiệp")
    tg.migrate(-4001, -1004001)
    old = send(bot, "sendMessage", chat_id="-4001", text="x")
    assert (old.status_code, old.json()) == (
        400,
        failure(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1004001),
    )
    new = send(bot, "sendMessage", chat_id="-1004001", text="x")
    assert new.json()["result"]["chat"] == {"id": -1004001, "type": "supergroup", "title": "Nhóm doanh nghiệp"}
    assert [(m.chat_id, m.message_id) for m in tg.messages] == [(-1004001, 1)]


def test_removed_and_non_member_bots(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.add_bot(OTHER_TOKEN, username="other_bot")
    tg.add_chat(555, kind="private", title="Nguyễn Văn A")
    tg.add_chat(-1007, username="only_main", members=[TOKEN])
    tg.remove_bot("@quangngai_doanhnghiep", TOKEN)
    tg.remove_bot(555, TOKEN)
    channel = send(bot, "sendMessage", chat_id=str(CHANNEL), text="x")
    assert (channel.status_code, channel.json()) == (
        403,
        failure(403, "Forbidden: bot is not a member of the channel chat"),
    )
    private = send(bot, "sendMessage", chat_id="555", text="x")
    assert (private.status_code, private.json()) == (403, failure(403, "Forbidden: bot was blocked by the user"))
    outsider = send(bot, "sendMessage", OTHER_TOKEN, chat_id="@only_main", text="x")
    assert outsider.json() == failure(403, "Forbidden: bot is not a member of the channel chat")
    assert send(bot, "sendMessage", OTHER_TOKEN, chat_id=str(CHANNEL), text="x").status_code == 200
    assert [(m.chat_id, m.bot_id) for m in tg.messages] == [(CHANNEL, 654321)]


def test_retry_after_fault(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.retry_after(7, target="@quangngai_doanhnghiep")
    assert send(bot, "sendMessage", chat_id=str(CHANNEL), text="x").status_code == 200  # another target
    refused = send(bot, "sendMessage", chat_id="@quangngai_doanhnghiep", text="y")
    assert (refused.status_code, refused.json()) == (
        429,
        failure(429, "Too Many Requests: retry after 7", retry_after=7),
    )
    assert send(bot, "sendMessage", chat_id="@quangngai_doanhnghiep", text="z").status_code == 200
    assert [m.text for m in tg.messages] == ["x", "z"]


def test_error_faults(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.faults.add(Fault("error"), method="sendMessage")
    tg.faults.add(Fault("accept_then_error", status=502), method="sendMessage")
    error = send(bot, "sendMessage", chat_id=str(CHANNEL), text="một")
    assert (error.status_code, error.json()) == (500, failure(500, "Internal Server Error"))
    accepted = send(bot, "sendMessage", chat_id=str(CHANNEL), text="hai")
    assert (accepted.status_code, accepted.json()) == (502, failure(502, "Bad Gateway"))
    assert [m.text for m in tg.messages] == ["hai"]


def test_accepting_fault_still_refuses_what_the_platform_refuses(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.faults.add(Fault("accept_then_error"))
    refused = send(bot, "sendMessage", chat_id=str(CHANNEL), text="a < b", parse_mode="HTML")
    assert refused.json() == failure(
        400, 'Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 2'
    )
    assert tg.messages == []


def test_hang_stores_nothing_and_accept_then_hang_stores(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.faults.add(Fault("hang", seconds=HANG))
    with pytest.raises(httpx.ReadTimeout):
        bot.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": str(CHANNEL), "text": "một"}, timeout=SHORT_TIMEOUT)
    tg.faults.add(Fault("accept_then_hang", seconds=HANG))
    with pytest.raises(httpx.ReadTimeout):
        bot.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": str(CHANNEL), "text": "hai"}, timeout=SHORT_TIMEOUT)
    assert [m.text for m in tg.messages] == ["hai"]
    tg.faults.add(Fault("hang", seconds=HANG))
    waited = send(bot, "sendMessage", chat_id=str(CHANNEL), text="ba")
    assert (waited.status_code, waited.json()) == (504, failure(504, "Gateway Timeout"))
    assert [m.text for m in tg.messages] == ["hai"]


def test_not_json_and_no_content_type(tg: TelegramEmulator, bot: httpx.Client) -> None:
    tg.faults.add(Fault("not_json"))
    tg.faults.add(Fault("no_content_type"))
    html = send(bot, "sendMessage", chat_id=str(CHANNEL), text="x")
    assert (html.status_code, html.headers["content-type"], html.text) == (
        502,
        "text/html; charset=utf-8",
        "<html>Bad Gateway</html>",
    )
    bare = send(bot, "sendMessage", chat_id=str(CHANNEL), text="x")
    assert bare.status_code == 200
    assert [name for name, _ in bare.headers.raw if name.lower() == b"content-type"] == []
    assert bare.json() == failure(502, "Bad Gateway")
    assert tg.messages == []


def test_tokens_never_kept(tg: TelegramEmulator, bot: httpx.Client) -> None:
    send(bot, "getMe")
    send(bot, "sendMessage", chat_id=str(CHANNEL), text="x")
    send(bot, "sendMessage", token="999:bad", chat_id=str(CHANNEL), text="x")
    kept = repr(tg.messages) + repr(tg.requests)
    assert "AAHtest" not in kept
    assert "999:bad" not in kept
    assert tg.requests == [("getMe", ""), ("sendMessage", str(CHANNEL)), ("sendMessage", str(CHANNEL))]


# --- Graph ---------------------------------------------------------------------------------

PAGE, PAGE_TOKEN = "1029384756", "EAAGpage-token-111"
OTHER_PAGE, OTHER_PAGE_TOKEN = "5647382910", "EAAGpage-token-222"
CREATED = "2027-01-15T08:00:00+0000"


@pytest.fixture(scope="module")
def fb_server() -> Iterator[GraphEmulator]:
    with GraphEmulator(clock=lambda: NOW) as emulator:
        yield emulator


@pytest.fixture
def fb(fb_server: GraphEmulator) -> GraphEmulator:
    fb_server.reset()
    fb_server.add_page(PAGE, "Sở Kế hoạch và Đầu tư Quảng Ngãi", PAGE_TOKEN)
    fb_server.add_page(OTHER_PAGE, "Cổng thông tin Quảng Ngãi", OTHER_PAGE_TOKEN)
    return fb_server


@pytest.fixture(scope="module")
def graph(fb_server: GraphEmulator) -> Iterator[httpx.Client]:
    with loopback(fb_server.base_url) as http:
        yield http


def post(http: httpx.Client, path: str, token: str | None = PAGE_TOKEN, **form: str) -> httpx.Response:
    """A form POST with the token in the body, as facebook-sdk sends it."""
    data = {**form, "access_token": token} if token else form
    return http.post(f"v23.0/{path}", data=data)


def get(http: httpx.Client, path: str, token: str = PAGE_TOKEN, **query: str) -> httpx.Response:
    return http.get(f"v23.0/{path}", params={**query, "access_token": token})


def graph_error(
    code: int, message: str, trace: int, kind: str = "OAuthException", **extra: object
) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": code, **extra, "fbtrace_id": f"AEmu{trace:08d}"}}


def test_read_page_and_me(fb: GraphEmulator, graph: httpx.Client) -> None:
    assert fb.base_url == f"{fb.url}/"
    page = get(graph, PAGE, OTHER_PAGE_TOKEN, fields="name")
    assert (page.status_code, page.json()) == (200, {"id": PAGE, "name": "Sở Kế hoạch và Đầu tư Quảng Ngãi"})
    assert get(graph, "me", fields="id,name").json() == {"id": PAGE, "name": "Sở Kế hoạch và Đầu tư Quảng Ngãi"}
    bad_field = get(graph, PAGE, fields="fan_count")
    assert bad_field.json() == graph_error(
        100, "(#100) Tried accessing nonexisting field (fan_count) on node type (Page)", 1
    )
    assert fb.requests == [("GET", "v23.0", PAGE), ("GET", "v23.0", "me"), ("GET", "v23.0", PAGE)]


def test_post_feed_and_photo_then_read_back(fb: GraphEmulator, graph: httpx.Client) -> None:
    link = "https://quangngai.gov.vn/r/abc123"
    feed = post(graph, f"{PAGE}/feed", message="Hướng dẫn hoàn thuế GTGT", link=link)
    assert (feed.status_code, feed.json()) == (200, {"id": f"{PAGE}_1"})
    photo = post(graph, f"{PAGE}/photos", url="https://quangngai.gov.vn/a.jpg", caption="Ảnh hội nghị")
    assert photo.json() == {"id": "900000000000001", "post_id": f"{PAGE}_2"}
    assert fb.posts(PAGE) == [
        GraphPost(f"{PAGE}_1", PAGE, "Hướng dẫn hoàn thuế GTGT", link, None, CREATED, "v23.0"),
        GraphPost(f"{PAGE}_2", PAGE, "Ảnh hội nghị", None, "https://quangngai.gov.vn/a.jpg", CREATED, "v23.0"),
    ]
    assert fb.posts(OTHER_PAGE) == []
    newest = get(graph, f"{PAGE}/feed", fields="id,message,created_time,link", limit="1")
    assert newest.json() == {
        "data": [{"id": f"{PAGE}_2", "message": "Ảnh hội nghị", "created_time": CREATED}],
        "paging": {},
    }
    both = get(graph, f"{PAGE}/posts", fields="message,link")
    assert both.json()["data"] == [
        {"id": f"{PAGE}_2", "message": "Ảnh hội nghị"},
        {"id": f"{PAGE}_1", "message": "Hướng dẫn hoàn thuế GTGT", "link": link},
    ]


def test_photo_upload_is_multipart(fb: GraphEmulator, graph: httpx.Client) -> None:
    response = graph.post(
        f"v23.0/{PAGE}/photos",
        data={"message": "Ảnh", "access_token": PAGE_TOKEN},
        files={"source": ("hoi-nghi.jpg", b"\xff\xd8\xff", "image/jpeg")},
    )
    assert response.json() == {"id": "900000000000001", "post_id": f"{PAGE}_1"}
    assert fb.posts()[0].photo_url == "upload:hoi-nghi.jpg"


def test_graph_refusals(fb: GraphEmulator, graph: httpx.Client) -> None:
    no_token = post(graph, f"{PAGE}/feed", token=None, message="x")
    assert (no_token.status_code, no_token.json()) == (
        400,
        graph_error(190, "Invalid OAuth access token - Cannot parse access token", 1),
    )
    other = post(graph, f"{PAGE}/feed", OTHER_PAGE_TOKEN, message="x")
    assert other.json() == graph_error(
        200, "(#200) The user hasn't authorized the application to perform this action", 2
    )
    empty = post(graph, f"{PAGE}/feed")
    assert empty.json() == graph_error(100, "(#100) Missing message or attachment", 3)
    no_photo = post(graph, f"{PAGE}/photos", message="x")
    assert no_photo.json() == graph_error(324, "(#324) Requires upload file", 4)
    unknown = post(graph, "999/feed", message="x")
    unsupported = (
        "Unsupported post request. Object with ID '999' does not exist, cannot be loaded due to missing permissions,"
        " or does not support this operation. Please read the Graph API documentation at"
        " https://developers.facebook.com/docs/graph-api"
    )
    assert unknown.json() == graph_error(100, unsupported, 5, "GraphMethodException", error_subcode=33)
    assert fb.posts() == []


def test_expired_token(fb: GraphEmulator, graph: httpx.Client) -> None:
    fb.expire_token(PAGE_TOKEN, at=datetime(2027, 1, 14, 22, 0, tzinfo=UTC))
    response = post(graph, f"{PAGE}/feed", message="x")
    message = (
        "Error validating access token: Session has expired on Thursday, 14-Jan-27 22:00:00 UTC."
        " The current time is Friday, 15-Jan-27 08:00:00 UTC."
    )
    assert (response.status_code, response.json()) == (400, graph_error(190, message, 1, error_subcode=463))
    fb.add_page(PAGE, "Sở Kế hoạch và Đầu tư Quảng Ngãi", "EAAGrenewed")
    assert post(graph, f"{PAGE}/feed", "EAAGrenewed", message="x").status_code == 200


def test_unknown_versions(fb: GraphEmulator, graph: httpx.Client) -> None:
    old = graph.get(f"v2.8/{PAGE}", params={"access_token": PAGE_TOKEN})
    assert (old.status_code, old.json()) == (
        400,
        graph_error(12, "(#12) Graph API version v2.8 is deprecated", 1, "GraphMethodException"),
    )
    future = graph.get(f"v99.0/{PAGE}", params={"access_token": PAGE_TOKEN})
    assert future.json() == graph_error(12, "(#12) Graph API version v99.0 is not available", 2, "GraphMethodException")


def test_page_rate_limit() -> None:
    emulator = GraphEmulator(rate_per_page=1)
    emulator.add_page(PAGE, "Sở", PAGE_TOKEN)
    with emulator, loopback(emulator.base_url) as http:
        first = post(http, f"{PAGE}/feed", message="một")
        second = post(http, f"{PAGE}/feed", message="hai")
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (400, graph_error(32, "(#32) Page request limit reached", 1))
    assert json.loads(second.headers["x-page-usage"]) == {
        "call_count": 100,
        "total_cputime": 10,
        "total_time": 10,
        "estimated_time_to_regain_access": 1,
    }
    assert [p.message for p in emulator.posts()] == ["một"]


def test_scripted_rate_limit_and_duplicate(fb: GraphEmulator, graph: httpx.Client) -> None:
    fb.rate_limited(80001, minutes=5, target=PAGE)
    fb.duplicate()
    limited = post(graph, f"{PAGE}/feed", message="x")
    message = "(#80001) There have been too many calls to this Page account. Wait a bit and try again."
    assert (limited.status_code, limited.json()) == (400, graph_error(80001, message, 1))
    assert json.loads(limited.headers["x-page-usage"])["estimated_time_to_regain_access"] == 5
    duplicate = post(graph, f"{PAGE}/feed", message="x")
    assert duplicate.json() == graph_error(506, "(#506) Duplicate status message", 2)
    assert post(graph, f"{PAGE}/feed", message="x").json() == {"id": f"{PAGE}_1"}


def test_graph_faults_store_only_when_accepting(fb: GraphEmulator, graph: httpx.Client) -> None:
    fb.faults.add(Fault("hang", seconds=HANG), method="feed")
    with pytest.raises(httpx.ReadTimeout):
        graph.post(f"v23.0/{PAGE}/feed", data={"message": "một", "access_token": PAGE_TOKEN}, timeout=SHORT_TIMEOUT)
    fb.faults.add(Fault("accept_then_hang", seconds=HANG), method="feed", target=PAGE)
    with pytest.raises(httpx.ReadTimeout):
        graph.post(f"v23.0/{PAGE}/feed", data={"message": "hai", "access_token": PAGE_TOKEN}, timeout=SHORT_TIMEOUT)
    fb.faults.add(Fault("accept_then_error"), method="photos")
    failed = post(graph, f"{PAGE}/photos", url="https://quangngai.gov.vn/a.jpg", message="ba")
    transient = "An unexpected error has occurred. Please retry your request later."
    assert (failed.status_code, failed.json()) == (500, graph_error(2, transient, 1, is_transient=True))
    assert [p.message for p in fb.posts()] == ["hai", "ba"]


def test_graph_not_json_and_no_content_type(fb: GraphEmulator, graph: httpx.Client) -> None:
    fb.faults.add(Fault("not_json"), method="feed")
    fb.faults.add(Fault("no_content_type"), method="page", target=PAGE)
    html = post(graph, f"{PAGE}/feed", message="x")
    assert (html.status_code, html.headers["content-type"], html.text) == (
        502,
        "text/html; charset=utf-8",
        "<html>Bad Gateway</html>",
    )
    bare = get(graph, "me")  # "me" is matched as the token's page
    assert bare.status_code == 200
    assert [name for name, _ in bare.headers.raw if name.lower() == b"content-type"] == []
    transient = "An unexpected error has occurred. Please retry your request later."
    assert bare.json() == graph_error(2, transient, 1, is_transient=True)
    assert fb.posts() == []


def test_graph_never_keeps_tokens(fb: GraphEmulator, graph: httpx.Client) -> None:
    post(graph, f"{PAGE}/feed", message="x")
    get(graph, f"{PAGE}/feed")
    assert fb.requests == [("POST", "v23.0", f"{PAGE}/feed"), ("GET", "v23.0", f"{PAGE}/feed")]
    assert "EAAG" not in repr(fb.requests) + repr(fb.posts())
