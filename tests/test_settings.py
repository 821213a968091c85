from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.errors import ConfigError
from conveyor.settings import DEFAULT_TOOLKITS, default_db_path, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flags_beat_env_which_beats_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "conveyor.toml", "concurrency = 2\nlog_level = 'DEBUG'\nport = 9000\n")
    env = {"CONVEYOR_CONCURRENCY": "3", "CONVEYOR_LOG_LEVEL": "ERROR"}

    settings = load_settings(config, env=env, overrides={"concurrency": 4})

    assert settings.concurrency == 4  # flag
    assert settings.log_level == "ERROR"  # env over file
    assert settings.port == 9000  # file over default


def test_each_source_alone_changes_the_default(tmp_path: Path) -> None:
    config = write(tmp_path / "conveyor.toml", "concurrency = 2\n")
    assert load_settings(env={}).concurrency == 8
    assert load_settings(config, env={}).concurrency == 2
    assert load_settings(env={"CONVEYOR_CONCURRENCY": "3"}).concurrency == 3
    assert load_settings(env={}, overrides={"concurrency": 4}).concurrency == 4


def test_flags_left_unset_do_not_override_anything() -> None:
    settings = load_settings(
        env={"CONVEYOR_DB": "/tmp/from-env.db"}, overrides={"db": None, "concurrency": None}
    )
    assert settings.db == "/tmp/from-env.db"
    assert settings.concurrency == 8


def test_a_conveyor_table_in_the_toml_file_is_read(tmp_path: Path) -> None:
    config = write(
        tmp_path / "pyproject-like.toml",
        """
        [conveyor]
        db = "/srv/conveyor.db"
        toolkits = ["conveyor_toolkits.demo:toolkit", "acme.tools:toolkit"]
        lease-seconds = 12.5
        queues = "fast, slow"
        """,
    )

    settings = load_settings(config, env={})

    assert settings.db == "/srv/conveyor.db"
    assert settings.toolkits == ("conveyor_toolkits.demo:toolkit", "acme.tools:toolkit")
    assert settings.lease_seconds == 12.5  # dashes in keys read as underscores
    assert settings.queues == ("fast", "slow")


def test_top_level_keys_of_the_toml_file_are_read_when_there_is_no_conveyor_table(tmp_path: Path) -> None:
    config = write(tmp_path / "conveyor.toml", 'db = "/srv/top.db"\nentry_points = false\n')

    settings = load_settings(str(config), env={})

    assert settings.db == "/srv/top.db"
    assert settings.entry_points is False


def test_conveyor_toolkits_env_is_a_comma_separated_list() -> None:
    env = {"CONVEYOR_TOOLKITS": " conveyor_toolkits.demo:toolkit, acme.tools:toolkit ,,"}
    settings = load_settings(env=env)
    assert settings.toolkits == ("conveyor_toolkits.demo:toolkit", "acme.tools:toolkit")


def test_env_values_are_parsed_to_the_setting_type() -> None:
    env = {
        "CONVEYOR_ENTRY_POINTS": "false",
        "CONVEYOR_LEASE_SECONDS": "2.5",
        "CONVEYOR_QUEUES": "a,b",
        "CONVEYOR_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    settings = load_settings(env=env)
    assert settings.entry_points is False
    assert settings.lease_seconds == 2.5
    assert settings.queues == ("a", "b")
    assert settings.sqlite_synchronous == "NORMAL"


def test_unrelated_env_variables_and_conveyors_own_others_are_ignored() -> None:
    env = {
        "CONCURRENCY": "0",
        "HOME": "/nowhere",
        "CONVEYOR_URL": "http://127.0.0.1:8765",  # what clients and the examples read
        "CONVEYOR_API_KEY": "cvk_x",
        "CONVEYOR_TEST_POSTGRES_URL": "postgresql://x",  # what the test suite reads
    }
    assert load_settings(env=env).concurrency == 8


def test_a_misspelled_conveyor_variable_is_refused_with_the_setting_it_may_mean() -> None:
    with pytest.raises(ConfigError, match="CONVEYOR_CONCURRENCY"):
        load_settings(env={"CONVEYOR_CONCURENCY": "3"})
    with pytest.raises(ConfigError, match="CONVEYOR_NOT_A_SETTING is not a Conveyor setting"):
        load_settings(env={"CONVEYOR_NOT_A_SETTING": "x"})


def test_defaults_load_the_demo_toolkit_and_entry_points() -> None:
    settings = load_settings(env={})
    assert settings.toolkits == DEFAULT_TOOLKITS
    assert settings.entry_points is True
    assert settings.host == "127.0.0.1"


def test_the_default_database_lives_under_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == str(tmp_path / "conveyor" / "conveyor.db")


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValidationError):
        settings.concurrency = 2


def test_settings_feed_the_engine_and_executor_configuration() -> None:
    overrides = {"concurrency": 3, "lease_seconds": 1.5, "retention_hours": 2, "max_result_bytes": 10}
    settings = load_settings(env={}, overrides=overrides)
    assert settings.engine_config().concurrency == 3
    assert settings.engine_config().lease_ms == 1500
    assert settings.engine_config().retention_s == 7200
    assert settings.execution_limits().max_result_bytes == 10


@pytest.mark.parametrize(
    ("env", "overrides"),
    [
        ({}, {"concurrency": 0}),
        ({"CONVEYOR_CONCURRENCY": "0"}, {}),
        ({"CONVEYOR_CONCURRENCY": "many"}, {}),
        ({"CONVEYOR_PORT": "70000"}, {}),
        ({"CONVEYOR_LOG_LEVEL": "LOUD"}, {}),
        ({}, {"lease_seconds": 0}),
        ({}, {"not_a_setting": 1}),
    ],
)
def test_invalid_values_are_a_config_error(env: dict[str, str], overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env=env, overrides=overrides)


@pytest.mark.parametrize(
    "text",
    [
        "concurency = 4\n",  # a typo must not pass silently
        "[conveyor]\nconcurrency = 4\nsurprise = true\n",
        "concurrency = 0\n",
        "conveyor = 5\n",
        "concurrency = \n",  # not TOML
        "[conveyor\n",
    ],
)
def test_a_bad_config_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "conveyor.toml", text)
    with pytest.raises(ConfigError):
        load_settings(config, env={})


def test_a_missing_or_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError):
        load_settings(tmp_path, env={})  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00not utf-8")
    with pytest.raises(ConfigError):
        load_settings(binary, env={})
