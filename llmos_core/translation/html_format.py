"""HTML: text nodes are translated; every tag, attribute, comment, script and style stays byte for byte.

The stdlib parser reports where each event starts; text between block-level tags, together with the
inline tags inside it (<b>, <a href>, <br>...), is one segment, the inline tags as tag tokens, so a
sentence is translated whole. <script>, <style>, <pre>, <code>, <textarea> and the like are never
read into a segment: their content is neither run nor shown to the model. Rendering splices each
translation into the original text, escaped, so nothing the model writes can become markup.
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from .formats import Format, register
from .parsed import ParsedDocument, decode_text
from .segment import Segment, TaggedText, restore_tags

INLINE = {"a", "abbr", "b", "bdi", "bdo", "br", "cite", "data", "del", "dfn", "em", "font", "i", "img", "ins",
          "mark", "q", "s", "small", "span", "strong", "sub", "sup", "time", "u", "wbr", "label"}
# Elements whose content is never translated. Inline ones become one tag token within the sentence.
VERBATIM = {"script", "style", "pre", "code", "textarea", "noscript", "template", "svg", "math", "kbd", "samp",
            "var"}
VERBATIM_INLINE = {"code", "kbd", "samp", "var"}
_CHARSET = re.compile(rb"<meta[^<>]+charset=[\"']?([\w-]+)", re.IGNORECASE)


class _Events(HTMLParser):
    """Every event with its start offset: (kind, start, tag)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=False)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.events: list[tuple[str, int, str]] = []

    def _at(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", self._at(), tag))

    def handle_startendtag(self, tag, attrs):
        self.events.append(("startend", self._at(), tag))

    def handle_endtag(self, tag):
        self.events.append(("end", self._at(), tag))

    def _text(self, _):
        self.events.append(("text", self._at(), ""))

    def _other(self, _):
        self.events.append(("other", self._at(), ""))

    def handle_comment(self, data):
        self.events.append(("comment", self._at(), ""))

    # Entities are text: with convert_charrefs off they arrive apart, so the raw source stays intact.
    handle_data = handle_entityref = handle_charref = _text
    handle_decl = handle_pi = unknown_decl = _other


def decode_html(data: bytes) -> tuple[str, list[str]]:
    declared = _CHARSET.search(data[:4096])
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        try:
            return data.decode(declared.group(1).decode()), [
                f"the page was in {declared.group(1).decode()}; the translation is written in UTF-8 "
                "(its <meta charset> is left as it was)"]
        except (LookupError, UnicodeDecodeError):
            pass
    return decode_text(data)


def _spans(text: str) -> list[tuple[int, int, list[tuple[str, int, int]]]]:
    """Runs of text and inline tags between block boundaries: (start, end, [(kind, start, end), ...])."""
    parser = _Events(text)
    parser.feed(text)
    parser.close()
    events = parser.events
    ends = [e[1] for e in events[1:]] + [len(text)]
    runs: list[tuple[int, int, list]] = []
    current: list[tuple[str, int, int]] = []
    skip_tag, skip_depth, skip_start = "", 0, 0

    def flush() -> None:
        nonlocal current
        if any(kind == "text" and text[s:e].strip() for kind, s, e in current):
            runs.append((current[0][1], current[-1][2], current))
        current = []

    for (kind, start, tag), end in zip(events, ends):
        if skip_tag:   # inside <script>, <pre>, <code>...: wait for its end
            if kind == "start" and tag == skip_tag:
                skip_depth += 1
            elif kind == "end" and tag == skip_tag:
                skip_depth -= 1
                if skip_depth == 0:
                    if skip_tag in VERBATIM_INLINE and current:
                        current.append(("tag", skip_start, end))   # inline code: one token, untouched
                    skip_tag = ""
            continue
        if kind == "start" and tag in VERBATIM:
            if not (tag in VERBATIM_INLINE and current):
                flush()
            skip_tag, skip_depth, skip_start = tag, 1, start
            continue
        if kind == "text":
            current.append(("text", start, end))
        elif (kind in ("start", "end", "startend") and tag in INLINE) or (kind == "comment" and current):
            current.append(("tag", start, end))
        else:
            flush()
    if skip_tag and skip_tag in VERBATIM_INLINE and current:   # an unclosed <code> runs to the end
        current.append(("tag", skip_start, len(text)))
    flush()
    return runs


def parse(doc: ParsedDocument) -> None:
    text, notes = decode_html(doc.data)
    doc.notes += notes
    segments = []
    for start, end, items in _spans(text):
        tagged = TaggedText()
        for kind, s, e in items:
            if kind == "text":
                tagged.text(html.unescape(text[s:e]))
            else:
                tagged.tag(text[s:e])
        segments.append(Segment(tagged.value(), {"start": start, "end": end}, kind=_kind(text, start),
                                tags=tagged.tags))
    doc.segments = segments


def _kind(text: str, start: int) -> str:
    """The nearest enclosing block tag before the text, for the structure counts."""
    before = text[max(0, start - 400):start]
    opened = re.findall(r"<(h[1-6]|li|td|th|p|div|title|caption|dt|dd|blockquote)\b", before, re.IGNORECASE)
    tag = opened[-1].lower() if opened else ""
    return {"li": "list", "td": "cell", "th": "cell", "dt": "list", "dd": "list"}.get(
        tag, "heading" if tag.startswith("h") or tag == "title" else "paragraph")


def render(doc: ParsedDocument, translations: list[str]) -> bytes:
    text, _ = decode_html(doc.data)
    out, last = [], 0
    for segment, translated in zip(doc.segments, translations):
        out.append(text[last:segment.ref["start"]])
        out.append(restore_tags(translated, segment.tags, escape=lambda s: html.escape(s, quote=False)))
        last = segment.ref["end"]
    out.append(text[last:])
    return "".join(out).encode("utf-8")



register(Format("html", (".html", ".htm"), "text/html", "text", parse, render))
