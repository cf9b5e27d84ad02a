"""Two people on one server (issue 26), in two browser contexts of Chromium: each logs in on the login page
and sees only their own conversation and collection; the login cookie is out of the page's reach
(HttpOnly); a browser with no login gets the login page for any URL; logout ends it."""
from __future__ import annotations

import pytest
from browser_helpers import wait_idle
from playwright.sync_api import expect

PEOPLE = {"alice": ("alice's password", "Alice's secret plan", "alice-notes"),
          "bob": ("bob's password!", "Bob's grocery list", "bob-recipes")}


def seed(home) -> None:
    """Two users, each with a conversation and a collection, made before the app starts there."""
    from llmos_core.engine import Engine
    from llmos_core.rag.index import DocumentIndex
    from llmos_core.settings import Settings
    from llmos_core.usecases import objects

    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        for name, (password, title, collection) in PEOPLE.items():
            user = engine.accounts.add_user(name, password, "user")
            objects.create_conversation(engine, user, title, [{"role": "user", "content": f"{title}, in full"}])
            DocumentIndex(engine.store).create_collection(collection, "all-MiniLM-L6-v2", user.id)
    finally:
        engine.close()


def log_in(browser, url: str, name: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/chat")                                   # no login: the login page, for any URL
    page.wait_for_selector('input[name="password"]', timeout=60_000)
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', PEOPLE[name][0])
    page.click('button[type="submit"]')
    page.wait_for_url(f"{url}/chat", timeout=60_000)           # back where it was going
    page.wait_for_selector('[data-testid="stSidebar"] button:has-text("New chat")', timeout=90_000)
    wait_idle(page)
    return context, page


@pytest.mark.e2e
def test_two_users_see_only_their_own_work(app_server, browser, tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    seed(home)
    server = app_server(home)
    contexts = []
    try:
        for me, other in (("alice", "bob"), ("bob", "alice")):
            context, page = log_in(browser, server.url, me)
            contexts.append(context)
            sidebar = page.locator('[data-testid="stSidebar"]')
            expect(sidebar.get_by_role("button", name=PEOPLE[me][1])).to_be_visible()
            expect(sidebar).not_to_contain_text(PEOPLE[other][1])
            expect(sidebar).to_contain_text(me)                      # who is logged in
            assert "llmos_login" not in page.evaluate("document.cookie")   # HttpOnly: no script reads it
            assert any(c["name"] == "llmos_login" and c["httpOnly"] for c in context.cookies())

            page.goto(f"{server.url}/ask")
            page.wait_for_selector('h1:has-text("Ask")', timeout=60_000)
            wait_idle(page)
            box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Collection")
            expect(box.get_by_role("combobox")).to_have_value(PEOPLE[me][2])
            box.get_by_role("combobox").click()
            options = page.get_by_role("listbox")
            expect(options).to_contain_text(PEOPLE[me][2])
            expect(options).not_to_contain_text(PEOPLE[other][2])
            page.keyboard.press("Escape")

        # Logout (the sidebar's form, posted to the gate) ends alice's login; bob's stays.
        alice = contexts[0].pages[0]
        alice.locator('[data-testid="stSidebar"] button:has-text("Log out")').click()
        alice.wait_for_selector('input[name="password"]', timeout=30_000)
        assert not [c for c in contexts[0].cookies() if c["name"] == "llmos_login"]
        alice.goto(f"{server.url}/chat")
        alice.wait_for_selector('input[name="password"]', timeout=30_000)
        bob = contexts[1].pages[0]
        bob.goto(f"{server.url}/chat")
        bob.wait_for_selector(f'[data-testid="stSidebar"] button:has-text("{PEOPLE["bob"][1]}")', timeout=60_000)
    finally:
        for context in contexts:
            context.close()
