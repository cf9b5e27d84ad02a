"""SQLite (WAL) access shared by the server, the CLI and job workers.

One connection per thread at a time (lent by sqlite_pool.py, which takes it back when the thread ends and lends
it to the next one); WAL lets readers and one writer work at once, and busy_timeout makes a writer wait for a
lock instead of failing.
Domain modules (conversations, jobs, monitor) keep their own queries; this module owns the schema,
the connections and the event log.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .paths import secure_database
from .sqlite_pool import Lease, pool_for

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,          -- load, unload, evict, refuse, job_start, job_end, ...
    subject TEXT NOT NULL,       -- a model name, a job id
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);

-- Models registered by the user (pulled hub ids, local folders, GGUF files, trained results).
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,        -- hub | local | gguf | trained
    location TEXT NOT NULL,      -- hub id, folder or file
    task TEXT NOT NULL DEFAULT 'causal-lm',
    description TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a regenerated reply gets a new id (tab conflicts)
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    stats TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, id);

-- Side-by-side comparisons: one prompt, the answers of two or three models (comparisons.py).
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    system TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',     -- the sampling every model used
    answers TEXT NOT NULL DEFAULT '[]',      -- [{model, text, stats, error}], in the order the models were picked
    created REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued',
    device TEXT NOT NULL DEFAULT 'cpu',
    est_memory INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}',
    exit_code INTEGER,
    pid INTEGER,
    pid_started REAL,
    log_path TEXT,
    resumable INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    est_seconds REAL,
    waiting TEXT,                         -- why a queued job has not started, written by the scheduler
    cancel_requested INTEGER NOT NULL DEFAULT 0,   -- set by any process; the scheduler acts on it
    resume INTEGER NOT NULL DEFAULT 0,    -- the next run continues from the last checkpoint
    runs INTEGER NOT NULL DEFAULT 0,
    ray_job_id TEXT,                      -- the Ray Jobs submission id, when it ran on a Ray cluster
    peak_memory INTEGER,
    freed_memory INTEGER,                 -- measured free after the end minus before it
    rerun_of INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, priority, created);

-- A running job's process tree, sampled by the scheduler every few seconds.
CREATE TABLE IF NOT EXISTS job_usage (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    rss_bytes INTEGER NOT NULL,
    cpu_percent REAL NOT NULL,
    gpu_bytes INTEGER,
    processes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS job_usage_job ON job_usage(job_id, ts);

CREATE TABLE IF NOT EXISTS job_metrics (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_metrics_job ON job_metrics(job_id, step);

-- Downsampled monitor history: resolution 10 (a day) and 60 (a week) seconds.
CREATE TABLE IF NOT EXISTS monitor_samples (
    resolution INTEGER NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (resolution, ts)
);
"""


# Columns added to existing tables after their first release: table -> {column: type}. `owner` (accounts/
# ownership.py): a user id, 0 for the local admin, which every row from before accounts gets.
_OWNER = "INTEGER NOT NULL DEFAULT 0"
_ADDED_COLUMNS = {"jobs": {"ray_job_id": "TEXT", "owner": _OWNER}, "conversations": {"owner": _OWNER},
                  "comparisons": {"owner": _OWNER}, "models": {"owner": _OWNER, "shared": "INTEGER NOT NULL DEFAULT 0"}}


class Store:
    """Thread-safe handle on the database file. Cheap to create; connections open lazily per thread."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        secure_database(self.path)   # 0600: conversations and job parameters are the user's own
        self._local = threading.local()
        self._pool = pool_for(self.path, self)
        self.connection().executescript(SCHEMA)   # idempotent: CREATE ... IF NOT EXISTS
        for table, columns in _ADDED_COLUMNS.items():
            self.add_columns(table, columns)

    def add_columns(self, table: str, columns: dict[str, str]) -> None:
        """A database made by an older version lacks columns added since: add them (CREATE IF NOT EXISTS does not)."""
        have = {row["name"] for row in self.query(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                try:
                    self.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:   # another process added it just now
                    if "duplicate column" not in str(exc):
                        raise

    def connection(self) -> sqlite3.Connection:
        lease = getattr(self._local, "lease", None)
        if lease is None or lease.conn is None:
            lease = self._local.lease = Lease(self._pool)
        return lease.conn

    def connection_stats(self) -> dict:
        """This process's connections to the file: open, idle (waiting for a thread), the most open at once."""
        return self._pool.stats()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front, so read-then-write cannot deadlock."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.connection().execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.connection().execute(sql, params).fetchall()]

    def close(self) -> None:
        """Closes this thread's connection (others go back to the pool when their threads end)."""
        lease = getattr(self._local, "lease", None)
        if lease is not None:
            lease.close()

    # ---- events: the log that monitor charts draw as markers ----
    def add_event(self, kind: str, subject: str, message: str, **data: Any) -> None:
        self.execute("INSERT INTO events (ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?)",
                     (time.time(), kind, subject, message, json.dumps(data, default=str)))

    def events(self, since: float = 0.0, kinds: tuple[str, ...] | None = None, limit: int = 200) -> list[dict]:
        sql = "SELECT * FROM events WHERE ts >= ?"
        params: list = [since]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params += list(kinds)
        rows = self.query(sql + " ORDER BY ts DESC LIMIT ?", (*params, limit))
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows
