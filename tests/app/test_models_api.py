"""The Models page's "Use from code": the API's address when the app serves it (LLMOS_API_PORT), and snippets."""
from __future__ import annotations

import pytest


@pytest.fixture
def api_port_env(monkeypatch):
    monkeypatch.setenv("LLMOS_API_PORT", "0")   # a free port, served by the app's own engine


def test_use_from_code_shows_the_running_api(api_port_env, app_engine, new_app):
    assert app_engine.api is None   # the engine never starts the API itself: the app's start does
    at = new_app()
    assert app_engine.api is not None
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, at.exception
    address = f"{app_engine.api.url}/v1"
    assert any(address in m.value and "no key needed" in m.value for m in at.markdown)
    snippets = [c.value for c in at.code]
    assert any(f"curl -N {address}/chat/completions" in s for s in snippets)
    assert any(f'OpenAI(base_url="{address}"' in s for s in snippets)
