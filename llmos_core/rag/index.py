"""Collections of documents in SQLite: their passages, a full-text index (FTS5, BM25) and the vectors.

Everything lives in the app's database (llmos.db), beside conversations and jobs, so a collection
survives restarts and is deleted in one transaction. Vectors are float32 blobs in the passage's row;
search is exact: the collection's vectors are read once into one numpy matrix (kept until the
collection changes) and scored with one matrix-vector product. bench/retrieval.py measured that
against the alternatives (see docs/BENCHMARKS.md): at 100,000 passages of 384 dimensions the product
takes a few milliseconds, so an approximate index would buy nothing at these sizes.
"""
from __future__ import annotations

import re
import sqlite3
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..accounts import User, owner_filter
from ..errors import InvalidInput
from ..store import Store
from .chunking import Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS rag_collections (
    name TEXT PRIMARY KEY,
    embed_model TEXT NOT NULL,
    created REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 0    -- bumped by every change: the cached vector matrix is stale
);
CREATE TABLE IF NOT EXISTS rag_documents (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL REFERENCES rag_collections(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,          -- parsed | embedded | failed
    chunks INTEGER NOT NULL DEFAULT 0,
    embedded INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,   -- the whole text's length, estimated (for "send it whole")
    text TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL,
    UNIQUE (collection, name)
);
CREATE TABLE IF NOT EXISTS rag_chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES rag_documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    heading TEXT NOT NULL,
    page INTEGER,
    text TEXT NOT NULL,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS rag_chunks_document ON rag_chunks(document_id);
"""

COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FTS_CANDIDATES = 50
_WORD = re.compile(r"\w+", re.UNICODE)
# Words that say nothing about what is asked: matching them is not evidence of an answer.
STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being
do does did what which who whom whose when where why how this that these those it its there their they them
i you he she we me my your our his her can could should would may might will shall not no yes than then
about into over under after before any all some each much many more most other such only own same so too very
just also have has had having tell please give say said""".split())


def check_collection_name(name: str) -> str:
    """The one gate for a collection's name: it becomes a folder name and a key, so a strict slug."""
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidInput(f"{str(name)[:80]!r} is not a valid collection name",
                           "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    return name


def keywords(text: str) -> list[str]:
    """The words of a question that carry meaning, lowercased, in order, once each."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit()):
            seen.setdefault(word, None)
    return list(seen)


def fts_query(text: str) -> str:
    """A safe FTS5 query: each keyword quoted (no operator of the user's reaches FTS5), any may match."""
    return " OR ".join(f'"{word}"' for word in keywords(text))


def fts_table(collection: str) -> str:
    """The quoted name of the collection's own FTS5 table. One table per collection: a search ranks only
    that collection's passages, with no join to find which collection a passage is in (at 100,000
    passages the join cost 3x the search), and BM25's statistics are the collection's own. The ']'
    ends the name, so no collection's table is another's shadow table ('x' has '..[x]_data')."""
    return f'"rag_fts[{check_collection_name(collection)}]"'


def _create_fts(conn, collection: str) -> None:
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts_table(collection)} USING fts5(text, heading, "
                 "content='rag_chunks', content_rowid='id', tokenize='porter unicode61')")


def _index_text(conn, collection: str, document_id: int) -> None:
    conn.execute(f"INSERT INTO {fts_table(collection)} (rowid, text, heading) "
                 "SELECT id, text, heading FROM rag_chunks WHERE document_id = ?", (document_id,))


def _forget_text(conn, collection: str, name: str) -> None:
    """Take a document's passages out of the text index (before its rows go: FTS5 needs the old text)."""
    table = fts_table(collection)
    conn.execute(f"INSERT INTO {table} ({table}, rowid, text, heading) SELECT 'delete', c.id, c.text, c.heading "
                 "FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
                 "WHERE d.collection = ? AND d.name = ?", (collection, name))


def _split_shared_fts(store: Store) -> None:
    """Databases made before the per-collection tables held one FTS table for all, fed by triggers:
    index each collection's passages in its own table, then drop the shared one (once, at open)."""
    if not store.execute("SELECT 1 FROM sqlite_master WHERE name = 'rag_fts'").fetchone():
        return
    with store.transaction() as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rag_fts'").fetchone():
            return       # another process did it meanwhile
        conn.execute("DROP TRIGGER IF EXISTS rag_chunks_ai")
        conn.execute("DROP TRIGGER IF EXISTS rag_chunks_ad")
        conn.execute("DROP TABLE rag_fts")
        for (name,) in conn.execute("SELECT name FROM rag_collections").fetchall():
            _create_fts(conn, name)
            for (document_id,) in conn.execute("SELECT id FROM rag_documents WHERE collection = ?", (name,)).fetchall():
                _index_text(conn, name, document_id)


def _bump(conn, collection: str) -> None:
    conn.execute("UPDATE rag_collections SET version = version + 1 WHERE name = ?", (collection,))


@dataclass
class StoredChunk:
    id: int
    document: str
    heading: str
    page: int | None
    text: str
    ordinal: int


class DocumentIndex:
    """The collections' tables, shared by every page and the CLI (thread-safe through Store)."""

    def __init__(self, store: Store):
        self.store = store
        self.store.connection().executescript(SCHEMA)
        self.store.add_columns("rag_collections", {"owner": "INTEGER NOT NULL DEFAULT 0"})   # accounts/ownership.py
        _split_shared_fts(store)
        self._matrices: dict[str, tuple[tuple | None, np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    # ---- collections and documents ----
    def create_collection(self, name: str, embed_model: str, owner: int) -> None:
        """Made for `owner` (a user id) on first use; a name another user holds is refused (names are one
        namespace: a collection is a folder and a full-text table)."""
        check_collection_name(name)
        with self.store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO rag_collections (name, embed_model, created, owner) VALUES (?, ?, ?, ?)",
                         (name, embed_model, time.time(), int(owner)))
            holder = conn.execute("SELECT owner FROM rag_collections WHERE name = ?", (name,)).fetchone()[0]
            if holder != int(owner):
                raise InvalidInput(f"the name {name!r} is taken", "choose another name for your collection")
            _create_fts(conn, name)

    def find(self, name: str) -> dict | None:
        """The collection of that name, whoever owns it (the engine's own bookkeeping; reads for a person
        go through `collection`)."""
        rows = self.store.query("SELECT * FROM rag_collections WHERE name = ?", (check_collection_name(name),))
        return rows[0] if rows else None

    def collection(self, name: str, actor: User) -> dict:
        where, params = owner_filter(actor)
        rows = self.store.query(f"SELECT * FROM rag_collections WHERE name = ? AND {where}",
                                (check_collection_name(name), *params))
        if not rows:
            raise InvalidInput(f"there is no collection {name!r}",
                               "see `python -m llmos_core collections list`, or add documents to create it")
        return rows[0]

    def collections(self, actor: User) -> list[dict]:
        where, params = owner_filter(actor, "c.owner")
        return self.store.query(
            "SELECT c.name, c.embed_model, c.created, c.owner, COUNT(d.id) AS documents, "
            "COALESCE(SUM(d.chunks), 0) AS chunks, COALESCE(SUM(d.embedded), 0) AS embedded FROM rag_collections c "
            f"LEFT JOIN rag_documents d ON d.collection = c.name WHERE {where} GROUP BY c.name ORDER BY c.name", params)

    def documents(self, collection: str) -> list[dict]:
        return self.store.query("SELECT id, name, format, size, status, chunks, embedded, tokens, error, added "
                                "FROM rag_documents WHERE collection = ? ORDER BY name", (collection,))

    def document_text(self, document_id: int) -> str:
        rows = self.store.query("SELECT text FROM rag_documents WHERE id = ?", (document_id,))
        return rows[0]["text"] if rows else ""

    def add_document(self, collection: str, name: str, fmt: str, size: int, text: str, chunks: list[Chunk]) -> int:
        """Store a parsed document and its passages (not yet embedded); a file of the same name is replaced."""
        with self.store.transaction() as conn:
            _forget_text(conn, collection, name)
            conn.execute("DELETE FROM rag_documents WHERE collection = ? AND name = ?", (collection, name))
            document_id = conn.execute(
                "INSERT INTO rag_documents (collection, name, format, size, status, chunks, tokens, text, added) "
                "VALUES (?, ?, ?, ?, 'parsed', ?, ?, ?, ?)",
                (collection, name, fmt, size, len(chunks), len(text) // 4 + 1, text, time.time())).lastrowid
            conn.executemany("INSERT INTO rag_chunks (document_id, ordinal, heading, page, text) VALUES (?, ?, ?, ?, ?)",
                             [(document_id, c.ordinal, c.heading, c.page, c.text) for c in chunks])
            _index_text(conn, collection, document_id)
            _bump(conn, collection)
        return document_id

    def mark_failed(self, collection: str, name: str, fmt: str, size: int, error: str) -> None:
        with self.store.transaction() as conn:
            _forget_text(conn, collection, name)
            conn.execute("DELETE FROM rag_documents WHERE collection = ? AND name = ?", (collection, name))
            conn.execute("INSERT INTO rag_documents (collection, name, format, size, status, error, added) "
                         "VALUES (?, ?, ?, ?, 'failed', ?, ?)", (collection, name, fmt, size, error[:500], time.time()))

    def unembedded(self, document_id: int) -> list[dict]:
        return self.store.query("SELECT id, heading, text FROM rag_chunks WHERE document_id = ? AND vector IS NULL "
                                "ORDER BY ordinal", (document_id,))

    def store_vectors(self, document_id: int, ids: list[int], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        with self.store.transaction() as conn:
            conn.executemany("UPDATE rag_chunks SET vector = ? WHERE id = ?",
                             [(row.tobytes(), chunk_id) for chunk_id, row in zip(ids, vectors)])
            conn.execute("UPDATE rag_documents SET embedded = (SELECT COUNT(*) FROM rag_chunks WHERE document_id = ? "
                         "AND vector IS NOT NULL) WHERE id = ?", (document_id, document_id))
            conn.execute("UPDATE rag_documents SET status = 'embedded' WHERE id = ? AND embedded = chunks", (document_id,))
            conn.execute("UPDATE rag_collections SET version = version + 1 WHERE name = "
                         "(SELECT collection FROM rag_documents WHERE id = ?)", (document_id,))

    def remove_document(self, collection: str, name: str) -> bool:
        with self.store.transaction() as conn:
            _bump(conn, collection)
            _forget_text(conn, collection, name)
            return conn.execute("DELETE FROM rag_documents WHERE collection = ? AND name = ?",
                                (collection, name)).rowcount > 0

    def remove_collection(self, name: str, actor: User) -> bool:
        where, params = owner_filter(actor)
        check_collection_name(name)
        with self.store.transaction() as conn:
            if not conn.execute(f"SELECT 1 FROM rag_collections WHERE name = ? AND {where}", (name, *params)).fetchone():
                return False
            conn.execute(f"DROP TABLE IF EXISTS {fts_table(name)}")
            conn.execute("DELETE FROM rag_documents WHERE collection = ?", (name,))
            return conn.execute("DELETE FROM rag_collections WHERE name = ?", (name,)).rowcount > 0

    # ---- search ----
    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.store.query(f"SELECT c.id, d.name AS document, c.heading, c.page, c.text, c.ordinal FROM rag_chunks c "
                                f"JOIN rag_documents d ON d.id = c.document_id WHERE c.id IN ({marks})", tuple(ids))
        return {row["id"]: StoredChunk(**row) for row in rows}

    def search_text(self, collection: str, question: str, limit: int = FTS_CANDIDATES) -> list[tuple[int, float]]:
        """(passage id, BM25 score: higher is better) for passages holding any keyword of the question."""
        query = fts_query(question)
        if not query:
            return []
        table = fts_table(collection)
        try:   # FTS5 still scores every passage that matches; the LIMIT only spares the sort and the rows
            rows = self.store.execute(f"SELECT rowid, bm25({table}, 1.0, 0.5) AS score FROM {table} "
                                      f"WHERE {table} MATCH ? ORDER BY score LIMIT ?", (query, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []       # a collection deleted meanwhile
            raise
        return [(row[0], -row[1]) for row in rows]      # FTS5's bm25 is negative: lower is better

    def matrix(self, collection: str) -> tuple[np.ndarray, np.ndarray]:
        """(passage ids, (N, D) float32 vectors) of the collection's embedded passages, cached until it changes."""
        # (created, version): a collection deleted and made again under its name starts at version 0 again
        row = self.store.execute("SELECT created, version FROM rag_collections WHERE name = ?", (collection,)).fetchone()
        version = tuple(row) if row else None
        with self._lock:
            cached = self._matrices.get(collection)
            if cached and cached[0] == version:
                return cached[1], cached[2]
        rows = self.store.execute(
            "SELECT c.id, c.vector FROM rag_chunks c JOIN rag_documents d ON d.id = c.document_id "
            "WHERE d.collection = ? AND c.vector IS NOT NULL ORDER BY c.id", (collection,)).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = (np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
                   if rows else np.zeros((0, 0), dtype=np.float32))
        with self._lock:
            self._matrices[collection] = (version, ids, vectors)
        return ids, vectors

    def search_vectors(self, collection: str, query_vector, limit: int = FTS_CANDIDATES) -> list[tuple[int, float]]:
        """(passage id, cosine similarity) of the nearest passages, exactly (vectors are unit length)."""
        ids, vectors = self.matrix(collection)
        if not len(ids):
            return []
        query = np.asarray(query_vector, dtype=np.float32)
        if vectors.shape[1] != query.shape[0]:
            raise InvalidInput(f"the question's vector has {query.shape[0]} dimensions, the collection's "
                               f"{vectors.shape[1]}", "ask with the embedding model the collection was made with")
        scores = vectors @ query                                     # (N,)
        limit = min(limit, len(ids))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top])]
        return [(int(ids[i]), float(scores[i])) for i in top]
