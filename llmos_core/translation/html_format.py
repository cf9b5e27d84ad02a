"""HTML: text nodes are translated; every tag, attribute, comment, script and style stays byte for byte.

A one-pass tokenizer reports where each piece starts; text between block-level tags, together with the
inline tags inside it (<b>, <a href>, <br>...), is one segment, the inline tags as tag tokens, so a
sentence is translated whole. <script>, <style>, <pre>, <code>, <textarea> and the like are never
read into a segment: their content is neither run nor shown to the model. Rendering splices each
translation into the original text, escaped, so nothing the model writes can become markup.
"""
from __future__ import annotations

import html
import re

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


_SPACE = " \t\n\r\f"
# Runs of one character class, matched where they start: nothing to backtrack.
_NAME = re.compile(r"[^ \t\n\r\f/>\x00]*")
_ATTRIBUTE = re.compile(r"[^ \t\n\r\f/>=]*")
_SPACES = re.compile(r"[ \t\n\r\f]*")
_BARE_VALUE = re.compile(r"[^ \t\n\r\f>]*")
_RAW_TEXT = {"script", "style"}   # their content is text up to their end tag, whatever it looks like
_RAW_END = {tag: re.compile(rf"</{tag}[{_SPACE}/>]", re.IGNORECASE) for tag in _RAW_TEXT}


def _events(text: str) -> list[tuple[str, int, str]]:
    """Every piece of the page in order, each with its start: (kind, start, tag); kinds: text, start,
    startend, end, comment, other. A piece ends where the next begins.

    By hand and in one pass: html.parser re-scans an unclosed tag to the end of the input from every
    "<" (a page of "<a<a<a..." was quadratic). Each step here moves forward; a tag, comment or quoted
    value left open at the end of the file makes the rest one "other" piece, kept and never translated.
    """
    events: list[tuple[str, int, str]] = []
    n, i = len(text), 0
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            events.append(("text", i, ""))
            break
        if lt > i:
            events.append(("text", i, ""))
        i = lt
        nxt = text[i + 1:i + 2]
        if text.startswith("<!--", i):
            close = text.find("-->", i + 4)
            events.append(("comment", i, ""))
            i = n if close < 0 else close + 3
        elif nxt in ("!", "?") or (nxt == "/" and not text[i + 2:i + 3].isalpha()):
            close = text.find(">", i + 2)   # a declaration, processing instruction or bogus comment
            events.append(("other", i, ""))
            i = n if close < 0 else close + 1
        elif nxt == "/" or nxt.isalpha():
            i = _tag(text, i, events)
        else:   # a "<" that opens nothing is text
            events.append(("text", i, ""))
            i += 1
    return events


def _tag(text: str, i: int, events: list) -> int:
    """A start or end tag at i: its event appended; returns where the text after it starts."""
    n = len(text)
    closing = text[i + 1] == "/"
    name_start = i + (2 if closing else 1)
    j = _NAME.match(text, name_start).end()
    tag = text[name_start:j].lower()
    while j < n and text[j] != ">":   # attributes: a name, then maybe "=" and a value, quoted or bare
        if text[j] in _SPACE or text[j] == "/":
            j += 1
            continue
        j = _ATTRIBUTE.match(text, j + 1).end()   # the name's first character may be anything, even "="
        k = _SPACES.match(text, j).end()
        if k < n and text[k] == "=":
            j = _SPACES.match(text, k + 1).end()
            if j < n and text[j] in "\"'":
                close = text.find(text[j], j + 1)
                j = n if close < 0 else close + 1
            else:
                j = _BARE_VALUE.match(text, j).end()
    if j >= n:   # the file ends inside the tag
        events.append(("other", i, ""))
        return n
    # As html.parser decides: a start tag whose source ends in "/>" is self-closing.
    kind = "end" if closing else "startend" if text[j - 1] == "/" and j - 1 > name_start else "start"
    events.append((kind, i, tag))
    j += 1
    if kind == "start" and tag in _RAW_TEXT:   # script, style: text up to their own end tag
        end = _RAW_END[tag].search(text, j)
        if end is None:
            if j < n:
                events.append(("other", j, ""))
            return n
        if end.start() > j:
            events.append(("text", j, ""))
        return end.start()
    return j


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
    events = _events(text)
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
