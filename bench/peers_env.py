"""The peers' virtual environment, made by the benchmark itself (never the project's dependencies).

FastMCP 4 with background tasks (``fastmcp[tasks]``: Docket, Redis client) and the bare mcp SDK,
at pinned versions. ``fastmcp`` 4.1.6, the newest 4.x, cannot be installed with its ``tasks``
extra: ``fastmcp-tasks`` was last published at 4.1.4, which pins ``fastmcp-slim==4.1.4``, and
``fastmcp-slim`` 4.1.4 and later need a ``certifi`` release (>=2026.10.19) the index does not
have. 4.1.2 is the newest FastMCP whose ``tasks`` extra resolves; ``redis`` 8.1.0 is excluded as
``fastmcp-tasks`` 4.1.4 excludes it.
"""

from __future__ import annotations

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


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(log: TextIO = sys.stderr) -> Path:
    """Create or update the peers' venv when its pins changed; its python."""
    if STAMP.exists() and json.loads(STAMP.read_text()) == list(PINS) and python().exists():
        return python()
    print(f"bench: installing peers into {VENV} ({', '.join(PINS)})", file=log, flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS]
    subprocess.run(pip, check=True, timeout=900)
    STAMP.write_text(json.dumps(list(PINS)))
    return python()


def versions() -> dict[str, str]:
    """Installed versions of the packages the report names."""
    script = (
        "import json, importlib.metadata as m\n"
        "names = ['fastmcp', 'fastmcp-tasks', 'pydocket', 'mcp', 'redis', 'pydantic', 'uvicorn', 'starlette']\n"
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
