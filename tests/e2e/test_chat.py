"""The Chat page in Chromium with the embedded models: a full turn that streams, a Stop that keeps what
was written, and the base model's plain format. Replies are kept short (the CPU is slow)."""
from __future__ import annotations

import pytest
from browser_helpers import screenshot, wait_idle


def open_chat(page, server):
    page.goto(server.url)            # through app.py's navigation, as a visitor would
    page.locator('[data-testid="stSidebarNav"] a', has_text="Chat").click()
    page.wait_for_selector('[data-testid="stChatInput"] textarea', timeout=120_000)
    wait_idle(page)
    page.get_by_role("button", name="New chat").click()
    wait_idle(page)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label)
    if not box.is_visible():                                    # open the Sampling expander
        page.locator('[data-testid="stExpander"] summary', has_text="Sampling").click()
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def send(page, text: str) -> None:
    box = page.locator('[data-testid="stChatInput"] textarea')
    box.fill(text)
    box.press("Enter")


def replies(page):
    return page.locator('[data-testid="stChatMessage"]')


@pytest.mark.slow
@pytest.mark.e2e
def test_a_chat_turn_streams_and_stop_keeps_the_text(app_server, page, embedded_home):
    server = app_server(embedded_home)
    open_chat(page, server)
    set_number(page, "Max new tokens", 24)
    send(page, "What is the capital of France?")
    # The model loads on first use, then the reply streams; its figures appear once it is saved.
    page.wait_for_selector('[data-testid="stChatMessage"] >> text=/\\d+ tokens · first token/', timeout=180_000)
    wait_idle(page)
    assert replies(page).count() == 2
    answer = replies(page).nth(1).locator('[data-testid="stMarkdownContainer"]').first.inner_text()
    assert answer.strip()
    screenshot(page, "chat-turn")

    # A long reply, stopped while it streams: what was written stays, marked as stopped.
    set_number(page, "Max new tokens", 400)
    send(page, "Write a long story about a lighthouse keeper.")
    stop = page.get_by_role("button", name="Stop", exact=True)
    stop.wait_for(timeout=60_000)
    page.wait_for_function(   # some reply text (not the Stop button's label) has streamed in
        "() => { const m = document.querySelectorAll('[data-testid=\"stChatMessage\"]'); if (m.length < 4) return false;"
        " const parts = Array.from(m[3].querySelectorAll('[data-testid=\"stMarkdownContainer\"]'))"
        "   .filter(e => !e.closest('[data-testid=\"stButton\"]')).map(e => e.innerText).join('');"
        " return parts.trim().length > 20; }", timeout=120_000)
    stop.click()
    try:
        page.wait_for_selector("text=/stopped/", timeout=30_000)
    finally:
        screenshot(page, "chat-stopped")
    wait_idle(page)
    assert replies(page).count() == 4
    kept = replies(page).nth(3).inner_text()
    assert "stopped" in kept and len(kept) > 20
    screenshot(page, "chat-stopped")


@pytest.mark.slow
@pytest.mark.e2e
def test_base_model_chats_in_the_plain_format(app_server, page, embedded_home):
    server = app_server(embedded_home)
    open_chat(page, server)
    page.locator('[data-testid="stSelectbox"]', has_text="Model").locator("input").click()
    page.get_by_role("option", name="gemma-3-270m").click()
    wait_idle(page)
    page.wait_for_selector("text=/is a base model/")
    set_number(page, "Max new tokens", 16)
    send(page, "Name three colours.")
    page.wait_for_selector('[data-testid="stChatMessage"] >> text=/\\d+ tokens · first token/', timeout=240_000)
    wait_idle(page)
    assert "User:" not in replies(page).nth(1).inner_text()
    screenshot(page, "chat-base-model")


@pytest.mark.slow
@pytest.mark.e2e
def test_two_visitors_chat_at_once_and_both_replies_complete(app_server, browser, page, embedded_home):
    """Two browser sessions send at the same moment: llama.cpp decodes both replies together."""
    server = app_server(embedded_home)
    other = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    try:
        for visitor in (page, other):
            open_chat(visitor, server)
            set_number(visitor, "Max new tokens", 48)
        send(page, "Tell me about the sea.")
        send(other, "Tell me about the mountains.")
        for visitor in (page, other):
            visitor.wait_for_selector('[data-testid="stChatMessage"] >> text=/\\d+ tokens · first token/',
                                      timeout=180_000)
            wait_idle(visitor)
            assert replies(visitor).count() == 2
            assert replies(visitor).nth(1).locator('[data-testid="stMarkdownContainer"]').first.inner_text().strip()
        screenshot(other, "chat-two-visitors")
    finally:
        other.context.close()
