"""The Jobs page in AppTest, against the test's real engine and scheduler running real benchmark workers.

AppTest runs the app in this process, so the page finds the engine made here; fragment timers never
fire in AppTest, so each check does a plain rerun.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from job_helpers import wait_for
from streamlit.testing.v1 import AppTest


APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def eng(app_engine, monkeypatch):
    """The raw JSON forms need LLMOS_ADMIN=1, the crash hooks LLMOS_DEV=1 (tests/app/test_security.py checks
    both are off by default)."""
    monkeypatch.setenv("LLMOS_ADMIN", "1")
    monkeypatch.setenv("LLMOS_DEV", "1")
    return app_engine


def jobs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/jobs.py").run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest, column: str):
    """The dataframe that has `column` (AppTest drops dataframes' keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_submit_watch_cancel_resume_from_the_page(eng):
    at = jobs_page()
    assert any("No jobs yet" in i.value for i in at.info)
    at.text_area(key="jobs_submit_params").input('{"memory_mb": 20, "seconds": 60}')
    button(at, "Submit").click().run()
    assert not at.exception, at.exception
    (job,) = eng.scheduler.list()
    wait_for(lambda: eng.scheduler.get(job["id"])["pid"] and eng.scheduler.metrics(job["id"]))
    at.run()
    assert at.subheader[0].value == "Running (1)"
    assert "holding 20 MB" in at.code[0].value   # the live log tail
    at.button(key=f"jobs_cancel_{job['id']}").click().run()
    wait_for(lambda: "processes gone" in eng.scheduler.get(job["id"])["message"])
    at.run()
    assert at.subheader[0].value == "Running (0)"
    history = table(at, "exit code")
    assert list(history["state"]) == ["cancelled"]
    assert not at.button(key="jobs_detail_resume").disabled
    at.button(key="jobs_detail_resume").click().run()
    assert eng.scheduler.get(job["id"])["state"] in ("queued", "running")
    wait_for(lambda: eng.scheduler.get(job["id"])["state"] == "running")
    at.run()
    at.button(key="jobs_detail_cancel").click().run()
    wait_for(lambda: "processes gone" in eng.scheduler.get(job["id"])["message"])


def test_failed_job_rerun_with_edits_delete_and_bad_json(eng):
    failed = eng.scheduler.submit("benchmark", {"memory_mb": 1, "seconds": 5, "crash": "exit", "exit_code": 9})
    wait_for(lambda: eng.scheduler.get(failed)["state"] == "failed" and failed not in eng.scheduler.loop.running)
    at = jobs_page()
    assert any("exited with code 9" in e.value and "exit code 9" in e.value for e in at.error)
    assert any("crashing on purpose" in c.value for c in at.code)   # the log on the job's page
    at.toggle(key="jobs_detail_rerun").set_value(True).run()
    at.text_area(key=f"jobs_rerun_params_{failed}").input('{"memory_mb": 1, "seconds": 0.1}')
    button(at, "Submit as a new job").click().run()
    assert not at.exception, at.exception
    newest = eng.scheduler.list()[0]
    assert newest["id"] != failed and newest["rerun_of"] == failed and newest["params"]["seconds"] == 0.1
    wait_for(lambda: eng.scheduler.get(newest["id"])["state"] == "succeeded")

    at.selectbox(key="jobs_selected").set_value(failed).run()
    at.button(key="jobs_detail_delete").click().run()
    assert [j["id"] for j in eng.scheduler.list()] == [newest["id"]]

    at.text_area(key="jobs_submit_params").input("{not json")
    button(at, "Submit").click().run()
    assert any("not valid JSON" in e.value for e in at.error)
    at.text_area(key="jobs_submit_params").input('{"memory_mb": 1e9}')
    button(at, "Submit").click().run()
    assert any("make the job smaller" in e.value for e in at.error)
    assert len(eng.scheduler.list()) == 1


def test_queued_job_says_why_it_waits(eng, monkeypatch):
    monkeypatch.setattr(eng.scheduler, "limits", {("benchmark", "cpu"): 1})
    first = eng.scheduler.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    second = eng.scheduler.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    wait_for(lambda: eng.scheduler.get(second)["waiting"])
    at = jobs_page()
    queue = table(at, "waits because")
    assert list(queue["id"]) == [second] and "at most 1 benchmark job" in queue["waits because"][0]
    at.selectbox(key="jobs_selected").set_value(second).run()
    assert any("at most 1 benchmark job" in i.value for i in at.info)
    at.button(key="jobs_detail_cancel").click().run()
    assert eng.scheduler.get(second)["state"] == "cancelled"
    eng.scheduler.cancel(first)
