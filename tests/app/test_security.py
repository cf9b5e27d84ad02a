"""The web app with untrusted visitors (issues #12, #26): the login beyond loopback, the refusal without a password,
the raw job forms and trust_remote_code behind LLMOS_ADMIN, and the engine threads' liveness on Home."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import app_pages._shared as shared

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def listening_on_the_network(monkeypatch):
    """What `streamlit run app.py --server.address 0.0.0.0` gives the script."""
    monkeypatch.setattr(shared, "server_address", lambda: "0.0.0.0")


def test_beyond_loopback_without_a_password_the_app_refuses_to_serve(app_engine, listening_on_the_network,
                                                                     monkeypatch):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    at = run_app()
    assert any("no LLMOS_WEB_PASSWORD is set" in e.value for e in at.error)
    assert not at.title and not at.text_input   # no page, no login form


def test_beyond_loopback_a_login_is_asked_before_any_page(app_engine, listening_on_the_network, monkeypatch):
    """LLMOS_WEB_PASSWORD is the account `admin`; the form itself is the gate's (tests/unit/test_web_gate.py):
    a run is logged in only by the cookie of an open login."""
    import app_pages._login as login_view
    from llmos_core.weblogin import logins

    monkeypatch.setenv("LLMOS_WEB_PASSWORD", "s3cret phrase")
    cookie = {"value": None}
    monkeypatch.setattr(login_view, "browser_cookie", lambda: cookie["value"])
    at = run_app()
    assert [t.value for t in at.title] == [":material/lock: LLM OS"]
    assert not at.metric   # Home's figures are not drawn
    admin = app_engine.accounts.authenticate("admin", "s3cret phrase", address="127.0.0.1")
    cookie["value"] = logins().open(admin.id, admin.name)[1]
    at.run()
    assert not at.exception, at.exception
    assert any(m.label == "Device" for m in at.metric)   # Home, logged in
    at.switch_page("app_pages/jobs.py").run()            # and it stays so for this session
    assert not at.exception and any("Jobs" in t.value for t in at.title)


def test_on_loopback_no_login_is_asked(app_engine, monkeypatch):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    monkeypatch.setattr(shared, "server_address", lambda: "127.0.0.1")
    at = run_app()
    assert any(m.label == "Device" for m in at.metric)


def test_the_raw_job_forms_need_the_admin_setting(app_engine, monkeypatch):
    monkeypatch.delenv("LLMOS_ADMIN", raising=False)
    at = run_app()
    at.switch_page("app_pages/jobs.py").run()
    assert not at.exception, at.exception
    assert not [t for t in at.text_area if t.key == "jobs_submit_params"]
    assert any("LLMOS_ADMIN=1" in c.value for c in at.caption)
    monkeypatch.setenv("LLMOS_ADMIN", "1")
    at.run()
    assert [t for t in at.text_area if t.key == "jobs_submit_params"]


def test_trust_remote_code_needs_the_admin_setting_on_the_models_page(app_engine, monkeypatch):
    monkeypatch.delenv("LLMOS_ADMIN", raising=False)
    at = run_app()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, at.exception
    assert at.checkbox(key="models_trust").disabled


def test_home_shows_the_engine_threads_alive(app_engine):
    at = run_app()
    text = " ".join(c.value for c in at.caption)
    assert "Job scheduler running" in text and "Monitor running" in text
    app_engine.sampler.stop()
    at.run()
    assert any("Monitor stopped" in c.value for c in at.caption)
    assert any("background thread" in w.value for w in at.warning)
