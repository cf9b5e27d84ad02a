"""The languages translation knows: codes, names, and detecting a text's language.

LANGUAGES maps an ISO 639-1 code to its English name and to how the model families write it (ISO 639-3
for NLLB and multi-target Marian models, and NLLB's script).
"""
from __future__ import annotations

import re

from ..errors import InvalidInput
from .segment import PLACEHOLDER, TAG_TOKEN

# ISO 639-1 -> (English name, ISO 639-3 as NLLB and Marian multi-target models write it, NLLB script)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "en": ("English", "eng", "Latn"), "de": ("German", "deu", "Latn"), "fr": ("French", "fra", "Latn"),
    "es": ("Spanish", "spa", "Latn"), "it": ("Italian", "ita", "Latn"), "pt": ("Portuguese", "por", "Latn"),
    "nl": ("Dutch", "nld", "Latn"), "pl": ("Polish", "pol", "Latn"), "ru": ("Russian", "rus", "Cyrl"),
    "uk": ("Ukrainian", "ukr", "Cyrl"), "cs": ("Czech", "ces", "Latn"), "sv": ("Swedish", "swe", "Latn"),
    "da": ("Danish", "dan", "Latn"), "fi": ("Finnish", "fin", "Latn"), "no": ("Norwegian", "nob", "Latn"),
    "el": ("Greek", "ell", "Grek"), "tr": ("Turkish", "tur", "Latn"), "ro": ("Romanian", "ron", "Latn"),
    "hu": ("Hungarian", "hun", "Latn"), "bg": ("Bulgarian", "bul", "Cyrl"), "ar": ("Arabic", "arb", "Arab"),
    "he": ("Hebrew", "heb", "Hebr"), "hi": ("Hindi", "hin", "Deva"), "zh": ("Chinese", "zho", "Hans"),
    "ja": ("Japanese", "jpn", "Jpan"), "ko": ("Korean", "kor", "Hang"), "vi": ("Vietnamese", "vie", "Latn"),
    "id": ("Indonesian", "ind", "Latn"), "th": ("Thai", "tha", "Thai"), "fa": ("Persian", "pes", "Arab"),
}


def language_name(code: str) -> str:
    return LANGUAGES.get(code, (code,))[0]


def check_language(code: str, what: str = "language") -> str:
    code = (code or "").strip().lower()
    if code not in LANGUAGES:
        raise InvalidInput(f"unknown {what} {code!r}", "use a two-letter code: " + ", ".join(sorted(LANGUAGES)))
    return code


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) by langdetect (Google's n-gram profiles, offline, seeded)."""
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0   # langdetect is random without a seed: the same text must give the same answer
    sample = TAG_TOKEN.sub(" ", text)[:5000]
    try:
        best = detect_langs(sample)[0]
    except LangDetectException as exc:
        raise InvalidInput("could not tell the document's language (too little text)",
                           "choose the source language yourself") from exc
    code = best.lang.split("-")[0]
    if code not in LANGUAGES:
        raise InvalidInput(f"the document looks like {best.lang!r}, which is not in the language list",
                           "choose the source language yourself")
    return code, float(best.prob)


_WORD = re.compile(r"[^\W\d_]{2,}")
_MARKS = re.compile("[⟦⟧\ue000\ue001]")


def still_in_source(source_text: str, translated: str, source: str, target: str) -> bool:
    """True when a "translation" is still the source language: the source copied (two words or more), or
    a text of three words or more that langdetect reads as the source language and that shares at least
    40% of its words with the source sentence (an echo or a paraphrase; a real translation that langdetect
    misreads, say German full of English loanwords, shares few). Placeholders and tag tokens are ignored.
    Shorter answers (a name, one word) cannot be told apart and pass."""
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    def words(text: str) -> list[str]:
        return [w.casefold() for w in _WORD.findall(_MARKS.sub(" ", PLACEHOLDER.sub(" ", TAG_TOKEN.sub(" ", text))))]

    said, given = words(translated), words(source_text)
    if len(said) < 2 or source == target:
        return False
    if said == given:
        return True
    shared = sum(w in set(given) for w in said) / len(said)
    if len(said) < 3 or shared < 0.4:
        return False
    DetectorFactory.seed = 0
    try:
        best = detect_langs(" ".join(said))[0]
    except LangDetectException:
        return False
    return best.lang.split("-")[0] == source
