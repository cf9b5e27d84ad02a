"""The login as the pages see it (issue 26): a run is logged in only by a cookie of an open login, checked
every run; the Admin page for admins only; a user's own keys and password on the Account page. The gate in
front of Streamlit (the login form, the refusals) is tested over HTTP in tests/unit/test_web_gate*.py."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import app_pages._login as login_view
import app_pages._shared as shared
from llmos_core import weblogin
from llmos_core.weblogin import logins

APP = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "app.py")


def run_app(at: AppTest | None = None) -> AppTest:
    at = (at if at is not None else AppTest.from_file(APP, default_timeout=60)).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def browser(monkeypatch):
    """What the browser's connection carries: its login cookie (st.context.cookies in a real server)."""
    jar = {"cookie": None}
    monkeypatch.setattr(weblogin, "_logins", weblogin.WebLogins())   # a fresh book: user ids restart per test
    monkeypatch.setattr(login_view, "browser_cookie", lambda: jar["cookie"])
    monkeypatch.setattr(shared, "server_address", lambda: "127.0.0.1")
    return jar


def log_in(app_engine, jar, name: str) -> str:
    user = app_engine.accounts.user_by_name(name)
    login, cookie = logins().open(user.id, user.name)
    jar["cookie"] = cookie
    return login.id


def page_titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_on_loopback_with_no_user_the_app_opens_as_the_local_admin(app_engine, browser, monkeypatch):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    at = run_app()
    assert any(m.label == "Device" for m in at.metric)            # Home, no login
    at.switch_page("app_pages/admin.py").run()                     # the local admin makes the first account
    assert not at.exception and "Admin" in " ".join(page_titles(at))
    assert [s.options for s in at.selectbox if s.key == "admin_new_role"] == [["admin"]]


def test_once_a_user_exists_a_run_without_an_open_login_shows_only_the_login_link(app_engine, browser):
    app_engine.accounts.add_user("alice", "alice password", "user")
    at = run_app()
    assert page_titles(at) == [":material/lock: LLM OS"] and not at.metric
    assert any("/_llmos/login" in m.value for m in at.markdown)
    browser["cookie"] = "forged.9999999999." + "0" * 64            # a cookie the server did not sign
    run_app(at)
    assert not at.metric
    login_id = log_in(app_engine, browser, "alice")
    run_app(at)
    assert any(m.label == "Device" for m in at.metric)
    assert at.session_state["llmos_user"].name == "alice"
    assert any("alice" in c.value for c in at.sidebar.caption)
    logins().close(login_id)                                        # logged out (another tab, or the gate)
    run_app(at)                                                     # the same session's next run
    assert not at.metric and "llmos_user" not in at.session_state


def test_a_removed_user_is_logged_out_at_the_next_run(app_engine, browser):
    app_engine.accounts.add_user("root", "root password", "admin")
    app_engine.accounts.add_user("bob", "bob password", "user")
    log_in(app_engine, browser, "bob")
    at = run_app()
    assert any(m.label == "Device" for m in at.metric)
    app_engine.accounts.remove_user("bob")
    run_app(at)
    assert not at.metric


def test_the_admin_page_is_for_admins_only(app_engine, browser):
    app_engine.accounts.add_user("root", "root password", "admin")
    app_engine.accounts.add_user("bob", "bob password", "user")
    log_in(app_engine, browser, "bob")
    at = run_app()
    assert "app_pages/admin.py" not in str(at._tree)  # not in bob's navigation
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("app_pages/admin.py")
    page = AppTest.from_file(APP.replace("app.py", "app_pages/admin.py"), default_timeout=60)
    page.session_state["llmos_user"] = app_engine.accounts.user_by_name("bob")   # as if opened on its own
    page.run()
    assert any("for admins" in e.value for e in page.error)
    assert not page.text_input and not page.button


def test_an_admin_adds_a_user_sets_limits_resets_a_password_and_removes_the_user(app_engine, browser):
    accounts = app_engine.accounts
    accounts.add_user("root", "root password", "admin")
    log_in(app_engine, browser, "root")
    at = run_app()
    at.switch_page("app_pages/admin.py").run()
    assert not at.exception, at.exception
    at.text_input(key="admin_new_name").input("carol")
    at.text_input(key="admin_new_password").input("short")
    at.selectbox(key="admin_new_role").select("user")
    at.button[0].click().run()                                      # the form's submit
    assert any("at least 8" in e.value for e in at.error)          # the rule, said plainly
    at.text_input(key="admin_new_name").input("carol")
    at.text_input(key="admin_new_password").input("carol password")
    at.selectbox(key="admin_new_role").select("user")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert [u["name"] for u in accounts.list_users()] == ["carol", "root"]

    carol = accounts.user_by_name("carol")
    carol_login, _ = logins().open(carol.id, carol.name)
    at.selectbox(key="admin_manage_user").select("carol").run()
    at.number_input(key="admin_limit_generations").set_value(2)
    at.number_input(key="admin_limit_storage").set_value(1.5)
    next(b for b in at.button if "Set limits" in b.label).click().run()
    limits = accounts.limits_for(carol)
    assert limits.concurrent_generations == 2 and limits.storage_bytes == int(1.5 * 1024 ** 3)

    at.text_input(key="admin_reset_value").input("a new password")
    next(b for b in at.button if "Set password" in b.label).click().run()
    assert any("1 open login(s) ended" in s.value for s in at.success), (at.success, at.error, at.exception)
    assert carol_login.id not in logins()._logins
    assert accounts.authenticate("carol", "a new password", address="test").name == "carol"

    at.checkbox(key="admin_remove_sure").check().run()
    at.button(key="admin_remove").click().run()
    assert [u["name"] for u in accounts.list_users()] == ["root"]


def test_a_key_is_shown_once_and_revoked_and_a_user_sees_only_their_own(app_engine, browser):
    accounts = app_engine.accounts
    accounts.add_user("root", "root password", "admin")
    accounts.add_user("dave", "dave password", "user")
    accounts.create_key("root")
    log_in(app_engine, browser, "dave")
    at = run_app()
    at.switch_page("app_pages/account.py").run()
    assert not at.exception, at.exception
    assert any("No API key yet" in c.value for c in at.caption)    # root's key is not listed here
    at.button(key="account_make_key").click().run()
    key = at.code[0].value
    assert key.startswith("llmos-") and accounts.user_for_key(key).name == "dave"
    run_app(at)
    assert not at.code                                              # shown that once
    assert len(accounts.list_keys(accounts.user_by_name("dave"))) == 1
    revoke = [b for b in at.button if b.key and b.key.startswith("account_revoke_")]
    assert len(revoke) == 1
    revoke[0].click().run()
    assert accounts.user_for_key(key) is None


def test_the_monitor_feed_url_holds_a_token_of_this_session_and_login(app_engine, browser):
    """Finding 5: the feed was one URL for every viewer, as long as the server lived."""
    import json

    app_engine.accounts.add_user("erin", "erin password", "admin")
    login_id = log_in(app_engine, browser, "erin")
    at = run_app()
    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception, at.exception
    url = json.loads(at.get("component_instance")[0].proto.json_args)["payload"]["feed"]
    assert url.startswith("/_llmos/live_feed?t=")
    token = url.split("t=", 1)[1]
    held = logins().check_feed_token(token, login_id)
    assert held is not None and held.session_id and held.expires - logins().clock() <= 120
    assert logins().check_feed_token(token, "") is None            # only with this login (one per session:
    # tests/unit/test_web_gate.py; AppTest gives every test the same session id)
    logins().close(login_id)
    assert logins().check_feed_token(token, login_id) is None       # ends with the login
