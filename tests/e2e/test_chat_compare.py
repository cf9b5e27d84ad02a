"""The Chat page's compare mode in Chromium: two tiny models answer one prompt side by side, each column
with its figures, and the comparison is listed in the sidebar to reopen."""
from __future__ import annotations

import pytest
from browser_helpers import register_model, screenshot, wait_idle

FIGURES = r"text=/\d+ tokens · first token/"


@pytest.mark.e2e
@pytest.mark.flaky(reruns=2)
def test_two_models_stream_side_by_side(app_server, page, tmp_path, tiny_causal, tiny_base):
    home = tmp_path / "home"
    register_model(home, tiny_causal, "tiny-chat")
    register_model(home, tiny_base, "tiny-base")
    server = app_server(home, env={"LLMOS_THREADS": "1"})

    page.goto(f"{server.url}/chat")
    page.get_by_text("Compare side by side").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_text("Compare side by side").click()
    wait_idle(page)
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models").locator("input")
    for name in ("tiny-chat", "tiny-base"):
        picker.click()
        picker.fill(name)
        page.keyboard.press("Enter")
        wait_idle(page)
    page.locator('[data-testid="stExpander"] summary', has_text="Sampling").click()
    box = page.get_by_label("Max new tokens")
    box.fill("12")
    box.press("Enter")
    wait_idle(page)

    prompt = page.locator('[data-testid="stChatInput"] textarea')
    prompt.fill("Tell me about the fox.")
    prompt.press("Enter")
    page.locator(FIGURES).nth(1).wait_for(timeout=120_000)   # both columns end with their figures
    wait_idle(page)
    try:
        figures = page.locator(FIGURES)
        assert figures.count() == 2
        shown = [figures.nth(i).inner_text() for i in range(2)]
        assert any("tiny-chat (transformers)" in s for s in shown)
        assert any("tiny-base (transformers)" in s for s in shown)
        # Saved: listed in the sidebar under Comparisons.
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_text("Comparisons").is_visible()
        assert sidebar.get_by_role("button", name="Tell me about the fox.").is_visible()
    finally:
        screenshot(page, "chat-compare")
