"""From retrieved passages to the model's prompt, and from its answer to citations.

What the model reads is chosen against its context window, and the meter says where the window went:
system prompt, history, question, passages, and the room kept for the reply. When the best passages
all come from one document whose whole text fits, the whole document is sent (a small file needs no
retrieval); otherwise passages go in best first while they fit, and the ones left out are named.
Passages are numbered [1], [2], ... in the prompt; the answer's citations are the numbers it uses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .index import StoredChunk
from .retrieve import Passage

SYSTEM_PROMPT = ("You answer questions using only the numbered passages below. After each fact, cite the "
                 "passage it comes from as [1], [2] and so on. If the passages do not hold the answer, say "
                 "that the documents do not say.")
NOT_FOUND = "No passage in the collection matched the question, so there is nothing to answer from."
_CITATION = re.compile(r"\[(\d{1,3})\]")

CountTokens = Callable[[str], int]


@dataclass
class ContextMeter:
    """Tokens of the model's window, by use. `free` is what is left unused."""
    window: int
    reply: int
    system: int = 0
    history: int = 0
    question: int = 0
    passages: int = 0

    @property
    def used(self) -> int:
        return self.system + self.history + self.question + self.passages + self.reply

    @property
    def free(self) -> int:
        return max(0, self.window - self.used)

    def parts(self) -> dict[str, int]:
        return {"system": self.system, "history": self.history, "question": self.question,
                "passages": self.passages, "reply (reserved)": self.reply, "free": self.free}

    def to_dict(self) -> dict:
        return {"window": self.window, "used": self.used, **self.parts()}


@dataclass
class Context:
    """What the model is given: numbered sources (a passage, or a whole document) and the meter."""
    sources: list[Passage]
    whole_document: str | None            # the file sent whole, when it was
    whole_text: str = ""
    left_out: list[Passage] = field(default_factory=list)
    meter: ContextMeter | None = None


def passage_block(number: int, passage: Passage) -> str:
    chunk = passage.chunk
    where = ", ".join(filter(None, [chunk.document, chunk.heading and f"section {chunk.heading!r}",
                                    chunk.page and f"page {chunk.page}"]))
    return f"[{number}] ({where})\n{chunk.text}"


def choose_context(passages: list[Passage], whole_texts: dict[str, str], count: CountTokens, window: int,
                   reply_tokens: int, question: str, history: list[dict]) -> Context:
    """Fit the sources into the window: the whole document when the best passages share one that fits,
    else the passages best first while they fit. `whole_texts`: document name -> its full text."""
    meter = ContextMeter(window, reply_tokens, system=count(SYSTEM_PROMPT), question=count(question),
                         history=sum(count(m["content"]) for m in history))
    room = window - meter.used - 16          # the chat template's own tokens
    documents = {p.chunk.document for p in passages}
    if len(documents) == 1:
        name = next(iter(documents))
        text = whole_texts.get(name, "")
        if text:
            cost = count(f"[1] ({name})\n{text}")
            if cost <= room:
                meter.passages = cost
                return Context(passages[:1], name, text, [], meter)
    chosen, left_out = [], []
    for passage in passages:
        cost = count(passage_block(len(chosen) + 1, passage)) + 1
        if cost <= room:
            chosen.append(passage)
            room -= cost
            meter.passages += cost
        else:
            left_out.append(passage)
    return Context(chosen, None, "", left_out, meter)


def sources_text(context: Context) -> str:
    if context.whole_document is not None:
        return f"[1] ({context.whole_document}, the whole document)\n{context.whole_text}"
    return "\n\n".join(passage_block(n, p) for n, p in enumerate(context.sources, 1))


def build_messages(question: str, context: Context, history: list[dict], passages_turn: int | None = None) -> list[dict]:
    """The passages go in the last user turn, right before the question: a small model follows what is
    near the end of its prompt far better than a long system prompt. A follow-up over the same passages
    (`passages_turn`: the history's user turn that carried them, see follow_up) keeps them there instead and
    asks the question alone, so its prompt starts with the earlier turn's whole prompt (the prefix cache
    then reads only the new turns)."""
    def user(text: str, with_sources: bool) -> dict:
        return {"role": "user", "content": (f"Passages:\n\n{sources_text(context)}\n\n" if with_sources else "")
                + f"Question: {text}"}
    turns = [{"role": m["role"], "content": m["content"]} for m in history]
    if passages_turn is not None:
        turns[passages_turn:] = [user(m["content"], i == passages_turn) if m["role"] == "user" else m
                                 for i, m in enumerate(turns[passages_turn:], passages_turn)]
    return ([{"role": "system", "content": SYSTEM_PROMPT}] + turns
            + [user(question, passages_turn is None)])


def previous_sources(history: list[dict]) -> tuple[int, list[dict]] | None:
    """The last reply's sources (its stats' citations, in their numbering) and the history's user turn that
    carried them (stats' `passages_turn`, else the turn it answered); None when it answered from none."""
    if len(history) < 2 or history[-1].get("role") != "assistant":
        return None
    stats = history[-1].get("stats") or {}
    cited = stats.get("citations") or []
    turn = stats.get("passages_turn", len(history) - 2)
    if not cited or not isinstance(turn, int) or not 0 <= turn < len(history) - 1 or history[turn]["role"] != "user":
        return None
    return turn, sorted(cited, key=lambda c: c["number"])


def follow_up(context: Context, history: list[dict], whole_texts: dict[str, str],
              count: CountTokens) -> tuple[Context, int] | None:
    """When every source chosen for this question was in the last reply's (the same passages, or passages
    of the document it had whole), the last reply's sources in their numbering and the turn that carried
    them, so the prompt repeats the earlier one; None when the sources differ or the earlier ones no longer fit."""
    found = previous_sources(history)
    if found is None or not context.sources or context.meter is None:
        return None
    turn, cited = found
    if cited[0].get("whole_document"):
        name = cited[0]["file"]
        if {p.chunk.document for p in context.sources} != {name} or not whole_texts.get(name):
            return None
        earlier = Context([_passage(cited[0])], name, whole_texts[name])
    else:
        key = lambda c: (c.document, c.heading or "", c.page, c.text)     # noqa: E731
        earlier = Context([_passage(c) for c in cited], None)
        if not {key(p.chunk) for p in context.sources} <= {key(p.chunk) for p in earlier.sources}:
            return None
    meter = context.meter
    earlier.meter = ContextMeter(meter.window, meter.reply, meter.system, meter.history, meter.question,
                                 count(sources_text(earlier)) + len(earlier.sources))
    asked = 4 * (len(history) - turn)        # "Question: " before each later question
    return (earlier, turn) if earlier.meter.used + asked + 16 <= meter.window else None


def _passage(citation: dict) -> Passage:
    chunk = StoredChunk(0, citation["file"], citation.get("heading") or "", citation.get("page"), citation["passage"], 0)
    return Passage(chunk, citation.get("score") or 0.0, citation.get("similarity"), None, 0.0, 0)


def citations(answer: str, context: Context) -> list[dict]:
    """The sources given to the model, each with where it is, its text, and whether the answer cites it
    by number. Cited ones come first; a number the model made up (none such source) is ignored."""
    cited = {int(n) for n in _CITATION.findall(answer)}
    found = []
    for number, passage in enumerate(context.sources, 1):
        chunk = passage.chunk
        found.append({"number": number, "file": chunk.document, "heading": chunk.heading, "page": chunk.page,
                      "passage": chunk.text, "cited": number in cited, "score": round(passage.score, 5),
                      "similarity": None if passage.similarity is None else round(passage.similarity, 4),
                      "whole_document": context.whole_document is not None})
    return sorted(found, key=lambda c: (not c["cited"], c["number"]))
