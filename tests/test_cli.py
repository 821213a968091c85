"""The ``conveyor`` command, run as a real subprocess (``python -m conveyor``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from conveyor.runtime import open_runtime
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def conveyor(tmp_path: Path, *args: str, db: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``conveyor <args> --db <tmp>``; nothing it does may touch the home directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(CONVEYOR_ENTRY_POINTS="false", XDG_DATA_HOME=str(tmp_path / "xdg"))
    command = [sys.executable, "-m", "conveyor", *args, "--db", str(db or tmp_path / "cli.db")]
    return subprocess.run(
        command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def test_db_upgrade_applies_each_migration_once_and_says_which(tmp_path: Path, database: str) -> None:
    first = conveyor(tmp_path, "db", "upgrade", db=database)
    again = conveyor(tmp_path, "db", "upgrade", db=database)
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    applied, latest = json.loads(first.stdout), json.loads(again.stdout)
    assert applied["applied"] == list(range(1, applied["version"] + 1))
    assert latest == {**applied, "applied": []}


def test_a_database_that_cannot_be_reached_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "db", "upgrade", db="postgresql://nobody:secret@127.0.0.1:9/none")
    assert run.returncode == 2
    assert run.stdout == ""
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("conveyor: error: cannot use postgresql://nobody:***@127.0.0.1:9/none")
    assert "secret" not in run.stderr


def error_code(run: subprocess.CompletedProcess[str]) -> str:
    code: str = json.loads(run.stdout)["error"]["code"]
    return code


def test_tools_lists_the_demo_tools_one_per_line(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "tools")
    assert run.returncode == 0, run.stderr
    names = [line.split()[0] for line in run.stdout.splitlines()]
    assert names == ["demo_add", "demo_echo", "demo_fail", "demo_sleep"]


def test_tools_json_prints_the_mcp_tool_definitions(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "tools", "--json")
    assert run.returncode == 0, run.stderr
    tools = {tool["name"]: tool for tool in json.loads(run.stdout)}
    assert set(tools) == {"demo_add", "demo_echo", "demo_fail", "demo_sleep"}
    assert tools["demo_echo"]["inputSchema"]["required"] == ["text"]
    assert tools["demo_add"]["outputSchema"]["properties"]["sum"]["type"] == "number"


def test_call_runs_the_tool_and_prints_its_result_as_json(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "call", "demo_add", "a=1", "b=2")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"sum": 3.0}


def test_call_with_a_missing_argument_prints_invalid_arguments_and_exits_1(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "call", "demo_echo")
    assert run.returncode == 1
    error = json.loads(run.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENTS"
    assert error["argument"] == "text"


def test_call_of_an_unknown_tool_prints_tool_not_found_and_exits_1(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "call", "nope")
    assert run.returncode == 1
    assert error_code(run) == "TOOL_NOT_FOUND"


@pytest.mark.parametrize(
    "args",
    [("serve", "--concurrency", "0"), ("tools", "--toolkit", "does.not.exist")],
    ids=["concurrency-0", "unknown-toolkit"],
)
def test_bad_configuration_exits_2_with_one_line_on_stderr(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = conveyor(tmp_path, *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("conveyor: error: ")
    assert "Traceback" not in run.stderr


def test_a_file_that_is_not_a_conveyor_database_exits_2_at_once(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are notes, not SQLite")
    run = conveyor(tmp_path, "jobs", "list", db=not_a_db)
    assert run.returncode == 2
    assert run.stderr.startswith("conveyor: error: ")
    assert "Traceback" not in run.stderr


# -- jobs: against a database file populated through the engine first -----------------------------


def submit_jobs(tmp_path: Path, *requests: tuple[str, dict[str, Any]]) -> list[str]:
    """Queue jobs in ``tmp_path/conveyor.db`` without running them; return their ids."""
    settings = make_settings(tmp_path)

    async def submit() -> list[str]:
        async with open_runtime(settings, run_workers=False) as runtime:
            return [
                (await runtime.engine.submit(tool, arguments, owner="local")).job_id
                for tool, arguments in requests
            ]

    return anyio.run(submit)


def test_jobs_list_show_and_cancel_work_on_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    add_id, echo_id = submit_jobs(tmp_path, ("demo_add", {"a": 1, "b": 2}), ("demo_echo", {"text": "hi"}))

    listed = conveyor(tmp_path, "jobs", "list", "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert {job["job_id"] for job in page["jobs"]} == {add_id, echo_id}
    assert page["pagination"]["total"] == 2

    shown = conveyor(tmp_path, "jobs", "show", add_id, db=db)
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert (job["job_id"], job["tool"], job["status"]) == (add_id, "demo_add", "queued")
    assert job["position_in_queue"] == 1

    canceled = conveyor(tmp_path, "jobs", "cancel", echo_id, db=db)
    assert canceled.returncode == 0, canceled.stderr
    canceled_job = json.loads(canceled.stdout)
    assert (canceled_job["job_id"], canceled_job["status"]) == (echo_id, "canceled")

    only_canceled = conveyor(tmp_path, "jobs", "list", "--status", "canceled", "--json", db=db)
    assert [job["job_id"] for job in json.loads(only_canceled.stdout)["jobs"]] == [echo_id]


def test_jobs_show_of_an_unknown_job_prints_job_not_found_and_exits_1(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "jobs", "show", "job_unknown")
    assert run.returncode == 1
    assert error_code(run) == "JOB_NOT_FOUND"


MY_TOOLS = '''from conveyor import Toolkit

toolkit = Toolkit("mine")


@toolkit.tool
def hello(name: str) -> str:
    """Say hello."""
    return "hello " + name
'''


def test_jobs_list_prints_a_table_for_people(tmp_path: Path) -> None:
    db = tmp_path / "conveyor.db"
    add_id, echo_id = submit_jobs(tmp_path, ("demo_add", {"a": 1, "b": 2}), ("demo_echo", {"text": "hi"}))
    run = conveyor(tmp_path, "jobs", "list", db=db)
    assert run.returncode == 0, run.stderr
    header, newest, oldest, summary = run.stdout.splitlines()
    assert header.split() == ["JOB", "TOOL", "STATUS", "AGE", "TOOK", "PROGRESS", "/", "OUTCOME"]
    assert newest.split()[:3] == [echo_id, "demo_echo", "queued"]
    assert oldest.split()[:3] == [add_id, "demo_add", "queued"]
    assert summary == "(1-2 of 2; --json for every field)"


def test_call_reads_each_value_as_the_tools_schema_says(tmp_path: Path) -> None:
    text = conveyor(tmp_path, "call", "demo_echo", "text=42")  # a string parameter: 42 stays text
    number = conveyor(tmp_path, "call", "demo_add", "a=1.5", "b=2")
    wrong = conveyor(tmp_path, "call", "demo_add", "a=one", "b=2")
    assert (text.returncode, json.loads(text.stdout)) == (0, "42")
    assert (number.returncode, json.loads(number.stdout)) == (0, {"sum": 3.5})
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["error"]["argument"] == "a"


def test_a_failing_tool_is_a_coded_error_and_one_log_line_never_a_traceback(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "call", "demo_fail", "message=boom")
    debug = conveyor(tmp_path, "call", "demo_fail", "message=boom", "--log-level", "DEBUG")
    assert run.returncode == 1
    assert json.loads(run.stdout)["error"]["code"] == "EXECUTION_ERROR"
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" in debug.stderr  # asked for


def test_a_wrong_flag_shows_the_subcommands_usage(tmp_path: Path) -> None:
    run = conveyor(tmp_path, "jobs", "list", "--bogus")
    assert run.returncode == 2
    assert run.stderr.startswith("usage: conveyor jobs list")
    assert "unrecognized arguments: --bogus" in run.stderr


def test_a_misspelled_conveyor_variable_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_CONCURENCY": "3", "CONVEYOR_ENTRY_POINTS": "false"}
    command = [sys.executable, "-m", "conveyor", "tools"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "did you mean CONVEYOR_CONCURRENCY?" in run.stderr


def test_the_default_database_is_named_while_it_is_empty(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    env.update(CONVEYOR_ENTRY_POINTS="false", XDG_DATA_HOME=str(tmp_path / "xdg"))
    command = [sys.executable, "-m", "conveyor", "keys", "create"]
    made = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert str(tmp_path / "xdg" / "conveyor" / "conveyor.db") in made.stderr
    assert "pass --db" in made.stderr
    assert again.stderr == ""  # it has a key now: nothing to point out


def test_an_admin_key_made_by_the_cli_is_enterprise_like_the_first_starts(tmp_path: Path) -> None:
    admin = json.loads(conveyor(tmp_path, "keys", "create", "--role", "admin").stdout)
    user = json.loads(conveyor(tmp_path, "keys", "create").stdout)
    chosen = json.loads(conveyor(tmp_path, "keys", "create", "--role", "admin", "--plan", "pro").stdout)
    assert (admin["plan"], user["plan"], chosen["plan"]) == ("enterprise", "free", "pro")


def test_a_toolkit_module_in_the_current_directory_is_found_and_a_missing_one_explained(
    tmp_path: Path,
) -> None:
    (tmp_path / "my_tools.py").write_text(MY_TOOLS)
    found = conveyor(tmp_path, "call", "mine_hello", "name=you", "--toolkit", "my_tools:toolkit")
    missing = conveyor(tmp_path, "tools", "--toolkit", "not_here:toolkit")
    assert (found.returncode, json.loads(found.stdout)) == (0, "hello you")
    assert missing.returncode == 2
    assert "current directory" in missing.stderr
