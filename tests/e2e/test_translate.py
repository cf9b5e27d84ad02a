"""The Translate page in Chromium: upload a .docx, translate it with a tiny seq2seq model, download the
result and check it is a Word document with the same structure."""
from __future__ import annotations

import io

import pytest
from browser_helpers import register_model, screenshot, wait_idle

import translation_samples as samples


@pytest.mark.e2e
def test_upload_docx_and_download_the_translation(app_server, page, tmp_path, tiny_seq2seq):
    from docx import Document

    home = tmp_path / "home"
    register_model(home, tiny_seq2seq, "tiny-mt")
    server = app_server(home)
    source = tmp_path / "report.docx"
    source.write_bytes(samples.make_docx())

    page.goto(f"{server.url}/translate")
    page.wait_for_selector("text=Translate", timeout=60_000)
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(source))
    page.wait_for_selector("text=DOCX · 11 segments", timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name="Translate", exact=True).click()
    # The translated document, not its bilingual twin beside it.
    download_button = page.locator('[data-testid="stDownloadButton"] button').filter(has_text="Download report.docx")
    download_button.wait_for(timeout=120_000)
    wait_idle(page)
    screenshot(page, "translate-docx")
    with page.expect_download() as info:
        download_button.click()
    saved = tmp_path / "out.docx"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "report.docx"
    before, after = Document(io.BytesIO(source.read_bytes())), Document(str(saved))
    assert [p.style.name for p in after.paragraphs] == [p.style.name for p in before.paragraphs]
    assert all(p.text.strip() for p in after.paragraphs)   # a random tiny model moves runs, never loses text
    assert len(after.tables[0]._cells) == len(before.tables[0]._cells)
