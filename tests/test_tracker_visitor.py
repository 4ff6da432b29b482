"""The visitor key (issue 8, migration 0011): one number per (network hash, agent), the same from every writer.

The live tracker, a replayed spool line written before the key existed, the
migration's backfill of older clicks, the ORM and `outreach clicks reclassify`
must all give one visitor one key, or the report would count them twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from alembic import command
from sqlalchemy import Engine, inspect, select, text

from outreach.agents import Classifier
from outreach.click_spool import ClickRow, from_line, to_line
from outreach.config import Settings
from outreach.db import Access, Store, _alembic_config, current_revision, head_revision, make_engine
from outreach.models import Click, ClickKind, Link
from outreach.reclassify import reclassify
from outreach.tracking import ClickIds, visitor_key
from tests.test_tracker import BROWSER, make_campaign
from tests.test_tracker_hard import hammer, serve_tracker

AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def test_the_key_is_a_fixed_signed_64_bit_function_of_hash_and_agent() -> None:
    key = visitor_key("0123456789abcdef0123456789abcdef", BROWSER)
    # Pinned: stored keys depend on it, so a change here would split every visitor in two.
    assert key == visitor_key("0123456789abcdef0123456789abcdef", BROWSER) == 4553692771336731156
    assert -(2**63) <= key < 2**63
    assert visitor_key(None, None) == visitor_key("", "")  # the report always counted a missing value as empty
    assert visitor_key("ab", "c") != visitor_key("a", "bc")
    assert len({visitor_key(f"h{n}", BROWSER) for n in range(10_000)}) == 10_000


def test_spool_lines_carry_the_key_and_old_lines_get_it_on_replay() -> None:
    row = ClickRow("abcdefgh12", AT, ClickKind.human, "h1", BROWSER, None, False, "u1", visitor_key("h1", BROWSER))
    assert from_line(to_line(row)) == row
    old = {k: v for k, v in json.loads(to_line(row)).items() if k != "visitor"}  # as written before 0011
    assert from_line(json.dumps(old)) == row
    unkeyed = row._replace(visitor=None)  # a row handed over without its key is written with it
    assert from_line(to_line(unkeyed)) == row


def _keys(store: Store) -> dict[str, int | None]:
    with store.sessions() as session:
        return dict(session.execute(select(Click.uid, Click.visitor)).all())  # type: ignore[arg-type]


def _upgrade_from(store: Store, revision: str) -> None:
    """Down to `revision`, then up again (what `outreach init` does on an older database)."""
    config = _alembic_config(store.engine)
    command.downgrade(config, revision)
    assert current_revision(store.engine) == revision
    command.upgrade(config, "head")
    assert current_revision(store.engine) == head_revision()


def test_one_visitor_gets_one_key_live_from_an_old_spool_line_and_from_the_migration(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    code = make_campaign(store, settings)["facebook"]
    with serve_tracker(store, settings) as server:
        assert asyncio.run(hammer(server.url, f"/r/{code}", 1, agent=BROWSER)) == [302]
    with store.sessions() as session:
        live = session.scalars(select(Click)).one()
    assert live.ip_hash
    assert live.user_agent == f"{BROWSER} n0"
    assert live.visitor == visitor_key(live.ip_hash, live.user_agent)

    # The same visitor's click spooled by a tracker older than the key: the line has none.
    line = {
        "code": code,
        "at": AT.isoformat(),
        "kind": "human",
        "ip_hash": live.ip_hash,
        "user_agent": live.user_agent,
        "referrer_host": None,
        "repeat": False,
        "uid": "from-an-old-spool",
    }
    settings.click_spool.mkdir(exist_ok=True)
    (settings.click_spool / "20261128T093000-1-aaaaaaaa.clicks.jsonl").write_text(json.dumps(line) + "\n")
    with serve_tracker(store, settings) as server:  # replays at start
        assert httpx.get(f"{server.url}/healthz").json()["spooled"] == 0
    keys = _keys(store)
    assert keys == {live.uid: live.visitor, "from-an-old-spool": live.visitor}

    # And both clicks as a database from before 0011 held them: the backfill keys them alike.
    _upgrade_from(store, "0010")
    assert _keys(store) == keys


def test_upgrading_a_populated_0010_database_keys_every_click_and_counts_the_same_visitors(db_url: str) -> None:
    engine = make_engine(db_url, Access.create)
    config = _alembic_config(engine)
    command.upgrade(config, "0010")
    agents = [BROWSER, "Zalo/23.11 (Android)", "curl/8.5.0", None]
    clicks = [
        {
            "code": f"code{n % 7:06d}",
            "at": (AT + timedelta(minutes=n)).replace(tzinfo=None),
            "kind": "human" if n % 5 else "bot",
            "ip_hash": None if n % 97 == 0 else f"{n % 301:032x}",
            "user_agent": agents[n % len(agents)],
            "repeat": n % 11 == 0,
            "uid": f"u{n}",
        }
        for n in range(25_000)  # more than the migration's batch of 10,000
    ]
    old_visitors = (  # the report's expression before 0011
        "SELECT count(DISTINCT CASE WHEN kind = 'human' THEN code || '|' || coalesce(ip_hash, '') || '|' "
        "|| coalesce(user_agent, '') END) FROM clicks GROUP BY code ORDER BY code"
    )
    with engine.begin() as db:
        db.execute(
            text("INSERT INTO links (code, destination, channel, created_at) VALUES (:code, :url, 'facebook', :at)"),
            [
                {"code": f"code{n:06d}", "url": "https://quangngai.gov.vn/", "at": AT.replace(tzinfo=None)}
                for n in range(7)
            ],
        )
        db.execute(
            text(
                'INSERT INTO clicks (code, at, kind, ip_hash, user_agent, "repeat", uid) '
                "VALUES (:code, :at, :kind, :ip_hash, :user_agent, :repeat, :uid)"
            ),
            clicks,
        )
        before = db.execute(text(old_visitors)).scalars().all()
    command.upgrade(config, "head")
    with engine.connect() as db:
        stored = db.execute(text("SELECT uid, ip_hash, user_agent, visitor FROM clicks")).all()
        assert len(stored) == 25_000
        assert all(visitor == visitor_key(ip_hash, agent) for _, ip_hash, agent, visitor in stored)
        after = (
            db.execute(
                text(
                    "SELECT count(DISTINCT CASE WHEN kind = 'human' THEN code || '|' || CAST(visitor AS VARCHAR) END) "
                    "FROM clicks GROUP BY code ORDER BY code"
                )
            )
            .scalars()
            .all()
        )
    assert after == before
    assert _report_index(engine) == ["at", "code", "kind", "repeat", "visitor"]  # time first since 0013
    assert inspect(engine).get_foreign_keys("clicks") == []

    command.downgrade(config, "0010")
    assert _report_index(engine) == ["code", "at", "kind", "repeat", "ip_hash", "user_agent"]
    assert [key["referred_table"] for key in inspect(engine).get_foreign_keys("clicks")] == ["links"]
    assert "visitor" not in {column["name"] for column in inspect(engine).get_columns("clicks")}
    with engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM clicks")).scalar() == 25_000
    engine.dispose()


def _report_index(engine: Engine) -> list[str | None]:
    (index,) = [i for i in inspect(engine).get_indexes("clicks") if i["name"] == "ix_clicks_report"]
    return list(index["column_names"])


def test_the_orm_keys_a_click_and_reclassify_keys_one_written_without(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    with store.sessions.begin() as session:
        session.add(Link(code="abc123", destination="https://quangngai.gov.vn/tin-tuc/1.html"))
        session.flush()
        session.add_all(
            [
                Click(code="abc123", at=AT, kind=ClickKind.human, ip_hash="h1", user_agent=BROWSER, uid="orm"),
                Click(code="abc123", at=AT, kind=ClickKind.bot, uid="nothing-known"),  # no agent: a bot
            ]
        )
    assert _keys(store) == {"orm": visitor_key("h1", BROWSER), "nothing-known": visitor_key(None, None)}
    with store.engine.begin() as db:  # as an outreach older than 0011 would have written it meanwhile
        db.execute(text("UPDATE clicks SET visitor = NULL WHERE uid = 'orm'"))
    done = reclassify(store, Classifier(settings.schedule.tracker.agents))
    assert (done.checked, done.total_changed, done.keyed) == (2, 0, 1)
    assert _keys(store)["orm"] == visitor_key("h1", BROWSER)
    assert reclassify(store, Classifier(settings.schedule.tracker.agents)).keyed == 0


def test_click_ids_are_unique_and_in_the_order_they_were_made() -> None:
    first, second = ClickIds(), ClickIds()  # two workers, or a restart
    names = [first() for _ in range(1000)] + [second() for _ in range(1000)]
    assert len(set(names)) == 2000
    assert all(len(name) == 32 and int(name, 16) >= 0 for name in names)  # fits clicks.uid, String(32)
    assert names[:1000] == sorted(names[:1000])
    assert names[1000:] == sorted(names[1000:])
