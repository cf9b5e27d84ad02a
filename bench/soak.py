"""Soak test: LLM OS under mixed load for a bounded time, on loopback only; does anything leak or break?

    python bench/soak.py [--minutes 20] [--api-clients 8] [--ask-clients 2] [--viewers 3] [--home DIR]
                         [--chat-model smollm2-135m-instruct] [--train-model NAME|FOLDER] [--json OUT]

This process is the server, as the app's is: one Engine (scheduler, sampler, API on 127.0.0.1). The load:
  - API clients streaming chats, from a child process (bench/soak_client.py, stdlib only: what they cost is
    not the server's);
  - one hostile client there too, in a loop: made-up model names, a 20 MB body (declared, and chunked),
    a foreign Host header, too many and too long stop strings; each must get its 4xx;
  - Ask clients (retrieve + answer, as the page does, in this process), one question in ten too long;
  - Monitor viewers reading the live feed document each second (what the browser fetches);
  - the page writing the translation memory and glossary, while translation jobs (worker processes,
    resubmitted as each ends) read them; and one short training job.
Reported: requests by outcome and status, p50/p95 time to first token per minute, RSS per minute (engine,
and its workers), file descriptors and threads at start and end, database size. Hard targets (exit 1):
no 5xx, every hostile request refused as it should be, fds and threads back to their start once the load
stops, the memory and glossary holding every entry written; RSS growth of the engine under 5% from minute 5
to the end (from minute 1 when the run is under 5 minutes, then only a warning). --max-requests bounds the
API requests in all. The data folder is a fresh temporary one unless --home is given.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soak_client import chat_once, hostile_once  # noqa: E402  (bench/ is the script's folder)

TEXT = ("LLM OS runs language models on this machine. It can chat, translate documents and fine-tune a model on "
        "your own text, while a monitor shows what the CPU, the memory and the GPUs are doing. The memory manager "
        "unloads idle models after ten minutes. Jobs run as child processes and write progress to SQLite.\n\n")
QUESTIONS = ["What can LLM OS do?", "When are idle models unloaded?", "Where do jobs write their progress?"]


# ---------------------------------------------------------------- the server side

def process_figures(pid: int, exclude: set[int], store) -> dict:
    import psutil

    engine = psutil.Process(pid)
    workers = [p for p in engine.children(recursive=True) if p.pid not in exclude]
    worker_rss = 0
    for p in workers:
        try:
            worker_rss += p.memory_info().rss
        except psutil.Error:
            pass
    return {"t": time.time(), "engine_rss": engine.memory_info().rss, "workers_rss": worker_rss,
            "workers": len(workers), "fds": engine.num_fds(), "threads": engine.num_threads(),
            "pool_threads": pool_threads(), "connections": store.connection_stats()["open"]}


def open_files() -> Counter:
    """What this process's descriptors point at (sockets and pipes by kind), to name what was not closed."""
    found = Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        found[target.split(":")[0] + ":" if target.startswith(("socket:", "pipe:", "anon_inode:")) else target] += 1
    return found


# Thread pools that keep idle threads, each bounded (asyncio's or uvloop's executor: min(32, cores + 4);
# AnyIO's workers for sync routes expire after 10 s idle): not leaks, counted apart.
POOLS = ("uvloop_", "asyncio_", "AnyIO worker thread", "ThreadPoolExecutor")


# psutil may hold a /proc file of a worker gone; nothing else may stay open. SQLite connections are lent to
# threads by the store's pool (llmos_core/sqlite_pool.py) and taken back when a thread ends, never closed while
# the file is in use: each one the load added (bounded by the threads using the store at once) is counted apart,
# two descriptors each (the file and its WAL; the shared memory is one per process).
FD_SLACK = 4


def pool_threads() -> int:
    return sum(t.name.startswith(POOLS) for t in threading.enumerate())


def sqlite_connections() -> int:
    """SQLite connections alive in this process (a leak of them is what the descriptors would hide)."""
    import gc
    import sqlite3
    import warnings

    with warnings.catch_warnings():   # isinstance() on every object touches deprecated module attributes
        warnings.simplefilter("ignore")
        return sum(isinstance(o, sqlite3.Connection) for o in gc.get_objects())


def db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("llmos.db*") if p.is_file())


def back(start: dict, end: dict, slack: int = FD_SLACK) -> bool:
    """Descriptors and threads back to their start figure. Bounded pools' idle threads are not counted (they
    may not pass their bounds), nor the connections the store's pool added (two descriptors each: the note
    above FD_SLACK), nor `slack` more."""
    pooled = max(0, end["connections"] - start["connections"])
    return (end["fds"] <= start["fds"] + 2 * pooled + slack and end["pool_threads"] <= 32 + 40
            and end["threads"] - end["pool_threads"] <= start["threads"] - start["pool_threads"])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Soak:
    def __init__(self, args):
        from llmos_core.engine import Engine
        from llmos_core.settings import Settings

        self.args = args
        self.home = Path(args.home or tempfile.mkdtemp(prefix="llmos-soak-"))
        self.engine = Engine(Settings.from_env(home=self.home, api_max_body_mb=4), primary=True, start_threads=True)
        self.stop = threading.Event()
        self.records: list[dict] = []          # in-process outcomes: ask, viewer, jobs
        self.lock = threading.Lock()
        self.written: dict[str, dict] = {"memory": {}, "glossary": {}}
        self.samples: list[dict] = []
        self.created = time.time()
        self.fd_slack = FD_SLACK

    def say(self, text: str) -> None:
        print(f"soak +{time.time() - self.created:.0f}s: {text}", file=sys.stderr, flush=True)

    def record(self, **fields) -> None:
        with self.lock:
            self.records.append({"t": time.time(), **fields})

    # ---- setup
    def prepare(self) -> None:
        from llmos_core.accounts import LOCAL_ADMIN
        from llmos_core.usecases import ask

        engine, args = self.engine, self.args
        from llmos_core.api.server import start_api
        start_api(engine, "127.0.0.1", 0)
        train = args.train_model
        if Path(train).is_dir():
            train = engine.catalog.register(engine.catalog.resolve(train)).name
        self.train_model = train
        ask.add_files(engine, LOCAL_ADMIN, "soak", [("llmos.md", (TEXT * 3).encode())])
        (self.home / "soak").mkdir(exist_ok=True)
        self.document = self.home / "soak" / "letter.txt"
        self.document.write_text("Dear team,\n\nThe new release is ready. Please test the translation page.\n\n"
                                 "Thank you for your help.\n")
        self.training_data = self.home / "soak" / "notes.txt"
        self.training_data.write_text(TEXT * 20)
        # warm-up: every path once, and the API's pools as wide as the load will make them
        self.ask_once(QUESTIONS[0])
        warm = [threading.Thread(target=chat_once, args=(engine.api.port, args.chat_model, 4))
                for _ in range(args.api_clients)]
        for thread in warm:
            thread.start()
        for thread in warm:
            thread.join()
        for i in range(6):   # the hostile cycle once: its refusals touch the store from the API's own thread
            hostile_once(engine.api.port, args.chat_model, i)
        self.feed = engine.monitor_feed()

    def ask_once(self, question: str) -> None:
        from llmos_core.generation import SamplingParams
        from llmos_core.accounts import LOCAL_ADMIN
        from llmos_core.usecases import ask

        params = SamplingParams.for_model(self.engine.catalog.get(self.args.chat_model).sampling, max_new_tokens=24)
        plan = ask.prepare(self.engine, LOCAL_ADMIN, "soak", question, self.args.chat_model, params)
        ask.answer(self.engine, plan, params)

    # ---- load
    def asker(self, n: int) -> None:
        from llmos_core.errors import InvalidInput, LLMOSError

        i = 0
        while not self.stop.is_set():
            long = i % 10 == 9
            started = time.time()
            try:
                self.ask_once("why " * 20_000 if long else QUESTIONS[(i + n) % len(QUESTIONS)])
                self.record(kind="ask", outcome="unexpected answer" if long else "ok", s=time.time() - started)
            except InvalidInput as exc:
                self.record(kind="ask", outcome="refused" if long else f"error: {exc}", s=time.time() - started)
            except LLMOSError as exc:
                self.record(kind="ask", outcome=f"error: {type(exc).__name__}: {exc}")
            i += 1

    def viewer(self) -> None:
        while not self.stop.wait(1.0):
            try:
                samples = json.loads(self.feed.data)   # what the gate serves each viewer each second
                self.record(kind="viewer", outcome="ok" if samples else "empty")
            except (OSError, ValueError) as exc:
                self.record(kind="viewer", outcome=f"error: {type(exc).__name__}")

    def teacher(self) -> None:
        """The Translate page's corrections and glossary terms, while jobs read both files."""
        from llmos_core.translation.glossary import Glossary
        from llmos_core.translation.memory import TranslationMemory

        memory, glossary = TranslationMemory.for_home(self.home), Glossary.for_home(self.home)
        i = 0
        while not self.stop.wait(2.0):
            source, target = f"Soak sentence {i}.", f"Soak-Satz {i}."
            memory.add("en", "de", {source: target})
            glossary.put("en", "de", f"soakterm{i}", f"Soakbegriff{i}")
            self.written["memory"][source] = target
            self.written["glossary"][f"soakterm{i}"] = f"Soakbegriff{i}"
            i += 1

    def jobs(self) -> None:
        from llmos_core.accounts import LOCAL_ADMIN
        from llmos_core.usecases import train as train_use

        scheduler = self.engine.scheduler
        training = None
        run = None if not self.args.train else train_use.check_run({"model": self.train_model, "data": str(self.training_data), "max_steps": 4,
                                   "block_size": 32, "batch_size": 2, "name": f"soak-{os.getpid()}-{int(time.time())}"},
                                  self.engine.settings)
        if run is not None:
            training = train_use.submit(self.engine, LOCAL_ADMIN, run)
        translation = None
        while not self.stop.is_set():
            if translation is None or scheduler.get(translation)["state"] in ("succeeded", "failed", "cancelled",
                                                                               "interrupted"):
                if translation is not None:
                    self.record(kind="translate job", outcome=scheduler.get(translation)["state"])
                translation = scheduler.submit("translate", {"input": str(self.document), "target": "de", "source": "en",
                                                             "model": self.args.chat_model})
            self.stop.wait(1.0)
        self.job_ids = [job for job in (training, translation) if job is not None]

    def sample(self, exclude: set[int]) -> None:
        while not self.stop.wait(10.0):
            self.samples.append(process_figures(os.getpid(), exclude, self.engine.store))

    def run(self) -> int:
        args = self.args
        self.prepare()
        self.say("warmed up; the load starts")
        start = process_figures(os.getpid(), set(), self.engine.store)
        start_db = db_bytes(self.home)
        start_names = Counter(t.name for t in threading.enumerate())
        self.start_files = open_files()
        self.start_connections = sqlite_connections()
        began = time.time()
        client = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("soak_client.py")), "--port", str(self.engine.api.port), "--seconds",
             str(args.minutes * 60), "--api-clients", str(args.api_clients), "--chat-model", args.chat_model,
             "--tokens", str(args.tokens), "--max-requests", str(args.max_requests)],
            stdout=subprocess.PIPE, text=True)
        api_records: list[dict] = []
        reader = threading.Thread(target=lambda: api_records.extend(json.loads(line) for line in client.stdout))
        reader.start()
        load = ([threading.Thread(target=self.asker, args=(n,)) for n in range(args.ask_clients)]
                + [threading.Thread(target=self.viewer) for _ in range(args.viewers)]
                + [threading.Thread(target=self.teacher), threading.Thread(target=self.jobs),
                   threading.Thread(target=self.sample, args=({client.pid},))])
        for thread in load:
            thread.start()
        client.wait(timeout=args.minutes * 60 + 300)
        reader.join()
        client.stdout.close()
        self.stop.set()
        for thread in load:
            thread.join(timeout=300)
        self.samples.append(process_figures(os.getpid(), {client.pid}, self.engine.store))
        self.say("the load has stopped; waiting for the last jobs")
        self.finish_jobs()
        self.say("jobs ended; waiting for descriptors and threads to settle")
        end = self.settle(start)
        return self.report(began, start, end, start_db, api_records, start_names)

    def finish_jobs(self, grace_s: float = 300.0) -> None:
        """The last jobs run to their end (a short training and a short translation), then their state counts."""
        scheduler = self.engine.scheduler
        deadline = time.time() + grace_s
        for job_id in getattr(self, "job_ids", []):
            late = False
            while scheduler.get(job_id)["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
                if time.time() > deadline:
                    scheduler.cancel(job_id)
                    late = True
                    break
                time.sleep(1.0)
            job = scheduler.get(job_id)
            outcome = "cancelled: not done within the grace after the load" if late else job["state"]
            self.record(kind=f"{job['kind']} job", outcome=outcome + (f": {job.get('error')}"
                                                                      if job["state"] == "failed" else ""))

    def settle(self, start: dict, wait_s: float = 60.0) -> dict:
        """Figures once the load is gone: waits (bounded) for fds and threads to come back."""
        import gc

        deadline = time.time() + wait_s
        while True:
            gc.collect()   # what only a cycle still holds (a connection in a dead thread's frame) goes now
            end = process_figures(os.getpid(), set(), self.engine.store)
            if back(start, end, self.fd_slack) or time.time() > deadline:
                return end
            time.sleep(2.0)

    # ---- report
    def report(self, began: float, start: dict, end: dict, start_db: int, api: list[dict], start_names) -> int:
        from llmos_core.translation.glossary import Glossary
        from llmos_core.translation.memory import TranslationMemory

        args, lines, hard, warn = self.args, [], [], []
        by_status = Counter((r["kind"], r["status"]) for r in api)
        lines.append(f"soak: {args.minutes} min, {args.api_clients} API clients, {args.ask_clients} Ask clients, "
                     f"{args.viewers} viewers; model {args.chat_model}; data folder {self.home}")
        lines.append("API requests by kind and status: " + ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(by_status.items())))
        wrong = Counter(f"{r['name']} -> {r['status']} (wanted {r['expected']})" for r in api
                        if r["kind"] == "hostile" and r["status"] != r["expected"])
        lines.append(f"hostile requests: {sum(r['kind'] == 'hostile' for r in api)}, answered otherwise than "
                     f"wanted: {dict(wrong) or 'none'}")
        outcomes = Counter((r["kind"], r["outcome"][:120]) for r in self.records)
        lines.append("in-process: " + ", ".join(f"{k} {o}: {n}" for (k, o), n in sorted(outcomes.items())))
        lines.append("minute  chats  ttft p50  ttft p95  engine RSS  workers RSS")
        per_minute = defaultdict(list)
        for r in api:
            if r["kind"] == "chat" and r.get("ttft") is not None:
                per_minute[int((r["t"] - began) // 60)].append(r["ttft"])
        rss = {}
        for s in self.samples:
            rss[int((s["t"] - began) // 60)] = s
        for minute in range(max([*per_minute, *rss, 0]) + 1):
            ttfts, s = per_minute.get(minute, []), rss.get(minute)
            p50, p95 = percentile(ttfts, 0.5), percentile(ttfts, 0.95)
            lines.append(f"{minute:>6}  {len(ttfts):>5}  " + (f"{p50 * 1000:>6.0f} ms  {p95 * 1000:>6.0f} ms" if ttfts else
                                                              f"{'-':>9}  {'-':>9}")
                         + (f"  {s['engine_rss'] / 2**20:>7.0f} MB  {s['workers_rss'] / 2**20:>8.0f} MB" if s else ""))
        lines.append(f"fds {start['fds']} -> {end['fds']}, threads {start['threads']} -> {end['threads']} (of which "
                     f"idle pool threads {start['pool_threads']} -> {end['pool_threads']}), "
                     f"database {start_db / 2**20:.1f} -> {db_bytes(self.home) / 2**20:.1f} MB")
        # targets
        fives = sum(n for (k, s), n in by_status.items() if s >= 500)
        if fives:
            hard.append(f"{fives} responses with a 5xx status")
        if wrong:
            hard.append(f"hostile requests answered otherwise than wanted: {dict(wrong)}")
        if not any(r["kind"] == "chat" and r["status"] == 200 for r in api):
            hard.append("no chat was served")
        failed = [o for (k, o) in outcomes if o.startswith(("error", "unexpected", "failed"))]
        if failed:
            hard.append(f"in-process failures: {failed[:5]}")
        if not back(start, end, self.fd_slack):
            extra = Counter(t.name for t in threading.enumerate()) - start_names
            hard.append(f"fds {start['fds']} -> {end['fds']} or threads {start['threads']} -> {end['threads']} not "
                        f"back to their start (threads left: {dict(extra)}; descriptors left: "
                        f"{dict(open_files() - self.start_files)})")
        memory = TranslationMemory.for_home(self.home).entries("en", "de")
        glossary = Glossary.for_home(self.home).entries("en", "de")
        lost = [k for k, v in self.written["memory"].items() if memory.get(k) != v]
        lost += [k for k, v in self.written["glossary"].items() if glossary.get(k) != v]
        connections, pool = sqlite_connections(), self.engine.store.connection_stats()
        # Every connection alive is the pool's (none leaked outside it), and the pool holds no more than the
        # threads that used the store at once.
        if connections - self.start_connections > pool["open"] - start["connections"]:
            hard.append(f"{connections} SQLite connections open, {self.start_connections} at the start, but the "
                        f"store's pool went from {start['connections']} to {pool['open']}")
        lines.append(f"threads now: {sorted(t.name for t in threading.enumerate())}; descriptors beyond the start: "
                     f"{dict(open_files() - self.start_files)}; SQLite connections open: {connections} "
                     f"(at the start: {self.start_connections}); the store's pool: {pool['open']} open "
                     f"({pool['idle']} idle, lent to the next threads), {start['connections']} at the start, "
                     f"at most {pool['peak']} at once")
        lines.append(f"translation memory: {len(self.written['memory'])} written, {len(memory)} held; glossary: "
                     f"{len(self.written['glossary'])} written, {len(glossary)} held")
        if lost:
            hard.append(f"{len(lost)} memory or glossary entries lost: {lost[:5]}")
        first_minute = 5 if args.minutes >= 5 else 1
        during = [s for s in self.samples if s["t"] - began <= args.minutes * 60 + 30]
        reference = next((s for s in during if s["t"] - began >= first_minute * 60), None)
        if reference and during:
            growth = during[-1]["engine_rss"] / reference["engine_rss"] - 1
            lines.append(f"engine RSS growth from minute {first_minute} to the end: {growth * 100:+.1f}%")
            if growth >= 0.05:
                (hard if args.minutes >= 5 else warn).append(f"engine RSS grew {growth * 100:.1f}% (target < 5%)")
        print("\n".join(lines))
        for text in warn:
            print(f"WARNING: {text}")
        for text in hard:
            print(f"FAILED: {text}")
        print("PASSED: every hard target met" if not hard else f"{len(hard)} hard target(s) failed")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "minutes": args.minutes, "by_status": {f"{k} {s}": n for (k, s), n in by_status.items()},
                "in_process": {f"{k} {o}": n for (k, o), n in outcomes.items()}, "samples": self.samples,
                "start": start, "end": end, "hard": hard, "warnings": warn, "report": lines}, indent=1))
        return 1 if hard else 0

    def close(self) -> None:
        self.engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--api-clients", type=int, default=8)
    parser.add_argument("--ask-clients", type=int, default=2)
    parser.add_argument("--viewers", type=int, default=3)
    parser.add_argument("--chat-model", default="smollm2-135m-instruct")
    parser.add_argument("--train-model", default="smollm2-135m-instruct", help="a catalog name or a model folder")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                        help="run the short training job (--no-train: CI's shortest form)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per streamed chat")
    parser.add_argument("--max-requests", type=int, default=200_000, help="API requests in all, at most")
    parser.add_argument("--home", help="data folder (default: a fresh temporary one)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be over 0 and at most a day")
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main())
