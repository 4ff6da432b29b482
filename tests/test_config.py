"""schedules.yaml: validation errors name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels import SETTINGS_MODELS
from outreach.config import ConfigError, Secrets, environment, load_schedule, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """\
version: 1
topics:
  - id: tax
    label: {vi: "Thuế", en: "Tax"}
    keywords: [thuế]
sources:
  - name: news
    url: https://quangngai.gov.vn/rss
    topics: [tax]
tracker:
  public_url: https://go.example.vn/
  allowed_domains: [QuangNgai.gov.vn]
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_schedule(write(tmp_path, text))
    return caught.value.problems


def test_repository_config_is_valid() -> None:
    schedule = load_schedule(ROOT / "schedules.yaml", SETTINGS_MODELS)
    assert schedule.timezone == "Asia/Ho_Chi_Minh"
    assert {t.id for t in schedule.topics} >= {"tax", "investment", "procurement", "planning-land", "procedures"}
    assert set(schedule.channels.enabled()) == {"facebook", "telegram_channel", "telegram_bot"}


def test_minimal_config_fills_defaults_and_normalises(tmp_path: Path) -> None:
    schedule = load_schedule(write(tmp_path, MINIMAL))
    assert schedule.sources[0].language == "vi"
    assert schedule.sources[0].poll_minutes == 30
    assert schedule.tracker.public_url == "https://go.example.vn"
    assert schedule.tracker.allowed_domains == ["quangngai.gov.vn"]
    assert schedule.channels.enabled() == {}


def test_wrong_type_names_line_and_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("    topics: [tax]\n", "    topics: [tax]\n    poll_minutes: often\n")
    [problem] = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'schedules.yaml'}:10: sources[0].poll_minutes:")
    assert "integer" in problem


def test_unknown_key_names_line_and_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("  public_url:", "  public_ulr: https://x.vn\n  public_url:")
    found = problems(tmp_path, text)
    assert any(p.endswith("tracker.public_ulr: Extra inputs are not permitted") and ":11:" in p for p in found), found


def test_bad_yaml_syntax_names_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("    keywords: [thuế]", "    keywords: [thuế")
    [problem] = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'schedules.yaml'}:")
    assert "invalid YAML" in problem
    line = int(problem.split(":")[1])
    assert 5 <= line <= 7


def test_unknown_topic_in_source_names_line_and_key(tmp_path: Path) -> None:
    text = MINIMAL.replace("topics: [tax]", "topics: [tax, taxes]")
    [problem] = problems(tmp_path, text)
    assert ":9: sources[0].topics[1]: unknown topic id 'taxes' (known: tax)" in problem


def test_missing_required_section_and_version(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 2\nsources: []\n")
    assert any(":1: version:" in p for p in found)
    assert any("tracker: Field required" in p for p in found)


def test_unknown_time_zone(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, MINIMAL.replace("version: 1\n", "version: 1\ntimezone: Asia/Hanoi_City\n"))
    assert ":2: timezone:" in problem
    assert "unknown time zone 'Asia/Hanoi_City'" in problem


def test_duplicate_source_name(tmp_path: Path) -> None:
    text = MINIMAL.replace("tracker:", "  - name: news\n    url: https://quangngai.gov.vn/rss2\ntracker:")
    [problem] = problems(tmp_path, text)
    assert ":10: sources[1].name: duplicate source name 'news'" in problem


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert "must be a mapping" in problems(tmp_path, "- just\n- a list\n")[0]
    with pytest.raises(ConfigError, match="config file not found"):
        load_schedule(tmp_path / "nope.yaml")


def test_secrets_come_from_environment_and_print_as_stars(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), env={"OUTREACH_TELEGRAM_TOKEN": "123:abc", "OTHER": "x"})
    token = settings.secrets.get("OUTREACH_TELEGRAM_TOKEN")
    assert token is not None
    assert token.get_secret_value() == "123:abc"
    assert str(token) == "**********"
    assert "123:abc" not in repr(settings)
    assert "Secrets(2 variables, values hidden)" in repr(settings)
    assert settings.secrets.get("OUTREACH_FACEBOOK_PAGE_TOKEN") is None
    assert settings.database_url == f"sqlite:///{tmp_path / 'outreach.db'}"


def test_dotenv_is_read_but_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("OUTREACH_FACEBOOK_PAGE_TOKEN=from-file\nOUTREACH_CLICK_SALT=file-salt\n", encoding="utf-8")
    monkeypatch.setenv("OUTREACH_CLICK_SALT", "env-salt")
    secrets = Secrets(environment(dotenv))
    token, salt = secrets.get("OUTREACH_FACEBOOK_PAGE_TOKEN"), secrets.get("OUTREACH_CLICK_SALT")
    assert token is not None
    assert token.get_secret_value() == "from-file"
    assert salt is not None
    assert salt.get_secret_value() == "env-salt"


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "tracker:\n  public_url: https://other.vn\n  allowed_domains: [x.vn]\n"
    [problem] = problems(tmp_path, text)
    assert problem.startswith(
        f"{tmp_path / 'schedules.yaml'}:13: invalid YAML: key 'tracker' appears twice (first at line 10)"
    )


def test_yaml_error_names_where_the_broken_construct_began(tmp_path: Path) -> None:
    text = MINIMAL.replace("    keywords: [thuế]", "    keywords: [thuế")
    [problem] = problems(tmp_path, text)
    assert "at line 5)" in problem


def test_dotenv_beside_the_config_gives_the_database_url_wherever_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, MINIMAL)
    (folder / ".env").write_text("OUTREACH_DATABASE_URL=postgresql+psycopg://app:pw@db/outreach\n", encoding="utf-8")
    (tmp_path / ".env").write_text("OUTREACH_DATABASE_URL=sqlite:///wrong.db\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a .env in the working folder is not the config's
    assert load_settings(path).database_url == "postgresql+psycopg://app:pw@db/outreach"
    monkeypatch.setenv("OUTREACH_DATABASE_URL", "sqlite:///from-env.db")  # the environment wins over .env
    assert load_settings(path).database_url == f"sqlite:///{folder / 'from-env.db'}"


def test_the_db_argument_wins_and_is_read_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.chdir("/")
    settings = load_settings(path, "sqlite:///x.db", env={"OUTREACH_DATABASE_URL": "sqlite:///ignored.db"})
    assert settings.database_url == "sqlite:////x.db"


def test_relative_paths_in_the_config_are_read_from_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, MINIMAL + "channels:\n  outbox:\n    dir: out/box\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("conf/schedules.yaml"), env={})
    assert settings.schedule.channels.outbox.dir == folder / "out" / "box"
    assert settings.database_url == f"sqlite:///{folder / 'outreach.db'}"
    assert path.exists()


def test_a_bad_database_url_in_the_environment_names_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"OUTREACH_DATABASE_URL": "mysql://root@db/outreach"})
    assert caught.value.problems[0].startswith("OUTREACH_DATABASE_URL: unsupported database 'mysql'")


def test_a_config_nested_100000_levels_deep_is_refused(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\ntopics: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert problem == f"{tmp_path / 'schedules.yaml'}: invalid YAML: nested too deeply (a config needs a few levels)"
    [problem] = problems(tmp_path, "version: 1\ntracker: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n")
    assert "nested too deeply" in problem


def test_aliases_that_expand_to_billions_of_values_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 10)}]\n" for n in range(9)
    )
    [problem] = problems(tmp_path, "version: 1\n" + bomb)
    assert problem == f"{tmp_path / 'schedules.yaml'}: YAML expands to more than 100,000 values (aliases?)"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "version: 1\n" + "# padding\n" * 200_000)
    assert problem == f"{tmp_path / 'schedules.yaml'}: config file larger than 1,000,000 bytes; is it the right file?"


def test_each_channel_block_is_checked_by_its_platforms_model_with_lines(tmp_path: Path) -> None:
    text = MINIMAL + (
        "channels:\n"
        "  facebook:\n"
        "    graph_version: 23\n"
        "    targets:\n"
        "      - {id: '1234567890', token_env: 'bad name'}\n"
        "  zalo:\n"
        "    targets: []\n"
        "  outbox:\n"
        "    dir: out\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_schedule(write(tmp_path, text), SETTINGS_MODELS)
    path = tmp_path / "schedules.yaml"
    assert caught.value.problems == [
        f"{path}:17: channels.facebook.targets[0].token_env: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'",
        f"{path}:15: channels.facebook.graph_version: Input should be a valid string",
        f"{path}:18: channels.zalo: unknown channel 'zalo' (known: facebook, telegram_bot, telegram_channel, outbox)",
    ]


def test_a_platforms_own_settings_and_a_rate_override_are_kept(tmp_path: Path) -> None:
    text = MINIMAL + (
        "channels:\n"
        "  telegram_channel:\n"
        "    api_url: http://127.0.0.1:8081\n"
        "    rate: {per_target_per_second: 1, per_target_burst: 5}\n"
        "    targets: [{id: '@kenh', token_env: OUTREACH_TELEGRAM_TOKEN_KENH}]\n"
    )
    schedule = load_schedule(write(tmp_path, text), SETTINGS_MODELS)
    block = schedule.channels.enabled()["telegram_channel"]
    assert type(block).__name__ == "TelegramSettings"
    assert getattr(block, "api_url") == "http://127.0.0.1:8081"  # noqa: B009 - the platform's own field
    assert block.targets[0].token_env == "OUTREACH_TELEGRAM_TOKEN_KENH"
    from channels import SPECS

    rate = SPECS["telegram_channel"].rate.overridden(block.rate)
    assert (rate.per_second, rate.per_target_per_second, rate.per_target_burst) == (30, 1, 5)


def test_rules_and_digests_are_checked_against_topics_channels_and_each_other(tmp_path: Path) -> None:
    text = MINIMAL + (
        "rules:\n"
        "  - {name: tax-news, topics: [thue], channels: [facebok]}\n"
        "digests:\n"
        "  - {name: tax-news, at: '17:00', days: mon-fir, topics: [land], channels: [zalo]}\n"
        "  - {name: evening, at: '25:00'}\n"
    )
    found = problems(tmp_path, text)
    assert any(":16: digests[0].days:" in p and "'mon-fir' is not a day or a range of days" in p for p in found)
    assert any(":17: digests[1].at:" in p for p in found)
    text = text.replace("days: mon-fir, ", "").replace("  - {name: evening, at: '25:00'}\n", "")
    assert problems(tmp_path, text) == [
        f"{tmp_path / 'schedules.yaml'}:14: rules[0].topics[0]: unknown topic id 'thue'",
        f"{tmp_path / 'schedules.yaml'}:14: rules[0].channels[0]: unknown channel 'facebok' (known: none configured)",
        f"{tmp_path / 'schedules.yaml'}:16: digests[0].name: name 'tax-news' is taken by another rule or digest",
        f"{tmp_path / 'schedules.yaml'}:16: digests[0].topics[0]: unknown topic id 'land'",
        f"{tmp_path / 'schedules.yaml'}:16: digests[0].channels[0]: unknown channel 'zalo' (known: none configured)",
    ]


def test_tracker_settings_name_what_is_wrong(tmp_path: Path) -> None:
    text = MINIMAL + "  trusted_proxies: [127.0.0.1, nginx.local]\n  agents:\n    bot: ['(unclosed']\n"
    found = problems(tmp_path, text)
    assert any("tracker.trusted_proxies" in p and "'nginx.local' is not an IP address or network" in p for p in found)
    assert any("tracker.agents.bot" in p and "'(unclosed' is not a regular expression" in p for p in found), found


def test_tracker_defaults(tmp_path: Path) -> None:
    tracker = load_schedule(write(tmp_path, MINIMAL)).tracker
    assert (tracker.burst.clicks, tracker.burst.seconds, tracker.spool) == (10, 10, "spool")
    assert tracker.home == "https://quangngai.gov.vn/"
    assert tracker.trusted_proxies == []
