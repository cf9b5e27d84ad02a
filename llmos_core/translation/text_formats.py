"""Plain text, Markdown and SRT subtitles: segments are ranges of the decoded text; rendering splices.

Everything outside a segment's range is written back byte for byte (after decoding): Markdown code
blocks, table separators, list markers and heading hashes, SRT numbers and timings.
  txt  a wrapped paragraph is one segment, re-wrapped to its width; other lines are one segment each
  md   headings, list items, table cells, paragraphs; inline code, links' targets, emphasis and
       inline HTML become tag tokens; fenced and indented code, front matter and link definitions stay
  srt  each subtitle's lines are one segment, re-wrapped to as many lines; <i> and {\\an8} are tags

Every pass is linear in the text: no pattern here can backtrack over a long line (the ones that scan
stop at the next opening delimiter, or are possessive), so a hostile line of spaces or brackets costs
what a line of prose costs. Lines longer than the limits allow are refused before any parsing.
"""
from __future__ import annotations

import re
import textwrap
from bisect import bisect_left, bisect_right

from ..errors import InvalidInput
from .formats import Format, register
from .parsed import ParsedDocument, decode_text
from .segment import Segment, TaggedText, restore_tags

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r|$)")


def _lines(text: str) -> list[tuple[int, str, str]]:
    """(offset, line without its end, line end) for each line."""
    out, pos = [], 0
    for match in _LINE.finditer(text):
        whole = match.group(0)
        if not whole and pos >= len(text):
            break
        body = whole.rstrip("\r\n")
        out.append((pos, body, whole[len(body):]))
        pos += len(whole)
    return out


def parse(doc: ParsedDocument) -> None:
    text, notes = decode_text(doc.data)
    doc.notes += notes
    lines = _lines(text)
    limit = doc.limits.max_line_chars
    for number, (_, body, _) in enumerate(lines, 1):
        if len(body) > limit:
            raise InvalidInput(f"{doc.name}: line {number} is {len(body):,} characters long (the limit is {limit:,})",
                               "a document people read has line breaks; this looks like data, not text")
    doc.segments = {"txt": _parse_txt, "md": _parse_md, "srt": _parse_srt}[doc.format](text, lines)


def render(doc: ParsedDocument, translations: list[str]) -> bytes:
    text, _ = decode_text(doc.data)
    pieces, last = [], 0
    for segment, translated in zip(doc.segments, translations):
        ref = segment.ref
        pieces.append(text[last:ref["start"]])
        pieces.append(_finish(segment, translated))
        last = ref["end"]
    pieces.append(text[last:])
    return "".join(pieces).encode("utf-8")


def _finish(segment: Segment, translated: str) -> str:
    """A translation as it goes into the file: wrapped like the original, tags back in place."""
    ref = segment.ref
    if ref.get("wrap"):
        lines = textwrap.wrap(translated, width=ref["wrap"], break_long_words=False, break_on_hyphens=False)
        return ref["eol"].join(ref["indent"] + line for line in lines) if lines else ""
    if ref.get("breaks"):
        translated = ref["eol"].join(balance_lines(translated, ref["breaks"]))
    return restore_tags(translated, segment.tags)


# ---- txt ----
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+")


def _parse_txt(text: str, lines: list[tuple[int, str, str]]) -> list[Segment]:
    segments: list[Segment] = []
    block: list[tuple[int, str, str]] = []
    for line in lines + [(len(text), "", "")]:
        if line[1].strip():
            block.append(line)
            continue
        if block:
            segments += _txt_block(block)
        block = []
    return segments


def _txt_block(block: list[tuple[int, str, str]]) -> list[Segment]:
    widths = [len(body.rstrip()) for _, body, _ in block]
    # Wrapped prose: long lines of similar width, most of them ending mid-sentence, no bullets.
    ends = sum(1 for _, body, _ in block[:-1] if body.rstrip().endswith((".", "!", "?", ":", ";")))
    wrapped = (len(block) > 1 and max(widths) >= 40 and all(w >= 0.6 * max(widths) for w in widths[:-1])
               and ends < (len(block) - 1) / 2 and not any(_BULLET.match(body) for _, body, _ in block[1:]))
    if wrapped:   # prose wrapped at a width: translate it whole, wrap the translation the same way
        first, body, _ = block[0]
        indent = body[:len(body) - len(body.lstrip())]
        start = first
        end = block[-1][0] + len(block[-1][1])
        joined = " ".join(b.strip() for _, b, _ in block)
        return [Segment(joined, {"start": start, "end": end, "wrap": max(widths), "indent": indent,
                                 "eol": block[0][2] or "\n"}, kind="paragraph")]
    out = []
    for offset, body, _ in block:
        bullet = _BULLET.match(body)
        start = offset + (bullet.end() if bullet else 0)
        out.append(Segment(body[start - offset:], {"start": start, "end": offset + len(body)},
                           kind="list" if bullet else "paragraph"))
    return out


# ---- markdown ----
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING_OPEN = re.compile(r"\s{0,3}#{1,6}\s")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_HR = re.compile(r"^\s{0,3}([-*_])(?:\s*+\1){2,}+\s*+$")
_LIST = re.compile(r"^(\s*(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?)")
_QUOTE = re.compile(r"^(\s{0,3}>\s?)+")
_TABLE_SEP = re.compile(r"^\s*+(?:\|\s*+)?:?-++:?\s*+(?:\|\s*+:?-++:?\s*+)*+\|?\s*+$")
_LINK_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")
_HTML_LINE = re.compile(r"^\s*</?[A-Za-z][^>]*>\s*$")
# Each scan stops at the next opening delimiter of its own kind, so no character is scanned from more
# than a few starting points: linear, where `[^\]]*` from every `[` of a line of brackets was quadratic.
_INLINE = re.compile("|".join([
    r"(?<!`)(`++)[^`]*+\1(?!`)",                   # inline code: kept verbatim (closed by as many backticks)
    r"!\[[^\[\]]*+\]\([^()]*+\)",                 # an image: kept whole
    r"\[(?=[^\[\]]*+\](?:\([^()]*+\)|\[[^\[\]]*+\]))",  # a link's opening bracket
    r"\]\([^()]*+\)|\]\[[^\[\]]*+\]",               # a link's closing bracket and target
    r"<https?://[^<>]++>|</?[A-Za-z][^<>]*+>",       # autolinks and inline HTML
    r"\\[\\`*_{}\[\]()#+\-.!|]",                   # escapes
    r"\*{1,3}|~~|(?<![^\W_])_{1,3}|_{1,3}(?![^\W_])",   # emphasis (not the _ inside snake_case)
]))


def md_inline(text: str) -> TaggedText:
    tagged = TaggedText()
    last = 0
    for match in _INLINE.finditer(text):
        tagged.text(text[last:match.start()])
        tagged.tag(match.group(0))
        last = match.end()
    tagged.text(text[last:])
    return tagged


def _md_segment(pieces: list[tuple[int, int]], text: str, kind: str) -> Segment | None:
    """One block from its content ranges (one per source line). Soft line breaks become spaces;
    hard breaks (two spaces or a backslash at the end) are kept as a tag holding the original text."""
    tagged = TaggedText()
    for i, (start, end) in enumerate(pieces):
        line = text[start:end]
        hard = i < len(pieces) - 1 and (line.endswith("  ") or line.endswith("\\"))
        body = line.rstrip() if i < len(pieces) - 1 else line
        if hard and line.endswith("\\"):
            body = line[:-1]
        tagged.extend(md_inline(body))
        if i < len(pieces) - 1:
            if hard:
                tagged.tag(text[start + len(body):pieces[i + 1][0]])
            else:
                tagged.text(" ")
    value = tagged.value()
    if not value.strip():
        return None
    return Segment(value, {"start": pieces[0][0], "end": pieces[-1][1]}, kind=kind, tags=tagged.tags)


def _parse_md(text: str, lines: list[tuple[int, str, str]]) -> list[Segment]:
    segments: list[Segment] = []
    block: list[tuple[int, int]] = []
    block_kind = ""
    fence = ""
    in_table = False
    previous_blank = True
    last_kind = ""

    def flush(kind: str | None = None) -> None:
        nonlocal block, block_kind, last_kind
        if block:
            made = _md_segment(block, text, kind or block_kind)
            if made:
                segments.append(made)
            last_kind = kind or block_kind
        block, block_kind = [], ""

    i = 0
    if lines and lines[0][1].strip() == "---":   # YAML front matter: metadata, not prose
        for j in range(1, len(lines)):
            if lines[j][1].strip() in ("---", "..."):
                i = j + 1
                break
    while i < len(lines):
        offset, body, _ = lines[i]
        i += 1
        if fence:
            if body.strip().startswith(fence) and not body.strip()[len(fence):].strip():
                fence = ""
            continue
        fence_match = _FENCE.match(body)
        if fence_match:
            flush()
            fence = fence_match.group(1)
            last_kind = "code"
            continue
        if not body.strip():
            flush()
            in_table = False
            previous_blank = True
            continue
        if (body.startswith("    ") or body.startswith("\t")) and not block and previous_blank \
                and last_kind != "list":
            continue   # indented code block
        previous_blank = False
        quote = _QUOTE.match(body)
        start = offset + (quote.end() if quote else 0)
        content = text[start:offset + len(body)]
        if block and block_kind == "paragraph" and _SETEXT.match(content) and not quote:
            flush("heading")
            continue
        if _HR.match(content) or _LINK_DEF.match(content) or _HTML_LINE.match(content):
            flush()
            continue
        if "|" in content and (in_table or (i < len(lines) and _TABLE_SEP.match(lines[i][1]) and "-" in lines[i][1])):
            flush()
            in_table = True
            last_kind = "cell"
            if not _TABLE_SEP.match(content):
                segments += _md_table_row(text, start, content)
            continue
        heading = _heading_text(content)
        if heading:
            flush()
            block = [(start + heading[0], start + heading[1])]
            flush("heading")
            continue
        item = _LIST.match(content)
        if item:
            flush()
            block, block_kind = [(start + item.end(), start + len(content))], "list"
            continue
        if block:   # a continuation line of the paragraph or list item
            lead = len(content) - len(content.lstrip())
            block.append((start + lead, start + len(content)))
            continue
        lead = len(content) - len(content.lstrip())
        block, block_kind = [(start + lead, start + len(content))], "paragraph"
    flush()
    return segments


def _heading_text(content: str) -> tuple[int, int] | None:
    """Where an ATX heading's text lies in its line, without the closing hashes; None: not a heading.
    By string methods: the regex this replaces took 1.1 s on a heading of 8,000 spaces (quadratic)."""
    opening = _HEADING_OPEN.match(content)
    if not opening:
        return None
    start = len(content) - len(content[opening.end():].lstrip())
    end = len(content)
    body = content.rstrip()
    text = body.rstrip("#")
    if len(text) < len(body) and len(text.rstrip()) < len(text) and len(text.rstrip()) >= start:
        end = len(text.rstrip())   # "## Title ##": the closing hashes and the space before them are markup
    return start, end


def _md_table_row(text: str, start: int, content: str) -> list[Segment]:
    out = []
    # Cells between unescaped pipes; a pipe inside inline code does not split (rare; GitHub agrees).
    bounds = [m.start() for m in re.finditer(r"(?<!\\)\|", content)]
    edges = [-1] + bounds + [len(content)]
    for a, b in zip(edges, edges[1:]):
        cell = content[a + 1:b]
        if not cell.strip():
            continue
        lead = len(cell) - len(cell.lstrip())
        made = _md_segment([(start + a + 1 + lead, start + a + 1 + len(cell.rstrip()))], text, "cell")
        if made:
            out.append(made)
    return out


# ---- srt ----
_TIMING = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}(\s.*)?$")
_SRT_TAG = re.compile(r"</?[A-Za-z][^<>]*+>|\{\\[^{}]*+\}")


def _parse_srt(text: str, lines: list[tuple[int, str, str]]) -> list[Segment]:
    segments: list[Segment] = []
    i, block = 0, 0
    while i < len(lines):
        if not lines[i][1].strip():
            i += 1
            continue
        block += 1
        number_line = i + 1
        if not lines[i][1].strip().lstrip("\ufeff").isdigit():
            raise InvalidInput(f"subtitle {block} (line {number_line}): expected its number, found "
                               f"{lines[i][1].strip()[:40]!r}", "check the .srt file: number, timing, text, blank line")
        i += 1
        if i >= len(lines) or not _TIMING.match(lines[i][1]):
            found = lines[i][1].strip()[:60] if i < len(lines) else "the end of the file"
            raise InvalidInput(f"subtitle {block} (line {i + 1}): malformed timing {found!r}",
                               "a timing looks like 00:00:01,000 --> 00:00:04,000")
        i += 1
        text_lines = []
        while i < len(lines) and lines[i][1].strip():
            text_lines.append(lines[i])
            i += 1
        if not text_lines:
            continue
        tagged = TaggedText()
        line_ends: list[int] = []   # where each line ended in the segment's text
        for k, (_, body, _) in enumerate(text_lines):
            last = 0
            for match in _SRT_TAG.finditer(body):
                tagged.text(body[last:match.start()])
                tagged.tag(match.group(0))
                last = match.end()
            tagged.text(body[last:].strip() if k else body[last:].rstrip())
            if k < len(text_lines) - 1:
                line_ends.append(tagged.length)
                tagged.text(" ")
        start = text_lines[0][0]
        end = text_lines[-1][0] + len(text_lines[-1][1])
        value = tagged.value()
        cuts = _single_spaced_lengths(value, line_ends + [len(value)])
        total = max(cuts.pop(), 1)
        segments.append(Segment(value, {"start": start, "end": end, "breaks": [c / total for c in cuts],
                                        "eol": text_lines[0][2] or "\n"}, kind="subtitle", tags=tagged.tags))
    return segments


def _single_spaced_lengths(text: str, offsets: list[int]) -> list[int]:
    """len(" ".join(text[:c].split())) for each offset c, which falls between words, in one pass over the
    words (computing it line by line made a subtitle of 8,000 lines take 3.9 s)."""
    starts, ends, total = [], [], 0    # each word's start, and the single-spaced length after it
    for word in re.finditer(r"\S+", text):
        total += len(word.group(0)) + (1 if ends else 0)
        starts.append(word.start())
        ends.append(total)
    words_before = [bisect_right(starts, c) for c in offsets]
    return [ends[n - 1] if n else 0 for n in words_before]


def balance_lines(text: str, breaks: list[float]) -> list[str]:
    """Words into len(breaks) + 1 lines, breaking where the original broke, as fractions of its length
    (a subtitle keeps its line count, and an unchanged text its exact lines)."""
    words = text.split()
    if not breaks or len(words) <= 1:
        return [" ".join(words)]
    ends, total = [], 0   # the offset after each word, in the text joined with single spaces
    for word in words:
        total += len(word) + (1 if ends else 0)
        ends.append(total)
    lines, first = [], 0
    for n, fraction in enumerate(breaks):
        lines_left = len(breaks) - n
        last_allowed = len(words) - lines_left - 1   # leave a word for every line still to come
        if first > last_allowed:
            break
        # The word end nearest the goal (the earlier of two as near), found by bisection: ends rise.
        goal = fraction * total
        after = bisect_left(ends, goal, first, last_allowed + 1)
        cut = min((i for i in (after - 1, after) if first <= i <= last_allowed), key=lambda i: abs(ends[i] - goal))
        lines.append(" ".join(words[first:cut + 1]))
        first = cut + 1
    lines.append(" ".join(words[first:]))
    return lines


for _name, _suffixes, _mime in (("txt", (".txt", ".text"), "text/plain"), ("md", (".md", ".markdown"), "text/markdown"),
                                ("srt", (".srt",), "application/x-subrip")):
    register(Format(_name, _suffixes, _mime, "text", parse, render))
