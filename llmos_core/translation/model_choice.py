"""Which model translates by default, and which languages each model covers.

One function, `default_translation_model`, for the Translate page and the `translate` command alike:
a dedicated translation model from the catalog if there is one (encoder-decoder models trained on
parallel text translate far better than a small prompted LM), else the best prompted LM. "Best" is
measured, not guessed: on 12 short English sentences with human references (chrF), the embedded
Gemma 3 270M scored 52.6 into German and 64.7 into French, SmolLM2-135M-Instruct 14.7 and 17.8
(SmolLM2 was trained on English only). A causal LM the user added is ranked between them: it is
unmeasured, and any model the user chose to add is more likely multilingual than one known English-only.

The prompt is chosen by measurement too (issue 28, `python bench/quality_translate.py`, sets in
tests/data/translation/, figures in docs/figures/h28b.md): Gemma on llama.cpp (auto's choice on a CPU)
with examples without ⟦n⟧ marks for sentences that have none, formatting pairs taken off and put back
by alignment, four marker-free examples (a question among them: chrF de 60.1 -> 61.9, fr 63.7 -> 64.6
over plain and markup sentences, against three), and no sentence left in English on the plain sets.
"""
from __future__ import annotations

import re

from .languages import LANGUAGES, language_name

# Mean chrF of the embedded prompted models over German and French (above): the ranking.
PROMPTED_CHRF = {"gemma-3-270m": 58.6, "smollm2-135m-instruct": 16.2}
UNMEASURED_CHRF = 30.0   # a causal LM the user registered: below Gemma's figure, above an English-only model

# What each embedded model was trained on: Gemma 3 covers over 140 languages (its model card), every
# language of LANGUAGES; SmolLM2 is English only (its model card).
EMBEDDED_COVERAGE: dict[str, frozenset[str]] = {
    "gemma-3-270m": frozenset(LANGUAGES),
    "smollm2-135m-instruct": frozenset({"en"}),
}
# Seq2seq families that name every language of LANGUAGES with a token of their own (checked at translation).
_MANY_TO_MANY = re.compile(r"nllb|m2m[-_]?100|madlad|mbart[-_]?50|seamless", re.IGNORECASE)
_OPUS_PAIR = re.compile(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})\b")


def default_translation_model(catalog) -> str:
    """The catalog's first translation (seq2seq) model, else its best prompted causal LM."""
    from ..models.catalog import CAUSAL_LM, SEQ2SEQ

    seq2seq = catalog.names(SEQ2SEQ)
    if seq2seq:
        return seq2seq[0]
    causal = catalog.names(CAUSAL_LM)
    if not causal:
        from ..errors import ModelNotFound
        raise ModelNotFound("the catalog holds no model that can translate",
                            "add a translation model (e.g. Helsinki-NLP/opus-mt-en-de) on the Models page")
    # max() keeps the first of equals: the catalog's order breaks ties.
    return max(causal, key=lambda name: PROMPTED_CHRF.get(name, UNMEASURED_CHRF))


def language_coverage(spec) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(sources, targets) the model covers; None where it is not known (a model the user added)."""
    if spec.name in EMBEDDED_COVERAGE:
        return EMBEDDED_COVERAGE[spec.name], EMBEDDED_COVERAGE[spec.name]
    where = f"{spec.location} {spec.name}"
    pair = _OPUS_PAIR.search(where)
    if pair:
        source, target = (_two_letter(code) for code in pair.groups())
        return (None if source is None else frozenset({source}),
                None if target is None else frozenset({target}))
    if _MANY_TO_MANY.search(where):
        return frozenset(LANGUAGES), frozenset(LANGUAGES)
    return None, None


def coverage_warning(spec, source: str, target: str) -> str | None:
    """A sentence for the user when the pair is outside what the model was trained on; None when inside
    or unknown. `source` may be "auto" (not known yet: only the target is checked)."""
    sources, targets = language_coverage(spec)
    outside = [code for code, known in ((source, sources), (target, targets))
               if code != "auto" and known is not None and code not in known]
    if not outside:
        return None
    covered = sorted((sources or frozenset()) | (targets or frozenset()))
    names = ", ".join(language_name(c) for c in covered) if len(covered) <= 6 else f"{len(covered)} languages"
    return (f"{spec.name} was trained on {names}, not on " + " or ".join(language_name(c) for c in outside)
            + ": expect a poor translation. Choose another model.")


def _two_letter(code: str) -> str | None:
    """opus-mt names languages in ISO 639-1 (de) or, for groups, ISO 639-3/5 (deu, gem): to LANGUAGES' codes."""
    if code in LANGUAGES:
        return code
    return next((short for short, (_, iso3, _) in LANGUAGES.items() if iso3 == code), None)
