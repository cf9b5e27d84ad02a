"""Does the model's answer say anything its sources do not? A check of every checkable claim.

A model's words are not facts. The claims a reader acts on, and that a small model gets wrong, are
numbers, quantities, times, dates and names: each one in the answer must appear in the sources it was
given. "Appear" is by value, not by spelling: "three months" is "3 months", "0.5 EUR" is "0.50 EUR",
"7 am" is "7:00"; a number with a unit must appear with the same unit ("45 minutes" is not supported
by "45 seconds"); a name must appear as a word of the sources. A claim the sources do not hold makes
the whole answer unsupported.

    report = check_claims(answer_text, [quoted sentence, ...])
    report.supported       # False when any claim is missing from the sources
    report.to_dict()       # which claims were checked, how, and where each was found
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .index import STOPWORDS, keywords

WORD_NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
                "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
                "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
                "hundred": 100, "thousand": 1000, "once": 1, "twice": 2}
# Not "single", "double" or "half": "Single trip | 2.40 EUR" must not support "1 month".
# Units as the sources spell them, each to one name: a quantity is supported only with its own unit.
UNITS = {"second": "s", "seconds": "s", "sec": "s", "secs": "s", "minute": "min", "minutes": "min", "min": "min",
         "mins": "min", "hour": "h", "hours": "h", "hrs": "h", "day": "day", "days": "day", "week": "week",
         "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year", "eur": "eur",
         "euro": "eur", "euros": "eur", "€": "eur", "usd": "usd", "dollar": "usd", "dollars": "usd", "$": "usd",
         "gbp": "gbp", "pound": "gbp", "pounds": "gbp", "£": "gbp", "cent": "cent", "cents": "cent",
         "percent": "%", "%": "%", "gram": "g", "grams": "g", "g": "g", "kg": "kg", "kilograms": "kg",
         "litre": "l", "litres": "l", "liter": "l", "liters": "l", "l": "l", "ml": "ml", "bar": "bar",
         "km": "km", "kilometres": "km", "kilometers": "km", "m": "m", "metre": "m", "metres": "m", "meter": "m",
         "meters": "m", "cm": "cm", "mm": "mm", "characters": "char", "character": "char", "items": "item",
         "item": "item", "cups": "cup", "cup": "cup", "page": "page", "pages": "page", "people": "person",
         "persons": "person", "spaces": "space", "degrees": "deg", "°c": "deg"}
_NUM = r"\d+(?:[.,]\d+)*"
_TOKEN = re.compile(r"(?P<time>\b\d{1,2}:\d{2}\b)|(?P<ampm>\b\d{1,2}\s?(?:am|pm)\b)"
                    r"|(?P<cur>[€$£])\s?(?P<curnum>" + _NUM + r")|(?P<num>" + _NUM + r")"
                    r"|(?P<word>[A-Za-z][A-Za-z'\-]*|%|°[cC])", re.IGNORECASE)
OPENERS = frozenset("""according answer based sure okay ok well however so therefore also note please
certainly unfortunately sorry""".split())
_CITATION = re.compile(r"\[\d{1,3}\]")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|\[\d+\]\s*)$")


@dataclass
class Claim:
    text: str              # as the answer wrote it
    kind: str              # number, quantity, time, name
    supported: bool = False
    how: str = ""          # how it was matched, or why not


@dataclass
class Grounding:
    claims: list[Claim] = field(default_factory=list)
    sources: int = 0

    @property
    def supported(self) -> bool:
        return all(c.supported for c in self.claims)

    @property
    def unsupported(self) -> list[Claim]:
        return [c for c in self.claims if not c.supported]

    def to_dict(self) -> dict:
        return {"supported": self.supported, "method": METHOD, "sources": self.sources,
                "claims": [{"claim": c.text, "kind": c.kind, "supported": c.supported, "how": c.how}
                           for c in self.claims]}


METHOD = ("every number, quantity (number with its unit), time, date and name in the model's text was looked "
          "for, by value, in the sentences it was given")


def _value(text: str) -> float | None:
    t = text.replace(" ", "")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", t):         # 1,000 is a thousand ...
        t = t.replace(",", "")
    t = t.replace(",", ".")                             # ... and 1,8 is 1.8
    try:
        return float(t)
    except ValueError:
        return WORD_NUMBERS.get(text.lower())


def _facts(text: str) -> list[tuple[str, object, str | None, int, int]]:
    """(kind, value, unit, start, end) for each number, time and word of `text`, in order."""
    out: list[tuple[str, object, str | None, int, int]] = []
    tokens = list(_TOKEN.finditer(text))
    for i, m in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        unit = UNITS.get(nxt.group(0).lower()) if nxt is not None else None
        unit_end = nxt.end() if unit else m.end()      # a quantity is said with its unit
        if m.group("time"):
            h, mm = m.group("time").split(":")
            out.append(("time", (int(h), int(mm)), None, m.start(), m.end()))
        elif m.group("ampm"):
            h = int(re.match(r"\d+", m.group("ampm")).group(0))
            pm = m.group("ampm").lower().endswith("pm")
            out.append(("time", ((h % 12) + (12 if pm else 0), 0), None, m.start(), m.end()))
        elif m.group("cur"):
            out.append(("number", _value(m.group("curnum")), UNITS[m.group("cur")], m.start(), m.end()))
        elif m.group("num"):
            out.append(("number", _value(m.group("num")), unit, m.start(), unit_end))
        else:
            word = m.group("word")
            if word.lower() in WORD_NUMBERS:
                out.append(("number", WORD_NUMBERS[word.lower()], unit, m.start(), unit_end))
            else:
                out.append(("word", word, None, m.start(), m.end()))
    return out


def _names(text: str, facts) -> list[tuple[str, int, int]]:
    """Capitalised words (a run of them is one name), not common words. A sentence's first word counts
    too, unless it is a usual opener ("Yes", "According"): a wrong name there is as wrong as anywhere."""
    names, run = [], []
    for kind, value, _, start, end in facts:
        is_name = (kind == "word" and value[:1].isupper() and len(value) > 1 and value.lower() not in STOPWORDS
                   and not (value.lower() in OPENERS and _SENTENCE_START.search(text[:start])))
        if is_name and run and text[run[-1][2]:start].strip() in ("", "."):
            run.append((value, start, end))
            continue
        if run:
            names.append((" ".join(w for w, _, _ in run), run[0][1], run[-1][2]))
            run = []
        if is_name:
            run = [(value, start, end)]
    if run:
        names.append((" ".join(w for w, _, _ in run), run[0][1], run[-1][2]))
    return names


def check_claims(answer: str, sources: list[str]) -> Grounding:
    """Every number, quantity, time and name of `answer`, looked for in `sources`."""
    source_text = "\n".join(sources)
    facts = _facts(source_text)
    values = {v for k, v, _, _, _ in facts if k == "number"}
    quantities = {(v, u) for k, v, u, _, _ in facts if k == "number" and u}
    times = {v for k, v, _, _, _ in facts if k == "time"}
    for k, v, _, _, _ in facts:               # "7:00" also supports the bare hour "7" and "7 am"
        if k == "time":
            values.add(float(v[0]))
    words = {v.lower() for k, v, _, _, _ in facts if k == "word"}
    report = Grounding(sources=len(sources))
    answer = _CITATION.sub(" ", answer)       # [1]: a citation, not a claim
    answer_facts = _facts(answer)
    for kind, value, unit, start, end in answer_facts:
        said = answer[start:end]
        if kind == "time":
            ok = value in times
            report.claims.append(Claim(said, "time", ok, "the same time is in the sources" if ok
                                       else "no such time in the sources"))
        elif kind == "number":
            if value is None:
                continue
            if unit and any(u for (v, u) in quantities if v == value):
                ok = (value, unit) in quantities
                how = ("the same quantity is in the sources" if ok else
                       f"the sources have {value:g} only with another unit")
                report.claims.append(Claim(said, "quantity", ok, how))
            else:
                ok = value in values
                report.claims.append(Claim(said, "number", ok, "the same value is in the sources" if ok
                                           else "no such value in the sources"))
        if report.claims and report.claims[-1].supported and report.claims[-1].text == said:
            same = [(a, b) for k, v, u, a, b in facts if k == kind and v == value
                    and (kind != "number" or not unit or u == unit or report.claims[-1].kind == "number")]
            _check_said_of(report.claims[-1], answer, start, end, source_text, same)
    for name, start, end in _names(answer, answer_facts):
        parts = [p.lower() for p in name.split()]
        ok = all(p in words or p.rstrip("'s") in words for p in parts)
        report.claims.append(Claim(name, "name", ok, "each word is in the sources" if ok
                                   else "not in the sources: " + ", ".join(p for p in parts if p not in words)))
        if ok:
            first = re.escape(name.split()[0])
            same = [(m.start(), m.end()) for m in re.finditer(rf"\b{first}\b", source_text, re.IGNORECASE)]
            _check_said_of(report.claims[-1], answer, start, end, source_text, same)
    return report


_CLAUSE_END = re.compile(r"[;:!?()\[\]]|[,.](?=\s|$)|\s(?:and|but|or|while|whereas)\s|\n")


def _clause(text: str, start: int, end: int) -> str:
    """The clause of `text` around [start, end): from the mark before it to the mark after it."""
    before = [m.end() for m in _CLAUSE_END.finditer(text, 0, start)]
    after = _CLAUSE_END.search(text, end)
    return text[before[-1] if before else 0:after.start() if after else len(text)]


def _related(a: str, b: str) -> bool:
    return a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))


def _check_said_of(claim: Claim, answer: str, start: int, end: int, source_text: str,
                   places: list[tuple[int, int]]) -> None:
    """A claim found in the sources must also be said of the same thing: the words of its clause in the
    answer that the sources use at all must meet a word of its clause in the sources ("Tom Becker is the
    chair" is not supported by "the club is chaired by Maria Lopez; the treasurer is Tom Becker")."""
    own = set(keywords(answer[start:end]))
    source_words = set(keywords(source_text))
    said = {w for w in keywords(_clause(answer, start, end)) if w not in own and w.isalpha() and len(w) > 2
            and w not in UNITS and any(_related(w, s) for s in source_words)}
    if not said or not places:
        return
    for a, b in places:
        near = set(keywords(_clause(source_text, a, b)))
        if any(_related(w, n) for w in said for n in near):
            return
    claim.supported = False
    claim.how = "in the sources, but said there of something else (" + ", ".join(sorted(said)) + ")"


def new_words(answer: str, given: list[str]) -> float:
    """The share of the answer's content words that none of `given` (the quotes, the question) holds: a
    wording that rephrases stays near 0; one that argues with the quotes or wanders off does not."""
    words = [w for w in keywords(_CITATION.sub(" ", answer)) if w.isalpha() and len(w) > 2]
    if not words:
        return 0.0
    known = set(keywords(" ".join(given)))
    return sum(1 for w in words if not any(_related(w, k) for k in known)) / len(words)


_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none|nobody|nothing|neither|nor|without|except|forbidden|banned|"
                       r"prohibited|only)\b|n't\b", re.IGNORECASE)


def same_polarity(answer: str, sources: list[str]) -> bool:
    """A negation ("never", "not", "except", "only") in the sources and none in the answer, or the other way
    round: "Yes, you can put it in the dishwasher" against "it must never go in the dishwasher"."""
    return bool(_NEGATION.search(answer)) == any(_NEGATION.search(s) for s in sources)
