"""Corrected terms -> the saved glossary: the word diff that finds them, the store (per language pair,
validated, updated not duplicated), and later translations that mask the saved terms."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.settings import Settings
from llmos_core.translation.glossary import MAX_TERM_CHARS, Glossary
from llmos_core.translation.term_diff import TermPair, changed_terms
from llmos_core.translation.translator import Translator
from llmos_core.usecases import translate as translation
from llmos_core.accounts import LOCAL_ADMIN


class UpperEngine:
    """A fake engine: upper-cases what it is sent, so a masked term (⟦n⟧) is the only text left as it is."""
    name, max_chars, notes = "upper", 400, []

    def check(self, source, target):
        pass

    def translate_batch(self, texts, source, target):
        return [t.upper() for t in texts]


@pytest.mark.parametrize("source, machine, corrected, expected", [
    # the machine left the term untranslated: found in the source as it is
    ("The engine starts.", "Der engine startet.", "Der Motor startet.", [TermPair("engine", "Motor")]),
    # between two ⟦n⟧ marks the source and the translation share
    ("Open ⟦0⟧Settings⟦1⟧ now.", "Öffnen Sie ⟦0⟧Optionen⟦1⟧ jetzt.", "Öffnen Sie ⟦0⟧Einstellungen⟦1⟧ jetzt.",
     [TermPair("Settings", "Einstellungen")]),
    # all the words changed, up to the shared final stop: a short source is the term
    ("Hello world.", "Xyz abc.", "Hallo Welt.", [TermPair("Hello world", "Hallo Welt")]),
    # one word of two changed, no anchor next to it: the target term alone
    ("Hello world.", "Hallo Erde.", "Hallo Welt.", [TermPair("", "Welt")]),
    # no shared anchor next to the change: the target term alone, the person types the source words
    ("The engine starts quickly.", "Die Maschine startet schnell.", "Der Motor startet schnell.",
     [TermPair("", "Der Motor")]),
    # unchanged, a deletion, punctuation only, a long rewrite: no term
    ("Hello.", "Hallo.", "Hallo.", []),
    ("Good night, my friend.", "Gute Nacht, mein Freund.", "Gute Nacht.", []),
    ("Hello.", "Hallo.", "Hallo!", []),
    ("The cat sat.", "Die Katze sass.", "Ganz anders und viel zu lang formuliert hier.", []),
])
def test_changed_terms(source, machine, corrected, expected):
    assert changed_terms(source, machine, corrected) == expected


def test_the_glossary_adds_updates_validates_and_removes(tmp_path):
    glossary = Glossary.for_home(tmp_path)
    assert glossary.entries("en", "de") == {}
    assert glossary.put("en", "de", "  engine ", "Motor") == "added"
    assert glossary.put("en", "de", "engine", "Motor") == "unchanged"
    assert glossary.put("en", "de", "Engine", "Antrieb") == "updated"     # any case: one term, not two
    assert glossary.entries("en", "de") == {"Engine": "Antrieb"}
    assert glossary.put("en", "de", "LLM   OS", "LLM OS") == "added"      # spaces collapsed
    assert glossary.entries("en", "fr") == {}                             # per language pair
    for term, meaning, message in (("", "Motor", "empty"), ("engine", "  ", "translation is empty"),
                                   ("x" * (MAX_TERM_CHARS + 1), "y", "characters long"),
                                   ("⟦0⟧", "Motor", "formatting mark"), ("...", "Motor", "no letter")):
        with pytest.raises(InvalidInput, match=message):
            glossary.put("en", "de", term, meaning)
    with pytest.raises(InvalidInput, match="same language"):
        glossary.put("de", "de", "Motor", "Motor")
    assert Glossary.for_home(tmp_path).entries("en", "de") == {"Engine": "Antrieb", "LLM OS": "LLM OS"}
    assert glossary.remove("en", "de", ["engine", "nothing"]) == 1
    assert glossary.entries("en", "de") == {"LLM OS": "LLM OS"}


def test_later_translations_use_the_saved_glossary(tmp_path):
    saved = Glossary.for_home(tmp_path)
    saved.put("en", "de", "engine", "Motor")
    translator = Translator(UpperEngine(), "de", "auto", saved_glossary=saved)
    out = translator.translate(["Start the Engine now, the engine is cold and the weather is fine."])
    assert out == ["START THE Motor NOW, THE Motor IS COLD AND THE WEATHER IS FINE."]
    assert translator.stats.source == "en" and translator.stats.glossary_terms == 1
    # the request's own glossary wins over the saved one for the same term
    given = Translator(UpperEngine(), "de", "en", {"ENGINE": "Triebwerk"}, saved_glossary=saved)
    assert given.translate(["The engine."]) == ["THE Triebwerk."]
    # another pair does not see it
    assert Translator(UpperEngine(), "fr", "en", saved_glossary=saved).translate(["The engine."]) == ["THE ENGINE."]


def test_the_use_case_suggests_from_the_corrected_rows_and_saves_for_the_pair(home):
    engine = SimpleNamespace(settings=Settings.from_env())
    result = translation.TranslationResult(
        "notes.txt", b"", "docx", "de", ["The engine starts.", "Good night.", "The engine stops."],
        ["Der engine startet.", "Gute Nacht.", "Der engine stoppt."], {"source": "en"})
    corrected = ["Der Motor startet.", "Gute Nacht.", "Der Motor stoppt."]
    assert translation.suggest_glossary_terms(result, corrected) == [translation.TermSuggestion(0, "engine", "Motor")]
    with pytest.raises(InvalidInput, match="lost some rows"):
        translation.suggest_glossary_terms(result, corrected[:1])
    assert translation.add_to_glossary(engine, LOCAL_ADMIN, result, "engine", "Motor") == "added"
    assert translation.saved_glossary(engine, LOCAL_ADMIN, "en", "de") == {"engine": "Motor"}
    with pytest.raises(InvalidInput, match="not known"):
        translation.add_to_glossary(engine, LOCAL_ADMIN, translation.TranslationResult(
            "notes.txt", b"", "docx", "de", [], [], {}), "engine", "Motor")
    assert translation.remove_from_glossary(engine, LOCAL_ADMIN, "en", "de", ["ENGINE"]) == 1


def test_a_saved_term_whose_case_the_regex_folds_differently_never_breaks_masking():
    from llmos_core.translation import segment as seg

    # re.IGNORECASE matches letter by letter ("ſ" ~ "s", "σ" ~ "ς"), str.lower() does not map them back:
    # a saved term like these once raised KeyError in every translation of its pair
    for glossary, text in (({"ſun": "Sonne"}, "the sun"), ({"λόγοσ": "Wort"}, "ΛΌΓΟΣ")):
        masked = seg.mask(text, glossary, seg.compile_glossary(glossary))
        assert "⟦0⟧" in masked.text and masked.values == list(glossary.values())
