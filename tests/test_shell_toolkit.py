"""The ``shell`` toolkit with real subprocesses: allowed commands run as argv with their output as
progress and result; everything else is refused with a coded error; a canceled or timed-out run
leaves no process of its group behind; over HTTP only the allowed roles may call it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conveyor import local_worker
from conveyor.auth import Principal
from conveyor.errors import ConfigError, ErrorCode
from conveyor.jobs.models import Job
from conveyor.mcp_server import build_server
from conveyor.runtime import Runtime, open_runtime
from conveyor.settings import Settings
from tests.conftest import ERAS, make_settings
from tests.http_helpers import error_of, mcp_client, ok
from tests.live_server import live_server
from tests.mcp_calls import call, call_error
from tests.raw_mcp import LEGACY, RawError, raw_client

pytestmark = pytest.mark.anyio

PYTHON = sys.executable
SHELL_TOOLKITS = ("conveyor_toolkits.demo:toolkit", "conveyor_toolkits.shell:toolkit")

# Starts two children in its process group, one of which (like the command itself) ignores
# SIGTERM, then says so with every pid on one line and waits to be stopped.
SPAWNER = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('armed', flush=True); time.sleep(600)"
children = [
    subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, text=True),
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]),
]
children[0].stdout.readline()
print("ready", os.getpid(), *[child.pid for child in children], flush=True)
time.sleep(600)
"""


def shell_settings(tmp_path: Path, **shell: Any) -> Settings:
    root = tmp_path / "work"
    root.mkdir(exist_ok=True)
    table: dict[str, Any] = {"roots": [str(root)], "commands": {PYTHON: {}}, "kill_grace_s": 0.5, **shell}
    return make_settings(tmp_path, toolkits=SHELL_TOOLKITS, toolkit_settings={"shell": table})


@asynccontextmanager
async def connected(settings: Settings, era: str = "auto") -> AsyncIterator[tuple[Runtime, Client]]:
    async with open_runtime(settings) as runtime, Client(build_server(runtime), mode=era) as client:
        yield runtime, client


def stored_bytes(directory: Path) -> bytes:
    """Every byte SQLite keeps there: the database file, its WAL and its journal."""
    return b"".join(path.read_bytes() for path in directory.glob("conveyor.db*"))


def python(script: str, **extra: Any) -> dict[str, Any]:
    return {"command": PYTHON, "args": ["-c", script], **extra}


async def group_gone(pgid: int) -> None:
    """Wait until no process of the group exists any more (exited ones included: their reaper, the
    machine's init, may take a moment)."""
    with anyio.fail_after(20):
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            await anyio.sleep(0.05)


def pids_in(line: str) -> list[int]:
    """The pids a SPAWNER's ``ready`` line names: the command's (its group's id), then its children's."""
    words = line.split()
    assert words[0] == "ready", line
    return [int(word) for word in words[1:]]


async def ready_line(runtime: Runtime, job_id: str) -> str:
    """The job's progress message once its command said ``ready``."""
    with anyio.fail_after(20), runtime.events.subscribe(job_id) as updates:
        job: Job = await runtime.engine.get(job_id, owner=None)
        while not (job.progress and str(job.progress.get("message", "")).startswith("ready")):
            assert not job.status.terminal, job.error
            job = await updates.next()
        return str(job.progress["message"])


# -- running ---------------------------------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_an_allowed_commands_output_arrives_as_progress_and_as_the_result(
    tmp_path: Path, era: str
) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    script = "import sys\nfor n in range(3): print(f'line {n}', flush=True)\nprint('oops', file=sys.stderr)"
    async with connected(shell_settings(tmp_path), era) as (_, client):
        result = await client.call_tool("shell_run", python(script), progress_callback=on_progress)
    assert not result.is_error, result.content
    output = result.structured_content
    assert output is not None
    assert output["exit_code"] == 0
    assert output["ok"] is True
    assert output["stdout"] == "line 0\nline 1\nline 2"
    assert output["stderr"] == "oops"
    assert output["stdout_bytes"] == len("line 0\nline 1\nline 2\n")
    assert output["command"] == [PYTHON, "-c", script]
    assert messages  # the relay coalesces a burst, but the newest line always arrives
    assert set(messages) <= {"line 0", "line 1", "line 2", "stderr: oops"}


async def test_a_job_keeps_the_output_and_runs_in_the_directory_asked_for(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path)
    (tmp_path / "work" / "sub").mkdir()
    async with connected(settings) as (_, client):
        job = await call(
            client,
            "jobs_submit",
            {
                "tool": "shell_run",
                "arguments": python("import os; print(os.getcwd())", cwd="sub"),
                "wait_seconds": 20,
            },
        )
    assert job["status"] == "completed", job
    assert job["result"]["stdout"] == str((tmp_path / "work" / "sub").resolve())
    assert job["progress"]["message"] == job["result"]["stdout"]


async def test_a_nonzero_exit_is_a_result_with_its_code_and_output_not_an_error(tmp_path: Path) -> None:
    script = "import sys; print('2 failed, 8 passed'); sys.exit(3)"
    async with connected(shell_settings(tmp_path)) as (_, client):
        output = await call(client, "shell_run", python(script))
    assert output["exit_code"] == 3
    assert output["ok"] is False
    assert output["stdout"] == "2 failed, 8 passed"


async def test_stdin_is_written_and_the_result_keeps_only_the_last_lines(tmp_path: Path) -> None:
    script = "import sys\nfor line in sys.stdin: print(line.strip().upper())"
    text = "".join(f"row {n}\n" for n in range(50))
    async with connected(shell_settings(tmp_path, tail_lines=5)) as (_, client):
        output = await call(client, "shell_run", python(script, stdin=text))
    assert output["stdout"] == "\n".join(f"ROW {n}" for n in range(45, 50))
    assert output["stdout_truncated"] is True
    assert output["stdout_bytes"] == len(text)


# -- refusals ----------------------------------------------------------------------------------


async def test_a_command_not_on_the_allow_list_is_refused(tmp_path: Path) -> None:
    async with connected(shell_settings(tmp_path)) as (_, client):
        unlisted = await call_error(client, "shell_run", {"command": "ls", "args": ["/"]})
        as_a_line = await call_error(client, "shell_run", {"command": f"{PYTHON} -c 'print(1)'"})
        by_name = await call_error(client, "shell_run", {"command": os.path.basename(PYTHON)})
    for error in (unlisted, as_a_line, by_name):
        assert error["code"] == ErrorCode.FORBIDDEN
        assert error["argument"] == "command"
    assert PYTHON in unlisted["suggested_fix"]  # the agent learns what it may run


async def test_a_cwd_that_climbs_out_of_the_root_with_dot_dot_is_refused(tmp_path: Path) -> None:
    async with connected(shell_settings(tmp_path)) as (_, client):
        relative = await call_error(client, "shell_run", python("print(1)", cwd="../"))
        absolute = await call_error(client, "shell_run", python("print(1)", cwd=f"{tmp_path}/work/../"))
        elsewhere = await call_error(client, "shell_run", python("print(1)", cwd="/"))
    for error in (relative, absolute, elsewhere):
        assert error["code"] == ErrorCode.FORBIDDEN
        assert error["argument"] == "cwd"


async def test_a_cwd_that_leads_out_of_the_root_through_a_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    settings = shell_settings(tmp_path)
    (tmp_path / "work" / "link").symlink_to(outside)
    async with connected(settings) as (_, client):
        error = await call_error(client, "shell_run", python("print(1)", cwd="link"))
        nested = await call_error(client, "shell_run", python("print(1)", cwd="link/."))
    assert error["code"] == nested["code"] == ErrorCode.FORBIDDEN
    assert error["argument"] == "cwd"


async def test_arguments_that_try_to_inject_shell_syntax_are_refused_by_the_patterns(tmp_path: Path) -> None:
    settings = shell_settings(
        tmp_path, commands={PYTHON: {"args": ["-m", "pytest|unittest", "-q", "tests/[A-Za-z0-9_/.]*"]}}
    )
    attempts = [
        ["-m", "pytest; rm -rf ~"],
        ["-m", "pytest", "$(touch pwned)"],
        ["-m", "pytest", "tests/a.py && curl evil.example"],
        ["-c", "print(1)"],
    ]
    async with connected(settings) as (_, client):
        errors = [
            await call_error(client, "shell_run", {"command": PYTHON, "args": args}) for args in attempts
        ]
        nul = await call_error(client, "shell_run", {"command": PYTHON, "args": ["-m", "pytest\x00"]})
    for error in errors:
        assert error["code"] == ErrorCode.FORBIDDEN
        assert error["argument"] == "args"
    assert nul["code"] == ErrorCode.INVALID_ARGUMENTS
    assert nul["argument"] == "args"
    assert not (tmp_path / "work" / "pwned").exists()


async def test_arguments_are_passed_as_they_are_and_never_reach_a_shell(tmp_path: Path) -> None:
    script = "import sys; print(repr(sys.argv[1:]))"
    tricky = ["$(touch pwned)", "; touch pwned2", "`id`", "*", "a b"]
    async with connected(shell_settings(tmp_path)) as (_, client):
        output = await call(client, "shell_run", python(script, args=["-c", script, *tricky]))
    assert output["stdout"] == repr(tricky)
    assert not list((tmp_path / "work").iterdir())


async def test_the_environment_is_filtered_and_credentials_enter_only_where_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_ONLY_SECRET", "from-the-server")
    token = "tok-3f9a8c7e1d-test"
    settings = shell_settings(tmp_path, credential_env={"DEPLOY_TOKEN": "deploy"})
    script = (
        "import os; print(os.environ.get('SERVER_ONLY_SECRET')); print(os.environ.get('CI')); "
        "print(os.environ['DEPLOY_TOKEN']); print(len(os.environ['DEPLOY_TOKEN']))"
    )
    async with connected(settings) as (_, client):
        refused = await call_error(client, "shell_run", python(script, env={"LD_PRELOAD": "/tmp/x.so"}))
        job = await call(
            client,
            "jobs_submit",
            {
                "tool": "shell_run",
                "arguments": python(script, env={"CI": "1"}),
                "credentials": {"deploy": token},
                "wait_seconds": 20,
            },
        )
    assert refused["code"] == ErrorCode.FORBIDDEN
    assert refused["argument"] == "env"
    assert job["status"] == "completed", job
    # The command got the credential, and its output never shows it.
    assert job["result"]["stdout"] == f"None\n1\n[redacted]\n{len(token)}"
    assert token not in json.dumps(job)
    assert token.encode() not in stored_bytes(tmp_path)


async def test_a_timeout_above_the_maximum_is_refused(tmp_path: Path) -> None:
    async with connected(shell_settings(tmp_path, max_timeout_s=10)) as (_, client):
        error = await call_error(client, "shell_run", python("print(1)", timeout_s=11))
    assert error["code"] == ErrorCode.INVALID_ARGUMENTS
    assert error["argument"] == "timeout_s"


# -- stopping ----------------------------------------------------------------------------------


async def test_cancelling_a_job_stops_its_command_and_every_process_it_started(tmp_path: Path) -> None:
    async with connected(shell_settings(tmp_path)) as (runtime, client):
        job = await call(client, "jobs_submit", {"tool": "shell_run", "arguments": python(SPAWNER)})
        pgid, *children = pids_in(await ready_line(runtime, job["job_id"]))
        assert os.getpgid(children[0]) == pgid
        canceled = await call(client, "jobs_cancel", {"job_id": job["job_id"]})
        with anyio.fail_after(20):
            done = await call(client, "jobs_status", {"job_id": job["job_id"], "wait_seconds": 15})
    assert canceled["job_id"] == job["job_id"]
    assert done["status"] == "canceled"
    await group_gone(pgid)  # SIGTERM was ignored by all three: SIGKILL ended them


async def test_a_timeout_stops_the_command_and_its_children_and_says_what_it_printed(tmp_path: Path) -> None:
    async with connected(shell_settings(tmp_path)) as (_, client):
        error = await call_error(client, "shell_run", python(SPAWNER, timeout_s=5))
    assert error["code"] == ErrorCode.EXECUTION_TIMEOUT
    pgid, *_ = pids_in(error["details"]["stdout_tail"])
    await group_gone(pgid)


async def test_what_a_finished_command_left_running_in_its_group_is_stopped(tmp_path: Path) -> None:
    script = (
        "import os, subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
        "stdout=subprocess.DEVNULL); print(os.getpid())"
    )
    async with connected(shell_settings(tmp_path)) as (_, client):
        with anyio.fail_after(20):  # the child keeps no pipe open, and is stopped all the same
            output = await call(client, "shell_run", python(script))
    await group_gone(int(output["stdout"]))


# -- roles over HTTP -------------------------------------------------------------------------


async def test_over_http_only_keys_of_an_allowed_role_may_run_it_directly_or_as_a_job(tmp_path: Path) -> None:
    arguments = python("print('hi')")
    async with live_server(shell_settings(tmp_path)) as live:  # allowed_roles: admin, the default
        user = await live.new_key(role="user")
        async with mcp_client(live, user, "auto") as client:
            direct = await call_error(client, "shell_run", arguments)
            as_job = await call_error(client, "jobs_submit", {"tool": "shell_run", "arguments": arguments})
            still = await call(client, "demo_add", {"a": 1, "b": 2})  # other toolkits are not affected
        async with live.client(user) as http:
            rest = error_of(
                await http.post("/jobs/submit", json={"tool": "shell_run", "arguments": arguments}),
                403,
                "FORBIDDEN",
            )
        async with live.client(live.admin_key) as http:
            ran = ok(await http.post("/execute_tool", json={"tool": "shell_run", "arguments": arguments}))
        async with mcp_client(live, live.admin_key, "auto") as client:
            admin_direct = await call(client, "shell_run", arguments)
    assert direct["code"] == as_job["code"] == ErrorCode.FORBIDDEN
    assert "admin" in rest["message"]
    assert still == {"sum": 3}
    assert ran["result"]["stdout"] == admin_direct["stdout"] == "hi"


async def test_a_user_key_cannot_start_it_as_an_mcp_task_either(tmp_path: Path) -> None:
    user = Principal("key_user", "user", "pro")
    async with open_runtime(shell_settings(tmp_path)) as runtime:
        server = build_server(runtime, principal_of=lambda _ctx: user)
        async with raw_client(server, era=LEGACY) as client:
            params = {"name": "shell_run", "arguments": python("print(1)"), "task": {"ttl": 60_000}}
            with pytest.raises(RawError) as refused:
                await client.request("tools/call", params)
        jobs, total = await runtime.engine.list(owner=None)
    assert refused.value.data["code"] == ErrorCode.FORBIDDEN
    assert (jobs, total) == ([], 0)  # refused before anything was committed


async def test_allowed_roles_in_the_toolkits_table_opens_it_to_user_keys(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, allowed_roles=["admin", "user"], commands=[PYTHON])
    async with live_server(settings) as live:
        user = await live.new_key(role="user")
        async with live.client(user) as http:
            job = ok(
                await http.post(
                    "/jobs/submit",
                    json={"tool": "shell_run", "arguments": python("print('hi')"), "wait_seconds": 20},
                )
            )
    assert job["status"] == "completed", job
    assert job["result"]["stdout"] == "hi"


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"roots": ["relative/dir"]}, "toolkit_settings.shell.roots"),
        ({"commands": {"rm -rf": {}}}, "toolkit_settings.shell.commands"),
        ({"commands": {"git": {"args": ["(unclosed"]}}}, "toolkit_settings.shell.commands.git.args"),
        ({"no_such_setting": 1}, "toolkit_settings.shell.no_such_setting"),
        ({"allowed_roles": ["root"]}, "toolkit_settings.shell.allowed_roles"),
    ],
)
async def test_a_bad_toolkit_setting_stops_the_start_with_one_line_naming_it(
    tmp_path: Path, table: dict[str, Any], where: str
) -> None:
    settings = make_settings(tmp_path, toolkits=SHELL_TOOLKITS, toolkit_settings={"shell": table})
    with pytest.raises(ConfigError) as raised:
        async with open_runtime(settings):
            pass
    assert where in str(raised.value)
    assert "\n" not in str(raised.value)


async def test_a_table_for_a_toolkit_that_is_not_loaded_stops_the_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, toolkit_settings={"shel": {"roots": ["/tmp"]}})
    with pytest.raises(ConfigError, match=r"toolkit_settings\.shel"):
        async with open_runtime(settings):
            pass


def test_the_cli_reads_the_table_from_conveyor_toml_and_says_what_is_wrong_in_one_line(
    tmp_path: Path,
) -> None:
    root = tmp_path / "work"
    root.mkdir()
    good = tmp_path / "good.toml"
    good.write_text(
        f'toolkits = {list(SHELL_TOOLKITS)!r}\ndb = "{tmp_path / "c.db"}"\n'
        f'[toolkit_settings.shell]\nroots = ["{root}"]\n'
        f'[toolkit_settings.shell.commands]\n"{PYTHON}" = {{ args = ["-c", "print\\\\(6\\\\*7\\\\)"] }}\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace(str(root), "not/absolute"))
    conveyor = [
        PYTHON,
        "-m",
        "conveyor",
        "call",
        "shell_run",
        f"command={PYTHON}",
        'args=["-c", "print(6*7)"]',
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    ran = subprocess.run(
        [*conveyor, "--config", str(good)], capture_output=True, text=True, env=env, timeout=60
    )
    refused = subprocess.run(
        [*conveyor, "--config", str(bad)], capture_output=True, text=True, env=env, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["stdout"] == "42"
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "toolkit_settings.shell.roots" in refused.stderr


@pytest.mark.slow
async def test_a_stdio_server_runs_a_test_suite_as_a_job_in_its_local_worker_with_the_same_settings(
    tmp_path: Path,
) -> None:
    """The README's Claude Desktop example: ``conveyor serve --config conveyor.toml`` over stdio;
    the job runs in the local worker it starts, which has the toolkit's table too."""
    root = tmp_path / "myapp"
    (root / "tests").mkdir(parents=True)
    suite = "import sys; print('2 passed'); print('1 failed', file=sys.stderr); sys.exit(1)"
    config = tmp_path / "conveyor.toml"
    config.write_text(
        f"toolkits = {list(SHELL_TOOLKITS)!r}\nentry_points = false\nprogress_interval_seconds = 0\n"
        f'[toolkit_settings.shell]\nroots = ["{root}"]\n'
        f'[toolkit_settings.shell.commands]\n"{PYTHON}" = {{ args = ["-c", {json.dumps(re.escape(suite))}] }}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    server = StdioServerParameters(
        command=PYTHON,
        args=["-m", "conveyor", "serve", "--config", str(config), "--db", str(tmp_path / "c.db")],
        env=env,
    )
    with anyio.fail_after(60):
        async with Client(server) as client:
            job = await call(
                client, "jobs_submit", {"tool": "shell_run", "arguments": python(suite, cwd="tests")}
            )
            while job["status"] not in ("completed", "failed", "canceled", "timeout"):
                job = await call(client, "jobs_status", {"job_id": job["job_id"], "wait_seconds": 10})
    assert job["status"] == "completed", job
    assert (job["result"]["exit_code"], job["result"]["ok"]) == (1, False)
    assert (job["result"]["stdout"], job["result"]["stderr"]) == ("2 passed", "1 failed")
    assert local_worker.status(str(tmp_path / "c.db")).running  # it ran there, not in the server


def test_a_local_worker_inherits_the_toolkit_settings(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path, credential_env={"TOKEN": "deploy"})
    inherited = Settings.model_validate_json(settings.with_secrets())
    assert inherited.toolkit_settings == settings.toolkit_settings
