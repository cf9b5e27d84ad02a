"""Hybrid retrieval: BM25 over FTS5 and exact vector search, fused by reciprocal rank; and the verdict
whether any passage matched at all.

Reciprocal rank fusion (Cormack et al. 2009): score = sum over the rankings of 1 / (K + rank). It needs
no calibration between BM25's and cosine's scales, which differ per collection.

"No passage matched" is decided on evidence the two searches give, not on the fused score (a rank is
always 1 for somebody): a passage matches when its cosine similarity to the question is high, or when
it is fairly similar and also holds half the question's keywords, or when it holds at least two of
them and half (a short passage in a long list may embed far from the question, as a subtitle does). The thresholds were set on the
retrieval evaluation in tests/unit/test_rag_eval.py (all-MiniLM-L6-v2); another embedding model may
want others, so they are arguments.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable

from ..errors import InvalidInput
from .index import DocumentIndex, StoredChunk, keywords

RRF_K = 60
STRONG_SIMILARITY = 0.4     # this close in meaning is a match on its own
WEAK_SIMILARITY = 0.25      # ... this close is one when half the keywords are there too
KEYWORD_COVERAGE = 0.5
KEYWORD_HITS = 2            # two distinct keywords and half of them: a match on words alone
MAX_QUESTION_CHARS = 4000   # a question, not a document: its words are searched and matched in every passage

Embed = Callable[[list[str]], list[list[float]]]


@dataclass
class Passage:
    chunk: StoredChunk
    score: float                  # fused (reciprocal rank)
    similarity: float | None      # cosine to the question; None when not among the vector candidates
    bm25: float | None            # None when it holds no keyword
    coverage: float               # share of the question's keywords it holds
    hits: int                     # how many of the question's keywords it holds

    @property
    def matches(self) -> bool:
        similarity = self.similarity or 0.0
        return (similarity >= STRONG_SIMILARITY
                or (self.coverage >= KEYWORD_COVERAGE and (similarity >= WEAK_SIMILARITY or self.hits >= KEYWORD_HITS)))


@dataclass
class Retrieval:
    question: str
    passages: list[Passage]                         # best first, only those that match
    candidates: list[Passage] = field(default_factory=list)   # best first, matching or not (for the page)

    @property
    def found(self) -> bool:
        return bool(self.passages)


def fuse(rankings: list[list[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of several best-first lists of ids."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def keyword_hits(words: list[str], text: str) -> int:
    """How many of `words` are in `text` (a long word also matches its stem: 'invoices' -> 'invoice').
    Words of the text that start with a stem sit together in sorted order, right where the stem would go:
    one binary search per word, so the time grows with the text plus the words, not with their product."""
    present = set(keywords(text))
    ordered = sorted(present)

    def stem_found(word: str) -> bool:
        stem = word[:max(4, len(word) - 2)]
        at = bisect_left(ordered, stem)
        return at < len(ordered) and ordered[at].startswith(stem)

    return sum(1 for word in words if word in present or (len(word) > 4 and stem_found(word)))


def retrieve(index: DocumentIndex, collection: str, question: str, embed: Embed, top_k: int = 5,
             mode: str = "hybrid") -> Retrieval:
    """The `top_k` best passages for `question`; mode 'bm25' or 'vector' uses one search alone."""
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInput(f"the question is {len(question):,} characters long; the most is {MAX_QUESTION_CHARS:,}",
                           "ask a shorter question: the documents are searched for its words, so a long text "
                           "finds everything and nothing; to work on a whole text, add it as a document")
    text_hits = index.search_text(collection, question) if mode in ("hybrid", "bm25") else []
    vector_hits = (index.search_vectors(collection, embed([question])[0]) if mode in ("hybrid", "vector") else [])
    scores = fuse([[i for i, _ in text_hits], [i for i, _ in vector_hits]])
    best = sorted(scores, key=lambda i: -scores[i])[:top_k]
    chunks = index.chunks(best)
    bm25, similarity = dict(text_hits), dict(vector_hits)
    words = keywords(question)
    candidates = []
    for i in best:
        if i in chunks:
            hits = keyword_hits(words, chunks[i].heading + " " + chunks[i].text)
            candidates.append(Passage(chunks[i], scores[i], similarity.get(i), bm25.get(i),
                                      hits / len(words) if words else 0.0, hits))
    return Retrieval(question, [p for p in candidates if p.matches], candidates)
