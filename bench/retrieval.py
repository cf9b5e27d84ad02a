"""Benchmark: retrieval for Ask, in one run.

(1) passages embedded per second by all-MiniLM-L6-v2: batched (64 at a time, as indexing does) vs one
    at a time; the ratio;
(2) query latency at 1,000 and 100,000 passages (384-dim random unit vectors; text of 120 words
    drawn with Zipf frequencies from 30,000, the question's words among the commonest 2,000): BM25 over
    the collection's own FTS5 table, exact vector search with numpy (the matrix is read once, then
    cached), and the two fused, medians of --repeats queries; target: hybrid under 100 ms at 100,000.
    Baseline in the same run: the first release's path, one FTS5 table for every collection joined to
    passages and documents to keep to one collection. sqlite-vec's exact vec0 search over the same
    vectors is timed beside numpy when the package is installed;
(3) recall@5 of the passage holding the answer on the evaluation set of tests/rag_samples.py: hybrid vs
    BM25 alone vs vectors alone.
Usage: python bench/retrieval.py [--sizes 1000,100000] [--repeats 20] [--passages 256] [--parts latency,embedding,recall]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llmos_core.rag.chunking import Chunk  # noqa: E402
from llmos_core.rag.index import DocumentIndex, fts_query, fts_table  # noqa: E402
from llmos_core.rag.retrieve import retrieve  # noqa: E402
from llmos_core.store import Store  # noqa: E402
from llmos_core.accounts import LOCAL_ADMIN

WORDS = ("leave policy expense hotel travel invoice contract salary laptop password security office parking "
         "meeting report budget customer product release server backup holiday training badge manager team "
         "project deadline approval receipt meal taxi train flight phone network printer kitchen").split()
DIM = 384


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def vocabulary(rng: random.Random, size: int = 30_000) -> tuple[list[str], list[float]]:
    """Made-up words with Zipf frequencies (as in real text), the topic words among the commonest 2,000."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(size)]
    for i, word in enumerate(WORDS):
        words[50 + i * 40] = word
    return words, [1.0 / (rank + 1) for rank in range(size)]


def synthetic_index(folder: Path, size: int, rng: random.Random) -> tuple[DocumentIndex, np.ndarray]:
    index = DocumentIndex(Store(folder / f"bench-{size}.db"))
    index.create_collection("bench", "random", 0)
    vectors = np.random.default_rng(0).standard_normal((size, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words, weights = vocabulary(rng)
    per_document = 1000
    for start in range(0, size, per_document):
        chunks = [Chunk(i, " ".join(rng.choices(words, weights, k=120)), f"Section {i}", None)
                  for i in range(min(per_document, size - start))]
        document_id = index.add_document("bench", f"doc{start}.txt", "txt", 0, "", chunks)
        rows = index.unembedded(document_id)
        index.store_vectors(document_id, [r["id"] for r in rows], vectors[start:start + len(rows)])
    return index, vectors


def shared_fts_search(index: DocumentIndex):
    """The first release's BM25 search (the baseline): one FTS5 table for all collections, joined to
    the passages and documents to keep to one collection, so every match pays the join."""
    conn = index.store.connection()
    conn.execute("CREATE VIRTUAL TABLE shared_fts USING fts5(text, heading, content='rag_chunks', "
                 "content_rowid='id', tokenize='porter unicode61')")
    conn.execute("INSERT INTO shared_fts(shared_fts) VALUES ('rebuild')")

    def search_text(collection: str, question: str, limit: int = 50) -> list[tuple[int, float]]:
        rows = conn.execute(
            "SELECT shared_fts.rowid, bm25(shared_fts, 1.0, 0.5) AS score FROM shared_fts "
            "JOIN rag_chunks c ON c.id = shared_fts.rowid JOIN rag_documents d ON d.id = c.document_id "
            "WHERE shared_fts MATCH ? AND d.collection = ? ORDER BY score LIMIT ?",
            (fts_query(question), collection, limit)).fetchall()
        return [(row[0], -row[1]) for row in rows]
    return search_text


class SharedFtsIndex:
    """The index with the baseline's text search, for timing the whole baseline query."""

    def __init__(self, index: DocumentIndex, search_text):
        self.index, self.search_text = index, search_text

    def __getattr__(self, name):
        return getattr(self.index, name)


def sqlite_vec_ms(folder: Path, vectors: np.ndarray, query: np.ndarray, repeats: int) -> float | str:
    """sqlite-vec's exact search in ms, or why it could not run here."""
    try:
        import sqlite3

        import sqlite_vec
    except ImportError:
        return "not installed"
    conn = sqlite3.connect(folder / "vec.db")
    if not hasattr(conn, "enable_load_extension"):
        return "this Python's sqlite3 cannot load extensions"
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{DIM}])")
    conn.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)", ((i, row.tobytes()) for i, row in enumerate(vectors)))
    conn.commit()
    sql = "SELECT rowid, distance FROM v WHERE embedding MATCH ? ORDER BY distance LIMIT 50"
    return median_ms(lambda: conn.execute(sql, (query.tobytes(),)).fetchall(), repeats)


def bench_latency(sizes: list[int], repeats: int) -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            start = time.perf_counter()
            index, vectors = synthetic_index(Path(tmp), size, rng)
            built = time.perf_counter() - start
            query = vectors[7] + 0.1 * vectors[8]
            query = (query / np.linalg.norm(query)).astype(np.float32)
            question = "hotel receipt for a late taxi to the airport"
            start = time.perf_counter()
            index.matrix("bench")
            first_read = (time.perf_counter() - start) * 1000
            old_search = shared_fts_search(index)
            assert [i for i, _ in old_search("bench", question)] == [i for i, _ in index.search_text("bench", question)]
            old_index = SharedFtsIndex(index, old_search)
            # interleaved, so a burst of load on this shared machine falls on both paths alike
            old_bm25, bm25, old_hybrid, hybrid = [], [], [], []
            for _ in range(repeats):
                old_bm25.append(median_ms(lambda: old_search("bench", question), 1))
                bm25.append(median_ms(lambda: index.search_text("bench", question), 1))
                old_hybrid.append(median_ms(lambda: retrieve(old_index, "bench", question, lambda texts: [query]), 1))
                hybrid.append(median_ms(lambda: retrieve(index, "bench", question, lambda texts: [query]), 1))
            old_bm25, bm25, old_hybrid, hybrid = map(statistics.median, (old_bm25, bm25, old_hybrid, hybrid))
            vector = median_ms(lambda: index.search_vectors("bench", query), repeats)
            matches = index.store.execute(f"SELECT COUNT(*) FROM {fts_table('bench')} WHERE {fts_table('bench')} "
                                          "MATCH ?", (fts_query(question),)).fetchone()[0]
            vec_ext = sqlite_vec_ms(Path(tmp), vectors, query, max(3, repeats // 4))
            print(f"{size:>7,} passages (built in {built:.1f} s; first matrix read {first_read:.0f} ms; "
                  f"{matches:,} match a keyword): BM25 {bm25:.1f} ms (baseline {old_bm25:.1f} ms, "
                  f"{old_bm25 / bm25:.1f}x), vectors (numpy) {vector:.1f} ms, hybrid {hybrid:.1f} ms "
                  f"(baseline {old_hybrid:.1f} ms, {old_hybrid / hybrid:.1f}x)"
                  + (f"; sqlite-vec vec0 {vec_ext:.1f} ms ({vec_ext / max(vector, 1e-9):.1f}x numpy)"
                     if isinstance(vec_ext, float) else f"; sqlite-vec: {vec_ext}")
                  + ("  [target < 100 ms: " + ("met" if hybrid < 100 else "NOT met") + "]" if size >= 100_000 else ""))


def bench_embedding(engine, passages: int) -> None:
    from llmos_core.embeddings import encode
    from llmos_core.models.catalog import DEFAULT_EMBEDDING_MODEL

    rng = random.Random(1)
    texts = [" ".join(rng.choices(WORDS, k=rng.randint(60, 160))) for _ in range(passages)]
    with engine.models.use(DEFAULT_EMBEDDING_MODEL, "transformers") as resident:
        encode(resident, texts[:8])                           # warm-up
        start = time.perf_counter()
        encode(resident, texts, batch_size=64)
        batched = passages / (time.perf_counter() - start)
        single_n = max(16, passages // 4)
        start = time.perf_counter()
        for text in texts[:single_n]:
            encode(resident, [text], batch_size=1)
        single = single_n / (time.perf_counter() - start)
    print(f"embedding ({DEFAULT_EMBEDDING_MODEL}, {passages} passages of 60-160 words): batched {batched:.1f}/s, "
          f"one at a time {single:.1f}/s, ratio {batched / single:.2f}x")


def bench_recall(engine) -> None:
    from rag_samples import DOCUMENTS, QUESTIONS

    from llmos_core.usecases import ask

    ask.add_files(engine, LOCAL_ADMIN, "bench-eval", [(n, t.encode()) for n, t in DOCUMENTS.items()])
    index, embed = ask.index_for(engine), ask.embed_texts(engine, "all-minilm-l6-v2")
    for mode in ("hybrid", "bm25", "vector"):
        hits = sum(any(p.chunk.document == f and phrase in p.chunk.text
                       for p in retrieve(index, "bench-eval", q, embed, 5, mode).candidates)
                   for q, f, phrase in QUESTIONS)
        print(f"recall@5 {mode:>6}: {hits / len(QUESTIONS):.2f} ({hits}/{len(QUESTIONS)} questions)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--parts", default="latency,embedding,recall")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "latency" in parts:
        bench_latency([int(s) for s in args.sizes.split(",")], args.repeats)
    if not {"embedding", "recall"} & set(parts):
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMOS_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from llmos_core.engine import Engine
        from llmos_core.settings import Settings

        engine = Engine(Settings.from_env(), primary=False, start_threads=False)
        try:
            if "embedding" in parts:
                bench_embedding(engine, args.passages)
            if "recall" in parts:
                bench_recall(engine)
        finally:
            engine.close()


if __name__ == "__main__":
    main()
