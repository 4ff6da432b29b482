"""The click classifier: link-card fetchers, crawlers and tools are not visits; people in any app are.

Measured on a labelled corpus (tests/agent_corpus.py): at least 99 % of people
counted human, at most 0.5 % of everything else.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import main
from outreach.agents import AGENT_LIMIT, Classifier, clean_agent, load_rules
from outreach.config import AgentPatterns, Settings
from outreach.db import Store
from outreach.models import Click, ClickKind, Link
from outreach.reclassify import reclassify
from tests.agent_corpus import BOTS, IN_APP_AND_REGIONAL, PREVIEWS, figures

HUMAN, PREVIEW, BOT, HEAD = ClickKind.human, ClickKind.preview, ClickKind.bot, ClickKind.head
BROWSER = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"
)
META_IAB = (
    "Mozilla/5.0 (Linux; Android 16; Pixel 9 Build/BP2A.250605.031; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/146.0.7680.174 Mobile Safari/537.36 MetaIAB Facebook"
)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()


# --- families ----------------------------------------------------------------------

FAMILIES = [
    # link-card fetchers, one or more per family
    ("TelegramBot (like TwitterBot)", PREVIEW),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", PREVIEW),
    ("Facebot", PREVIEW),
    ("facebookcatalog/1.0", PREVIEW),
    ("meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)", PREVIEW),
    ("meta-externalfetcher/1.1", PREVIEW),
    ("Mozilla/5.0 (compatible; Meta-ExternalHit/1.1; +http://www.facebook.com/externalhit_uatext.php)", PREVIEW),
    ("WhatsApp/2.23.20.0 A", PREVIEW),
    ("Mozilla/5.0 (compatible; Zalo-LinkPreview/1.0)", PREVIEW),
    ("Viber/21.5.0.0", PREVIEW),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", PREVIEW),
    ("Slack-ImgProxy (+https://api.slack.com/robots)", PREVIEW),
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", PREVIEW),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com", PREVIEW),
    ("MicrosoftPreview/2.0; +https://aka.ms/MicrosoftPreview", PREVIEW),
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", PREVIEW),
    ("Twitterbot/1.0", PREVIEW),
    ("Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)", PREVIEW),
    ("Pinterest/0.2 (+http://www.pinterest.com/bot.html)", PREVIEW),
    ("Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)", PREVIEW),
    ("Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)", PREVIEW),
    ("Google-PageRenderer Google (+https://developers.google.com/+/web/snippet/)", PREVIEW),
    ("BlueskyPreviewBot/1.0", PREVIEW),  # known to crawler-user-agents only
    # search engines, Vietnam's first
    ("Mozilla/5.0 (compatible; coccocbot-web/1.0; +http://help.coccoc.com/searchengine)", BOT),
    ("Mozilla/5.0 (compatible; coccocbot-image/1.0; +http://help.coccoc.com/searchengine)", BOT),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BOT),
    ("Mozilla/5.0 (compatible; Google-InspectionTool/1.0)", BOT),
    ("Mozilla/5.0 (compatible; GoogleOther)", BOT),
    ("AdsBot-Google (+http://www.google.com/adsbot.html)", BOT),
    ("Mediapartners-Google", BOT),
    ("FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)", BOT),
    (
        "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0 Safari/537.36",
        BOT,
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        BOT,
    ),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", BOT),
    ("Mozilla/5.0 (compatible; YandexMetrika/2.0; +http://yandex.com/bots yabs01)", BOT),
    ("Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", BOT),
    ("Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)", BOT),
    # HTTP libraries and tools
    ("curl/8.5.0", BOT),
    ("Wget/1.21.4", BOT),
    ("python-requests/2.32.3", BOT),
    ("python-httpx/0.27.0", BOT),
    ("Python-urllib/3.11", BOT),
    ("Python/3.11 aiohttp/3.9.5", BOT),
    ("Go-http-client/2.0", BOT),
    ("okhttp/4.12.0", BOT),
    ("Java/17.0.9", BOT),
    ("Apache-HttpClient/4.5.14 (Java/17.0.9)", BOT),
    ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", BOT),
    ("axios/1.6.8", BOT),
    # monitors, feed readers, AI agents
    ("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", BOT),
    ("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 3 subscribers)", BOT),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", BOT),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot", BOT),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", BOT),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0)", BOT),
    # headless browsers
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
        BOT,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0 Safari/537.36 Chrome-Lighthouse",
        BOT,
    ),
    ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1", BOT),
]


@pytest.mark.parametrize(("agent", "kind"), FAMILIES, ids=[a[:48] for a, _ in FAMILIES])
def test_each_family_whatever_its_case(classifier: Classifier, agent: str, kind: ClickKind) -> None:
    for spelling in (agent, agent.upper(), agent.lower()):
        assert classifier.kind("GET", spelling) is kind, (spelling, classifier.explain(spelling))


@pytest.mark.parametrize("agent", IN_APP_AND_REGIONAL, ids=[a[-48:] for a in IN_APP_AND_REGIONAL])
def test_in_app_and_regional_browsers_are_people(classifier: Classifier, agent: str) -> None:
    assert classifier.kind("GET", agent) is HUMAN, classifier.explain(agent)


@pytest.mark.parametrize("agent", [*PREVIEWS, *BOTS], ids=[a[:48] for a in [*PREVIEWS, *BOTS]])
def test_hand_written_non_people_are_not_human(classifier: Classifier, agent: str) -> None:
    expected = PREVIEW if agent in PREVIEWS else BOT
    assert classifier.kind("GET", agent) is expected, classifier.explain(agent)


def test_cococ_crawler_is_a_bot_but_its_browser_a_person(classifier: Classifier) -> None:
    browser = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) coc_coc_browser/128.0.256 "
        "Chrome/122.0.6261.256 Safari/537.36"
    )
    assert classifier.kind("GET", browser) is HUMAN
    assert (
        classifier.kind("GET", "Mozilla/5.0 (compatible; coccocbot-web/1.0; +http://help.coccoc.com/searchengine)")
        is BOT
    )


@pytest.mark.parametrize("agent", [BROWSER, "TelegramBot (like TwitterBot)", "curl/8.5.0", ""])
@pytest.mark.parametrize("method", ["HEAD", "head"])
def test_head_is_never_a_click(classifier: Classifier, method: str, agent: str) -> None:
    assert classifier.kind(method, agent) is HEAD


@pytest.mark.parametrize("agent", ["", " ", "\t\r\n", "\x00\x1b\x7f\x85"])
def test_no_agent_is_a_bot(classifier: Classifier, agent: str) -> None:
    assert classifier.kind("GET", agent) is BOT


@pytest.mark.parametrize(
    "agent",
    [
        "MyTool/1.0",
        "Zalo",  # a bare name, never the in-app browser
        "Java",
        "Mozilla/5.0",
        "Mozilla/5.0 (compatible)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "Zalo/23.12.01 (iPhone; iOS 17.2; Scale/3.00)",  # the app's own HTTP stack, though ua-parser sees a WebView
        "Dalvik/2.1.0 (Linux; U; Android 13; SM-A546E Build/TP1A.220624.014)",
        "Trình duyệt của tôi",
    ],
)
def test_what_does_not_look_like_a_browser_is_not_a_person(classifier: Classifier, agent: str) -> None:
    assert classifier.kind("GET", agent) is not HUMAN, classifier.explain(agent)


def test_the_install_s_patterns_come_first_and_ignore_case() -> None:
    kiosk, app = "QuangNgaiKiosk/2.1", "Mozilla/5.0 (Linux; Android 13) Chrome/120.0 Mobile Safari/537.36 OurChat/3.4"
    default = Classifier()
    assert [default.kind("GET", a) for a in (kiosk, app, BROWSER, META_IAB)] == [BOT, HUMAN, HUMAN, HUMAN]
    extra = AgentPatterns(human=[r"^quangngaikiosk/\d"], preview=["OURCHAT/"], bot=["SM-A546E", "metaiab"])
    tuned = Classifier(extra)
    assert [tuned.kind("GET", a) for a in (kiosk, app, BROWSER, META_IAB)] == [HUMAN, PREVIEW, BOT, BOT]
    assert tuned.explain(BROWSER) == "bot: the install's bot patterns ('SM-A546E')"
    # Meta's in-app browser is a person by default (unverified): one line of config makes it a preview.
    assert Classifier(AgentPatterns(preview=["MetaIAB Facebook"])).kind("GET", META_IAB) is PREVIEW


def test_explain_names_the_rule(classifier: Classifier) -> None:
    assert classifier.explain("TelegramBot (like TwitterBot)") == "preview: a packaged preview rule ('telegrambot')"
    assert classifier.explain("MyTool/1.0") == "bot: not shaped like a browser's agent"
    assert classifier.explain(BROWSER) == "human: Chrome on Android"
    assert classifier.explain("") == "bot: no user agent"


def test_a_long_agent_is_judged_as_stored(classifier: Classifier) -> None:
    # Judged on the first 255 characters, as the column keeps it: a live click and a reclassified one agree.
    padded = BROWSER + " " + "x" * (AGENT_LIMIT - len(BROWSER) - 1)
    assert classifier.kind("GET", padded + " Googlebot/2.1") is HUMAN
    assert classifier.kind("GET", padded + " Googlebot/2.1" + "y" * 5000) is HUMAN  # uncached, same answer


def test_the_packaged_rules_load_and_skip_only_what_the_library_has() -> None:
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    rules = load_rules()
    assert all([rules.preview, rules.bot, rules.human, rules.generic_bot, rules.browser_shape, rules.not_browsers])
    known = {entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA}
    assert set(rules.crawler_user_agents.skip) <= known, "a skipped entry left crawler-user-agents: drop it"


# --- cleaning ------------------------------------------------------------------------


def test_clean_agent_recovers_utf8_that_the_server_read_as_latin1() -> None:
    sent = "Mozilla/5.0 (Trình duyệt Cốc Cốc)"
    assert clean_agent(sent.encode("utf-8").decode("latin-1")) == sent
    assert clean_agent(sent) == sent  # already text: kept
    assert clean_agent(b"Agent \xff\xfe".decode("latin-1")) == "Agent \ufffd\ufffd"  # not UTF-8: replaced


def test_clean_agent_drops_controls_collapses_space_and_normalises() -> None:
    sent = "  Mozilla/5.0\x00 (X11;\x1b\tLinux)\x7f\u0085\u009f \r\n "
    assert clean_agent(sent.encode().decode("latin-1")) == "Mozilla/5.0 (X11; Linux)"
    assert clean_agent("Trình duyệt\x85\x9f\x00") == "Trình duyệt"  # proper text (not Latin-1 bytes) too
    decomposed = unicodedata.normalize("NFD", "Trình duyệt")
    assert clean_agent(decomposed) == clean_agent(decomposed.encode().decode("latin-1")) == "Trình duyệt"  # NFC
    assert clean_agent("a\ud800b") == "a\ufffdb"  # a lone surrogate would make the database refuse the row
    assert clean_agent("") == ""


def test_clean_agent_caps_at_the_column_length() -> None:
    cleaned = clean_agent("Mozilla/5.0 " + "é" * 600)
    assert len(cleaned) == AGENT_LIMIT
    assert clean_agent("x" * 254 + " y") == "x" * 254  # no trailing space left by the cut


# --- the labelled corpus ---------------------------------------------------------------


def test_labelled_corpus_figures(classifier: Classifier) -> None:
    human_ok, others_as_human, details = figures(classifier)
    summary = (
        f"people counted human {human_ok:.2%} of {details.humans}; "
        f"non-people counted human {others_as_human:.2%} of {details.others}"
    )
    print(summary)
    assert human_ok >= 0.99, f"{summary}\n{details.report()}"
    assert others_as_human <= 0.005, f"{summary}\n{details.report()}"


# --- reclassify -----------------------------------------------------------------------

AT = datetime(2030, 11, 20, 3, 0, tzinfo=UTC)
STORED = [
    # (agent, kind stored, day of November 2030)
    ("TelegramBot (like TwitterBot)", HUMAN, 20),
    ("facebookexternalhit/1.1", HUMAN, 21),
    ("WhatsApp/2.23.20.0 A", HUMAN, 22),
    ("curl/8.5.0", HUMAN, 22),
    (BROWSER, HUMAN, 22),  # right already: not written
    (BROWSER, BOT, 23),
    (None, HUMAN, 23),  # no agent stored
    ("facebookexternalhit/1.1", HUMAN, 10),  # before --since
]


def store_clicks(store: Store) -> list[int]:
    with store.sessions.begin() as session:
        session.add(Link(code="abc123", destination="https://quangngai.gov.vn/tin-tuc/1.html"))
        session.flush()  # no relationship tells the ORM that the link goes in first
        clicks = [
            Click(code="abc123", at=AT.replace(day=day), kind=kind, user_agent=agent) for agent, kind, day in STORED
        ]
        session.add_all(clicks)
        session.flush()
        return [c.id for c in clicks]


def kinds(store: Store) -> list[ClickKind]:
    with store.sessions() as session:
        return list(session.scalars(select(Click.kind).order_by(Click.id)))


def test_reclassify_in_small_chunks_changes_only_what_differs(store: Store, classifier: Classifier) -> None:
    store_clicks(store)
    done = reclassify(store, classifier, since=datetime(2030, 11, 15, tzinfo=UTC), chunk=2)
    assert done.checked == 7
    assert done.changed == {(HUMAN, PREVIEW): 3, (HUMAN, BOT): 2, (BOT, HUMAN): 1}
    assert kinds(store) == [PREVIEW, PREVIEW, PREVIEW, BOT, HUMAN, HUMAN, BOT, HUMAN]
    again = reclassify(store, classifier)
    assert (again.checked, again.total_changed) == (8, 1)  # the click before --since, now; then nothing is left
    assert reclassify(store, classifier).total_changed == 0


def test_clicks_reclassify_command(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(db_url=store.url)
    store_clicks(store)
    runner = CliRunner()
    args = ["--config", str(settings.config_path), "--db", store.url, "clicks", "reclassify"]

    result = runner.invoke(main, [*args, "--since", "2030-11-15"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "7 clicks since 2030-11-15 checked; 6 changed kind:",
        "  human → preview: 3",
        "  human → bot: 2",
        "  bot → human: 1",
    ]
    assert kinds(store) == [PREVIEW, PREVIEW, PREVIEW, BOT, HUMAN, HUMAN, BOT, HUMAN]

    result = runner.invoke(main, args)
    assert (result.exit_code, result.output) == (0, "8 clicks checked; 1 changed kind:\n  human → preview: 1\n")
    assert runner.invoke(main, args).output == "8 clicks checked; none changed kind\n"
    assert runner.invoke(main, [*args, "--since", "20301115"]).exit_code == 2


def test_clicks_reclassify_help() -> None:
    result = CliRunner().invoke(main, ["clicks", "reclassify", "--help"])
    assert result.exit_code == 0, result.output
    assert "--since" in result.output
