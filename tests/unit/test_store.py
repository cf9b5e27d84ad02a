import threading

from llmos_core.store import Store


def test_wal_mode_and_schema(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    assert store.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "models", "conversations", "messages", "jobs", "job_metrics", "monitor_samples"} <= tables


def test_events_round_trip_and_filter(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.add_event("load", "m1", "loaded m1", measured_bytes=10)
    store.add_event("evict", "m1", "evicted m1")
    assert [e["kind"] for e in store.events()] == ["evict", "load"]
    loads = store.events(kinds=("load",))
    assert loads[0]["data"] == {"measured_bytes": 10}


def test_writers_in_many_threads_lose_nothing(tmp_path):
    store = Store(tmp_path / "db.sqlite")

    def write(n):
        for i in range(50):
            store.add_event("t", str(n), str(i))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.query("SELECT COUNT(*) AS n FROM events")[0]["n"] == 400


def test_transaction_rolls_back_on_error(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    try:
        with store.transaction() as conn:
            conn.execute("INSERT INTO events (ts, kind, subject, message) VALUES (1, 'a', 'b', 'c')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert store.query("SELECT COUNT(*) AS n FROM events")[0]["n"] == 0


def _descriptors_on(path) -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            pass
    return count


def _in_threads(job, n: int, at_once: bool) -> None:
    threads = [threading.Thread(target=job) for _ in range(n)]
    for t in threads:
        t.start()
        if not at_once:
            t.join()
    for t in threads:
        t.join()


def test_threads_that_end_leave_no_descriptors_behind(tmp_path):
    # Issue 27's soak: a connection closed while another one of the process holds WAL's shared lock keeps its
    # descriptor open in SQLite; connections of ended threads are lent to the next threads instead.
    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.add_event("t", "main", "the main thread's connection")
    start = _descriptors_on(path)
    barrier = threading.Barrier(6)

    def work():
        barrier.wait()
        store.add_event("t", threading.current_thread().name, "x")

    _in_threads(work, 6, at_once=True)             # six at once: at most six connections ...
    after_burst = _descriptors_on(path)
    assert store.connection_stats()["peak"] <= 7
    for _ in range(3):                              # ... and forty more threads, and short-lived Stores, reuse them
        _in_threads(lambda: Store(path).add_event("t", "short-lived store", "x"), 20, at_once=False)
    assert _descriptors_on(path) == after_burst <= start + 6
    assert store.connection_stats()["open"] <= 7
    assert len(store.query("SELECT id FROM events WHERE kind = 't'")) == 1 + 6 + 60


def test_a_database_made_again_gets_new_connections_and_the_last_store_closes_them(tmp_path):
    import gc
    import os

    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.add_event("t", "old", "in the first file")
    worker = threading.Thread(target=lambda: store.add_event("t", "old", "from a thread"))
    worker.start()
    worker.join()
    assert store.connection_stats()["idle"] == 1
    del store, worker
    gc.collect()
    assert _descriptors_on(path) == 0               # the last Store on the file gone: every connection closed
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    again = Store(path)
    assert again.events() == []                     # not a connection to the deleted file
