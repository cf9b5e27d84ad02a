"""The translation memory: corrections stored per language pair and reused before the model."""
from __future__ import annotations

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.translation.memory import TranslationMemory
from llmos_core.translation.translator import Translator


class UpperEngine:
    name, max_chars, notes = "upper", 400, []

    def __init__(self):
        self.seen: list[str] = []

    def check(self, source, target):
        pass

    def translate_batch(self, texts, source, target):
        self.seen += texts
        return [t.upper() for t in texts]


def test_a_correction_is_reused_before_the_model(tmp_path):
    memory = TranslationMemory.for_home(tmp_path)
    assert memory.entries("en", "de") == {}
    assert memory.add("en", "de", {"Good morning.": "Guten Morgen.", "": "x"}) == 1
    assert memory.add("en", "de", {"Good morning.": "Guten Morgen."}) == 0    # already there
    engine = UpperEngine()
    translator = Translator(engine, "de", "en", memory=TranslationMemory.for_home(tmp_path))
    out = translator.translate(["Good morning.", "Good night."])
    assert out == ["Guten Morgen.", "GOOD NIGHT."]
    assert engine.seen == ["Good night."] and translator.stats.from_memory == 1
    # another pair does not see it
    assert Translator(UpperEngine(), "fr", "en", memory=memory).translate(["Good morning."]) == ["GOOD MORNING."]


def test_a_broken_memory_file_gets_a_clear_message(tmp_path):
    memory = TranslationMemory.for_home(tmp_path)
    memory.path.parent.mkdir(parents=True)
    memory.path.write_text("{not json")
    with pytest.raises(InvalidInput, match="cannot be read"):
        memory.entries("en", "de")
