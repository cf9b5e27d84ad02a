"""The SQLite connections of one process to one database file, lent to threads and taken back when they end.

Why not open a connection per thread and close it when the thread ends: in WAL mode every open connection
holds a shared lock on the database file, and SQLite's unix VFS cannot close a descriptor of a file the
process holds a POSIX lock on (closing any descriptor would drop every lock of the process on it), so the
descriptor of each closed connection stays open on SQLite's pending list while any other connection lives,
which in a server is always. Threads come and go (request workers idle out, jobs start threads, the engine
builds short-lived Store objects), so those descriptors piled up: the soak test ended with 18-20 more
than it began with (issue 27). Here a connection is never closed while the file is in use: a thread that
ends gives its connection back and the next thread takes it, with no descriptor opened or closed; the
connections open at once are bounded by the threads using the store at once (`stats`). When the last Store
on the file goes, the idle connections are closed (with no lock left, their descriptors close too).
"""
from __future__ import annotations

import sqlite3
import threading
import weakref
from pathlib import Path

_POOLS: dict[tuple, "ConnectionPool"] = {}
_POOLS_LOCK = threading.Lock()


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class ConnectionPool:
    """The connections to one file: `idle` ones wait for the next thread; `open` counts them all."""

    def __init__(self, path: Path, key: tuple):
        self.path, self.key = path, key
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._stores = 0          # Store objects on this file; the last one gone closes the idle connections
        self.open = self.peak = 0

    def take(self) -> sqlite3.Connection:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self.open += 1
                self.peak = max(self.peak, self.open)
        if conn is None:
            try:
                return _configure(sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                                  check_same_thread=False))
            except BaseException:
                with self._lock:
                    self.open -= 1
                raise
        # What its last thread may have left: an open transaction (a thread that died inside one), its own
        # busy timeout (the monitor's shorter one).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self._stores > 0:
                self._idle.append(conn)
                return
            self.open -= 1
        conn.close()

    def forget(self, conn: sqlite3.Connection) -> None:
        """A connection closed by its thread (Store.close): no longer counted."""
        with self._lock:
            self.open -= 1

    def stats(self) -> dict:
        with self._lock:
            return {"open": self.open, "idle": len(self._idle), "peak": self.peak}

    def _store_made(self) -> None:
        with self._lock:
            self._stores += 1

    def _store_gone(self) -> None:
        with self._lock:
            self._stores -= 1
            if self._stores > 0:
                return
            idle, self._idle = self._idle, []
            self.open -= len(idle)
            with _POOLS_LOCK:
                if _POOLS.get(self.key) is self:
                    del _POOLS[self.key]
        for conn in idle:
            conn.close()


def pool_for(path: Path, owner: object) -> ConnectionPool:
    """The pool of `path`'s connections, counting `owner` (a Store) among its users until it is collected.
    Keyed by the file itself (device and inode), so a database deleted and made again never gets a connection
    to the old one."""
    path = Path(path).resolve()
    found = path.stat()
    key = (path, found.st_dev, found.st_ino)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ConnectionPool(path, key)
        pool._store_made()
    weakref.finalize(owner, pool._store_gone)
    return pool


class Lease:
    """A thread's connection, kept in the Store's thread-local storage: when the thread ends (or the Store
    goes), the lease is collected and its connection goes back to the pool."""

    __slots__ = ("conn", "pool", "__weakref__")

    def __init__(self, pool: ConnectionPool):
        self.pool, self.conn = pool, pool.take()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.forget(conn)
            conn.close()

    def __del__(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.give_back(conn)
