"""A custom toolkit: two text tools, one of which reports progress as it goes.

A toolkit is a ``Toolkit`` plus plain functions decorated with ``@toolkit.tool``. Type hints
become each tool's input JSON Schema, the docstring its description, and a pydantic return
type its structured output. Tool names on the wire are ``<toolkit>_<tool>``: ``text_slugify``
and ``text_word_frequencies`` here.

Serve it over stdio from this directory (the current directory is where ``--toolkit`` looks
first, after the installed packages)::

    conveyor serve --toolkit custom_toolkit:toolkit

(from anywhere else, add this directory to ``PYTHONPATH``). ``--toolkit`` replaces the default
toolkit list, so the built-in ``demo`` tools are not served then; give
``--toolkit conveyor_toolkits.demo:toolkit`` too to keep them.

Try a tool without a client::

    conveyor call --toolkit custom_toolkit:toolkit text_slugify text="Hello, World!"
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Annotated

import anyio.lowlevel
from pydantic import BaseModel, Field

from conveyor import ToolContext, Toolkit

toolkit = Toolkit(
    "text", description="Small text utilities: an example of a custom toolkit.", version="1.0.0"
)

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


class Slug(BaseModel):
    slug: str = Field(description="Lower-case ASCII words joined by '-'.")


@toolkit.tool(read_only=True, open_world=False)
def slugify(
    text: Annotated[str, Field(description="Any text, e.g. a title.")],
    max_length: Annotated[int, Field(ge=1, le=200, description="Longest slug to return.")] = 64,
) -> Slug:
    """Turn text into a URL slug: 'Hello, World!' becomes 'hello-world'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return Slug(slug="-".join(words)[:max_length].rstrip("-"))


class WordCount(BaseModel):
    word: str
    count: int


class Frequencies(BaseModel):
    total_words: int = Field(description="Words in all documents.")
    top: list[WordCount] = Field(description="The most frequent words, most frequent first.")


@toolkit.tool(read_only=True, open_world=False)
async def word_frequencies(
    ctx: ToolContext,
    documents: Annotated[list[str], Field(min_length=1, description="The texts to count words in.")],
    top: Annotated[
        int, Field(ge=1, le=100, description="How many of the most frequent words to return.")
    ] = 10,
) -> Frequencies:
    """Count the words in a batch of documents, reporting progress after each document."""
    counts: Counter[str] = Counter()
    for done, document in enumerate(documents, start=1):
        counts.update(word.lower() for word in WORD.findall(document))
        ctx.report_progress(done, len(documents), f"counted document {done} of {len(documents)}")
        await anyio.lowlevel.checkpoint()  # a long batch stays cancellable between documents
    return Frequencies(
        total_words=sum(counts.values()),
        top=[WordCount(word=word, count=count) for word, count in counts.most_common(top)],
    )
