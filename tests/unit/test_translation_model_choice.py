"""The default translation model (one function for page and CLI) and each model's language coverage."""
from __future__ import annotations

from llmos_core.models.catalog import SEQ2SEQ, ModelSpec
from llmos_core.translation.model_choice import coverage_warning, default_translation_model, language_coverage


class FakeCatalog:
    def __init__(self, specs):
        self.specs = specs

    def names(self, task=None):
        return [s.name for s in self.specs if task is None or s.task == task]


def _causal(name):
    return ModelSpec(name=name, source="embedded", location=name)


def test_the_multilingual_prompted_model_beats_the_english_only_one_whatever_the_order():
    catalog = FakeCatalog([_causal("smollm2-135m-instruct"), _causal("gemma-3-270m")])
    assert default_translation_model(catalog) == "gemma-3-270m"


def test_a_translation_model_comes_first():
    mt = ModelSpec(name="opus-mt-en-de", source="hub", location="Helsinki-NLP/opus-mt-en-de", task=SEQ2SEQ)
    catalog = FakeCatalog([_causal("smollm2-135m-instruct"), _causal("gemma-3-270m"), mt])
    assert default_translation_model(catalog) == "opus-mt-en-de"


def test_an_added_causal_lm_ranks_above_the_english_only_one():
    user = ModelSpec(name="my-lm", source="local", location="/models/my-lm")
    assert default_translation_model(FakeCatalog([_causal("smollm2-135m-instruct"), user])) == "my-lm"


def test_coverage_and_the_warning():
    smol = _causal("smollm2-135m-instruct")
    assert language_coverage(smol) == (frozenset({"en"}), frozenset({"en"}))
    warning = coverage_warning(smol, "en", "de")
    assert warning and "German" in warning and "English" in warning
    assert coverage_warning(_causal("gemma-3-270m"), "en", "ja") is None
    opus = ModelSpec(name="x", source="hub", location="Helsinki-NLP/opus-mt-en-de", task=SEQ2SEQ)
    assert coverage_warning(opus, "auto", "de") is None          # the source is not known yet
    assert "French" in coverage_warning(opus, "fr", "de")
    nllb = ModelSpec(name="nllb", source="hub", location="facebook/nllb-200-distilled-600M", task=SEQ2SEQ)
    assert coverage_warning(nllb, "en", "th") is None
    unknown = ModelSpec(name="mine", source="local", location="/m")
    assert language_coverage(unknown) == (None, None) and coverage_warning(unknown, "en", "de") is None
