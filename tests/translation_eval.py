"""The fixed evaluation set (tests/data/translation_eval.json) and its score: sacrebleu's chrF of an
engine's translations against the human references, per target language. Used by the slow quality test
and bench/translate.py, so the number the tests keep from falling is the one the benchmark prints."""
from __future__ import annotations

import json
from pathlib import Path

EVAL_SET = json.loads((Path(__file__).parent / "data" / "translation_eval.json").read_text(encoding="utf-8"))
TARGETS = ("de", "fr")


def chrf(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 1)


def score(model, target: str, batch_size: int = 8) -> tuple[float, list[str]]:
    """(chrF, translations) of the set's English sentences into `target` through the Translator."""
    from llmos_core.translation.translator import Translator

    translator = Translator(model, target, "en", batch_size=batch_size)
    out = translator.translate(EVAL_SET["en"])
    return chrf(out, EVAL_SET[target]), out
