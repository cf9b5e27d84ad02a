"""AppTest fixtures: the app's entry file by absolute path (AppTest resolves relative paths oddly)."""
from pathlib import Path

import pytest
import streamlit as st
from job_helpers import kill_jobs
from streamlit.testing.v1 import AppTest

from llmos_core import engine as engine_module

APP_FILE = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(autouse=True)
def no_llamacpp_probe(monkeypatch):
    """Every test has a fresh data folder, so a page that predicts (the Models page's tiers) calibrates again;
    the calibration's llama.cpp run (seconds; tests/unit/test_model_browser_cost.py) is left out here."""
    from llmos_core.models.browser import runner_probe

    monkeypatch.setattr(runner_probe, "measure", lambda bandwidth, threads: None)


@pytest.fixture
def new_app(home):
    """Factory: a fresh AppTest of app.py against this test's LLMOS_HOME, already run once."""
    def make(timeout: float = 60) -> AppTest:
        at = AppTest.from_file(APP_FILE, default_timeout=timeout)
        at.run()
        assert not at.exception, at.exception
        return at
    return make


@pytest.fixture
def app_engine(home):
    """The engine the app will find (made here, in this process), with its jobs killed and its cache cleared after.
    A test that needs environment set before the engine exists requests that fixture before this one."""
    st.cache_resource.clear()   # an engine cached by an earlier test belongs to another data folder
    engine = engine_module.get_engine()
    yield engine
    kill_jobs(engine.scheduler)
    engine.close()
    engine_module._engines.pop(engine.home, None)
    st.cache_resource.clear()
