"""The database a command uses is never silently a different one, and a broken one
gets one clear line and its own exit status (0 ok, 2 usage, 3 no database,
4 unusable, 5 unreachable), never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.db import head_revision
from outreach.packaged import SAMPLES
from tests.conftest import ROOT, base_config, pg_url, read_only

HEAD = head_revision()

NO_DB = "error: no database at {path}: run `outreach init` (or check --db and --config)\n"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A config in a folder of its own, with a local sample feed and a relative outbox."""
    folder = tmp_path / "conf"
    folder.mkdir()
    data = base_config()
    data["sources"] = [{"name": "portal", "url": (SAMPLES / "portal-vi.rss").as_uri(), "language": "vi"}]
    path = folder / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def cli(*args: str, expect: int, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "200", **(env or {})})
    assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
    assert "Traceback" not in result.output
    return result


def children(prefix: list[str], *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """The CLI in child processes run side by side (read-only mounts only a child can see)."""
    env = {**os.environ, "COLUMNS": "200"}
    started = [
        (argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env))
        for argv in ([*prefix, sys.executable, "-c", "import cli; cli.main()", *command] for command in commands)
    ]
    done = []
    for argv, process in started:
        out, err = process.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
    return done


# --- 1. the database is never silently a different one ------------------------


def test_the_default_database_is_beside_the_config_wherever_the_command_runs(
    conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected = conf.parent / "outreach.db"
    assert cli("--config", str(conf), "init", expect=0).output == f"database {expected}: schema {HEAD} (created)\n"
    cli("--config", str(conf), "sources", "poll", expect=0)
    monkeypatch.chdir(tmp_path)
    status = cli("--config", str(conf), "status", expect=0).output
    assert f"database   {expected} (schema {HEAD})" in status
    assert "items      16 " in status
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "outreach.db").exists()
    assert (conf.parent / "outbox").exists() is False  # nothing sent yet; its place is beside the config too


def test_the_database_url_in_a_dotenv_beside_the_config_is_read_from_there(
    conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (conf.parent / ".env").write_text("OUTREACH_DATABASE_URL=sqlite:///data/portal.db\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    output = cli("--config", str(conf), "init", expect=0).output
    assert output == f"database {conf.parent / 'data' / 'portal.db'}: schema {HEAD} (created)\n"


def test_a_relative_db_option_is_read_from_the_current_folder(
    conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output = cli("--config", str(conf), "--db", "sqlite:///mine.db", "init", expect=0).output
    assert output == f"database {tmp_path / 'mine.db'}: schema {HEAD} (created)\n"


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["status"],
        ["items", "list"],
        ["campaign", "list"],
        ["campaign", "preview", "1"],
        ["campaign", "approve", "1"],
        ["campaign", "show", "1"],
        ["campaign", "create", "--item", "1"],
        ["sources", "poll"],
        ["sources", "list"],
        ["send"],
        ["tracker", "--port", "1"],
    ],
    ids=" ".join,
)
def test_only_init_creates_a_database(conf: Path, tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "outrech.db"
    result = cli("--config", str(conf), "--db", f"sqlite:///{typo}", *command, expect=3)
    assert result.output == NO_DB.format(path=typo)
    assert not typo.exists()
    assert not (conf.parent / "outreach.db").exists()


def test_an_empty_sqlite_file_is_refused_until_init(conf: Path) -> None:
    db = conf.parent / "outreach.db"
    sqlite3.connect(db).close()
    output = cli("--config", str(conf), "report", expect=3).output
    assert output == f"error: {db} has no outreach tables yet: run `outreach init`\n"
    cli("--config", str(conf), "init", expect=0)
    cli("--config", str(conf), "report", expect=0)


# --- 2. read-only and broken databases ----------------------------------------


@pytest.fixture
def polled(conf: Path) -> Path:
    """A database beside the config holding the sample items and one sent campaign."""
    cli("--config", str(conf), "init", expect=0)
    cli("--config", str(conf), "sources", "poll", expect=0)
    cli("--config", str(conf), "campaign", "create", "--item", "1", expect=0)
    cli("--config", str(conf), "--as", "Approver", "campaign", "approve", "1", expect=0)
    cli("--config", str(conf), "send", expect=0)
    return conf.parent / "outreach.db"


READING = [["report"], ["items", "list"], ["campaign", "list"], ["status"], ["sources", "list"]]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_reading_commands_work_on_a_read_only_database(conf: Path, polled: Path, what: str) -> None:
    target = polled if what == "file" else polled.parent
    before = polled.read_bytes()
    commands = (["--config", str(conf), *c] for c in [*READING, ["sources", "poll"]])
    *reading, writing = children(read_only(target), *commands)
    outputs = {" ".join(command): done for command, done in zip(READING, reading, strict=True)}
    for command, done in outputs.items():
        assert done.returncode == 0, f"{command}: {done.stderr}"
    assert "│ total            │    2 │" in outputs["report"].stdout
    assert "│  1 │ done   │" in outputs["campaign list"].stdout
    assert outputs["items list"].stdout.count("│ vi   │") == 16
    assert writing.returncode == 4
    assert writing.stderr.startswith(f"error: {polled} is read-only (")
    assert (
        "only reading commands (report, status, items list, campaign list/preview, sources list) work" in writing.stderr
    )
    assert writing.stderr.count("\n") == 1
    assert polled.read_bytes() == before


def test_a_read_only_folder_with_unmerged_changes_is_explained(tmp_path: Path, conf: Path, polled: Path) -> None:
    # A copy taken while a writer held changes in the write-ahead log, then made read-only.
    writer = sqlite3.connect(polled)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE campaigns SET title = 'đã sửa'")
    writer.commit()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(polled, copy / "outreach.db")
    shutil.copy(polled.with_name("outreach.db-wal"), copy / "outreach.db-wal")
    writer.close()
    [done] = children(read_only(copy), ["--config", str(conf), "--db", f"sqlite:///{copy / 'outreach.db'}", "report"])
    assert done.returncode == 4, done.stderr
    assert done.stderr == (
        f"error: {copy} is read-only and outreach.db-wal holds changes not yet merged into outreach.db: "
        "SQLite cannot read them from here; copy the folder somewhere writable\n"
    )


@pytest.mark.parametrize("command", [["report"], ["init"], ["sources", "poll"]], ids=" ".join)
def test_a_file_that_is_not_a_database_is_refused_and_kept(conf: Path, command: list[str]) -> None:
    db = conf.parent / "outreach.db"
    original = b"PK\x03\x04 a spreadsheet, not a database " * 100
    db.write_bytes(original)
    output = cli("--config", str(conf), *command, expect=4).output
    assert output == f"error: {db} is not an outreach database, or it is damaged (file is not a database)\n"
    assert db.read_bytes() == original
    assert sorted(p.name for p in conf.parent.iterdir()) == ["outreach.db", "schedules.yaml"]


def test_a_database_missing_a_table_is_unusable_not_unreachable(conf: Path, polled: Path) -> None:
    with sqlite3.connect(polled) as connection:
        connection.execute("DROP TABLE clicks")
    output = cli("--config", str(conf), "report", expect=4).output
    assert output.startswith(f"error: {polled} lacks part of outreach's schema (no such table: clicks)")
    assert output.count("\n") == 1


def test_init_says_when_the_database_folder_cannot_be_made(conf: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    [done] = children(read_only(locked), ["--config", str(conf), "--db", f"sqlite:///{locked}/sub/o.db", "init"])
    assert done.returncode == 4, done.stderr
    assert done.stderr == f"error: cannot create the folder {locked}/sub for the database: Read-only file system\n"


def test_an_unsupported_database_is_a_usage_error(conf: Path) -> None:
    output = cli("--config", str(conf), "--db", "mysql://root@localhost/outreach", "report", expect=2).output
    assert "Invalid value for '--db': unsupported database 'mysql': outreach runs on SQLite or PostgreSQL" in output
    env = {"OUTREACH_DATABASE_URL": "mysql://root@localhost/outreach"}
    output = cli("--config", str(conf), "report", expect=2, env=env).output
    assert output.startswith("config error: OUTREACH_DATABASE_URL: unsupported database 'mysql'")


def test_a_bad_connection_option_is_a_usage_error(conf: Path, tmp_path: Path) -> None:
    output = cli("--config", str(conf), "--db", f"sqlite:///{tmp_path}/o.db?journal=off", "init", expect=2).output
    assert "Invalid value for '--db': unknown SQLite option(s) journal" in output
    base = pg_url()
    env = {"OUTREACH_DATABASE_URL": f"{base}{'&' if '?' in base else '?'}colour=blue"}
    output = cli("--config", str(conf), "report", expect=2, env=env).output
    assert output.startswith('error: invalid connection option "colour" in the database URL postgresql+psycopg://')
    assert output.count("\n") == 1


def test_postgresql_down_is_one_line_exit_5_with_the_password_masked(conf: Path) -> None:
    for url in (
        "postgresql+psycopg://outreach:s3cret@127.0.0.1:1/outreach",
        "postgresql+psycopg://outreach@127.0.0.1:1/outreach?password=s3cret",
    ):
        output = cli("--config", str(conf), "--db", url, "report", expect=5).output
        assert output.startswith("error: database postgresql+psycopg://outreach")
        assert "127.0.0.1:1/outreach" in output
        assert "is unavailable: connection failed:" in output
        assert "s3cret" not in output
        assert "***" in output
        assert output.count("\n") == 1


def test_a_missing_postgresql_database_says_to_create_it(conf: Path) -> None:
    missing = pg_url().split("?")[0].rsplit("/", 1)[0] + "/outreach_absent"
    output = cli("--config", str(conf), "--db", missing, "status", expect=3).output
    assert (
        output == 'error: database "outreach_absent" does not exist: create it (createdb), then run `outreach init`\n'
    )
