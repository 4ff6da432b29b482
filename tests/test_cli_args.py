"""Every argument is checked at the edge: a bad one is a usage error (exit 2) that
names the option, before anything is read or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.packaged import SAMPLES
from tests.conftest import base_config


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    data = base_config()
    data["sources"] = [{"name": "portal", "url": (SAMPLES / "portal-vi.rss").as_uri(), "language": "vi"}]
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def usage_error(conf: Path, *args: str) -> str:
    """The one-paragraph usage error of a command, which must exit 2 and touch no database."""
    result: Result = CliRunner().invoke(main, ["--config", str(conf), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    assert not (conf.parent / "outreach.db").exists()
    return " ".join(result.output.split())


RANGE = "is not in the range 1<=x<=2147483647"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["campaign", "create", "--item", "2147483648"], f"Invalid value for '--item': 2147483648 {RANGE}"),
        (["campaign", "create", "--item", "99999999999999999999999"], f"'--item': 99999999999999999999999 {RANGE}"),
        (["campaign", "create", "--item", "0"], f"Invalid value for '--item': 0 {RANGE}"),
        (["campaign", "preview", "2147483648"], f"Invalid value for 'CAMPAIGN_ID': 2147483648 {RANGE}"),
        (["campaign", "approve", "-1"], "No such option '-1'"),
        (["campaign", "approve", "--", "-1"], f"Invalid value for 'CAMPAIGN_ID': -1 {RANGE}"),
        (["campaign", "show", "0"], f"Invalid value for 'CAMPAIGN_ID': 0 {RANGE}"),
        (["campaign", "settle", "1", "--delivery", "0", "--sent"], f"Invalid value for '--delivery': 0 {RANGE}"),
        (["campaign", "settle", "1", "--delivery", "2"], "Error: Missing option '--sent'."),
        (["campaign", "reject", "1"], "Missing option '--reason'"),
        (
            ["campaign", "create", "--item", "1", "--items", "1,2"],
            "give exactly one of --item, --items, --message-file",
        ),
        (["campaign", "create"], "give exactly one of --item, --items, --message-file"),
        (["campaign", "create", "--items", "1,x"], "Invalid value for '--items': '1,x': ids are numbers"),
        (
            ["campaign", "create", "--item", "1", "--at", "tomorrow"],
            "Invalid value for '--at': 'tomorrow' is not a time like 2026-12-01 08:00",
        ),
        (["campaign", "list", "--status", "finished"], "Invalid value for '--status': 'finished' is not one of"),
        (["items", "list", "--limit", "0"], f"Invalid value for '--limit': 0 {RANGE}"),
        (["items", "list", "--limit", "-5"], f"Invalid value for '--limit': -5 {RANGE}"),
        (["campaign", "list", "--limit", "0"], f"Invalid value for '--limit': 0 {RANGE}"),
        (["send", "--limit", "-1"], f"Invalid value for '--limit': -1 {RANGE}"),
        (["tracker", "--port", "0"], "Invalid value for '--port': 0 is not in the range 1<=x<=65535"),
        (["tracker", "--port", "65536"], "Invalid value for '--port': 65536 is not in the range 1<=x<=65535"),
        (
            ["campaign", "create", "--item", "1", "--channels", ",,,"],
            "Invalid value for '--channels': ',,,' names nothing",
        ),
        (
            ["campaign", "create", "--item", "1", "--channels", " , "],
            "Invalid value for '--channels': ' , ' names nothing",
        ),
        (["items", "list", "--topic", "taxes"], "Invalid value for '--topic': unknown topic 'taxes' (known: tax,"),
        (
            ["--templates", "/nonexistent/templates", "report"],
            "Invalid value for '--templates': Directory '/nonexistent/templates' does not exist",
        ),
    ],
)
def test_bad_arguments_are_usage_errors(conf: Path, args: list[str], message: str) -> None:
    assert message in usage_error(conf, *args)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite:////proc/outreach.db",
            "Invalid value for '--db': /proc/outreach.db is in /proc, a virtual file system",
        ),
        ("sqlite:////proc/self/environ", "is in /proc, a virtual file system"),
        ("sqlite:////dev/null", "/dev/null is in /dev, a virtual file system"),
        ("sqlite://", "Invalid value for '--db': give SQLite a file path"),
        ("outreach.db", "Invalid value for '--db': not a database URL (expected sqlite:///"),
    ],
)
def test_database_urls_that_cannot_be_a_database_are_usage_errors(conf: Path, url: str, message: str) -> None:
    assert message in usage_error(conf, "--db", url, "init")


def test_a_db_path_inside_a_file_is_a_usage_error(conf: Path, tmp_path: Path) -> None:
    output = usage_error(conf, "--db", f"sqlite:///{conf}/outreach.db", "init")
    assert (
        f"Invalid value for '--db': {conf} is a file, so {conf}/outreach.db cannot be created: choose a folder"
        in output
    )


def test_an_unknown_template_is_refused_at_create(conf: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    for command in (["init"], ["sources", "poll", "portal"]):
        assert CliRunner().invoke(main, ["--config", str(conf), "--db", db, *command]).exit_code == 0
    result = CliRunner().invoke(
        main, ["--config", str(conf), "--db", db, "campaign", "create", "--item", "1", "--template", "postt"]
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "Invalid value for '--template': no template 'postt' for facebook in vi" in output
    assert "facebook has: digest, message, post)" in output
    listed = CliRunner().invoke(main, ["--config", str(conf), "--db", db, "campaign", "list"])
    assert listed.exit_code == 0, listed.output
    assert [line for line in listed.output.splitlines() if line.startswith("│")] == [], "no campaign may be made"


def test_a_config_nested_100000_levels_deep_exits_2(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\ntopics: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(deep), "config", "check"])
    assert result.exit_code == 2
    assert result.output == f"config error: {deep}: invalid YAML: nested too deeply (a config needs a few levels)\n"


def test_a_missing_template_named_in_the_config_is_a_config_error(conf: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    for command in (["init"], ["sources", "poll", "portal"]):
        assert CliRunner().invoke(main, ["--config", str(conf), "--db", db, *command]).exit_code == 0
    data = yaml.safe_load(conf.read_text(encoding="utf-8"))
    data["channels"]["facebook"]["template"] = "digset"
    conf.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(conf), "--db", db, "campaign", "create", "--item", "1"])
    assert result.exit_code == 2
    assert result.output.startswith(
        f"config error: {conf}: channels.facebook.template: no template 'digset' for facebook"
    )
    assert "--template" not in result.output


def test_a_config_that_is_not_a_regular_file_is_refused() -> None:
    result = CliRunner().invoke(main, ["--config", "/dev/zero", "config", "check"])
    assert result.exit_code == 2
    assert result.output == "config error: /dev/zero: not a regular file; give the path of schedules.yaml\n"


def test_a_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "schedules.yaml"), "status"])
    assert result.exit_code == 2
    assert result.output == (
        f"config error: {tmp_path / 'schedules.yaml'}: config file not found (use --config or OUTREACH_CONFIG, "
        "or write a starter one with `outreach init --config-example > schedules.yaml`)\n"
    )
