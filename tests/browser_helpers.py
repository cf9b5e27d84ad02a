"""Helpers for browser tests (import: `from browser_helpers import wait_idle, screenshot, register_model`)."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


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
