"""``conveyor install claude-desktop|print``: a Conveyor entry for an MCP client's config.

The entry starts this very installation (the absolute path of its ``conveyor`` script, or its
Python with ``-m conveyor``) on an absolute database path, since a desktop client starts servers
from a directory of its own choosing and with none of the shell's environment. Merging into Claude
Desktop's config keeps every other key and server, backs the old file up first, and replaces the
file in one step, so Claude Desktop never reads half of it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError
from conveyor.settings import Settings, is_postgres_url

CONFIG_NAME = "claude_desktop_config.json"
SCRIPT_NAMES = ("conveyor", "conveyor.exe")


class InstallError(ConfigError):
    """A config file that cannot be merged into safely; said with a code, as the doors' errors are."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


def claude_desktop_config_path(platform: str, environ: Mapping[str, str], home: Path | None = None) -> Path:
    """Where Claude Desktop reads its config on this platform (``sys.platform``'s names)."""
    home = home if home is not None else Path(environ.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Application Support" / "Claude" / CONFIG_NAME
    if platform.startswith(("win", "cygwin", "msys")):
        appdata = environ.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "Claude" / CONFIG_NAME
    config_home = environ.get("XDG_CONFIG_HOME")
    return (Path(config_home) if config_home else home / ".config") / "Claude" / CONFIG_NAME


def server_entry(
    settings: Settings,
    *,
    toolkits: Sequence[str],
    upstreams: Sequence[str],
    config_file: str | None,
    launched_as: str,
    cwd: str,
) -> dict[str, Any]:
    """``{"command", "args"[, "env"]}`` that serves this installation's tools on ``settings.db``."""
    db = settings.db if is_postgres_url(settings.db) else _absolute(settings.db)
    args = ["serve", "--db", db]
    if config_file is not None:
        args += ["--config", _absolute(config_file)]
    for toolkit in toolkits:
        args += ["--toolkit", toolkit]
    for upstream in upstreams:
        args += ["--upstream", upstream]
    script = conveyor_script(launched_as)
    entry: dict[str, Any] = (
        {"command": script, "args": args}
        if script is not None
        else {"command": sys.executable, "args": ["-m", "conveyor", *args]}
    )
    if any(_found_in(cwd, toolkit) for toolkit in toolkits):
        # `conveyor serve --toolkit my_tools` finds my_tools.py in the directory it was run from;
        # the client runs it from elsewhere, so it is told where to look.
        entry["env"] = {"PYTHONPATH": cwd}
    return entry


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def conveyor_script(launched_as: str) -> str | None:
    """The absolute path of this installation's ``conveyor`` script: the one running now, or the one
    in this Python's scripts directory; None if neither is there (then ``python -m conveyor``)."""
    running = Path(launched_as)
    if running.name in SCRIPT_NAMES and running.is_file():
        return os.path.abspath(running)
    scripts = Path(sysconfig.get_path("scripts"))
    for name in SCRIPT_NAMES:
        if (scripts / name).is_file():
            return str(scripts / name)
    return None


def _found_in(directory: str, toolkit: str) -> bool:
    """Whether the toolkit's module is a file under ``directory`` (as a local toolkit is)."""
    module = toolkit.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    origin = spec.origin if spec is not None else None
    return origin is not None and Path(origin).resolve().is_relative_to(Path(directory).resolve())


@dataclass(frozen=True)
class Change:
    """What ``merge_into`` did (or, dry, would do)."""

    path: Path
    name: str
    action: str  # added | replaced | unchanged
    backup: Path | None
    written: str
    dry_run: bool

    def report(self) -> str:
        if self.dry_run:
            return f"(dry run: would have {self.action} {self.name!r} in {self.path}; nothing written)"
        if self.action == "unchanged":
            return f"{self.name!r} in {self.path} is already this entry; nothing written"
        lines = [
            f"{'Replaced the existing' if self.action == 'replaced' else 'Added the'} "
            f"{self.name!r} entry in {self.path}",
        ]
        if self.backup is not None:
            lines.append(f"The previous file is kept as {self.backup}")
        lines.append("Restart Claude Desktop to load it.")
        return "\n".join(lines)


def merge_into(path: Path, name: str, entry: dict[str, Any], *, dry_run: bool = False) -> Change:
    """Put ``entry`` at ``mcpServers.<name>`` in the config at ``path``, keeping everything else."""
    try:
        return _merge(path, name, entry, dry_run=dry_run)
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InstallError("CONFIG_NOT_WRITABLE", f"{path}: {problem}; nothing was changed") from None


def _merge(path: Path, name: str, entry: dict[str, Any], *, dry_run: bool) -> Change:
    # utf-8-sig: a file saved by an editor that starts it with a byte-order mark reads as JSON too.
    old_text = path.read_text(encoding="utf-8-sig") if path.exists() else None
    config = _parsed(path, old_text)
    servers = config.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise InstallError("CONFIG_NOT_MERGEABLE", f"{path}: mcpServers is not a JSON object; fix it first")
    action = "added" if name not in servers else "unchanged" if servers[name] == entry else "replaced"
    servers[name] = entry
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    if dry_run or action == "unchanged":
        return Change(path, name, action, None, text, dry_run)
    backup = _back_up(path) if old_text is not None else None
    _replace(path, text)
    return Change(path, name, action, backup, text, dry_run)


def _parsed(path: Path, text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():  # no file yet, or an empty one: start afresh
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstallError(
            "CONFIG_NOT_JSON",
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
            "it was left as it is: fix it, or move it away, and run this again",
        ) from None
    if not isinstance(config, dict):
        raise InstallError(
            "CONFIG_NOT_MERGEABLE", f"{path} does not hold a JSON object; it was left as it is"
        )
    return config


def _back_up(path: Path) -> Path:
    """A byte-for-byte copy of the old file beside it, named by the time (an earlier backup is
    never overwritten)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.{stamp}-{n}.bak")
    shutil.copy2(path, backup)
    return backup


def _replace(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    fd, draft = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(draft, mode)
        os.replace(draft, path)
    except BaseException:
        Path(draft).unlink(missing_ok=True)
        raise
