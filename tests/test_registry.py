from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from conveyor import RetryPolicy, ToolContext, Toolkit
from conveyor.errors import ConfigError, ErrorCode, ToolNotFound
from conveyor.portable_schema import portable
from conveyor.registry import ENTRY_POINT_GROUP, Registry
from conveyor_toolkits import demo


class Greeting(BaseModel):
    text: str


class Weather(BaseModel):
    celsius: float


def test_input_schema_comes_from_type_hints_with_field_descriptions() -> None:
    kit = Toolkit("greeter")

    @kit.tool
    def greet(
        name: Annotated[str, Field(description="Who to greet.")],
        times: Annotated[int, Field(ge=1, description="How often.")] = 1,
        shout: bool = False,
    ) -> str:
        return name * times

    schema = kit.tools["greet"].input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["name"]["description"] == "Who to greet."
    # Portable: a default (which OpenAI's strict mode refuses) is said in the description.
    assert schema["properties"]["times"] == {
        "type": "integer",
        "minimum": 1,
        "description": "How often. Defaults to 1.",
    }
    assert schema["properties"]["shout"] == {"type": "boolean", "description": "Defaults to false."}


def test_description_is_the_cleaned_docstring_unless_given() -> None:
    kit = Toolkit("docs")

    @kit.tool
    def documented() -> None:
        """First line.

        More detail, indented in the source.
        """

    @kit.tool(description="Explicit wins.")
    def overridden() -> None:
        """Ignored docstring."""

    @kit.tool
    def bare() -> None:
        pass

    assert kit.tools["documented"].description == "First line.\n\nMore detail, indented in the source."
    assert kit.tools["overridden"].description == "Explicit wins."
    assert kit.tools["bare"].description == "bare"


def test_the_tool_context_parameter_is_left_out_of_the_schema() -> None:
    kit = Toolkit("ctx")

    @kit.tool
    async def report(context: ToolContext, steps: int) -> None:
        """Report progress."""

    tool = kit.tools["report"]
    assert tool.context_parameter == "context"
    assert set(tool.input_schema["properties"]) == {"steps"}
    assert tool.input_schema["required"] == ["steps"]
    assert tool.is_async


def test_a_tool_without_context_has_no_context_parameter() -> None:
    assert demo.toolkit.tools["add"].context_parameter is None
    assert demo.toolkit.tools["sleep"].context_parameter == "ctx"


def test_output_model_is_detected_from_the_return_annotation() -> None:
    kit = Toolkit("out")

    @kit.tool
    def structured() -> Greeting:
        return Greeting(text="hi")

    @kit.tool
    def plain() -> str:
        return "hi"

    @kit.tool(output=Weather)
    def explicit() -> dict[str, Any]:
        return {"celsius": 20}

    assert kit.tools["structured"].output_model is Greeting
    assert kit.tools["structured"].output_schema == portable(Greeting.model_json_schema())
    assert kit.tools["plain"].output_model is None
    assert kit.tools["plain"].output_schema is None
    assert kit.tools["explicit"].output_model is Weather


def test_read_only_tools_are_idempotent_and_not_destructive() -> None:
    kit = Toolkit("notes")

    @kit.tool(read_only=True, open_world=False)
    def read() -> None:
        pass

    @kit.tool
    def write() -> None:
        pass

    @kit.tool(destructive=False, idempotent=True)
    def upsert() -> None:
        pass

    read_ann, write_ann, upsert_ann = (kit.tools[n].annotations for n in ("read", "write", "upsert"))
    assert (read_ann.read_only, read_ann.destructive, read_ann.idempotent, read_ann.open_world) == (
        True,
        False,
        True,
        False,
    )
    assert (write_ann.read_only, write_ann.destructive, write_ann.idempotent, write_ann.open_world) == (
        False,
        True,
        False,
        True,
    )
    assert (upsert_ann.destructive, upsert_ann.idempotent) == (False, True)


def test_tool_options_are_kept_on_the_tool() -> None:
    kit = Toolkit("opts", version="2.0.0")

    @kit.tool(name="renamed", title="Nice title", timeout_ms=5_000, cancellable=False, queue="slow")
    def original() -> None:
        pass

    tool = kit.tools["renamed"]
    assert (tool.name, tool.title, tool.version) == ("renamed", "Nice title", "2.0.0")
    assert (tool.timeout_ms, tool.cancellable, tool.queue) == (5_000, False, "slow")
    assert "original" not in kit.tools


def test_a_retry_policy_is_refused_on_a_tool_that_is_not_idempotent() -> None:
    kit = Toolkit("retries")
    with pytest.raises(ConfigError):

        @kit.tool(retry=RetryPolicy())
        def charge() -> None:
            pass

    assert "charge" not in kit.tools


def test_a_retry_policy_is_accepted_on_an_idempotent_tool() -> None:
    kit = Toolkit("retries")

    @kit.tool(idempotent=True, retry=RetryPolicy(max_attempts=5))
    def fetch() -> None:
        pass

    policy = kit.tools["fetch"].retry
    assert policy is not None
    assert policy.max_attempts == 5


def test_retry_back_off_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_ms=100, max_backoff_ms=350)
    assert [policy.delay_ms(attempt) for attempt in (1, 2, 3, 4)] == [100, 200, 350, 350]


@pytest.mark.parametrize("name", ["jobs", "tools"])
def test_the_meta_tool_prefixes_are_refused_as_toolkit_names(name: str) -> None:
    with pytest.raises(ConfigError):
        Toolkit(name)


@pytest.mark.parametrize("name", ["", "has_underscore", "has space", "x" * 33])
def test_toolkit_names_must_be_short_letters_digits_and_dashes(name: str) -> None:
    with pytest.raises(ConfigError):
        Toolkit(name)


def test_a_tool_name_defined_twice_in_one_toolkit_is_refused() -> None:
    kit = Toolkit("twice")

    @kit.tool
    def same() -> None:
        pass

    with pytest.raises(ConfigError):
        kit.tool(same)


def test_variadic_parameters_are_refused() -> None:
    kit = Toolkit("variadic")
    with pytest.raises(ConfigError):

        @kit.tool
        def anything(**kwargs: Any) -> None:
            pass


def test_wire_names_are_toolkit_underscore_tool() -> None:
    kit = Toolkit("my-kit")

    @kit.tool
    def do_thing() -> None:
        pass

    assert kit.tools["do_thing"].wire_name == "my-kit_do_thing"
    assert demo.toolkit.tools["echo"].wire_name == "demo_echo"


@pytest.mark.parametrize("tool_name", ["t" * 32, "dotted.name", "white space"])
def test_a_tool_whose_wire_name_is_invalid_is_refused_and_not_registered(tool_name: str) -> None:
    kit = Toolkit("k" * 32)  # with "t" * 32 the wire name is 65 characters long
    with pytest.raises(ConfigError):
        kit.tool(name=tool_name)(lambda: None)
    assert kit.tools == {}


def test_registry_loads_a_toolkit_by_dotted_path() -> None:
    registry = Registry.load(["conveyor_toolkits.demo:toolkit"], entry_points_enabled=False)
    assert [tool.wire_name for tool in registry] == ["demo_add", "demo_echo", "demo_fail", "demo_sleep"]
    assert registry.get("demo_add") is demo.toolkit.tools["add"]
    assert "demo_echo" in registry
    assert len(registry) == 4


def test_the_toolkit_attribute_is_the_default_of_a_dotted_path() -> None:
    registry = Registry.load(["conveyor_toolkits.demo"], entry_points_enabled=False)
    assert registry.toolkits == {"demo": demo.toolkit}


@pytest.mark.parametrize(
    "dotted", ["does.not.exist:toolkit", "conveyor_toolkits.demo:missing", "conveyor_toolkits.demo:Sum"]
)
def test_a_dotted_path_that_is_not_a_toolkit_fails_at_start_up(dotted: str) -> None:
    with pytest.raises(ConfigError):
        Registry.load([dotted], entry_points_enabled=False)


def test_an_unknown_tool_is_tool_not_found() -> None:
    registry = Registry.load(["conveyor_toolkits.demo:toolkit"], entry_points_enabled=False)
    with pytest.raises(ToolNotFound) as raised:
        registry.get("demo_nope")
    assert raised.value.code is ErrorCode.TOOL_NOT_FOUND
    assert "demo_nope" not in registry


# -- entry points: a real (fake) distribution on a temporary sys.path entry ----------------------


@pytest.fixture
def install_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Write ``<name>-1.0.dist-info`` plus a module, and put them on ``sys.path``."""
    modules: list[str] = []

    def install(module: str, source: str, entry_points: dict[str, str]) -> None:
        dist = tmp_path / f"{module}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        modules.append(module)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for module in modules:
        sys.modules.pop(module, None)


WEATHER_TOOLKIT = """
    from conveyor import Toolkit

    toolkit = Toolkit("weather")

    @toolkit.tool(read_only=True)
    def forecast(city: str) -> str:
        \"\"\"Tomorrow's weather for a city.\"\"\"
        return "sunny"
"""


def test_toolkits_are_loaded_from_the_conveyor_toolkits_entry_point_group(install_distribution: Any) -> None:
    install_distribution("fakepkg", WEATHER_TOOLKIT, {"weather": "fakepkg:toolkit"})

    registry = Registry.load([], entry_points_enabled=True)

    assert "weather_forecast" in registry
    assert "demo_echo" not in registry  # the demo toolkit is a default setting, not an entry point
    assert registry.get("weather_forecast").description == "Tomorrow's weather for a city."


def test_entry_points_are_ignored_when_disabled(install_distribution: Any) -> None:
    install_distribution("fakepkg", WEATHER_TOOLKIT, {"weather": "fakepkg:toolkit"})

    registry = Registry.load([], entry_points_enabled=False)

    assert len(registry) == 0


def test_a_toolkit_named_by_path_and_by_entry_point_is_loaded_once() -> None:
    registry = Registry.load(["conveyor_toolkits.demo:toolkit"], entry_points_enabled=True)
    assert registry.toolkits["demo"] is demo.toolkit


def test_two_different_toolkits_with_one_name_fail_at_start_up_naming_both_origins(
    install_distribution: Any,
) -> None:
    impostor = """
        from conveyor import Toolkit

        toolkit = Toolkit("demo")

        @toolkit.tool
        def echo(text: str) -> str:
            return text
    """
    install_distribution("fakepkg", impostor, {"demo": "fakepkg:toolkit"})

    with pytest.raises(ConfigError) as raised:
        Registry.load(["conveyor_toolkits.demo:toolkit"], entry_points_enabled=True)

    assert "conveyor_toolkits.demo:toolkit" in str(raised.value)
    assert "fakepkg:toolkit" in str(raised.value)


def test_an_entry_point_that_fails_to_import_fails_at_start_up(install_distribution: Any) -> None:
    install_distribution("fakepkg", "raise RuntimeError('broken on import')\n", {"broken": "fakepkg:toolkit"})

    with pytest.raises(ConfigError):
        Registry.load([], entry_points_enabled=True)


def test_an_entry_point_that_is_not_a_toolkit_fails_at_start_up(install_distribution: Any) -> None:
    install_distribution("fakepkg", "toolkit = 'not a toolkit'\n", {"wrong": "fakepkg:toolkit"})

    with pytest.raises(ConfigError):
        Registry.load([], entry_points_enabled=True)


def test_registry_add_refuses_a_second_toolkit_with_the_same_name() -> None:
    registry = Registry([("conveyor_toolkits.demo:toolkit", demo.toolkit)])
    registry.add(demo.toolkit, origin="again")  # the same object is harmless
    with pytest.raises(ConfigError):
        registry.add(Toolkit("demo"), origin="elsewhere")


# -- search ---------------------------------------------------------------------------------------


@pytest.fixture
def registry() -> Registry:
    return Registry.load(["conveyor_toolkits.demo:toolkit"], entry_points_enabled=False)


def test_search_ranks_by_name_title_or_description_words(registry: Registry) -> None:
    assert registry.search("add numbers", 10)[0][0].wire_name == "demo_add"
    assert "demo_sleep" in [tool.wire_name for tool, _ in registry.search("PROGRESS", 10)]
    assert registry.search("demo_echo", 10)[0][0].wire_name == "demo_echo"


def test_search_with_no_words_or_nonsense_finds_nothing(registry: Registry) -> None:
    assert registry.search("", 10) == []
    assert registry.search("the of and", 10) == []  # stop words only
    assert registry.search("quantum", 10) == []
