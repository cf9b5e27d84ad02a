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
