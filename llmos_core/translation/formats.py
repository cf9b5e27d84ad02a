"""The registry of document formats: each format module registers its parser and renderer here.

    register(Format("srt", (".srt",), "application/x-subrip", "text", parse, render))

documents.py finds a format by the file's suffix; ParsedDocument.render by the parsed format's name.
This module imports nothing of the package, not even parsed.py for a type (parsed.py imports it: the
dependency goes one way); the functions take the ParsedDocument a parse fills.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ParsedDocument = Any   # parsed.ParsedDocument; named, not imported (parsed.py imports this module)


@dataclass(frozen=True)
class Format:
    name: str                   # txt md srt html docx pdf
    suffixes: tuple[str, ...]   # ".md", ".markdown"
    mime: str
    content: str                # what the bytes must look like: "text", "docx" (a zip) or "pdf"
    parse: Callable[[ParsedDocument], None]                  # fills doc.segments
    render: Callable[[ParsedDocument, list[str]], bytes]     # the document with these translations


_BY_NAME: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    _BY_NAME[fmt.name] = fmt
    return fmt


def get(name: str) -> Format:
    return _BY_NAME[name]


def by_suffix(suffix: str) -> Format | None:
    return next((f for f in _BY_NAME.values() if suffix in f.suffixes), None)


def all_formats() -> list[Format]:
    """Every registered format, in registration order (documents.py imports them all)."""
    return list(_BY_NAME.values())
