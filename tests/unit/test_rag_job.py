"""The `index` job kind, run in-process through its JobContext (what the worker does), with a stand-in
embedder (hashed bag of words) so no model loads: it indexes the uploaded files in order, reports
progress and metrics, and a cancelled run keeps what it stored."""
from __future__ import annotations

import pytest

from llmos_core.embeddings import Embeddings, EmbeddingService
from llmos_core.engine import Engine
from llmos_core.errors import InvalidInput
from llmos_core.jobs.context import JobContext
from llmos_core.rag import job
from llmos_core.settings import Settings
from llmos_core.usecases import ask
from rag_samples import bag_of_words
from llmos_core.accounts import LOCAL_ADMIN

POLICY = b"# Travel\n\nTaxi rides are refunded up to 60 EUR.\n"
SECURITY = b"Password rules\n\nPasswords must be at least 14 characters long.\n"


@pytest.fixture
def engine(home, monkeypatch):
    monkeypatch.setattr(EmbeddingService, "embed", lambda self, model, texts: Embeddings(bag_of_words(texts), 0))
    eng = Engine(Settings.from_env(), primary=False, start_threads=False)
    yield eng
    eng.close()


def test_an_index_job_indexes_the_files_and_reports_progress(engine, monkeypatch):
    files = [("policy.md", POLICY), ("security.txt", SECURITY), ("broken.pdf", b"%PDF-1.4 no pdf at all")]
    monkeypatch.setenv("LLMOS_INDEX_JOB_BYTES", "100")
    assert ask.runs_as_job(files) and not ask.runs_as_job(files[:1])
    job_id = ask.submit_files(engine, LOCAL_ADMIN, "handbook", files, origin="web")
    row = engine.scheduler.get(job_id)
    assert row["kind"] == "index" and row["description"] == "Index 3 file(s) into handbook"
    ctx = JobContext(job_id=job_id, kind="index", params=row["params"], settings=engine.settings, store=engine.store,
                     work_dir=engine.settings.jobs_dir / str(job_id))
    result = job.run(ctx)
    assert [(f["name"], f["status"]) for f in result["files"]] == [
        ("policy.md", "embedded"), ("security.txt", "embedded"), ("broken.pdf", "failed")]
    assert {d["name"]: d["status"] for d in ask.list_documents(engine, LOCAL_ADMIN, "handbook")} == {
        "policy.md": "embedded", "security.txt": "embedded", "broken.pdf": "failed"}
    done = engine.scheduler.get(job_id)
    assert done["progress"] == 1.0 and done["message"].startswith("done: 2 passages from 3 file(s)")
    steps = engine.scheduler.metrics(job_id)
    assert len(steps) >= 3 and [s["files_done"] for s in steps] == sorted(s["files_done"] for s in steps)
    plan = ask.retrieve(ask.index_for(engine), "handbook", "How long must a password be?", bag_of_words)
    assert plan.found and plan.passages[0].chunk.document == "security.txt"


def test_a_cancelled_index_job_stops_and_keeps_what_it_stored(engine):
    job_id = ask.submit_files(engine, LOCAL_ADMIN, "handbook", [("policy.md", POLICY), ("security.txt", SECURITY)])
    ctx = JobContext(job_id=job_id, kind="index", params=engine.scheduler.get(job_id)["params"],
                     settings=engine.settings, store=engine.store, work_dir=engine.settings.jobs_dir / str(job_id))
    ctx.cancel()
    assert job.run(ctx)["cancelled"] is True
    assert ask.list_documents(engine, LOCAL_ADMIN, "handbook") == []


def test_the_web_may_index_only_files_in_the_data_folder(engine, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "0000-secret.txt").write_text("secret")
    with pytest.raises(InvalidInput, match="outside"):
        engine.scheduler.submit("index", {"input": str(outside), "collection": "x", "embed_model": "all-minilm-l6-v2"},
                                origin="web")
    with pytest.raises(InvalidInput, match="missing"):
        job.validate({"input": str(tmp_path / "nothing"), "collection": "x", "embed_model": "m"}, engine.settings)
