"""Helpers for browser tests (import: `from browser_helpers import wait_idle, screenshot, register_model`)."""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


# Counts the app's script runs. A changed widget sends its rerun without marking the page as running
# (the frontend's sendRerunBackMsg leaves data-test-script-state alone until the server says the run
# started), so right after a click or an Enter the page still reads "notRunning" from the run before:
# wait_idle then returns at once, and the next step acts on a page that is about to be redrawn.
_RUN_COUNTER = """
window.__llmosRuns = 0;
new MutationObserver(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const state = app && app.getAttribute('data-test-script-state');
  if (state !== window.__llmosState) {
    window.__llmosState = state;
    if (state === 'running') window.__llmosRuns += 1;
  }
}).observe(document, {attributes: true, attributeFilter: ['data-test-script-state'], childList: true, subtree: true});
"""


def count_runs(page) -> None:
    """Count the app's script runs in `page` (call before page.goto): see runs() and wait_rerun()."""
    page.add_init_script(_RUN_COUNTER)


def runs(page) -> int:
    """How many script runs have started in the page so far (count_runs() must have been called)."""
    return page.evaluate("window.__llmosRuns")


def wait_rerun(page, since: int, timeout: float = 60_000) -> None:
    """Wait until a script run that started after the first `since` runs has finished: take runs() before
    the action, then call this. Unlike wait_idle, never satisfied by the idle state before the rerun; but
    a fragment's run counts too (app.py's alert toasts run every 5 s on every page), so then check
    what the action draws."""
    page.wait_for_function("(n) => window.__llmosRuns > n && window.__llmosState === 'notRunning'",
                           arg=since, timeout=timeout)


def choose(page, selectbox, option: str, tries: int = 4) -> None:
    """Pick `option` in a Streamlit selectbox (a locator of its stSelectbox). A run that lands while the list
    is open closes it and detaches its options: app.py's alert-toast fragment runs every 5 s on every page,
    so on a slow machine it often lands between the opening click and the option's. Open it again, retry."""
    for attempt in range(tries):
        if not page.get_by_role("listbox").is_visible():
            selectbox.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
    expect(selectbox.get_by_role("combobox")).to_have_value(option)


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def register_model(home: Path, folder: Path, name: str) -> None:
    """Put a test's model folder in the catalog of `home` under `name`, before the app starts there."""
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        spec = engine.catalog.resolve(str(folder))
        spec.name = name
        engine.catalog.register(spec)
    finally:
        engine.close()
