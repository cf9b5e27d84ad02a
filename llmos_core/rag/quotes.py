"""Ask's reply: the sentences that answer, quoted verbatim with their citation, then the model's own
wording below them, marked as the model's and shown only when every claim in it was found in the quotes.

    quotes = make_quotes(chosen, passages)              # from sentences.choose_quotes
    messages = wording_messages(question, quotes)       # what the model reads: the quotes, nothing more
    wording = ModelWording(text, grounding, tries)      # after usecases/ask.py's check (and one retry)
    reply = compose_reply(quotes, wording)              # the text a user (or --json) gets

The model reads the quoted sentences alone, not the whole passages: a short prompt is fast on a small
model, and a claim in its answer has fewer places to come from that are not the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .retrieve import Passage
from .sentences import RankedSentence

WORDING_SYSTEM = ("Answer the question in one short sentence, using only the numbered sentences. Do not add "
                  "any number, time, date or name that is not in them.")
STRICT_SYSTEM = ("Answer the question by repeating the words of the numbered sentences. Copy every number, "
                 "time, date and name exactly as written there; add nothing else.")
DECLINED = "The documents do not answer this question."
UNCHECKED = "The model's wording could not be checked against the quoted sentences, so only the quotes are shown."


@dataclass
class Quote:
    text: str                 # verbatim, as in the document
    number: int               # the citation: the passage's number among those retrieved (1-based)
    file: str
    heading: str
    page: int | None
    score: float
    signals: dict

    def citation(self) -> str:
        where = ", ".join(filter(None, [self.file, self.heading, self.page and f"page {self.page}"]))
        return f"[{self.number}] {where}"

    def to_dict(self) -> dict:
        return {"text": self.text, "number": self.number, "file": self.file, "heading": self.heading,
                "page": self.page, "score": self.score, "signals": self.signals}


@dataclass
class ModelWording:
    """What the model added, and whether it may be shown: `shown` only when every claim was found."""
    text: str | None               # the text shown; None when nothing passed the check (or no model)
    tries: list[dict] = field(default_factory=list)   # each try: its text, prompt and grounding report
    note: str = ""

    @property
    def shown(self) -> bool:
        return bool(self.text)

    def to_dict(self) -> dict:
        return {"text": self.text, "shown": self.shown, "note": self.note, "tries": self.tries}


def make_quotes(chosen: list[RankedSentence], passages: list[Passage]) -> list[Quote]:
    out = []
    for sentence in chosen:
        chunk = passages[sentence.passage].chunk
        out.append(Quote(sentence.text, sentence.passage + 1, chunk.document, chunk.heading, chunk.page,
                         sentence.score, sentence.signals))
    return out


# One worked example before the question: a small model copies its form (one sentence, the number as given).
EXAMPLE = [{"role": "user", "content": "Sentences:\n[1] The office opens at 8:00 and closes at 17:30 on weekdays."
                                       "\n\nQuestion: When does the office close?"},
           {"role": "assistant", "content": "The office closes at 17:30 on weekdays [1]."}]


USE_EXAMPLE = False       # measured (bench/quality.py --prompts): the example gave SmolLM2 no more checked
                          # wordings (9 of the first 31 both ways) and a longer prompt


def wording_messages(question: str, quotes: list[Quote], strict: bool = False) -> list[dict]:
    sentences = "\n".join(f"[{q.number}] {q.text}" for q in quotes)
    return ([{"role": "system", "content": STRICT_SYSTEM if strict else WORDING_SYSTEM}] + (EXAMPLE if USE_EXAMPLE else [])
            + [{"role": "user", "content": f"Sentences:\n{sentences}\n\nQuestion: {question}"}])


def clean_wording(text: str) -> str:
    """The model's answer, trimmed to its first line (a small model goes on to invent a next turn) and
    without a leading "[2]" or "Answer:" (it copies the prompt's numbering)."""
    text = text.strip().split("\n", 1)[0].strip()
    text = re.sub(r"^(?:\[\d{1,3}\]\s*|answer:\s*)+", "", text, flags=re.IGNORECASE).strip()
    again = re.search(r"(?<=[.!?])\s*\[\d{1,3}\]\s+(?=\S)", text)     # "... manager. [2] The manager ..."
    text = text[:again.start()].strip() if again else text
    return text if re.search(r"[A-Za-z0-9]", text) else ""


def compose_reply(quotes: list[Quote], wording: ModelWording | None) -> str:
    """The reply as text: the quotes with their citations, then the model's wording, marked as its own."""
    lines = [f"> {q.text}\n> — {q.citation()}\n" for q in quotes]
    if wording is not None and wording.shown:
        lines.append(f"The model's wording (every number and name in it is in the quotes): {wording.text}")
    elif wording is not None and wording.note:
        lines.append(wording.note)
    return "\n".join(lines).strip()


def passage_citations(passages: list[Passage], quotes: list[Quote]) -> list[dict]:
    """Every passage retrieved, numbered as the quotes cite them; the quoted ones first."""
    cited = {q.number for q in quotes}
    found = []
    for number, passage in enumerate(passages, 1):
        chunk = passage.chunk
        found.append({"number": number, "file": chunk.document, "heading": chunk.heading, "page": chunk.page,
                      "passage": chunk.text, "cited": number in cited, "score": round(passage.score, 5),
                      "similarity": None if passage.similarity is None else round(passage.similarity, 4),
                      "whole_document": False})
    return sorted(found, key=lambda c: (not c["cited"], c["number"]))
