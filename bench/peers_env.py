"""The peers' virtual environment, made by the benchmark itself (never the project's dependencies).

FastMCP 4 with background tasks (``fastmcp[tasks]``: Docket, Redis client) and the bare mcp SDK,
at pinned versions. ``fastmcp`` 4.1.6, the newest 4.x, cannot be installed with its ``tasks``
extra: ``fastmcp-tasks`` was last published at 4.1.4, which pins ``fastmcp-slim==4.1.4``, and
``fastmcp-slim`` 4.1.4 and later need a ``certifi`` release (>=2026.10.19) the index does not
have. 4.1.2 is the newest FastMCP whose ``tasks`` extra resolves; ``redis`` 8.1.0 is excluded as
``fastmcp-tasks`` 4.1.4 excludes it.

The peers are served over HTTP on the event loop and HTTP implementation Conveyor's server runs
on, so when the project has uvloop or httptools the peers' venv gets the same versions.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
VENV = HERE / ".peers-venv"
PINS = ("fastmcp[tasks]==4.1.2", "redis!=8.1.0", "mcp==2.3.0")
STAMP = VENV / "bench-pins.json"
SERVING = ("uvloop", "httptools")  # uvicorn's optional event loop and HTTP parser


def python() -> Path:
    return VENV / "bin" / "python"


def serving_pins() -> tuple[str, ...]:
    """The project's own uvloop and httptools, where it has them, at the same versions."""
    pins = []
    for name in SERVING:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return tuple(pins)


def pins() -> tuple[str, ...]:
    return PINS + serving_pins()


def ensure(log: TextIO = sys.stderr) -> Path:
    """Create or update the peers' venv when its pins changed; its python. A change in the
    serving pins alone is installed into the existing venv."""
    wanted = list(pins())
    have = json.loads(STAMP.read_text()) if STAMP.exists() and python().exists() else None
    if have == wanted:
        return python()
    install = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if not have or have[: len(PINS)] != list(PINS):
        print(f"bench: installing peers into {VENV} ({', '.join(wanted)})", file=log, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        subprocess.run([str(python()), *install, *wanted], check=True, timeout=900)
    else:
        extra = wanted[len(PINS) :]
        print(f"bench: installing {', '.join(extra) or 'nothing'} into {VENV}", file=log, flush=True)
        if extra:
            subprocess.run([str(python()), *install, *extra], check=True, timeout=900)
    STAMP.write_text(json.dumps(wanted))
    return python()


def versions() -> dict[str, str]:
    """Installed versions of the packages the report names."""
    script = (
        "import json, importlib.metadata as m\n"
        "names = ['fastmcp', 'fastmcp-tasks', 'pydocket', 'mcp', 'redis', 'pydantic', 'uvicorn', 'starlette',"
        " 'uvloop', 'httptools']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python()), "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(done.stdout))
