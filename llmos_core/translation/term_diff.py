"""Corrected terms, from a person's correction of a machine translation: candidates for the glossary.

A word-level diff between the machine's translation and the correction gives the words the person put
in (the target term). The source words they translate are looked for in two ways, and left empty when
neither finds them (the person types them; a guess would go into every later translation):
- the machine left them untranslated: the replaced words are in the source as they are;
- the changed words sit between two anchors, tokens that the source and the translation share (⟦n⟧
  marks, numbers, names, punctuation, the sentence's ends): the source words between the same two
  anchors are the term, when they are few.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

MAX_TERM_WORDS = 4          # more changed words than this is a rewrite, not a term
MAX_TERMS_PER_SEGMENT = 5
# Words (with inner hyphens, apostrophes, dots: "e-mail", "l'eau", "v1.2"), ⟦n⟧ marks, single punctuation.
_TOKEN = re.compile(r"⟦\s*\d+\s*⟧|\w+(?:[-'’.]\w+)*|[^\w\s]")


@dataclass(frozen=True)
class TermPair:
    source: str     # "" when the source words could not be found
    target: str


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def is_word(self) -> bool:
        return self.text[0] != "⟦" and any(ch.isalnum() for ch in self.text)


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _trim(tokens: list[_Token], start: int, end: int) -> tuple[int, int]:
    """Narrow [start, end) to its first and last word (no punctuation or ⟦n⟧ at the edges)."""
    while start < end and not tokens[start].is_word:
        start += 1
    while end > start and not tokens[end - 1].is_word:
        end -= 1
    return start, end


def _span(text: str, tokens: list[_Token], start: int, end: int) -> str:
    """The words [start, end) as written in `text`, or "" when they are none, too many, or hold a mark."""
    start, end = _trim(tokens, start, end)
    words = tokens[start:end]
    if not words or sum(t.is_word for t in words) > MAX_TERM_WORDS or any(t.text[0] == "⟦" for t in words):
        return ""
    return text[words[0].start:words[-1].end]


def _find_words(haystack: list[str], needle: list[str]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1


def changed_terms(source: str, machine: str, corrected: str) -> list[TermPair]:
    """The terms a person changed in `machine` (to get `corrected`), each with its source words when
    they can be found in `source`. All three in the editor's form (⟦n⟧ marks)."""
    src, mt, fix = _tokens(source), _tokens(machine), _tokens(corrected)
    src_lower, mt_lower = [t.text.casefold() for t in src], [t.text.casefold() for t in mt]
    # Anchors: runs of tokens the source and the machine translation share, plus both ends.
    blocks = [(0, 0, 0), *SequenceMatcher(None, src_lower, mt_lower, autojunk=False).get_matching_blocks()]
    terms: list[TermPair] = []
    diff = SequenceMatcher(None, [t.text for t in mt], [t.text for t in fix], autojunk=False)
    for op, i1, i2, j1, j2 in diff.get_opcodes():
        if op in ("equal", "delete"):
            continue    # a deletion puts no term in
        target = _span(corrected, fix, j1, j2)
        if not target:
            continue
        terms.append(TermPair(_source_words(source, src, src_lower, mt, mt_lower, blocks, i1, i2), target))
    unique = list(dict.fromkeys(terms))
    return unique[:MAX_TERMS_PER_SEGMENT]


def _source_words(source: str, src: list[_Token], src_lower: list[str], mt: list[_Token], mt_lower: list[str],
                  blocks: list[tuple[int, int, int]], i1: int, i2: int) -> str:
    """The source words that machine tokens [i1, i2) translate, or ""."""
    a, b = _trim(mt, i1, i2)
    if a < b:   # left untranslated: the replaced words are in the source as they are
        at = _find_words(src_lower, mt_lower[a:b])
        if at >= 0:
            return _span(source, src, at, at + b - a)
    # Tight anchors: one run of shared tokens ends right where the change starts, another starts right where
    # it ends; the source words between the two runs are what the changed words translate.
    left = [s + n for s, m, n in blocks if m + n == i1 and (n or m == 0)]
    right = [s for s, m, n in blocks[1:] if m == i2]   # blocks[0] is the start, never a right anchor
    if len(left) == 1 and len(right) == 1 and left[0] <= right[0]:
        return _span(source, src, left[0], right[0])
    return ""
