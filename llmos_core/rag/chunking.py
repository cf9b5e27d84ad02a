"""Cut a parsed document into passages for retrieval, by its structure.

A passage never crosses a heading or a PDF page, so it can be cited as "file, heading, page". Blocks
(paragraphs, list items, table rows) are packed up to TARGET_CHARS; the next passage repeats the tail
of the one before (OVERLAP_CHARS) so an answer that straddles two blocks is whole in one of them. A
block longer than a passage is cut at sentence ends, else at spaces. Table cells of one row (Markdown:
one line; docx and HTML: one run of cells) become one block "a | b | c", so a row stays together. In
plain text and PDF, which mark no headings, a short line without a sentence's end counts as one.

About 4 characters a token in English: 900 characters is about 225 tokens, well under the 256-512 an
embedding model such as all-MiniLM-L6-v2 reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..translation.parsed import ParsedDocument
from ..translation.segment import TAG_TOKEN

TARGET_CHARS = 900
OVERLAP_CHARS = 150
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Chunk:
    ordinal: int          # position in the document
    text: str
    heading: str          # the nearest heading above ("" before the first)
    page: int | None      # 1-based PDF page; None for formats without pages


@dataclass
class _Block:
    text: str
    heading: str
    page: int | None


def plain_text(segment_text: str) -> str:
    """A segment's text without its inline tag tokens, whitespace collapsed."""
    return " ".join(TAG_TOKEN.sub("", segment_text).split())


def document_blocks(doc: ParsedDocument) -> list[_Block]:
    """Paragraphs, list items and table rows in order, each with its heading and page."""
    blocks: list[_Block] = []
    heading, row, row_end = "", [], None
    source = doc.data.decode("utf-8", "replace") if doc.format == "md" else ""

    def flush_row() -> None:
        nonlocal row
        if row:
            blocks.append(_Block(" | ".join(row), heading, page))
            row = []

    page = None
    for segment in doc.segments:
        text = plain_text(segment.text)
        if not text:
            continue
        new_page = segment.ref.get("page") if isinstance(segment.ref, dict) else None
        page_now = new_page + 1 if isinstance(new_page, int) else None
        if segment.kind == "cell":
            start = segment.ref.get("start")
            # Markdown: a newline between the previous cell and this one starts a new row.
            if row and source and row_end is not None and isinstance(start, int) and "\n" in source[row_end:start]:
                flush_row()
            page = page_now
            row.append(text)
            row_end = segment.ref.get("end")
            continue
        flush_row()
        page = page_now
        if segment.kind == "heading" or (doc.format in ("txt", "pdf") and looks_like_heading(text)):
            heading = text
            blocks.append(_Block(text, heading, page))   # a heading is searchable text too
            continue
        blocks.append(_Block(text, heading, page))
    flush_row()
    return blocks


def looks_like_heading(text: str) -> bool:
    """Plain text and PDF have no heading marks: a short line without a sentence's end is taken for one."""
    return len(text) <= 60 and "\n" not in text and text[-1] not in ".!?:;,)" and len(text.split()) <= 8


def split_long(text: str, limit: int = TARGET_CHARS) -> list[str]:
    """A block over `limit` characters cut at sentence ends, and a sentence over it at spaces."""
    if len(text) <= limit:
        return [text]
    pieces, current = [], ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def overlap_tail(text: str, size: int = OVERLAP_CHARS) -> str:
    """The last `size` characters of a passage, from a word start."""
    if len(text) <= size:
        return text
    tail = text[-size:]
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < size // 2 else tail


def chunk_document(doc: ParsedDocument, target_chars: int = TARGET_CHARS,
                   overlap_chars: int = OVERLAP_CHARS) -> list[Chunk]:
    chunks: list[Chunk] = []
    parts: list[str] = []      # the passage being filled: the overlap carried over, then new pieces
    fresh = 0                  # pieces in `parts` not yet in any passage
    place: tuple[str, int | None] | None = None

    def emit() -> None:
        nonlocal parts, fresh
        body = "\n".join(parts).strip()
        chunks.append(Chunk(len(chunks), body, place[0], place[1]))
        parts, fresh = ([overlap_tail(body, overlap_chars)] if overlap_chars else []), 0

    for block in document_blocks(doc):
        if (block.heading, block.page) != place:
            if fresh:
                emit()
            parts, fresh, place = [], 0, (block.heading, block.page)
        for piece in split_long(block.text, target_chars):
            if fresh and sum(len(p) + 1 for p in parts) + len(piece) > target_chars:
                emit()
            parts.append(piece)
            fresh += 1
    if fresh:
        emit()
    return chunks
