"""The parsed document every format fills in, the limits a parse must stay within, and text decoding.

A format module (text_formats, html_format, office_formats) gets a ParsedDocument holding the checked
bytes and the limits, appends its segments, and registers itself in formats.py; nothing here imports a
format, so no format imports back into the module that dispatches to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from . import formats
from .segment import Segment, without_reserved


@dataclass(frozen=True)
class ParseLimits:
    """What one upload may cost. Every parser is linear in its input; these bound the input itself,
    so that a hostile file gets a clear message instead of minutes of CPU and gigabytes of segments."""
    max_segments: int = 100_000          # 50,000 subtitles fit; a novel is about 10,000 paragraphs
    max_chars: int = 20_000_000          # text to translate, all segments together
    max_segment_chars: int = 100_000     # one paragraph, cell, subtitle or HTML text run
    max_line_chars: int = 200_000        # one line of a text, Markdown or subtitle file
    max_pdf_pages: int = 2_000


@dataclass
class ParsedDocument:
    format: str                 # txt md srt html docx pdf
    name: str                   # the file's name as given
    segments: list[Segment]
    data: bytes                 # the original bytes: render re-reads them
    output_format: str = ""     # = format, except pdf -> docx or txt
    notes: list[str] = field(default_factory=list)
    limits: ParseLimits = field(default_factory=ParseLimits)

    @property
    def output_name(self) -> str:
        stem = Path(self.name).stem or "document"
        return f"{stem}.{self.output_format}"

    @property
    def mime(self) -> str:
        return formats.get(self.output_format).mime

    def texts(self) -> list[str]:
        return [s.text for s in self.segments]

    def render(self, translations: list[str]) -> bytes:
        """The translated document, complete, as bytes."""
        if len(translations) != len(self.segments):
            raise InvalidInput(f"{len(translations)} translations for {len(self.segments)} segments")
        return formats.get(self.format).render(self, translations)

    def check_limits(self) -> None:
        """Refuse a parse whose segments are over the limits, naming the first one over."""
        limits = self.limits
        if len(self.segments) > limits.max_segments:
            raise InvalidInput(f"{self.name} has {len(self.segments):,} segments to translate (the limit is "
                               f"{limits.max_segments:,})", "split the document into smaller files")
        total = 0
        for number, segment in enumerate(self.segments, 1):
            total += len(segment.text)
            if len(segment.text) > limits.max_segment_chars:
                raise InvalidInput(f"{self.name}: segment {number} ({segment.kind}) is {len(segment.text):,} "
                                   f"characters long (the limit is {limits.max_segment_chars:,})",
                                   "a paragraph that long is not prose; break it into paragraphs")
        if total > limits.max_chars:
            raise InvalidInput(f"{self.name} holds {total:,} characters of text (the limit is {limits.max_chars:,})",
                               "split the document into smaller files")


def decode_text(data: bytes) -> tuple[str, list[str]]:
    """Bytes -> text, with the translator's marker characters made harmless (segment.without_reserved)."""
    text, notes = _decode(data)
    return without_reserved(text), notes


def _decode(data: bytes) -> tuple[str, list[str]]:
    """Bytes -> text. UTF-8 (with or without BOM) or UTF-16 with BOM; a file that mixes encodings is
    read line by line, each line that is not UTF-8 as Windows-1252, and a note says how many."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec), []
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"the file starts like {codec} but is not valid {codec}: {exc}") from exc
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    lines, legacy = [], 0
    for line in data.splitlines(keepends=True):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            legacy += 1
            lines.append(line.decode("cp1252", errors="replace"))
    return "".join(lines), [f"{legacy} line(s) were not UTF-8 and were read as Windows-1252; "
                            "the translation is written in UTF-8"]
