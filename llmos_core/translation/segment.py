"""Segments: the units of text a document is cut into, and what keeps their content safe in translation.

A format parser (documents.py) cuts a document into Segments. Inline structure that must come back
(a bold run, a Markdown link's brackets, an inline <b> tag, inline code) is replaced in the segment
text by a tag token, `\\ue000N\\ue001` (private-use characters, never in real text); `Segment.tags[N]`
says what it stands for and the format puts it back when it rebuilds the document.

Before the model sees a sentence, `mask` replaces every span that must survive verbatim (tag tokens,
URLs, e-mail addresses, numbers, template placeholders, glossary terms) by a numbered placeholder the
model is asked to copy (`⟦0⟧`); `unmask` puts them back, and appends any the model dropped, so that
nothing protected is ever lost (a moved placeholder is better than a missing URL).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

TAG_TOKEN = re.compile("\ue000(\\d+)\ue001")


def tag_token(index: int) -> str:
    return f"\ue000{index}\ue001"


# A file may hold the two marker characters itself (they are private-use, not forbidden): left in, one
# would read back as a tag token or fail every placeholder check. Each becomes U+FFFD, one character for
# one, so that offsets into the text stay valid.
_RESERVED = str.maketrans({"\ue000": "\ufffd", "\ue001": "\ufffd"})


def without_reserved(text: str) -> str:
    return text.translate(_RESERVED)


@dataclass
class Segment:
    text: str                     # what to translate, with tag tokens for inline structure
    ref: dict                     # where it goes back: format specific (offsets, paragraph index, ...)
    kind: str = "paragraph"       # paragraph | heading | list | cell | subtitle | text
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Segment":
        return cls(**data)


class TaggedText:
    """Builds a segment's text piece by piece: plain text, or a tag that becomes a token."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.tags: list[str] = []
        self.length = 0   # of value(), kept as parts come so that callers need not join to measure

    def text(self, value: str) -> None:
        value = without_reserved(value)
        self.parts.append(value)
        self.length += len(value)

    def extend(self, inner: "TaggedText") -> None:
        """Append another TaggedText (a line's inline markup), its tokens renumbered after ours: its text
        was made harmless as it came in, and its tokens are real ones (text() would turn them to U+FFFD)."""
        offset = len(self.tags)
        value = TAG_TOKEN.sub(lambda m: tag_token(int(m.group(1)) + offset), inner.value())
        self.parts.append(value)
        self.length += len(value)
        self.tags += inner.tags

    def tag(self, value: str) -> None:
        self.parts.append(tag_token(len(self.tags)))
        self.length += len(self.parts[-1])
        self.tags.append(value)

    def value(self) -> str:
        return "".join(self.parts)


def restore_tags(text: str, tags: list[str], escape=lambda s: s) -> str:
    """Tag tokens back to their literal form (Markdown, HTML, SRT); the text between them is escaped."""
    out, last = [], 0
    for match in TAG_TOKEN.finditer(text):
        out.append(escape(text[last:match.start()]))
        index = int(match.group(1))
        out.append(tags[index] if index < len(tags) else "")
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


# ---- what the user sees of tokens (the page's editor) ----
def to_display(text: str) -> str:
    return TAG_TOKEN.sub(lambda m: f"⟦{m.group(1)}⟧", text)


def from_display(text: str) -> str:
    return re.sub(r"⟦\s*(\d+)\s*⟧", lambda m: tag_token(int(m.group(1))), text)


def has_words(text: str) -> bool:
    """True when there is something for a model to translate (a letter outside tokens)."""
    return any(ch.isalpha() for ch in TAG_TOKEN.sub("", text))


# ---- sentences ----
# Words whose final period does not end a sentence.
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "fig", "approx",
                 "inc", "ltd", "co", "cf", "al", "p", "pp", "vol", "u.s", "z.b", "bzw", "usw", "ca", "nr", "m", "mme"}
# Tried once per run of end marks (the lookbehind): from every dot of a line of dots it was quadratic.
_SENTENCE_END = re.compile(r"(?<![.!?…])([.!?…]++[\"'”’»)\]]*+)(\s++)(?=[\"'“‘«(\[]?[^\s\w]*[\w\ue000])|([。！？])")
_LAST_WORD = re.compile(r"([\w.]+)[.!?…]*[\"'”’»)\]]*$")


def split_sentences(text: str) -> list[tuple[str, str]]:
    """'A b. C d!  E' -> [('A b.', ' '), ('C d!', '  '), ('E', '')]: each sentence with the space after it.

    Joining sentence + space back gives the text exactly. Leading space stays in the first sentence.
    A period after a known abbreviation or an initial does not end a sentence, and a sentence
    ends only before something that could start one (not before a lowercase word).
    """
    out: list[tuple[str, str]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.group(3):   # CJK full stop: no space follows
            end = match.end()
            out.append((text[start:end], ""))
            start = end
            continue
        end_punct = match.end(1)
        following = text[match.end():match.end() + 1]
        if following.islower():
            continue
        # Only the sentence's tail: an abbreviation is short, and "Dr. Dr. Dr. ..." must not re-read the whole.
        word = _LAST_WORD.search(text, max(start, end_punct - 64), end_punct)
        if match.group(1).startswith(".") and word:
            stem = word.group(1).rstrip(".").lower()
            if stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
                continue
        out.append((text[start:end_punct], match.group(2)))
        start = match.end()
    if start < len(text) or not out:
        out.append((text[start:], ""))
    return out


def split_long(sentence: str, max_chars: int) -> list[tuple[str, str]]:
    """A sentence longer than the model takes, cut at ; : , then at spaces. Same join rule as above."""
    if len(sentence) <= max_chars:
        return [(sentence, "")]
    for pattern in (r"(?<=[;:])(\s+)", r"(?<=,)(\s+)", r"(\s+)"):
        pieces = re.split(pattern, sentence)   # [text, space, text, space, ...]
        if len(pieces) == 1:
            continue
        out: list[tuple[str, str]] = []
        current, space = pieces[0], ""
        for i in range(1, len(pieces), 2):
            nxt_space, nxt = pieces[i], pieces[i + 1]
            if len(current) + len(nxt_space) + len(nxt) <= max_chars:
                current += nxt_space + nxt
            else:
                out.append((current, nxt_space))
                current = nxt
        out.append((current, space))
        if all(len(p) <= max_chars for p, _ in out):
            return out
        return [piece for p, s in out for piece in _with_space(split_long(p, max_chars), s)]
    # One unbroken run of characters (a hash, a URL): cut it; it is masked anyway.
    chunks = [sentence[i:i + max_chars] for i in range(0, len(sentence), max_chars)]
    return [(c, "") for c in chunks]


def _with_space(pieces: list[tuple[str, str]], space: str) -> list[tuple[str, str]]:
    pieces[-1] = (pieces[-1][0], pieces[-1][1] + space)
    return pieces


# ---- protected spans ----
_PROTECT = re.compile("|".join([
    TAG_TOKEN.pattern,
    r"(?:https?|ftp)://[^\s<>\"'⟦⟧]+[^\s<>\"'.,;:!?)\]⟦⟧]",          # URLs, without trailing punctuation
    r"www\.[^\s<>\"']+[^\s<>\"'.,;:!?)\]]",
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",                                  # e-mail addresses
    r"\{\{[^{}]*\}\}|\{[\w.:-]*\}|%\(\w+\)[sdif]|%[sdif]|\$\{\w+\}",  # {{x}} {name} %(x)s %s ${X}
    r"(?<![\w])\d+(?:[-.]\d+){2,}(?![\w])",                           # dates, versions: 2024-01-05, 1.2.3
    r"(?<![\w.])[-+]?\d+(?:[.,:/]\d+)*(?:[eE][-+]?\d+)?(?![\w])",     # numbers: 3, -1.5, 1,000, 12:30, 1/2
]))
PLACEHOLDER = re.compile(r"⟦\s*(\d+)\s*⟧")


@dataclass
class Masked:
    text: str                  # what the model sees
    values: list[str]          # placeholder i comes back as values[i]


def placeholder(index: int) -> str:
    return f"⟦{index}⟧"


def compile_glossary(glossary: dict[str, str]) -> re.Pattern | None:
    """Longest terms first, whole words, any case."""
    terms = sorted((t for t in glossary if t.strip()), key=len, reverse=True)
    if not terms:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + r")(?!\w)", re.IGNORECASE)


def mask(text: str, glossary: dict[str, str] | None = None, glossary_re: re.Pattern | None = None) -> Masked:
    """Protected spans -> ⟦i⟧. Glossary terms come back as their translation, the rest verbatim."""
    glossary = glossary or {}
    lowered = {k.lower(): v for k, v in glossary.items()}
    folded = {k.casefold(): v for k, v in glossary.items()}
    spans: list[tuple[int, int, str]] = []
    for m in glossary_re.finditer(text) if glossary_re is not None else ():
        # the regex ignores case letter by letter ("ſ" matches "s", "ς" matches "σ"): a match lower() does
        # not map back to a term is looked up folded, else left to the model
        value = lowered.get(m.group(0).lower(), folded.get(m.group(0).casefold()))
        if value is not None:
            spans.append((m.start(), m.end(), value))
    taken = [(s, e) for s, e, _ in spans]
    for m in _PROTECT.finditer(text):
        if not any(s < m.end() and m.start() < e for s, e in taken):
            spans.append((m.start(), m.end(), m.group(0)))
    spans.sort()
    out, values, last = [], [], 0
    for start, end, value in spans:
        out.append(text[last:start])
        out.append(placeholder(len(values)))
        values.append(value)
        last = end
    out.append(text[last:])
    return Masked("".join(out), values)


STRAY_MARK = re.compile("[⟦⟧\ue000\ue001]")


def placeholders_intact(translated: str, masked_text: str) -> bool:
    """The translation holds exactly the placeholders of its source, in the same order, and no stray
    half of one (a lone ⟧ was seen in a sentence whose source had no formatting at all)."""
    wanted = PLACEHOLDER.findall(masked_text)
    return (PLACEHOLDER.findall(translated) == wanted
            and not STRAY_MARK.search(PLACEHOLDER.sub("", translated)))


def split_at_placeholders(masked_text: str) -> list[str]:
    """'a ⟦0⟧b⟦1⟧ c' -> ['a ', '⟦0⟧', 'b', '⟦1⟧', ' c']: text runs and placeholders, in order."""
    return [part for part in re.split(r"(⟦\s*\d+\s*⟧)", masked_text) if part]


def unmask(translated: str, masked: Masked) -> tuple[str, int]:
    """Placeholders back to their values. Returns (text, how many had to be repaired).

    A placeholder the model repeated is kept once, one it invented is dropped, one it lost is
    appended at the end: every protected span comes back exactly once.
    """
    seen: set[int] = set()
    repaired = 0

    def put_back(match: re.Match) -> str:
        nonlocal repaired
        index = int(match.group(1))
        if index >= len(masked.values) or index in seen:
            repaired += 1
            return ""
        seen.add(index)
        return masked.values[index]

    text = PLACEHOLDER.sub(put_back, translated)
    missing = [masked.values[i] for i in range(len(masked.values)) if i not in seen]
    if missing:
        repaired += len(missing)
        text = " ".join([text.rstrip(), *missing]) if text.strip() else " ".join(missing)
    return re.sub(r"[ \t]{2,}", " ", text) if repaired else text, repaired


# ---- glossary files ----
def parse_glossary(text: str) -> dict[str, str]:
    """'term = translation' or 'term<TAB>translation' or 'term,translation' per line; '#' comments."""
    from ..errors import InvalidInput

    glossary: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sep in ("\t", "=", ",", ";"):
            if sep in line:
                term, _, translation = line.partition(sep)
                term, translation = term.strip().strip('"'), translation.strip().strip('"')
                break
        else:
            raise InvalidInput(f"glossary line {number} has no separator: {line[:60]!r}",
                               "write one pair a line: term = translation")
        if not term or not translation:
            raise InvalidInput(f"glossary line {number} has an empty side: {line[:60]!r}",
                               "write one pair a line: term = translation")
        glossary[term] = translation
    return glossary
