"""The examples stay runnable: the stdio client exits 0, the custom toolkit loads and serves."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from conveyor.mcp_server import build_server
from conveyor.registry import Registry
from conveyor.runtime import open_runtime
from conveyor.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_stdio_client_example_runs_a_job_and_prints_its_result(tmp_path: Path) -> None:
    # From a directory outside the repository: the example needs only conveyor and mcp installed.
    with anyio.fail_after(30):
        finished = await anyio.run_process(
            [sys.executable, str(EXAMPLES / "stdio_client.py")], cwd=tmp_path, check=False
        )
    output = finished.stdout.decode()
    assert finished.returncode == 0, finished.stderr.decode()
    assert "finished: completed" in output
    assert 'result: {"slept_seconds": 1.0, "steps": 4}' in output


@pytest.mark.anyio
async def test_the_custom_toolkit_example_loads_and_its_tools_report_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # as its docstring says: PYTHONPATH=. from the repository root
    registry = Registry.load(["examples.custom_toolkit:toolkit"], entry_points_enabled=False)
    assert {tool.wire_name for tool in registry} == {"text_slugify", "text_word_frequencies"}
    settings = load_settings(
        env={},
        overrides={
            "db": str(tmp_path / "conveyor.db"),
            "entry_points": False,
            "progress_interval_seconds": 0,
        },
    )
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    with anyio.fail_after(10):
        async with (
            open_runtime(settings, registry=registry) as runtime,
            Client(build_server(runtime)) as client,
        ):
            slug = await client.call_tool("text_slugify", {"text": "Hello, Wörld!"})
            counted = await client.call_tool(
                "text_word_frequencies",
                {"documents": ["the cat", "the hat", "The end"], "top": 1},
                progress_callback=on_progress,
            )

    assert not slug.is_error
    assert slug.structured_content == {"slug": "hello-world"}
    assert not counted.is_error
    assert counted.structured_content == {"total_words": 6, "top": [{"word": "the", "count": 3}]}
    assert seen[-1] == (3, 3)
