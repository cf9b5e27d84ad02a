"""Open the app in Chromium, visit every page in the navigation, and save a screenshot of each."""
import pytest

from browser_helpers import screenshot, wait_idle


@pytest.mark.e2e
def test_every_page_opens_without_an_error(app_server, page):
    server = app_server()
    page.goto(server.url)
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=60_000)
    wait_idle(page)
    links = page.locator('[data-testid="stSidebarNavLink"]')
    titles = [links.nth(i).inner_text().strip().splitlines()[-1] for i in range(links.count())]  # icon ligature first
    assert titles[0] == "Home" and "Models" in titles
    for i, title in enumerate(titles):
        page.locator('[data-testid="stSidebarNavLink"]').nth(i).click()
        heading = "LLM OS" if title == "Home" else title.split()[0]   # Home's title is the app's name
        page.wait_for_selector(f'h1:has-text("{heading}")', timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(1500)   # let the last widgets paint before the screenshot
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{title} shows an exception"
        assert page.locator("h1").count() >= 1, f"{title} has no title"
        screenshot(page, f"page-{i:02d}-{title.lower().replace(' ', '-')}")


@pytest.mark.e2e
def test_a_page_url_opened_directly_gets_the_whole_app(app_server, page):
    """Opening /jobs directly must run app.py (navigation titles, sidebar), not the page file alone."""
    server = app_server()
    page.goto(f"{server.url}/jobs")
    page.wait_for_selector('h1:has-text("Jobs")', timeout=60_000)
    wait_idle(page)
    links = page.locator('[data-testid="stSidebarNavLink"]')
    titles = [links.nth(i).inner_text().strip().splitlines()[-1] for i in range(links.count())]
    # the local admin of a single-user start also has the Admin page (users, keys, limits)
    assert titles == ["Home", "Chat", "Ask", "Translate", "Train", "Feedback", "Jobs", "Models", "Monitor", "Admin"]
    assert page.get_by_text("CPU (").count() >= 1   # the device caption drawn by app.py's sidebar
