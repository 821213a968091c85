"""``conveyor install claude-desktop|print``, run as the real ``conveyor`` console script against a
temporary home: the other servers and settings in the config survive, a backup is kept, and the
entry written starts a Conveyor that answers over stdio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conveyor.desktop_install import claude_desktop_config_path
from tests.serve_process import server_env

pytestmark = pytest.mark.slow

CONVEYOR = Path(sys.executable).parent / "conveyor"  # this installation's console script
OTHER_SERVER = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]}
EXISTING = {"globalShortcut": "Ctrl+Space", "mcpServers": {"filesystem": OTHER_SERVER}}


def install(home: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``conveyor install <args>`` with ``home`` as the home directory, on Linux."""
    environ = {
        key: value
        for key, value in server_env().items()
        if key not in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "APPDATA")
    }
    environ.update(HOME=str(home), **env)
    return subprocess.run(
        [str(CONVEYOR), "install", *args],
        cwd=cwd or home,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def config_at(home: Path) -> Path:
    return home / ".config" / "Claude" / "claude_desktop_config.json"


def write_config(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.bak"))


def test_install_claude_desktop_adds_conveyor_and_another_server_in_the_config_survives(
    tmp_path: Path,
) -> None:
    config = config_at(tmp_path)
    original = json.dumps(EXISTING, indent=4)
    write_config(config, original)

    run = install(
        tmp_path, "claude-desktop", "--db", "jobs.db", "--toolkit", "conveyor_toolkits.demo:toolkit"
    )

    assert run.returncode == 0, run.stderr
    written = read_json(config)
    assert written["globalShortcut"] == "Ctrl+Space"
    assert written["mcpServers"]["filesystem"] == OTHER_SERVER
    assert written["mcpServers"]["conveyor"] == {
        "command": str(CONVEYOR),
        "args": ["serve", "--db", str(tmp_path / "jobs.db"), "--toolkit", "conveyor_toolkits.demo:toolkit"],
    }
    [backup] = backups(config)
    assert backup.read_text(encoding="utf-8") == original
    assert str(backup) in run.stdout


def test_installing_again_replaces_the_entry_of_that_name_says_so_and_keeps_both_backups(
    tmp_path: Path,
) -> None:
    config = config_at(tmp_path)
    write_config(config, json.dumps(EXISTING))
    first = install(tmp_path, "claude-desktop", "--db", "first.db")
    same = install(tmp_path, "claude-desktop", "--db", "first.db")
    second = install(tmp_path, "claude-desktop", "--db", "second.db")
    assert (first.returncode, same.returncode, second.returncode) == (0, 0, 0)
    assert "Replaced" in second.stdout
    assert "already" in same.stdout
    servers = read_json(config)["mcpServers"]
    assert list(servers) == ["filesystem", "conveyor"]
    assert servers["conveyor"]["args"] == ["serve", "--db", str(tmp_path / "second.db")]
    assert len(backups(config)) == 2  # one per change; the unchanged run wrote nothing


def test_install_claude_desktop_creates_the_config_where_xdg_config_home_says(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg-config"
    run = install(tmp_path, "claude-desktop", "--db", "jobs.db", "--name", "jobs", XDG_CONFIG_HOME=str(xdg))
    assert run.returncode == 0, run.stderr
    config = xdg / "Claude" / "claude_desktop_config.json"
    assert list(read_json(config)["mcpServers"]) == ["jobs"]
    assert backups(config) == []  # there was nothing to back up
    assert not config_at(tmp_path).exists()


def test_a_config_that_is_not_json_is_refused_with_a_code_exit_2_and_left_untouched(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    write_config(config, '{"mcpServers": {"filesystem": ')
    run = install(tmp_path, "claude-desktop")
    assert run.returncode == 2
    assert run.stderr.startswith("conveyor: error: CONFIG_NOT_JSON: ")
    assert "Traceback" not in run.stderr
    assert config.read_text(encoding="utf-8") == '{"mcpServers": {"filesystem": '
    assert backups(config) == []


def test_a_config_whose_servers_are_not_an_object_is_refused_with_a_code_and_exit_2(tmp_path: Path) -> None:
    write_config(config_at(tmp_path), '{"mcpServers": []}')
    run = install(tmp_path, "claude-desktop")
    assert run.returncode == 2
    assert run.stderr.startswith("conveyor: error: CONFIG_NOT_MERGEABLE: ")


def test_a_dry_run_prints_the_merged_config_and_changes_nothing(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    write_config(config, json.dumps(EXISTING))
    run = install(tmp_path, "claude-desktop", "--db", "jobs.db", "--dry-run")
    assert run.returncode == 0, run.stderr
    would_write = json.loads(run.stdout)
    assert would_write["mcpServers"]["filesystem"] == OTHER_SERVER
    assert would_write["mcpServers"]["conveyor"]["command"] == str(CONVEYOR)
    assert "dry run" in run.stderr
    assert read_json(config) == EXISTING
    assert backups(config) == []


def test_install_print_prints_an_mcp_servers_entry_for_other_clients(tmp_path: Path) -> None:
    run = install(tmp_path, "print", "--db", "jobs.db", "--name", "jobs")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "mcpServers": {
            "jobs": {"command": str(CONVEYOR), "args": ["serve", "--db", str(tmp_path / "jobs.db")]}
        }
    }


def test_a_toolkit_from_the_current_directory_is_found_by_the_client_through_pythonpath(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_tools.py").write_text(
        "from conveyor import Toolkit\ntoolkit = Toolkit('mine')\n\n"
        "@toolkit.tool\ndef hello() -> str:\n    return 'hi'\n",
        encoding="utf-8",
    )
    run = install(tmp_path, "print", "--db", "jobs.db", "--toolkit", "my_tools:toolkit", cwd=project)
    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stdout)["mcpServers"]["conveyor"]
    assert entry["env"] == {"PYTHONPATH": str(project)}
    assert entry["args"][-2:] == ["--toolkit", "my_tools:toolkit"]


@pytest.mark.anyio
async def test_the_entry_written_starts_a_conveyor_that_serves_its_tools_over_stdio(tmp_path: Path) -> None:
    run = install(tmp_path, "claude-desktop", "--db", "jobs.db")
    assert run.returncode == 0, run.stderr
    entry = read_json(config_at(tmp_path))["mcpServers"]["conveyor"]
    # Started as a desktop client starts it: from another directory, with none of the shell's settings.
    server = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**server_env(), **entry.get("env", {})},
        cwd=str(tmp_path / ".."),
    )
    with anyio.fail_after(60):
        async with Client(server) as client:
            tools = await client.list_tools()
            result = await client.call_tool("demo_add", {"a": 2, "b": 3})
    assert {"demo_sleep", "jobs_submit"} <= {tool.name for tool in tools.tools}
    assert result.structured_content == {"sum": 5.0}
    assert (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("darwin", {}, "/home/u/Library/Application Support/Claude/claude_desktop_config.json"),
        (
            "win32",
            {"APPDATA": "/c/Users/u/AppData/Roaming"},
            "/c/Users/u/AppData/Roaming/Claude/claude_desktop_config.json",
        ),
        ("win32", {}, "/home/u/AppData/Roaming/Claude/claude_desktop_config.json"),
        ("linux", {}, "/home/u/.config/Claude/claude_desktop_config.json"),
        ("linux", {"XDG_CONFIG_HOME": "/xdg"}, "/xdg/Claude/claude_desktop_config.json"),
    ],
)
def test_claude_desktops_config_is_looked_for_where_it_lives_on_each_platform(
    platform: str, environ: dict[str, str], expected: str
) -> None:
    assert claude_desktop_config_path(platform, environ, home=Path("/home/u")) == Path(expected)


def test_a_toolkit_that_does_not_load_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    run = install(tmp_path, "claude-desktop", "--toolkit", "no_such_module:toolkit")
    assert run.returncode == 2
    assert run.stderr.startswith("conveyor: error: ")
    assert "Traceback" not in run.stderr
    assert not config_at(tmp_path).exists()


def test_a_config_saved_with_a_byte_order_mark_is_merged_and_backed_up_byte_for_byte(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    config.parent.mkdir(parents=True)
    original = b"\xef\xbb\xbf" + json.dumps(EXISTING).encode()  # as some Windows editors save it
    config.write_bytes(original)
    run = install(tmp_path, "claude-desktop")
    assert run.returncode == 0, run.stderr
    assert read_json(config)["mcpServers"]["filesystem"] == OTHER_SERVER
    [backup] = backups(config)
    assert backup.read_bytes() == original
