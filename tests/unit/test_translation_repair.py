"""No sentence silently left in the source language (issue 28): the marker-free prompt for sentences
without ⟦n⟧ marks, marks put back by alignment or run by run, an answer still in the source language
detected and retried, and what is still kept counted (stats, CLI JSON and text) and flagged (bilingual)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from llmos_core.translation import alignment, causal_engine, documents, segment
from llmos_core.translation.bilingual import NOT_TRANSLATED, render_bilingual
from llmos_core.translation.languages import still_in_source
from llmos_core.translation.translator import TranslationStats, Translator
from llmos_core.usecases import translate as translation

GERMAN = {"Good morning.": "Guten Morgen.", "The train is late today.": "Der Zug hat heute Verspätung.",
          "Read the report now.": "Lesen Sie jetzt den Bericht.", "report": "Bericht",
          "Please call me tomorrow evening.": "Bitte rufen Sie mich morgen Abend an."}


class EchoingEngine:
    """A model that answers in English (an echo) for some sentences: on every try for those holding
    "stubborn", on the first try only for those holding "tomorrow"; German from the table otherwise."""
    name, max_chars, notes = "echo", 300, []
    check_output_language, attempts = True, 2

    def __init__(self):
        self.calls: list[tuple[list[str], int]] = []

    def check(self, source, target):
        pass

    def translate_batch(self, texts, source, target, attempt=0):
        self.calls.append((list(texts), attempt))
        return [t if "stubborn" in t or ("tomorrow" in t and not attempt) else GERMAN.get(t, t) for t in texts]


def test_a_sentence_without_marks_is_shown_examples_without_marks():
    plain = causal_engine.plain_prompt("The train is late today.", "en", "de")
    assert "⟦" not in plain and "Das Treffen beginnt um zehn Uhr." in plain
    marked = causal_engine.plain_prompt("The train leaves at ⟦0⟧.", "en", "de")
    assert "Das Treffen beginnt um ⟦0⟧." in marked and "Copy the ⟦n⟧ markers" in marked
    assert plain.endswith("English: The train is late today.\nGerman:")
    # the retry's prompt differs (greedy decoding of the same prompt gives the same answer)
    assert causal_engine.plain_prompt("The train is late today.", "en", "de", attempt=1) != plain
    chat = causal_engine.chat_messages("Hello there.", "en", "fr")
    assert all("⟦" not in m["content"] for m in chat)
    # every language with examples has its marker-free ones
    assert set(causal_engine.PLAIN_EXAMPLES) == set(causal_engine.EXAMPLES)
    assert all("⟦" not in s for shots in causal_engine.PLAIN_EXAMPLES.values() for s in shots)


def test_marks_are_placed_by_alignment_or_left_to_the_run_by_run_repair():
    place = alignment.place_marks
    # a pair around a run: around the run's own translation, found in the sentence's (any inflection)
    assert place("Willkommen in unserem Geschäft.", "Welcome to ⟦0⟧our shop⟦1⟧.", {"our shop": "unser Geschäft"}) \
        == "Willkommen in ⟦0⟧unserem Geschäft⟦1⟧."
    # broken, repeated and reordered marks are dropped and placed again in the source's order
    assert place("Das ⟦1⟧neue⟦0⟧ Modell ist ⟦1⟧ viel ⟧ schneller.", "The ⟦0⟧new⟦1⟧ model is ⟦2⟧much⟦3⟧ faster.",
                 {"new": "neu", "much": "viel"}) == "Das ⟦0⟧neue⟦1⟧ Modell ist ⟦2⟧viel⟦3⟧ schneller."
    # a pair's trailing comma stays inside it; a mark with no words after it goes before the final stop
    assert place("HALLO DU, MEIN FREUND.", "⟦0⟧Hello there,⟦1⟧ my friend.", {"Hello there,": "Hallo du,"}) \
        == "⟦0⟧HALLO DU,⟦1⟧ MEIN FREUND."
    assert place("Das Treffen beginnt um.", "The meeting starts at ⟦0⟧.") == "Das Treffen beginnt um ⟦0⟧."
    # a stray half mark in a sentence without marks is simply dropped
    assert place("Hallo ⟧ Welt.", "Hello world.") == "Hallo Welt."
    # a lone mark amid the words (a number, a code span) has no sure place: the caller goes run by run
    assert place("Der Flug dauert Stunden.", "The flight takes ⟦0⟧ hours.") is None
    # only formatting pairs are taken off before the model sees the sentence
    assert alignment.without_marks("Read the ⟦0⟧report⟦1⟧ now.") == ("Read the report now.", ["report"])
    assert alignment.without_marks("More on our ⟦0⟧help page⟦1⟧.") == ("More on our help page.", ["help page"])
    assert alignment.without_marks("The meeting starts at ⟦0⟧.") is None
    assert alignment.without_marks("Plain words.") is None


def test_an_answer_still_in_the_source_language_is_detected():
    assert still_in_source("Please send me the report.", "Please send me the report.", "en", "de")
    assert still_in_source("Please send me the report by Friday.", "Please send the report to me on Friday.", "en", "de")
    assert not still_in_source("Please send me the report by Friday.", "Bitte schicken Sie mir den Bericht.", "en", "de")
    # German with English names in it, and answers too short to tell, pass
    assert not still_in_source("The Hotel Berlin is open.", "Das Hotel Berlin ist offen.", "en", "de")
    assert not still_in_source("Berlin", "Berlin", "en", "de")
    # placeholders and tag tokens are not words
    assert still_in_source("Click ⟦0⟧Save⟦1⟧ now please.", "Click ⟦0⟧Save⟦1⟧ now please.", "en", "de")


def test_an_echo_is_retried_with_the_other_prompt_then_counted_and_kept():
    engine = EchoingEngine()
    texts = ["Good morning. The train is late today.", "Please call me tomorrow evening.",
             "This stubborn sentence stays English.", "Read the **report** now."]
    doc = documents.parse("\n\n".join(texts).encode() + b"\n", "a.md")
    translator = Translator(engine, "de", "en")
    out = translator.translate(doc.texts())
    assert out[0] == "Guten Morgen. Der Zug hat heute Verspätung."
    assert out[1] == "Bitte rufen Sie mich morgen Abend an."        # the retry's prompt (attempt 1) answered
    assert out[2] == doc.texts()[2]                                  # kept in English, not the echo
    assert segment.TAG_TOKEN.findall(out[3]) == ["0", "1"] and "Bericht" in out[3] and "Lesen Sie" in out[3]
    stats = translator.stats
    assert stats.retried == 2 and stats.kept_source == 1 and stats.kept_segments == [2]
    assert any(note.startswith("1 segment not translated") for note in stats.notes)
    retried = [texts for texts, attempt in engine.calls if attempt == 1]
    assert retried == [["Please call me tomorrow evening.", "This stubborn sentence stays English."]]
    # the bold sentence went to the model without its marks, and its bold word alone
    assert ["Read the report now."] in [[t for t in texts if "Read" in t] for texts, _ in engine.calls]
    assert any("report" in texts for texts, _ in engine.calls)


def test_the_bilingual_document_flags_untranslated_rows():
    doc = documents.parse(b"Good morning.\n\nStubborn line.\n", "a.md")
    out = render_bilingual(doc, ["Guten Morgen.", "Stubborn line."], untranslated=[1]).decode()
    assert out.count(NOT_TRANSLATED) == 1 and f"{NOT_TRANSLATED}Stubborn line." in out
    assert f"{NOT_TRANSLATED}Guten" not in out


def _result(kept: list[int]) -> translation.TranslationResult:
    stats = TranslationStats(source="en", segments=2, kept_source=len(kept), kept_segments=kept).to_dict()
    return translation.TranslationResult("a.txt", b"Good morning.\n\nStubborn line.\n", "docx", "de",
                                         ["Good morning.", "Stubborn line."], ["Guten Morgen.", "Stubborn line."], stats)


def test_results_from_before_kept_source_was_a_count_still_read():
    old = _result([])
    old.stats = {"kept_source": [1]}   # a job's saved stats before issue 28
    assert old.untranslated == [1] and old.not_translated == "1 segment not translated"
    assert _result([0, 1]).not_translated == "2 segments not translated" and _result([]).not_translated == ""


def test_cli_counts_and_lists_what_is_not_translated(home, tmp_path, monkeypatch, capsys):
    from llmos_core.__main__ import main

    source = tmp_path / "a.txt"
    source.write_text("Good morning.\n\nStubborn line.\n", encoding="utf-8")
    monkeypatch.setattr(translation, "translate_here", lambda *args, **kwargs: _result([1]))
    assert main(["translate", str(source), "--to", "de", "--from", "en", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kept_source"] == 1 and result["not_translated"] == [{"segment": 2, "source": "Stubborn line."}]
    assert main(["translate", str(source), "--to", "de", "--from", "en"]) == 0
    printed = capsys.readouterr().out
    assert "1 segment not translated" in printed and "segment 2: Stubborn line." in printed


def test_formats_does_not_import_parsed():
    """The registry and the parsed document: parsed.py imports formats.py, never the other way."""
    import llmos_core.translation.formats as formats

    tree = ast.parse(Path(formats.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and "parsed" in name for name in imported), imported
