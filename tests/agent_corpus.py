"""A labelled corpus of user agents, from public sources, to measure the click classifier.

People: every distinct browser agent in fake-useragent's data file (real traffic
shares, read directly: its random API is not used) and hand-written in-app and
regional browsers that such a sample under-represents (Facebook, Messenger,
Instagram, Zalo, Telegram, Cốc Cốc, LINE, KakaoTalk, phones sold in Vietnam).
Not people: every example in crawler-user-agents, and hand-written link-preview
fetchers (one or more per family in PLATFORM_FACTS), HTTP libraries and tools,
headless browsers and automation, an app's own HTTP stack, and empty agents.

`figures(classifier)` gives the two numbers the classifier is held to (share of
people counted human, share of non-people counted human) and the misses, for the
test and for anyone measuring a rule change.

Run: .venv/bin/python -m tests.agent_corpus (prints the figures and the misses)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

from outreach.models import ClickKind

HUMAN, PREVIEW, BOT = ClickKind.human, ClickKind.preview, ClickKind.bot

# --- people ------------------------------------------------------------------------

IN_APP_AND_REGIONAL = [
    # Facebook on iOS and Android, Facebook Lite, Messenger
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/480.0.0.33.109;FBBV/640000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBCR/;FBID/phone;FBLC/vi_VN;FBOP/5]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/489.0.0.48.108;FBBV/659617446;FBDV/iPhone16,2;FBMD/iPhone;FBSN/iOS;FBSV/18.1;FBSS/3;FBID/phone;FBLC/vi_VN;FBOP/5;FBRV/661802931;IABMV/1]",
    "Mozilla/5.0 (Linux; Android 13; SM-A536E Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/445.0.0.34.118;]",
    "Mozilla/5.0 (Linux; Android 14; 23129RAA4G Build/UKQ1.231003.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/129.0.6668.100 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/485.0.0.70.77;IABMV/1;]",
    "Mozilla/5.0 (Linux; Android 16; Pixel 9 Build/BP2A.250605.031; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/146.0.7680.174 Mobile Safari/537.36 MetaIAB Facebook",
    "Mozilla/5.0 (Linux; Android 11; CPH2185 Build/RP1A.200720.011; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/118.0.5993.111 Mobile Safari/537.36 [FBAN/EMA;FBLC/vi_VN;FBAV/392.0.0.10.106;]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/MessengerForiOS;FBAV/450.0.0.38.108;FBBV/558437047;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.2.1;FBSS/3;FBCR/;FBID/phone;FBLC/vi_VN;FBOP/5;FBRV/0]",
    "Mozilla/5.0 (Linux; Android 12; V2120 Build/SP1A.210812.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/Orca-Android;FBAV/441.0.0.24.109;]",
    # Instagram and Threads
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Instagram 311.0.2.14.106 (iPhone13,2; iOS 17_1_2; vi_VN; vi; scale=3.00; 1170x2532; 545288166)",
    "Mozilla/5.0 (Linux; Android 12; SM-A325F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 Instagram 309.1.0.41.113 Android "
    "(31/12; 450dpi; 1080x2186; samsung; SM-A325F; a32; mt6769t; vi_VN; 541635863)",
    "Mozilla/5.0 (Linux; Android 14; RMX3710 Build/UKQ1.230924.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/128.0.6613.127 Mobile Safari/537.36 Barcelona 349.0.0.39.106 Android "
    "(34/14; 480dpi; 1080x2400; realme; RMX3710; RE5C6CL1; mt6769; vi_VN; 638146231)",
    # Zalo's in-app browser, Android and iOS
    "Mozilla/5.0 (Linux; Android 13; SM-A546E Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.193 Mobile Safari/537.36 Zalo android/12100648 ZaloTheme/light ZaloLanguage/vi",
    "Mozilla/5.0 (Linux; Android 13) Chrome/120.0 Mobile Safari/537.36 Zalo android/12100648 ZaloTheme/light",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Zalo iOS/509 ZaloTheme/dark ZaloLanguage/vi",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Zalo/23.09.01 ZaloTheme/light ZaloLanguage/vn",
    # Telegram's in-app browser (iOS opens Safari's view: a plain Safari agent)
    "Mozilla/5.0 (Linux; Android 14; Pixel 7 Build/AP2A.240805.005; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/127.0.6533.103 Mobile Safari/537.36 Telegram-Android/11.0.0 (Google Pixel 7; Android 14; SDK 34; AVERAGE)",
    "Mozilla/5.0 (Linux; Android 12; 220333QAG Build/SKQ1.211006.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/122.0.6261.105 Mobile Safari/537.36 Telegram-Android/10.9.1 (Xiaomi 220333QAG; Android 12; SDK 31; AVERAGE)",
    # Cốc Cốc browser: desktop, Android, iOS
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) coc_coc_browser/128.0.256 "
    "Chrome/122.0.6261.256 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) coc_coc_browser/130.0.190 "
    "Chrome/124.0.6367.190 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; SM-A127F) AppleWebKit/537.36 (KHTML, like Gecko) coc_coc_browser/126.0.242 "
    "Chrome/120.0.6099.242 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "coc_coc_browser/96.0.250 Mobile/15E148 Safari/604.1",
    # LINE, KakaoTalk, WeChat, TikTok
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/13.20.0",
    "Mozilla/5.0 (Linux; Android 13; SM-A135F Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36 Line/13.19.1/IAB",
    "Mozilla/5.0 (Linux; Android 13; SM-S911N Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.193 Mobile Safari/537.36;KAKAOTALK 2410470",
    "Mozilla/5.0 (Linux; Android 13; V2207 Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 "
    "MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI Language/vi_VN ABI/arm64",
    "Mozilla/5.0 (Linux; Android 13; CPH2577 Build/TP1A.220905.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 trill_340803 JsSdk/1.0 NetType/WIFI Channel/googleplay "
    "AppName/trill app_version/34.8.3 ByteLocale/vi ByteFullLocale/vi Region/VN AppId/1180 Spark/1.5.7.3-bugfix "
    "AppVersion/34.8.3 BytedanceWebview/d8a21c6",
    # Samsung Internet, Opera Mini (Presto and Chromium), UC Browser, Edge on three systems
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 "
    "Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A155F) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 "
    "Chrome/122.0.0.0 Mobile Safari/537.36",
    "Opera/9.80 (Android; Opera Mini/36.2.2254/119.132; U; vi) Presto/2.12.423 Version/12.16",
    "Mozilla/5.0 (Linux; U; Android 13; vi-vn; SM-A045F Build/TP1A.220624.014) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/118.0.0.0 Mobile Safari/537.36 OPR/78.1.2254.76521",
    "Mozilla/5.0 (Linux; U; Android 11; vi-VN; RMX2185 Build/RP1A.201005.001) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
    "EdgiOS/131.2903.68 Mobile/15E148 Safari/605.1.15",
    # Phones and their own browsers on the Vietnamese market: Xiaomi, OPPO, vivo, realme, Samsung, Nokia, Vsmart, KaiOS
    "Mozilla/5.0 (Linux; Android 14; 23129RAA4G) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 13; vi-vn; 2201117TG Build/TKQ1.221114.001) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/112.0.5615.136 Mobile Safari/537.36 XiaoMi/MiuiBrowser/14.9.1-gn",
    "Mozilla/5.0 (Linux; Android 13; CPH2577) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 13; vi-vn; CPH2579 Build/TP1A.220905.001) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/115.0.5790.168 Mobile Safari/537.36 HeyTapBrowser/45.11.1.1",
    "Mozilla/5.0 (Linux; Android 13; V2310) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; V2207; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/87.0.4280.141 "
    "Mobile Safari/537.36 VivoBrowser/13.6.6.0",
    "Mozilla/5.0 (Linux; Android 13; RMX3710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; TA-1418) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; Joy 4) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Mobile; Nokia 8110 4G; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
]

# --- not people ------------------------------------------------------------------------

PREVIEWS = [
    # Telegram
    "TelegramBot (like TwitterBot)",
    # Facebook / Meta in all spellings; iMessage and LINE fetch as facebookexternalhit
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "facebookexternalhit/1.1",
    "Facebot",
    "facebookcatalog/1.0",
    "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "meta-externalfetcher/1.1",
    "Mozilla/5.0 (compatible; Meta-ExternalHit/1.1; +http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 "
    "Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
    "facebookexternalhit/1.1;line-poker/1.0",
    # WhatsApp
    "WhatsApp/2.23.20.0 A",
    "WhatsApp/2.2407.3 i",
    # Zalo's fetcher (unverified: a Zalo name joined to a fetcher word)
    "Mozilla/5.0 (compatible; Zalo-LinkPreview/1.0)",
    "ZaloBot/1.0",
    # Viber
    "Viber/21.5.0.0",
    # Slack
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slack-ImgProxy (+https://api.slack.com/robots)",
    "Slackbot 1.0 (+https://api.slack.com/robots)",
    # Discord
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    # Skype and Teams
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
    "MicrosoftPreview/2.0; +https://aka.ms/MicrosoftPreview",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Teams/1.6.00.4472 "
    "Chrome/91.0.4472.164 Electron/13.6.6 Safari/537.36",
    # LinkedIn, X, Pinterest, Reddit, Embedly, Google, Bluesky, Snapchat, KakaoTalk, VK
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
    "Pinterest/0.2 (+http://www.pinterest.com/bot.html)",
    "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 "
    "Mobile Safari/537.36 (compatible; Google-PageRenderer; +https://developers.google.com/+/web/snippet/)",
    "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
    "Mozilla/5.0 (compatible; SnapURLPreview/1.0; +https://www.snapchat.com)",
    "kakaotalk-scrap/1.0; +https://devtalk.kakao.com/docs/scrap",
    "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
]

BOTS = [
    # Search engines named in PLATFORM_FACTS
    "Mozilla/5.0 (compatible; coccocbot-web/1.0; +http://help.coccoc.com/searchengine)",
    "Mozilla/5.0 (compatible; coccocbot-image/1.0; +http://help.coccoc.com/searchengine)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 "
    "Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0)",
    "Mozilla/5.0 (compatible; GoogleOther)",
    "AdsBot-Google (+http://www.google.com/adsbot.html)",
    "Mediapartners-Google",
    "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
    "Mozilla/5.0 (X11; Linux x86_64; Storebot-Google/1.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.88 Safari/537.36",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; YandexMetrika/2.0; +http://yandex.com/bots yabs01)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    # HTTP libraries and tools
    "curl/8.5.0",
    "curl",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "python-httpx/0.27.0",
    "Python-urllib/3.11",
    "Python/3.11 aiohttp/3.9.5",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "Java/17.0.9",
    "Java/1.8.0_392",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "node-fetch",
    "axios/1.6.8",
    "undici",
    "node",
    "Dart/3.2 (dart:io)",
    "PostmanRuntime/7.36.0",
    "insomnia/8.6.1",
    "HTTPie/3.2.2",
    "libwww-perl/6.72",
    "GuzzleHttp/7",
    "Ruby",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "WordPress/6.4.2; https://example.vn",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "Microsoft Office Existence Discovery",
    # An app's own HTTP stack: not a browser, although ua-parser reads a browser into some of them
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-A546E Build/TP1A.220624.014)",
    "FBiOS/450 CFNetwork/1490.0.4 Darwin/23.2.0",
    "Zalo/23.12.01 (iPhone; iOS 17.2; Scale/3.00)",
    "Instagram 311.0.2.14.106 (iPhone13,2; iOS 17_1_2; vi_VN; vi; scale=3.00; 1170x2532; 545288166)",
    "okhttp/4.9.2 (Linux; Android 13)",
    # Monitors, feed readers, AI agents
    "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 3 subscribers)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
    # Headless browsers and automation
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.33 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 "
    "Mobile Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
    # Unknown tools and bare names: not shaped like a browser
    "MyTool/1.0",
    "Zalo",
    "Java",
    "Mozilla/5.0",
    "Mozilla/5.0 (compatible)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
    "-",
    # Empty, or nothing but white space and controls
    "",
    "   ",
    "\t\x00\x7f",
]


def _fake_useragent_browsers() -> list[str]:
    """Distinct browser agents from fake-useragent's data file (the package's random API is not used)."""
    data = resources.files("fake_useragent").joinpath("data/browsers.jsonl")
    with data.open(encoding="utf-8") as lines:
        return list(dict.fromkeys(json.loads(line)["useragent"] for line in lines if line.strip()))


def _crawler_examples() -> list[tuple[str, ClickKind]]:
    """Every example agent in crawler-user-agents, as preview (link-card tags) or bot."""
    from crawleruseragents import CRAWLER_USER_AGENTS_DATA

    examples = []
    for entry in CRAWLER_USER_AGENTS_DATA:
        kind = PREVIEW if "social-preview" in (entry.get("tags") or ()) else BOT
        examples += [(agent, kind) for agent in entry.get("instances") or ()]
    return examples


def corpus() -> list[tuple[str, ClickKind]]:
    """Every sample as (agent, expected kind); an agent appears once (the first label wins)."""
    samples = [(agent, HUMAN) for agent in [*_fake_useragent_browsers(), *IN_APP_AND_REGIONAL]]
    samples += [(agent, PREVIEW) for agent in PREVIEWS] + [(agent, BOT) for agent in BOTS]
    samples += _crawler_examples()
    labelled: dict[str, ClickKind] = {}
    for agent, kind in samples:
        labelled.setdefault(agent, kind)
    return list(labelled.items())


class Judge(Protocol):
    def kind(self, method: str, user_agent: str) -> ClickKind: ...


@dataclass
class Details:
    """What the figures are made of, and every sample counted on the wrong side."""

    humans: int = 0
    others: int = 0
    humans_missed: list[tuple[str, ClickKind]] = field(default_factory=list)  # a person, counted as this
    others_as_human: list[tuple[str, ClickKind]] = field(default_factory=list)  # (agent, expected kind)
    wrong_kind: list[tuple[str, ClickKind, ClickKind]] = field(default_factory=list)  # not human either way

    def report(self, limit: int = 40) -> str:
        lines = [f"{len(self.humans_missed)} of {self.humans} people not counted human:"]
        lines += [f"  {kind.value:<8} {agent!r}" for agent, kind in self.humans_missed[:limit]]
        lines.append(f"{len(self.others_as_human)} of {self.others} non-people counted human:")
        lines += [f"  {kind.value:<8} {agent!r}" for agent, kind in self.others_as_human[:limit]]
        lines.append(f"{len(self.wrong_kind)} previews and bots told apart wrongly (expected -> got):")
        lines += [f"  {want.value} -> {got.value}: {agent!r}" for agent, want, got in self.wrong_kind[:limit]]
        return "\n".join(lines)


def figures(classifier: Judge) -> tuple[float, float, Details]:
    """(share of people counted human, share of non-people counted human, details); shares are 0..1."""
    details = Details()
    for agent, expected in corpus():
        got = classifier.kind("GET", agent)
        if expected is HUMAN:
            details.humans += 1
            if got is not HUMAN:
                details.humans_missed.append((agent, got))
        else:
            details.others += 1
            if got is HUMAN:
                details.others_as_human.append((agent, expected))
            elif got is not expected:
                details.wrong_kind.append((agent, expected, got))
    human_ok = 1 - len(details.humans_missed) / details.humans
    others_as_human = len(details.others_as_human) / details.others
    return human_ok, others_as_human, details


if __name__ == "__main__":
    import time

    from outreach.agents import Classifier

    started = time.perf_counter()
    built = Classifier()
    print(f"Classifier(): {time.perf_counter() - started:.2f} s")
    human_ok, others_as_human, found = figures(built)
    print(f"people counted human: {human_ok:.2%} of {found.humans}")
    print(f"non-people counted human: {others_as_human:.2%} of {found.others}")
    print(found.report(limit=200))
