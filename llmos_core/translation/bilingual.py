"""The bilingual document: source and translation together, for review or for readers of either language.

  - docx: each paragraph, then its translation as a paragraph of the same style (table cells hold both);
  - md, txt, html: each paragraph or heading, then its translation as the next paragraph (html: after a
    line break in the same block); list items and table cells hold "source / translation" on one line,
    so lists and tables keep their shape;
  - srt: dual subtitles: each cue shows its source lines, then its translation's.
A PDF cannot be rebuilt, so its bilingual form is the docx or txt it comes back as, built from its text.
A segment the model left in the source language (`untranslated`) shows its translation side flagged with
NOT_TRANSLATED, in every format, so a reader of the bilingual document sees which rows need a person.
"""
from __future__ import annotations

import html
from pathlib import Path

from ..errors import InvalidInput
from . import html_format, office_formats, text_formats
from .parsed import ParsedDocument, decode_text
from .segment import restore_tags

FORMATS = ("docx", "md", "txt", "html", "srt")
_INLINE = " / "   # between source and translation where a line break would break the structure
NOT_TRANSLATED = "[NOT TRANSLATED] "


def bilingual_name(doc: ParsedDocument) -> str:
    return f"{Path(doc.name).stem or 'document'}.bilingual.{doc.output_format}"


def render_bilingual(doc: ParsedDocument, translations: list[str], untranslated=()) -> bytes:
    """untranslated: the segments (from 0) kept in the source language, flagged on their translation side."""
    if len(translations) != len(doc.segments):
        raise InvalidInput(f"{len(translations)} translations for {len(doc.segments)} segments")
    flagged = set(untranslated)
    translations = [NOT_TRANSLATED + t if i in flagged else t for i, t in enumerate(translations)]
    if doc.format == "docx":
        return office_formats._render_docx(doc, translations, keep_source=True)
    if doc.format == "html":
        return _render_html(doc, translations)
    if doc.format in ("md", "txt", "srt"):
        return _render_text(doc, translations)
    raise InvalidInput(f"a bilingual {doc.format.upper()} cannot be built",
                       "bilingual output covers " + ", ".join(f.upper() for f in FORMATS))


def _render_text(doc: ParsedDocument, translations: list[str]) -> bytes:
    text, _ = decode_text(doc.data)
    eol = "\r\n" if "\r\n" in text else "\n"
    pieces, last = [], 0
    for segment, translated in zip(doc.segments, translations):
        ref = segment.ref
        pieces.append(text[last:ref["start"]])
        source, target = (text_formats._finish(segment, t) for t in (segment.text, translated))
        if segment.kind == "subtitle":
            pieces.append(source + ref.get("eol", eol) + target)
        elif segment.kind in ("list", "cell"):
            pieces.append(source + _INLINE + target)
        else:
            pieces.append(source + eol + eol + target)
        last = ref["end"]
    pieces.append(text[last:])
    return "".join(pieces).encode("utf-8")


def _render_html(doc: ParsedDocument, translations: list[str]) -> bytes:
    text, _ = html_format.decode_html(doc.data)
    out, last = [], 0
    for segment, translated in zip(doc.segments, translations):
        out.append(text[last:segment.ref["start"]])
        source, target = (restore_tags(t, segment.tags, escape=lambda s: html.escape(s, quote=False))
                          for t in (segment.text, translated))
        # <title> holds text only: no line break there
        in_title = text.rfind("<title", 0, segment.ref["start"]) > text.rfind("</title", 0, segment.ref["start"])
        out.append(source + (_INLINE if in_title or segment.kind in ("list", "cell") else "<br>") + target)
        last = segment.ref["end"]
    out.append(text[last:])
    return "".join(out).encode("utf-8")

