"""The Train page in Chromium: upload text, launch a LoRA job on a tiny model, watch the loss chart grow
as the fragment redraws, stop it (a checkpoint is kept) and resume it to the end."""
from __future__ import annotations

import time

import pytest
from browser_helpers import register_model, screenshot, wait_idle
from playwright.sync_api import expect

from llmos_core.engine import Engine
from llmos_core.settings import Settings

FOX = "The quick brown fox jumps over the lazy dog."
POINTS = """() => { const g = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
    if (!g || !g._fullData) return 0;   // _fullData: the traces with their arrays decoded
    const t = g._fullData.find(d => d.name === 'training loss'); return t && t.x ? t.x.length : 0; }"""


def chart_points(page) -> int:
    return page.evaluate(POINTS)


def wait_points(page, more_than: int, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        points = chart_points(page)
        if points > more_than:
            return points
        time.sleep(0.5)
    raise AssertionError(f"the loss chart did not grow past {more_than} points")


@pytest.mark.e2e
# The longest browser flow (about 90 s: launch, watch, stop, resume, result), and the one that has failed
# now and then in full-suite runs at different steps; a failure saves a screenshot (test-artifacts/failed-*).
# One cause is gone (before Start training, the check read the default model's GGUF header, about 10 s a
# read, twice a run, over 60 s on a crowded machine); the reruns stay for the failures at later steps.
@pytest.mark.flaky(reruns=2)
def test_launch_lora_watch_the_curve_grow_stop_and_resume(app_server, page, tmp_path, tiny_base):
    home = tmp_path / "home"
    register_model(home, tiny_base, "tiny")
    server = app_server(home, env={"LLMOS_THREADS": "1"})
    data = tmp_path / "fox.txt"
    data.write_text("\n\n".join([FOX] * 60))

    page.goto(f"{server.url}/train")
    page.get_by_text("Upload a data file to begin").wait_for(timeout=60_000)
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(data))
    page.get_by_text("rows of").first.wait_for(timeout=60_000)
    wait_idle(page)
    model_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Start from").locator("input")
    model_box.click()
    model_box.fill("tiny")
    page.keyboard.press("Enter")
    wait_idle(page)
    assert model_box.input_value() == "tiny"
    wait_idle(page)
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Settings").click()
    steps = page.get_by_label("Max steps (0 = epochs)", exact=True)
    planned = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("Steps", exact=True))
    # 1500 steps: long enough to watch, a few ms a step on the tiny model. The check and the estimate of
    # these settings (the first one benchmarks the machine) take a few seconds, more on a crowded machine.
    # A value typed while the page is still re-running can be lost (seen once in CI: the field showed 1500,
    # the estimate never did), so it is typed again until the estimate shows it, as a person would.
    for attempt in range(4):
        wait_idle(page)
        steps.fill("1500")
        steps.press("Enter")
        try:
            expect(planned.locator('[data-testid="stMetricValue"]')).to_have_text("1500", timeout=45_000)
            break
        except AssertionError:
            if attempt == 3:
                raise
    start = page.get_by_role("button", name="Start training")
    start.wait_for(timeout=180_000)
    wait_idle(page)
    start.click()

    first = wait_points(page, 0)
    grown = wait_points(page, first)           # redrawn in place by the fragment, no click
    assert grown > first
    screenshot(page, "train-running")
    page.get_by_role("button", name="Stop", exact=True).click()   # not "Help for Early-stop patience"
    page.get_by_text("Resume continues from it").wait_for(timeout=60_000)   # "Stopped at step N; checkpoint-N is kept"
    stopped_at = chart_points(page)

    # The stop's result shows before the scheduler has reaped the worker; Resume is enabled only then,
    # and a click that lands while the page reruns is lost: click when idle, until the job is queued again.
    scheduler = Engine(Settings(home=home), primary=False, start_threads=False).scheduler
    job_id = scheduler.list()[0]["id"]
    deadline = time.monotonic() + 60
    while scheduler.get(job_id)["runs"] < 2 and not scheduler.get(job_id)["resume"]:
        assert time.monotonic() < deadline, f"Resume never took: {scheduler.get(job_id)}"
        page.wait_for_selector('button:has-text("Resume"):not([disabled])', timeout=60_000)
        wait_idle(page)
        page.get_by_role("button", name="Resume", exact=True).click()
        page.wait_for_timeout(2000)
    try:
        page.get_by_text("is in the catalog").wait_for(timeout=240_000)
    except Exception:   # say where the run stood, for the log
        screenshot(page, "train-resume-timeout")
        jobs = Engine(Settings(home=home), primary=False, start_threads=False).scheduler.list()
        raise AssertionError(f"the resumed run did not finish on the page; jobs: {jobs}")
    wait_idle(page)
    assert chart_points(page) == 1500 and stopped_at < 1500
    assert page.get_by_text("Samples on validation prompts").count() == 1
    screenshot(page, "train-done")
