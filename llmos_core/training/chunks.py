"""Documents -> a training set for continued pre-training: clean paragraphs, cut into chunks of a chosen
number of tokens (counted with the model's own tokenizer), kept as a JSONL of {"text": chunk}.

The documents are parsed by the translation parsers in their isolated child (usecases/datasets.py does
that); this module only sees the paragraphs' text. Cleaning drops what is not prose worth learning: the
translator's inline tag tokens, runs of whitespace, paragraphs without a word (rules, "— 3 —"), page
numbers ("Page 3 of 9"), and short lines repeated over and over (a PDF's running headers and footers).
Chunks end at a paragraph's end where one fits; a paragraph longer than a chunk is cut at sentence ends,
and a sentence longer than a chunk at a token boundary, so no chunk passes the length asked for.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from ..errors import InvalidInput
from ..translation.segment import TAG_TOKEN, has_words, split_sentences

MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 16, 8192
REPEATED_LINE_CHARS = 80     # a line this short seen REPEATED_TIMES or more is a running header or footer
REPEATED_TIMES = 3
PAGE_NUMBER = re.compile(r"(page|p\.|pg\.?|seite|s\.)?\s*\d+\s*((of|/|von)\s*\d+)?", re.IGNORECASE)


@dataclass
class Chunks:
    texts: list[str]
    tokens: list[int]             # each chunk's length in the model's tokens
    dropped_paragraphs: int       # paragraphs cleaning left out

    def preview(self, n: int = 5, chars: int = 400) -> list[dict]:
        return [{"tokens": t, "text": text if len(text) <= chars else text[:chars] + "..."}
                for text, t in zip(self.texts[:n], self.tokens[:n])]

    def to_jsonl(self) -> bytes:
        return "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in self.texts).encode()


def clean_paragraphs(texts: list[str]) -> tuple[list[str], int]:
    """-> (the paragraphs worth training on, how many were left out)."""
    flat = [" ".join(TAG_TOKEN.sub("", t).split()) for t in texts]
    counts = Counter(t for t in flat if len(t) <= REPEATED_LINE_CHARS)
    kept = [t for t in flat if has_words(t) and not PAGE_NUMBER.fullmatch(t)
            and not (len(t) <= REPEATED_LINE_CHARS and counts[t] >= REPEATED_TIMES)]
    return kept, len(texts) - len(kept)


def make_chunks(texts: list[str], tokenizer, chunk_tokens: int) -> Chunks:
    """Paragraphs (as parsed) -> cleaned chunks of at most `chunk_tokens` tokens each."""
    if not MIN_CHUNK_TOKENS <= chunk_tokens <= MAX_CHUNK_TOKENS:
        raise InvalidInput(f"a chunk of {chunk_tokens} tokens is out of range",
                           f"choose {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS} tokens (the block length is a good choice)")
    paragraphs, dropped = clean_paragraphs(texts)
    if not paragraphs:
        raise InvalidInput("the documents hold no text to train on after cleaning",
                           "upload documents with prose in them (a scanned PDF has no text layer)")

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    pieces = [p for paragraph in paragraphs for p in _fit(paragraph, count(paragraph), tokenizer, chunk_tokens, count)]
    texts_out, tokens_out, current, current_tokens = [], [], [], 0
    for piece, n in pieces:
        joined = "\n\n".join(current + [piece])
        n_joined = count(joined) if current else n
        if current and n_joined > chunk_tokens:
            texts_out.append("\n\n".join(current))
            tokens_out.append(current_tokens)
            current, n_joined = [], n
        current.append(piece)
        current_tokens = n_joined
    if current:
        texts_out.append("\n\n".join(current))
        tokens_out.append(current_tokens)
    return Chunks(texts_out, tokens_out, dropped)


def _fit(paragraph: str, n: int, tokenizer, limit: int, count) -> list[tuple[str, int]]:
    """A paragraph as pieces of at most `limit` tokens: itself, else its sentences (joined while they fit),
    else token slices of a sentence that alone is too long."""
    if n <= limit:
        return [(paragraph, n)]
    pieces: list[tuple[str, int]] = []
    current = ""
    for sentence, space in split_sentences(paragraph):
        candidate = current + sentence
        if count(candidate) <= limit:
            current = candidate + space
            continue
        if current.strip():
            pieces.append((current.strip(), count(current.strip())))
        if count(sentence) <= limit:
            current = sentence + space
        else:
            pieces += _token_slices(sentence, tokenizer, limit, count)
            current = ""
    if current.strip():
        pieces.append((current.strip(), count(current.strip())))
    return pieces


def _token_slices(text: str, tokenizer, limit: int, count) -> list[tuple[str, int]]:
    """Cut at token boundaries; decoding and re-encoding can merge tokens differently, so each slice is
    measured again and shortened until it fits."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out, start = [], 0
    while start < len(ids):
        size = min(limit, len(ids) - start)
        while True:
            piece = tokenizer.decode(ids[start:start + size], skip_special_tokens=True).strip()
            n = count(piece)
            if n <= limit or size == 1:
                break
            size -= max(1, n - limit)
        if piece:
            out.append((piece, n))
        start += size
    return out


_SAFE = re.compile(r"[^\w.-]+")


def chunks_file_name(names: list[str], chunk_tokens: int) -> str:
    """The kept file's name: the first document's stem, how many more, the chunk length."""
    stem = _SAFE.sub("-", names[0].rsplit(".", 1)[0])[:40] or "documents"
    more = f"-and-{len(names) - 1}" if len(names) > 1 else ""
    return f"{stem}{more}-chunks{chunk_tokens}.jsonl"
