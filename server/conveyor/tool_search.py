"""Finding tools by what they do: BM25 over each tool's name, title, description and argument names.

A server in front of upstream MCP servers can carry hundreds of tools, more than a model should
read in ``tools/list``; ``tools_search`` and ``GET /tools?q=`` answer the few that fit a query.

Text is cut into words: camelCase and ``snake_case`` are split, letters are lowercased, anything
that is not a letter or digit separates words, and a few English stop words are dropped. Words
match whole: a query word never matches a longer word it is a prefix of (``weather`` does not find
``weatherly``), so a tool is found for what it says, not for how its name happens to start.

The fields are weighted (BM25F, simplified): a word in the tool's name counts three times as much
as one in its description, so a tool named for the query ranks first, while one that only
describes it still ranks above one that merely shares part of a word.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.toolkit import Tool

K1 = 1.2  # how soon a repeated word stops adding to the score
B = 0.75  # how much a long text's words count for less
FIELD_WEIGHTS = {"name": 3.0, "title": 2.0, "arguments": 1.5, "description": 1.0}

STOP_WORDS = frozenset({
    "a", "an", "and", "any", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our",
    "so", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "was", "we", "what", "when", "where", "which", "who", "will", "with", "you", "your",
})  # fmt: skip

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The searchable words of a text: ``getWeatherForecast_v2`` gives get, weather, forecast, v2."""
    return [word for word in _WORD.findall(_CAMEL.sub(" ", text).lower()) if word not in STOP_WORDS]


def argument_names(schema: dict[str, Any]) -> list[str]:
    """The names of a tool's arguments: its input schema's top-level properties."""
    properties = schema.get("properties")
    return [str(name) for name in properties] if isinstance(properties, dict) else []


def fields_of(tool: Tool) -> dict[str, list[str]]:
    return {
        "name": words(tool.wire_name),
        "title": words(tool.title),
        "arguments": words(" ".join(argument_names(tool.input_schema))),
        "description": words(tool.description),
    }


class ToolIndex:
    """An inverted index of some tools; built once, searched many times."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools: list[Tool] = list(tools)
        self._postings: dict[str, list[tuple[int, float]]] = {}  # word -> (tool, weighted frequency)
        self._lengths: list[float] = []
        for number, tool in enumerate(self.tools):
            frequencies: dict[str, float] = {}
            length = 0.0
            for field, field_words in fields_of(tool).items():
                weight = FIELD_WEIGHTS[field]
                length += weight * len(field_words)
                for word in field_words:
                    frequencies[word] = frequencies.get(word, 0.0) + weight
            self._lengths.append(length)
            for word, frequency in frequencies.items():
                self._postings.setdefault(word, []).append((number, frequency))
        self._average_length = sum(self._lengths) / len(self._lengths) if self._lengths else 0.0

    def scores(self, query: str) -> dict[int, float]:
        """Each matching tool's (number's) BM25 score; tools no query word matches are absent."""
        count = len(self.tools)
        scores: dict[int, float] = {}
        for word in dict.fromkeys(words(query)):  # a word said twice counts once
            postings = self._postings.get(word)
            if not postings:
                continue
            idf = math.log(1 + (count - len(postings) + 0.5) / (len(postings) + 0.5))
            for number, frequency in postings:
                relative = self._lengths[number] / self._average_length if self._average_length else 1.0
                saturated = frequency * (K1 + 1) / (frequency + K1 * (1 - B + B * relative))
                scores[number] = scores.get(number, 0.0) + idf * saturated
        return scores

    def search(self, query: str, limit: int) -> list[tuple[Tool, float]]:
        """The best ``limit`` tools for the query, best first (equal scores by name); a tool that
        no word of the query matches is left out."""
        ranked: Sequence[tuple[int, float]] = sorted(
            ((number, score) for number, score in self.scores(query).items() if score > 0),
            key=lambda hit: (-hit[1], self.tools[hit[0]].wire_name),
        )
        return [(self.tools[number], score) for number, score in ranked[: max(0, limit)]]
