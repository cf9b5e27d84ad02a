"""The saved glossary: term -> translation per language pair, under the data folder
(<home>/translate/glossary.json, kept by pair_store.PairStore). Every later translation of that pair,
from the page, the CLI or a job, masks these terms (segment.mask) so they come out translated this way.
Terms get here from the Translate page's review ("add a corrected term to the glossary").

Terms match whole words in any case (segment.compile_glossary), so "Engine" and "engine" are one term:
adding it again updates it, never duplicates it.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidInput
from .pair_store import PairStore

MAX_TERM_CHARS = 100        # a term is a word or a name, not a sentence
MAX_TERMS = 20_000          # all language pairs together
# The translator's own marks: a term holding one would break the masking of every sentence it is in.
_MARKS = re.compile("[⟦⟧\ue000\ue001]")


def clean_term(text: str, what: str = "term") -> str:
    """A term as stored: spaces collapsed; refused when empty, too long, without a letter or digit, or
    holding the translator's ⟦n⟧ marks."""
    term = " ".join(str(text or "").split())
    if not term:
        raise InvalidInput(f"the {what} is empty", "type the words, as they are written in the text")
    if len(term) > MAX_TERM_CHARS:
        raise InvalidInput(f"the {what} is {len(term)} characters long; a glossary term is at most {MAX_TERM_CHARS}",
                           "keep the term itself (a word or a name); the translation memory keeps whole segments")
    if _MARKS.search(term):
        raise InvalidInput(f"the {what} holds a ⟦n⟧ formatting mark", "leave the marks out of the term")
    if not any(ch.isalnum() for ch in term):
        raise InvalidInput(f"the {what} {term!r} has no letter or digit", "a term is a word or a name")
    return term


class Glossary(PairStore):
    what = "the glossary"
    max_entries = MAX_TERMS

    @classmethod
    def for_home(cls, home: Path) -> "Glossary":
        return cls(Path(home) / "translate" / "glossary.json")

    def put(self, source: str, target: str, term: str, translation: str) -> str:
        """Add a term or update the one already there (whatever its case); returns "added", "updated" or
        "unchanged"."""
        if source == target:
            raise InvalidInput("a glossary is per language pair: the source and the target are the same language")
        term, translation = clean_term(term, "term"), clean_term(translation, "translation")

        def store(pair: dict[str, str]) -> str:
            same = [key for key in pair if key.casefold() == term.casefold()]
            if same == [term] and pair[term] == translation:
                return "unchanged"
            for key in same:
                del pair[key]
            pair[term] = translation
            return "updated" if same else "added"

        return self.update(source, target, store)

    def remove(self, source: str, target: str, terms: list[str]) -> int:
        """Remove these terms (any case); returns how many were there."""
        gone = {t.casefold() for t in terms}

        def drop(pair: dict[str, str]) -> int:
            keys = [key for key in pair if key.casefold() in gone]
            for key in keys:
                del pair[key]
            return len(keys)

        return self.update(source, target, drop)
