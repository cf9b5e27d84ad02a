"""AppTest of a large upload on the Ask page: it becomes an `index` job (the threshold lowered to 0
bytes here), the collection is listed at once, and the page shows the job's state and progress from
the URL, and cancels it. The job is held queued by a limit of 0 index jobs, so no worker starts."""
import pytest

from llmos_core.usecases import ask
from llmos_core.accounts import LOCAL_ADMIN

POLICY = b"# Leave\n\n## Annual leave\n\nEvery employee receives 27 days of paid annual leave per year.\n"


@pytest.fixture
def held_jobs(monkeypatch):
    monkeypatch.setenv("LLMOS_JOB_LIMITS", "index@cpu=0,index@cuda=0")
    monkeypatch.setenv("LLMOS_INDEX_JOB_BYTES", "0")


def collection_box(at):
    """The Collection box: its key changes when an upload makes a collection (app_pages/ask.py says why)."""
    return next(box for box in at.selectbox if box.label == "Collection")



def test_a_large_upload_is_indexed_by_a_job_the_page_follows(held_jobs, app_engine, new_app):
    at = new_app()
    at.switch_page("app_pages/ask.py").run()
    at.text_input(key="ask_new_name").set_value("handbook").run()
    at.file_uploader(key="ask_upload").set_value([("policy.md", POLICY, "text/markdown")]).run()
    at.button(key="ask_add").click().run()
    assert not at.exception, at.exception
    assert collection_box(at).value == "handbook"
    job_id = int(at.query_params["ask_job"][0] if isinstance(at.query_params["ask_job"], list)
                 else at.query_params["ask_job"])
    job = app_engine.scheduler.get(job_id)
    assert job["kind"] == "index" and job["params"]["collection"] == "handbook"
    assert any(f"Job {job_id}" in m.value and "Index 1 file(s) into handbook" in m.value for m in at.markdown)
    assert [c["name"] for c in ask.list_collections(app_engine, LOCAL_ADMIN)] == ["handbook"]
    at.button(key="ask_job_cancel").click().run()
    assert not at.exception, at.exception
    assert app_engine.scheduler.get(job_id)["state"] == "cancelled"
