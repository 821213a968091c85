"""Toolkits for the tool search tests: tools found by their descriptions, their argument names,
their camelCase names, and many alike for limits and ties."""

from __future__ import annotations

from conveyor import Toolkit

meteo = Toolkit("meteo", description="Weather data.")


@meteo.tool(read_only=True)
def outlook(city: str, days: int = 3) -> str:
    """Weather forecasts for a city: temperature, rain and wind for the coming days."""
    return f"{city}: sunny for {days} days"


# Its name starts like "weather", and that is all it shares with a weather query.
weatherly = Toolkit("weatherly", description="File syncing.")


@weatherly.tool
def sync(source: str, target: str) -> str:
    """Copy the files of one folder into another."""
    return f"{source} -> {target}"


files = Toolkit("files", description="Files and folders.")


@files.tool
def archive(folder: str, compression_level: int = 6) -> str:
    """Pack a folder into one file."""
    return f"{folder}.zip"


@files.tool(name="listOrders")
def list_orders(customer: str) -> list[str]:
    """Show what a customer bought."""
    return []


notes = Toolkit("notes", description="Notes.")


@notes.tool
def summarize(text: str) -> str:
    """Shorten a text to its gist."""
    return text[:10]


@notes.tool
def keep(text: str) -> str:
    """Keep a note, so you can summarize it or read it later."""
    return "kept"


reports = Toolkit("reports", description="Twelve tools alike but for their names.")


def _report(number: int) -> None:
    @reports.tool(name=f"monthly_{number}", read_only=True)
    def report() -> int:
        """Make the monthly sales report."""
        return number


for _number in range(12):
    _report(_number)

TOOLKITS = tuple(
    f"tests.search_toolkits:{name}" for name in ("meteo", "weatherly", "files", "notes", "reports")
)
