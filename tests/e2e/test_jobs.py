"""The Jobs page in Chromium: submit, watch the live part update by itself, cancel; and kill -9 of the
server mid-job: the job outlives it and a restarted server reattaches it."""
from __future__ import annotations

import os
import signal

import pytest
from browser_helpers import screenshot, wait_idle
from job_helpers import kill_jobs, wait_for

from llmos_core.jobs import resources
from llmos_core.jobs.scheduler import JobScheduler
from llmos_core.settings import Settings
from llmos_core.store import Store


def scheduler_of(home) -> JobScheduler:
    settings = Settings(home=home)
    return JobScheduler(settings, Store(settings.db_path))   # never started: reads and writes the store only


def running_card(page, job_id: int):
    return page.locator(f".st-key-jobs_running_{job_id}")


@pytest.mark.e2e
def test_submit_watch_and_cancel(app_server, page):
    server = app_server(env={"LLMOS_ADMIN": "1"})   # the raw JSON form is for admins only
    sched = scheduler_of(server.home)
    try:
        page.goto(f"{server.url}/jobs")
        page.get_by_text("Submit a job").click()
        box = page.get_by_label("Parameters (JSON)")
        box.fill('{"memory_mb": 50, "seconds": 120}')
        page.get_by_role("button", name="Submit").click()
        page.get_by_text("queued.").wait_for(timeout=30_000)
        job_id = sched.list()[0]["id"]
        card = running_card(page, job_id)
        card.wait_for(timeout=30_000)   # the fragment redraws by itself: no click needed
        card.get_by_text("holding 50 MB").wait_for(timeout=30_000)
        first = card.locator('[data-testid="stProgress"]').get_attribute("aria-valuenow") or ""
        page.wait_for_function(
            """([key, first]) => { const bar = document.querySelector(`.st-key-${key} [role="progressbar"]`);
                                   return bar && bar.getAttribute('aria-valuenow') !== first; }""",
            arg=[f"jobs_running_{job_id}", first], timeout=15_000)
        screenshot(page, "jobs-running")
        card.get_by_role("button", name="Cancel").click()
        wait_for(lambda: "processes gone" in sched.get(job_id)["message"], timeout=30, what="the cancel")
        card.wait_for(state="detached", timeout=15_000)
        wait_idle(page)
        page.get_by_text("Running (0)").wait_for(timeout=15_000)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=15_000)   # the history table
        screenshot(page, "jobs-cancelled")
    finally:
        kill_jobs(sched)


@pytest.mark.e2e
def test_kill_9_of_the_server_mid_job_then_restart_reattaches(app_server, page, tmp_path):
    home = tmp_path / "home"
    first = app_server(home)
    sched = scheduler_of(home)
    try:
        page.goto(f"{first.url}/jobs")   # the first session makes the engine, and with it the scheduler
        page.get_by_text("Nothing is running.").wait_for(timeout=60_000)
        job_id = sched.submit("benchmark", {"memory_mb": 30, "seconds": 300})
        running_card(page, job_id).wait_for(timeout=30_000)
        worker = wait_for(lambda: resources.process_if_same(sched.get(job_id)["pid"], sched.get(job_id)["pid_started"]))

        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        assert resources.is_alive(worker), "the job died with the server"
        assert sched.get(job_id)["state"] == "running"

        second = app_server(home)
        page.goto(f"{second.url}/jobs")
        running_card(page, job_id).wait_for(timeout=60_000)
        wait_for(lambda: [e for e in sched.store.events(kinds=("job_reattach",)) if e["subject"] == str(job_id)],
                 what="the reattach event")
        assert sched.get(job_id)["pid"] == worker.pid
        running_card(page, job_id).get_by_role("button", name="Cancel").click()
        wait_for(lambda: "processes gone" in sched.get(job_id)["message"], timeout=30, what="the cancel")
        assert sched.get(job_id)["state"] == "cancelled" and not resources.is_alive(worker)
    finally:
        kill_jobs(sched)
