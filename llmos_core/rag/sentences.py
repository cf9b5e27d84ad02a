"""The sentences that answer a question, taken verbatim from the retrieved passages.

A small model writes a wrong number beside a citation that holds the right one; the passage's own
sentence does not. So Ask quotes first: every sentence of the matching passages is scored against the
question by signals already at hand, and the best one or two are quoted with their citation.

    ranked = rank_sentences(question, passages, embed)     # best first, each with its signals
    quotes, verdict = choose_quotes(question, ranked)      # [] and a reason when none answers

Signals (each 0..1): `similarity`, the cosine between the question and the sentence (the collection's
embedding model, all-MiniLM-L6-v2 by default); `coverage`, the share of the question's keywords in the
sentence or its heading, each weighted by how rare it is among the candidates (a word every sentence has
says little; one none has weighs most, and when it is missing the sentence is about something else);
`cue`, whether the sentence holds what the question's form asks for (a number for "how many", a time
for "what time", an amount for "how much does ... cost", a name for "who"); and `passage`, the
retrieval rank of its passage. The weights and the verdict's thresholds were set on the evaluation set
in tests/data/qa/ (bench/quality.py) and are arguments, as retrieve.py's are.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from .index import keywords
from .retrieve import Passage

Embed = Callable[[list[str]], list[list[float]]]

WEIGHTS = {"similarity": 0.45, "coverage": 0.35, "cue": 0.15, "passage": 0.05}
MIN_SCORE = 0.45           # the best sentence must score this ...
MIN_COVERAGE = 0.3         # ... and hold this much of the question's keyword weight (or be this similar:)
STRONG_SIMILARITY = 0.6
SECOND_WITHIN = 0.9        # a second sentence is quoted when it scores this share of the best
MAX_QUOTES = 2
TITLE_WEIGHT = 0.5         # a keyword found only in the file's name counts half
MAX_CANDIDATES = 200       # sentences scored at most (five passages of ~900 characters hold about 40)

_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|No|Nr|Fig|approx|e\.g|i\.e|etc|vs|Inc|Ltd|Co)\.$", re.IGNORECASE)
# Words that say what form the answer takes, not what it is about ("how LONG", "what TIME"): no evidence.
FORM_WORDS = frozenset("""long often big large far old kind kinds type sort time times take takes taken need needs
get gets put go goes mean means meaning called name named number way ways happen happens allowed possible
able let lets one ones date day days""".split())
_NUMBER = re.compile(r"\d")
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s?(?:am|pm)\b", re.IGNORECASE)
MONTHS = ("january february march april may june july august september october november december "
          "jan feb mar apr jun jul aug sep sept oct nov dec").split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_DATE_WORDS = re.compile(r"\b(?:" + "|".join(MONTHS + WEEKDAYS) + r")\b", re.IGNORECASE)
_MONEY = re.compile(r"[€$£]\s?\d|\d\s?(?:eur|euros?|usd|dollars?|gbp|pounds?|chf|cents?)\b|\b(?:free|no charge)\b",
                    re.IGNORECASE)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+")
NUMBER_WORDS = frozenset("""one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty
forty fifty hundred thousand once twice daily weekly monthly yearly annually every""".split())


@dataclass
class RankedSentence:
    text: str                 # verbatim, as in the passage
    passage: int              # index into the passages given (0-based)
    score: float
    signals: dict[str, float] = field(default_factory=dict)


def split_sentences(text: str) -> list[str]:
    """A passage's sentences: its lines (paragraphs, list items), each cut at sentence ends (not after
    "Dr." and the like). A table row (a line with " | ") is kept with the table's first row, its header."""
    found, header = [], None
    for line in text.split("\n"):
        line = line.strip().lstrip("-*#> ").strip()
        if not line:
            continue
        if " | " in line:
            if header is None:
                header = line
                found.append(line)
            else:
                found.append(f"{header}\n{line}")
            continue
        header = None
        pieces: list[str] = []
        for piece in _SPLIT.split(line):
            if pieces and _ABBREVIATION.search(pieces[-1]):
                pieces[-1] = f"{pieces[-1]} {piece}"
            elif piece.strip():
                pieces.append(piece.strip())
        found.extend(pieces)
    return found


def stem(word: str) -> str:
    """A crude English stem (runs, run; bicycles, bicycle), for matching the question's words with a sentence's."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[:-len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {stem(w) for w in keywords(text)}


def question_cue(question: str) -> str | None:
    """What the form of the question asks for: 'number', 'time', 'date', 'money', 'name', or None."""
    q = question.lower()
    if re.search(r"\bwhat time\b|\bat what times?\b|\bwhich times?\b|\bhours?\b.*\bopen|\bopen(?:s|ing)? at\b", q):
        return "time"
    if re.search(r"\bhow much\b.*\b(cost|costs|pay|price|fee|charge|fine|worth)\b|\bprice\b|\bfee\b|\bfine\b|\bcost\b", q):
        return "money"
    if re.search(r"\bhow (many|much|long|often|old|far|big|large|heavy|high|tall|wide|fast)\b|\bwhat (number|percentage|size|pressure|temperature|amount)\b|\bat what pressure\b", q):
        return "number"
    if re.search(r"^\s*(?:and\s+)?(?:by |until |since )?when\b|\bwhat (date|day|month|year)\b|\bwhich (date|day|month|year)\b", q):
        return "date"
    if re.search(r"^\s*who\b|\bwho (is|are|was|chairs|runs|leads|manages)\b|\bwhich (company|person|firm)\b", q):
        return "name"
    return None


def counted_thing(question: str) -> str | None:
    """'How many parking spaces ...' -> 'park' (the stem of the first word counted), else None."""
    words = [w for w in re.findall(r"[a-z]+", question.lower().split("how many", 1)[-1])] if "how many" in question.lower() else []
    words = [w for w in words if w not in FORM_WORDS]
    return stem(words[0]) if words else None


def counts(thing: str, sentence: str) -> bool:
    """The sentence gives a count of `thing`: a number (not 'one' or 'a') within three words before it."""
    tokens = re.findall(r"\d+(?:[.,]\d+)?|[a-z]+", sentence.lower())
    for i, token in enumerate(tokens):
        if _stem_in(thing, {stem(token)}):
            before = tokens[max(0, i - 3):i]
            if any(re.fullmatch(r"\d+(?:[.,]\d+)?", t) or (t in NUMBER_WORDS and t not in ("one", "every")) for t in before):
                return True
    return False


def satisfies(cue: str | None, sentence: str, question: str = "") -> float:
    """1.0 when the sentence holds what the cue asks for, else 0.0 (0.5 when there is no cue). For 'how
    many X' the number must count X ('15 items'), not measure something else ('one plot of 12 square metres')."""
    if cue is None:
        return 0.5
    thing = counted_thing(question) if cue == "number" else None
    if thing:
        return float(counts(thing, sentence))
    has_number = bool(_NUMBER.search(sentence)) or any(w in NUMBER_WORDS for w in re.findall(r"[a-z]+", sentence.lower()))
    if cue == "time":
        return float(bool(_TIME.search(sentence)))
    if cue == "money":
        return float(bool(_MONEY.search(sentence)))
    if cue == "number":
        return float(has_number)
    if cue == "date":
        return float(bool(_DATE_WORDS.search(sentence) or _TIME.search(sentence) or has_number))
    if cue == "name":
        return float(bool(_NAME.search(sentence)) or bool(re.search(r"\b[A-Z][a-z]+[A-Z]?\w*\b", sentence[1:])))
    return 0.5


def candidates(passages: list[Passage], limit: int = MAX_CANDIDATES) -> list[tuple[str, int]]:
    """(sentence, passage index), once each: a sentence repeated by the next passage's overlap, or a
    fragment of one, is kept where it is whole. Headings alone and bare fragments are no answers."""
    seen: list[tuple[str, int]] = []
    for number, passage in enumerate(passages):
        heading = passage.chunk.heading.strip()
        for sentence in split_sentences(passage.chunk.text):
            if sentence == heading or len(sentence.split()) < 2 or not re.search(r"[A-Za-z]", sentence):
                continue
            if any(sentence in other for other, _ in seen):
                continue
            seen = [(s, n) for s, n in seen if s not in sentence]   # a fragment seen before: keep the whole
            seen.append((sentence, number))
            if len(seen) >= limit:
                return seen
    return seen


def _stem_in(word: str, words: set[str]) -> bool:
    return word in words or (len(word) > 4 and any(w.startswith(word[:max(4, len(word) - 2)]) for w in words))


def question_words(question: str) -> list[str]:
    """The question's keywords (stemmed) less the words of its form."""
    return list(dict.fromkeys(stem(w) for w in keywords(question) if w not in FORM_WORDS))


def keyword_weights(words: list[str], texts: list[str]) -> dict[str, float]:
    """Each word weighted by its rarity among `texts` (inverse document frequency); a word no text holds
    weighs the most."""
    bags = [content_words(t) for t in texts]
    n = max(len(bags), 1)
    return {w: math.log((n + 1) / (1 + sum(1 for bag in bags if _stem_in(w, bag)))) + 1.0 for w in words}


def rank_sentences(question: str, passages: list[Passage], embed: Embed | None) -> list[RankedSentence]:
    """Every candidate sentence scored, best first. `embed=None` ranks on words alone (tests)."""
    found = candidates(passages)
    if not found:
        return []
    context = [f"{passages[n].chunk.heading} {s}" for s, n in found]
    titles = [content_words(re.sub(r"\.\w+$", "", passages[n].chunk.document).replace("-", " ").replace("_", " "))
              for _, n in found]          # the file's name says what every sentence of it is about
    weights = keyword_weights(question_words(question), [s for s, _ in found])
    total = sum(weights.values()) or 1.0
    cue = question_cue(question)
    similarity = [0.0] * len(found)
    if embed is not None:
        vectors = embed([question] + [s for s, _ in found])
        q = vectors[0]
        similarity = [max(0.0, sum(a * b for a, b in zip(q, v))) for v in vectors[1:]]
    ranked = []
    for i, (sentence, n) in enumerate(found):
        bag = content_words(context[i])
        coverage = sum(w if _stem_in(word, bag) else w * TITLE_WEIGHT if _stem_in(word, titles[i]) else 0.0
                       for word, w in weights.items()) / total
        signals = {"similarity": round(similarity[i], 4), "coverage": round(coverage, 4),
                   "cue": satisfies(cue, sentence, question), "passage": round(1.0 / (1 + n), 4)}
        if embed is None:
            signals["similarity"] = round(coverage, 4)     # words alone: coverage stands in for meaning
        score = sum(WEIGHTS[k] * v for k, v in signals.items())
        ranked.append(RankedSentence(sentence, n, round(score, 4), signals))
    return sorted(ranked, key=lambda r: -r.score)


def choose_quotes(question: str, ranked: list[RankedSentence], min_score: float = MIN_SCORE,
                  min_coverage: float = MIN_COVERAGE) -> tuple[list[RankedSentence], str]:
    """The sentences to quote, best first, and the verdict in words. None answers when the best scores
    too low, when it holds too little of what the question names (and is not very close in meaning),
    or when the question asks for a number, time, amount or name and it holds none."""
    if not ranked:
        return [], "the passages hold no sentence to quote"
    best = ranked[0]
    s = best.signals
    if s["cue"] == 0.0:
        return [], f"no matching sentence holds the {question_cue(question)} the question asks for"
    if best.score < min_score:
        return [], f"the best sentence scores {best.score:.2f}, under {min_score:.2f}"
    if s["coverage"] < min_coverage and s["similarity"] < STRONG_SIMILARITY:
        return [], (f"the best sentence holds {s['coverage']:.0%} of the question's keywords and is "
                    f"{s['similarity']:.2f} similar")
    quotes = [best]
    for other in ranked[1:]:
        if len(quotes) >= MAX_QUOTES or other.score < SECOND_WITHIN * best.score:
            break
        if other.signals["cue"] != 0.0:
            quotes.append(other)
    return quotes, f"quoted {len(quotes)} sentence(s); the best scores {best.score:.2f}"
