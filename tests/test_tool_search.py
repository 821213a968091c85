"""Tool search: BM25 over names, titles, descriptions and argument names, through the registry,
the ``tools_search`` meta-tool (both MCP eras) and ``GET /tools?q=``; and ``tools_listed``, which
keeps tools out of ``tools/list`` but not out of reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from conveyor import Toolkit
from conveyor.mcp_server import build_server
from conveyor.registry import Registry
from conveyor.runtime import open_runtime
from conveyor.settings import Settings
from conveyor.tool_search import ToolIndex, words
from tests.conftest import make_settings
from tests.http_helpers import error_of, ok
from tests.live_server import LiveServer
from tests.mcp_calls import call, call_error
from tests.search_toolkits import TOOLKITS

pytestmark = pytest.mark.anyio

META_TOOLS = {"jobs_submit", "jobs_status", "jobs_cancel", "jobs_list", "tools_search"}
SEARCH_TOOLKIT_NAMES = {"meteo", "weatherly", "files", "notes", "reports"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The demo tools in tools/list; the search toolkits' tools loaded, but not listed."""
    return make_settings(
        tmp_path, toolkits=("conveyor_toolkits.demo:toolkit", *TOOLKITS), tools_listed=("demo",)
    )


@pytest.fixture
def registry() -> Registry:
    return Registry.load(["conveyor_toolkits.demo:toolkit", *TOOLKITS], entry_points_enabled=False)


def names(found: list[tuple[Any, float]]) -> list[str]:
    return [tool.wire_name for tool, _ in found]


# -- the index ----------------------------------------------------------------------------------


def test_words_split_snake_kebab_and_camel_case_lowercase_and_drop_stop_words() -> None:
    assert words("getWeatherForecast_v2") == ["get", "weather", "forecast", "v2"]
    assert words("HTTPServer my-files") == ["http", "server", "files"]
    assert words("The forecast for a city, in Celsius!") == ["forecast", "city", "celsius"]


def test_a_tool_whose_description_says_the_word_ranks_above_one_whose_name_only_shares_a_prefix(
    registry: Registry,
) -> None:
    found = names(registry.search("weather", 50))
    assert found[0] == "meteo_outlook"  # its description talks of weather forecasts
    assert "weatherly_sync" not in found  # "weatherly" only starts like the word
    assert registry.search("weath", 50) == []  # a prefix is not a word


def test_name_and_title_words_weigh_more_than_description_words(registry: Registry) -> None:
    found = registry.search("summarize", 10)
    assert names(found) == ["notes_summarize", "notes_keep"]  # keep only says it in its description
    assert found[0][1] > found[1][1] > 0


def test_a_tool_is_found_by_its_argument_names(registry: Registry) -> None:
    # "compression" is only the name of an argument: archive's description is about folders.
    assert names(registry.search("compression", 10)) == ["files_archive"]
    assert names(registry.search("compression level", 10))[0] == "files_archive"


def test_a_camel_case_tool_name_is_found_by_its_words(registry: Registry) -> None:
    assert names(registry.search("orders", 10)) == ["files_listOrders"]


def test_the_limit_is_kept_and_equal_scores_are_in_name_order(registry: Registry) -> None:
    found = registry.search("sales report", 5)
    assert len(found) == 5
    assert {score for _, score in found} == {found[0][1]}  # twelve tools alike but for their names
    every = sorted(f"reports_monthly_{number}" for number in range(12))
    assert names(found) == every[:5]
    assert len(registry.search("sales report", 50)) == 12
    assert len(registry.search("sales report", 1)) == 1


def test_scores_are_positive_best_first_and_unmatched_tools_are_left_out(registry: Registry) -> None:
    found = registry.search("copy files folder", 50)
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    assert all(score > 0 for score in scores)
    assert "demo_add" not in names(found)
    assert registry.search("zeppelin", 10) == []
    assert registry.search("the and of", 10) == []  # stop words only


def test_the_index_follows_the_registry_when_its_tools_change(registry: Registry) -> None:
    assert registry.search("telescope", 10) == []
    astro = Toolkit("astro")

    @astro.tool
    def stargaze() -> str:
        """Point the telescope at a star."""
        return "*"

    registry.add(astro)
    assert names(registry.search("telescope", 10)) == ["astro_stargaze"]

    @astro.tool
    def planets() -> str:
        """Name the planets a telescope can see tonight."""
        return "mars"

    registry.refresh(astro)  # an upstream's tools, listed again
    assert set(names(registry.search("telescope", 10))) == {"astro_stargaze", "astro_planets"}


def test_an_empty_index_finds_nothing() -> None:
    assert ToolIndex([]).search("weather", 10) == []


# -- tools_search over MCP, both eras ---------------------------------------------------------------


async def test_tools_search_is_a_read_only_meta_tool_with_schemas(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    search = listed["tools_search"]
    assert search.input_schema["required"] == ["query"]
    assert set(search.input_schema["properties"]) == {"query", "limit"}
    assert search.output_schema is not None
    assert "tools" in search.output_schema["properties"]
    assert search.annotations is not None
    assert search.annotations.read_only_hint is True


async def test_tools_search_answers_ranked_tools_with_their_schemas_and_readable_text(client: Client) -> None:
    result = await client.call_tool("tools_search", {"query": "weather forecasts for a city"})
    assert not result.is_error
    assert result.structured_content is not None
    found = result.structured_content["tools"]
    best = found[0]
    assert best["name"] == "meteo_outlook"
    assert best["title"] == "Outlook"
    assert "Weather forecasts" in best["description"]
    assert set(best["input_schema"]["properties"]) == {"city", "days"}
    assert best["score"] > 0
    assert "weatherly_sync" not in {tool["name"] for tool in found}
    text = result.content[0].text  # type: ignore[union-attr]
    assert "meteo_outlook" in text
    assert "city, days" in text


async def test_tools_search_keeps_to_the_limit_and_says_when_nothing_matches(client: Client) -> None:
    limited = await call(client, "tools_search", {"query": "monthly sales report", "limit": 3})
    assert [tool["name"] for tool in limited["tools"]] == [f"reports_monthly_{n}" for n in (0, 1, 10)]
    nothing = await client.call_tool("tools_search", {"query": "zeppelin"})
    assert not nothing.is_error
    assert nothing.structured_content == {"tools": []}
    assert "No tool matches" in nothing.content[0].text  # type: ignore[union-attr]


async def test_tools_search_takes_null_for_a_left_out_limit(client: Client) -> None:
    # Clients in OpenAI's strict mode send every parameter, null for those they would leave out.
    found = await call(client, "tools_search", {"query": "sales report", "limit": None})
    assert len(found["tools"]) == 10


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "x" * 201}, "query"),
        ({"query": 5}, "query"),
        ({"query": "weather", "limit": 0}, "limit"),
        ({"query": "weather", "limit": 51}, "limit"),
        ({"query": "weather", "limit": "5"}, "limit"),
        ({"query": "weather", "limit": 2.5}, "limit"),
        ({"query": "weather", "colour": "red"}, "colour"),
    ],
)
async def test_tools_search_refuses_bad_arguments_naming_the_argument(
    client: Client, arguments: dict[str, Any], argument: str
) -> None:
    error = await call_error(client, "tools_search", arguments)
    assert error["code"] == "INVALID_ARGUMENTS"
    assert error["argument"] == argument


# -- tools_listed -----------------------------------------------------------------------------------


async def test_tools_listed_keeps_other_toolkits_out_of_tools_list_but_callable_and_findable(
    client: Client,
) -> None:
    listed = {tool.name for tool in (await client.list_tools()).tools}
    assert listed == {"demo_echo", "demo_sleep", "demo_fail", "demo_add"} | META_TOOLS
    # Hidden, but found by search,
    found = await call(client, "tools_search", {"query": "weather forecasts"})
    assert found["tools"][0]["name"] == "meteo_outlook"
    # callable directly,
    direct = await client.call_tool("meteo_outlook", {"city": "Oslo", "days": 2})
    assert not direct.is_error
    assert direct.content[0].text == "Oslo: sunny for 2 days"  # type: ignore[union-attr]
    # and as a job.
    job = await call(
        client,
        "jobs_submit",
        {"tool": "meteo_outlook", "arguments": {"city": "Bergen"}, "wait_seconds": 10},
    )
    assert job["status"] == "completed"
    assert job["result"] == "Bergen: sunny for 3 days"


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_without_tools_listed_tools_list_shows_every_tool(tmp_path: Path, era: str) -> None:
    settings = make_settings(tmp_path, toolkits=("conveyor_toolkits.demo:toolkit", *TOOLKITS))
    async with open_runtime(settings) as runtime, Client(build_server(runtime), mode=era) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed == {tool.wire_name for tool in runtime.registry} | META_TOOLS
    assert {name.split("_")[0] for name in listed} >= SEARCH_TOOLKIT_NAMES


# -- GET /tools?q= ------------------------------------------------------------------------------------


async def test_rest_tools_with_q_answers_ranked_tools_in_the_listing_shape_with_a_score(
    live: LiveServer,
) -> None:
    key = await live.new_key()
    async with live.client(key) as http:
        every = {tool["name"]: tool for tool in ok(await http.get("/tools"))["tools"]}
        found = ok(await http.get("/tools", params={"q": "weather forecasts"}))["tools"]
        limited = ok(await http.get("/tools", params={"q": "sales report", "limit": "4"}))["tools"]
        default = ok(await http.get("/tools", params={"q": "sales report"}))["tools"]
        nothing = ok(await http.get("/tools", params={"q": "zeppelin"}))["tools"]
    # Without q: every tool, tools_listed or not (it is about MCP's tools/list), and no score.
    assert set(every) == {tool.wire_name for tool in live.runtime.registry}
    assert all("score" not in tool for tool in every.values())
    best = found[0]
    assert best["name"] == "meteo_outlook"
    assert best["score"] > 0
    assert {key: value for key, value in best.items() if key != "score"} == every["meteo_outlook"]
    assert "weatherly_sync" not in {tool["name"] for tool in found}
    scores = [tool["score"] for tool in found]
    assert scores == sorted(scores, reverse=True)
    assert [tool["name"] for tool in limited] == [f"reports_monthly_{n}" for n in (0, 1, 10, 11)]
    assert len(default) == 10
    assert nothing == []


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        ({"q": ""}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "weather", "limit": "0"}, "limit"),
        ({"q": "weather", "limit": "51"}, "limit"),
        ({"q": "weather", "limit": "many"}, "limit"),
    ],
)
async def test_rest_tools_refuses_a_bad_q_or_limit(
    live: LiveServer, params: dict[str, str], argument: str
) -> None:
    async with live.client(live.admin_key) as http:
        error = error_of(await http.get("/tools", params=params), 400, "INVALID_ARGUMENTS")
    assert error["argument"] == argument


async def test_the_sdk_gets_each_tools_advertised_input_schema_listed_or_not(tmp_path: Path) -> None:
    # The SDK checks a 2026-07-28 call's Mcp-Param-* headers against the tool's input schema:
    # handed it here, it never runs a whole tools/list per call to find it.
    everything = make_settings(tmp_path, toolkits=("conveyor_toolkits.demo:toolkit", *TOOLKITS))
    async with open_runtime(everything) as runtime, Client(build_server(runtime)) as client:
        advertised = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
    settings = make_settings(
        tmp_path, toolkits=("conveyor_toolkits.demo:toolkit", *TOOLKITS), tools_listed=("demo",)
    )
    async with open_runtime(settings) as runtime:
        lookup = build_server(runtime).get_tool_input_schema
        assert lookup is not None
        assert {name: lookup(name) for name in advertised} == advertised
        assert lookup("no_such_tool") is None
