"""AppTest fixtures: the app's entry file by absolute path (AppTest resolves relative paths oddly)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP_FILE = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def new_app(home):
    """Factory: a fresh AppTest of app.py against this test's LLMOS_HOME, already run once."""
    def make(timeout: float = 60) -> AppTest:
        at = AppTest.from_file(APP_FILE, default_timeout=timeout)
        at.run()
        assert not at.exception, at.exception
        return at
    return make
