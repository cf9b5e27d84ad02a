"""The bilingual document per format: every source paragraph, then its translation; the structure kept."""
from __future__ import annotations

import io

import pytest

import translation_samples as samples
from llmos_core.errors import InvalidInput
from llmos_core.translation import documents
from llmos_core.translation.bilingual import bilingual_name, render_bilingual


def _upper(doc):
    return [t.upper() for t in doc.texts()]   # upper() leaves the tag tokens (private-use characters) as they are


def test_markdown_and_text_put_each_translation_after_its_paragraph():
    doc = documents.parse(samples.MARKDOWN.encode(), "guide.md")
    out = render_bilingual(doc, _upper(doc)).decode()
    assert out.count("```") == samples.MARKDOWN.count("```")       # code blocks kept, once
    for line in samples.MARKDOWN.splitlines():
        if line.startswith("|"):                                    # tables keep their columns
            assert any(o.count("|") == line.count("|") for o in out.splitlines() if o.startswith("|"))
    doc = documents.parse(b"First paragraph here.\n\nSecond one.\n", "a.txt")
    assert render_bilingual(doc, _upper(doc)).decode() == \
        "First paragraph here.\n\nFIRST PARAGRAPH HERE.\n\nSecond one.\n\nSECOND ONE.\n"
    assert bilingual_name(doc) == "a.bilingual.txt"


def test_srt_gets_dual_subtitles():
    doc = documents.parse(samples.SRT.encode(), "film.srt")
    out = render_bilingual(doc, _upper(doc)).decode()
    cues = out.strip().split("\r\n\r\n")
    assert len(cues) == 3
    first = cues[0].split("\r\n")
    assert first[1] == "00:00:01,000 --> 00:00:04,000"
    assert first[2:] == ["<i>Hello there,</i> my friend.", "How are you today?",
                         "<i>HELLO THERE,</i> MY FRIEND.", "HOW ARE YOU TODAY?"]


def test_html_keeps_both_in_each_block():
    doc = documents.parse(samples.HTML.encode(), "page.html")
    out = render_bilingual(doc, _upper(doc)).decode()
    assert out.count("<p") == samples.HTML.count("<p") and "<br>" in out
    assert "<title>" not in out or "<br>" not in out.split("</title>")[0]


def test_docx_adds_the_translated_paragraph_after_the_source():
    from docx import Document

    doc = documents.parse(samples.make_docx(), "report.docx")
    source = [p.text for p in Document(io.BytesIO(doc.data)).paragraphs if p.text.strip()]
    out = [p.text for p in Document(io.BytesIO(render_bilingual(doc, _upper(doc)))).paragraphs if p.text.strip()]
    assert out[:2] == [source[0], source[0].upper()] and len(out) == 2 * len(source)


def test_pdf_has_no_bilingual_form():
    doc = documents.parse(samples.make_pdf(samples.PDF_PAGES), "q.pdf")
    with pytest.raises(InvalidInput, match="bilingual"):
        render_bilingual(doc, doc.texts())
