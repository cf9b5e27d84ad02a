"""Round trips per format with test engines (identity, uppercase): the structure comes back equal, code
blocks, timings and tags byte for byte; glossary and placeholders survive; bad files get clear messages."""
from __future__ import annotations

import io
import re

import pytest

import translation_samples as samples
from llmos_core.errors import InvalidInput
from llmos_core.translation import documents, segment
from llmos_core.translation.translator import Translator


class UpperEngine:
    """Uppercases what it is given: placeholders (⟦0⟧) and tokens are unchanged by upper(), words are not."""
    name, max_chars, notes = "upper", 400, []

    def __init__(self):
        self.calls: list[list[str]] = []

    def check(self, source, target):
        pass

    def translate_batch(self, texts, source, target):
        self.calls.append(list(texts))
        return [t.upper() for t in texts]


class DroppingEngine(UpperEngine):
    """Loses every placeholder and repeats nothing: the worst a model can do to protected spans."""

    def translate_batch(self, texts, source, target):
        return [segment.PLACEHOLDER.sub("", t).upper() for t in texts]


def translate(data: bytes, name: str, engine=None, **kwargs) -> tuple[documents.ParsedDocument, bytes, Translator]:
    doc = documents.parse(data, name, **kwargs)
    translator = Translator(engine or UpperEngine(), "de", "en")
    texts = translator.translate(doc.texts())
    return doc, doc.render(texts), translator


# ---- markdown ----
def _md_structure(text: str) -> dict:
    lines = text.splitlines()
    code = re.findall(r"```.*?```", text, re.S)
    return {"headings": [re.match(r"#+", l).group(0) for l in lines if l.startswith("#")],
            "items": [re.match(r"\s*([-*+]|\d+\.)", l).group(1) for l in lines if re.match(r"\s*([-*+]|\d+\.)\s", l)],
            "pipes": [l.count("|") for l in lines if "|" in l], "code": code,
            "links": re.findall(r"\]\(([^)]*)\)", text), "inline_code": re.findall(r"`[^`\n]+`", text),
            "emphasis": text.count("**") + text.count("*"), "quotes": [l[:2] for l in lines if l.startswith(">")]}


def test_markdown_round_trip_keeps_structure_and_code():
    data = samples.MARKDOWN.encode()
    doc, out, _ = translate(data, "guide.md")
    result = out.decode()
    assert _md_structure(result) == _md_structure(samples.MARKDOWN)
    assert 'print("keep this code")\nx = {"a": 1}' in result            # code block untouched
    assert "`pip install llmos`" in result and "https://example.com/manual" in result
    assert "# PROJECT *GUIDE*" in result and "| PORT | 8501 |" in result
    assert "- OPEN THE **SETTINGS** PAGE" in result
    kinds = [s.kind for s in doc.segments]
    assert kinds.count("heading") == 2 and kinds.count("list") == 4 and kinds.count("cell") == 6
    # identity: what is not translated is byte-identical (here every paragraph is a single line but one)
    same = doc.render(doc.texts()).decode()
    assert same.replace("\n", " ") == samples.MARKDOWN.replace("\n", " ")


def test_markdown_front_matter_and_indented_code_untouched():
    text = "---\ntitle: Hello world\n---\nSome text.\n\n    indented code stays\n"
    doc, out, _ = translate(text.encode(), "a.md")
    assert out.decode() == "---\ntitle: Hello world\n---\nSOME TEXT.\n\n    indented code stays\n"


# ---- plain text ----
def test_text_round_trip_rewraps_paragraphs_and_keeps_lines():
    doc, out, _ = translate(samples.TEXT.encode(), "notes.txt")
    result = out.decode()
    assert len(result.splitlines()) == len(samples.TEXT.splitlines())
    assert "https://example.com/page" in result and " 3 " in result
    assert documents.parse(samples.TEXT.encode(), "n.txt").render(doc.texts()) == samples.TEXT.encode()
    assert max(len(l) for l in result.splitlines()) <= max(len(l) for l in samples.TEXT.splitlines())


def test_pasted_text():
    doc = documents.parse_pasted("Hello there. How are you?")
    assert doc.output_name == "pasted.txt" and doc.texts() == ["Hello there. How are you?"]


# ---- srt ----
def test_srt_timings_byte_identical_and_counts_equal():
    data = samples.SRT.encode()
    doc, out, _ = translate(data, "film.srt")
    result = out.decode()
    timings = lambda t: re.findall(r"^\d\d:\d\d:\d\d,\d{3} --> .*$", t, re.M)
    assert timings(result) == timings(samples.SRT) and len(timings(result)) == 3
    blocks = lambda t: [b.split("\r\n") for b in t.strip().split("\r\n\r\n")]
    assert [len(b) for b in blocks(result)] == [len(b) for b in blocks(samples.SRT)]
    assert "<i>HELLO THERE,</i> MY FRIEND." in result and "{\\an8}I AM FINE." in result and "10" in result
    assert doc.render(doc.texts()) == data


def test_srt_malformed_timing_is_refused_with_its_line():
    bad = "1\n00:00:01,000 --> 00:00:04,000\nHello\n\n2\n00:00:05 -> later\nWorld\n"
    with pytest.raises(InvalidInput, match=r"subtitle 2 \(line 6\): malformed timing"):
        documents.parse(bad.encode(), "bad.srt")


# ---- html ----
def test_html_tags_scripts_styles_untouched():
    data = samples.HTML.encode()
    doc, out, _ = translate(data, "page.html")
    result = out.decode()
    tags = lambda t: re.findall(r"<[^>]+>", t)
    assert tags(result) == tags(samples.HTML)
    assert 'var secret = "Do not translate this"; if (a < b) { alert("no"); }' in result
    assert "p { color: red; }" in result and "<pre>preformatted stays</pre>" in result
    assert "<code>x = 1</code>" in result and "<!-- a comment stays -->" in result
    assert "<b>BOLD</b>" in result and "MAIN &amp; TITLE" in result
    assert all("secret" not in s.text and "color" not in s.text for s in doc.segments)   # never sent to a model
    assert doc.render(doc.texts()) == data


def test_html_model_output_is_escaped_never_markup():
    doc = documents.parse(b"<p>Hello world</p>", "a.html")
    out = doc.render(["<script>alert(1)</script>"]).decode()
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


# ---- docx ----
def _docx_structure(data: bytes) -> dict:
    from docx import Document

    document = Document(io.BytesIO(data))
    return {"styles": [p.style.name for p in document.paragraphs],
            "runs": [[(bool(r.bold), bool(r.italic)) for r in p.runs] for p in document.paragraphs],
            "cells": [len(row.cells) for table in document.tables for row in table.rows],
            "header": len(document.sections[0].header.paragraphs)}


def test_docx_round_trip_keeps_paragraphs_runs_tables():
    from docx import Document

    data = samples.make_docx()
    doc, out, _ = translate(data, "report.docx")
    assert _docx_structure(out) == _docx_structure(data)
    document = Document(io.BytesIO(out))
    runs = document.paragraphs[1].runs
    assert [r.text for r in runs] == ["THIS IS ", "BOLD", " AND ", "ITALIC", " TEXT. THE SECOND SENTENCE IS HERE."]
    assert document.tables[0].cell(1, 1).text == "BETA GAMMA"
    assert document.sections[0].header.paragraphs[0].text == "COMPANY HEADER"
    kinds = [s.kind for s in doc.segments]
    assert kinds.count("heading") == 2 and kinds.count("list") == 2 and kinds.count("cell") == 4


def test_docx_formatting_follows_moved_words():
    """A model that reorders the sentence: the bold word stays bold where it lands."""
    from docx import Document

    data = samples.make_docx()
    doc = documents.parse(data, "r.docx")
    texts = doc.texts()
    texts[1] = segment.tag_token(2) + "Kursiv" + segment.tag_token(3) + " und " + segment.tag_token(0) + "fett" \
        + segment.tag_token(1) + " ist das."
    runs = Document(io.BytesIO(doc.render(texts))).paragraphs[1].runs
    assert [(r.text, bool(r.bold), bool(r.italic)) for r in runs] == [
        ("Kursiv", False, True), (" und ", False, False), ("fett", True, False), (" ist das.", False, False)]


# ---- pdf ----
def test_pdf_to_docx_and_txt_keeps_pages_and_paragraphs():
    from docx import Document

    data = samples.make_pdf(samples.PDF_PAGES)
    doc, out, _ = translate(data, "results.pdf")
    assert doc.output_name == "results.docx" and any("cannot be rebuilt" in n for n in doc.notes)
    paragraphs = [p.text for p in Document(io.BytesIO(out)).paragraphs]
    assert paragraphs == ["QUARTERLY RESULTS", "SALES GREW IN ALL REGIONS THIS QUARTER, AND THE TEAM SHIPPED TWO RELEASES.",
                          "", "SECOND PAGE HEADING", "THE OUTLOOK IS GOOD."]
    doc, out, _ = translate(data, "results.pdf", pdf_output="txt")
    assert doc.output_name == "results.txt"
    assert out.decode().split("\f") [1].strip().splitlines() == ["SECOND PAGE HEADING", "", "THE OUTLOOK IS GOOD."]


# ---- glossary, placeholders, cache ----
def test_glossary_terms_come_back_as_given():
    doc = documents.parse_pasted("The Engine starts. Our engine is fast; an engineer fixed it.")
    translator = Translator(UpperEngine(), "de", "en", glossary={"engine": "Motor"})
    out = translator.translate(doc.texts())
    assert out == ["THE Motor STARTS. OUR Motor IS FAST; AN ENGINEER FIXED IT."]


def test_placeholders_survive_a_model_that_drops_them():
    text = "Call {name} at 12:30 on 2024-01-05, see https://example.com/a?b=1 or mail me@example.org (50% of %s)."
    doc = documents.parse_pasted(text)
    translator = Translator(DroppingEngine(), "de", "en")
    out = translator.translate(doc.texts())[0]
    for kept in ("{name}", "12:30", "2024-01-05", "https://example.com/a?b=1", "me@example.org", "50", "%s"):
        assert out.count(kept) == 1, kept
    assert translator.stats.retried == 1 and translator.stats.repaired == 0 and not translator.stats.kept_source
    assert out.startswith("CALL {name} AT 12:30 ON 2024-01-05, SEE https://example.com/a?b=1 OR MAIL")


class StrayMarkEngine(UpperEngine):
    """Leaves half a placeholder behind (seen from Gemma: a lone ⟧ in a sentence with no formatting),
    and reorders the placeholders of a sentence that has two."""

    def translate_batch(self, texts, source, target):
        out = []
        for t in texts:
            marks = segment.PLACEHOLDER.findall(t)
            out.append(f"⟦{marks[1]}⟧ X ⟦{marks[0]}⟧" if len(marks) == 2
                       else t.upper() + " ⟧" if "Plain" in t else t.upper())
        return out


def test_no_placeholder_leaks_stray_marks_dropped_reordered_ones_retried_run_by_run():
    doc = documents.parse(b"Plain words here.\n\nCall 5 and 6 now.\n\nRead the **report** now.\n", "a.md")
    translator = Translator(StrayMarkEngine(), "de", "en")
    out = translator.translate(doc.texts())
    assert all("⟦" not in t and "⟧" not in t for t in out), out
    # the plain sentence's stray half mark is dropped (it has no marks to keep): nothing is kept in English
    assert out[0] == "PLAIN WORDS HERE." and translator.stats.kept_source == 0 and translator.stats.aligned == 1
    # the reordered numbers: translated again run by run, the numbers back in the source's order
    assert out[1] == "CALL 5 AND 6 NOW." and translator.stats.by_runs == 1 and translator.stats.retried == 2
    # the bold word: translated without its marks, which are put back around the word's translation
    assert segment.TAG_TOKEN.findall(out[2]) == ["0", "1"] and "REPORT" in out[2]


def test_identical_segments_are_translated_once():
    lines = "\n".join(["Hello world."] * 20 + ["Goodbye world."] * 10) + "\n"
    engine = UpperEngine()
    doc = documents.parse(lines.encode(), "rep.txt")
    translator = Translator(engine, "de", "en", batch_size=4)
    out = translator.translate(doc.texts())
    assert out == ["HELLO WORLD."] * 20 + ["GOODBYE WORLD."] * 10
    assert sum(len(c) for c in engine.calls) == 2
    assert translator.stats.unique == 2 and translator.stats.cached == 28


def test_long_paragraph_is_split_to_fit_and_progress_counts_segments():
    sentence = "This sentence is about the same length as the others here. "
    doc = documents.parse_pasted(sentence * 30 + "\n\nShort one.")
    engine = UpperEngine()
    engine.max_chars = 80
    seen = []
    translator = Translator(engine, "de", "en", batch_size=5)
    out = translator.translate(doc.texts(), progress=lambda done, total, eta: seen.append((done, total)))
    assert out[0].strip() == (sentence * 30).upper().strip()
    assert all(len(t) <= 80 for call in engine.calls for t in call)
    assert seen[-1] == (2, 2) and seen[0][0] == 0


def test_cancel_returns_nothing_half_done():
    doc = documents.parse_pasted("\n".join(f"Line number {w}." for w in "abcdefghij"))
    assert Translator(UpperEngine(), "de", "en", batch_size=2).translate(doc.texts(), cancelled=lambda: True) is None


def test_language_detection_and_bad_languages():
    from llmos_core.translation.languages import detect_language

    assert detect_language("Der schnelle braune Fuchs springt über den faulen Hund.")[0] == "de"
    doc = documents.parse_pasted("Bonjour tout le monde, comment allez-vous aujourd'hui ?")
    translator = Translator(UpperEngine(), "de")
    translator.translate(doc.texts())
    assert translator.stats.source == "fr" and translator.stats.detected
    with pytest.raises(InvalidInput, match="both German"):
        Translator(UpperEngine(), "de", "de").translate(["Hallo Welt"])
    with pytest.raises(InvalidInput, match="unknown target"):
        Translator(UpperEngine(), "xx")


def test_glossary_file_parsing():
    assert segment.parse_glossary("# terms\nengine = Motor\nlog file\tProtokoll\n\"GPU\",Grafikkarte\n") == {
        "engine": "Motor", "log file": "Protokoll", "GPU": "Grafikkarte"}
    with pytest.raises(InvalidInput, match="line 1"):
        segment.parse_glossary("no separator here")


# ---- bad input ----
@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "is empty"),
    ("blank.md", b"   \n\n  ", "is empty"),
    ("code-only.md", b"```\nonly code\n```\n", "no text to translate"),
    ("picture.png", b"\x89PNG\r\n\x1a\n....", "not a format"),
    ("renamed.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00" * 20, "binary data, not text"),
    ("renamed.docx", b"just some text, not a zip", "not a real DOCX"),
    ("renamed.pdf", b"PK\x03\x04 zip data", "not a real PDF"),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "password-protected"),
    ("corrupt.docx", b"PK\x03\x04" + b"\x00garbage" * 50, "damaged"),
    ("corrupt.pdf", b"%PDF-1.4\n1 0 obj << garbage", "damaged"),
    ("scan.pdf", samples.make_pdf([[], []]), "no text layer"),
])
def test_bad_files_get_clear_messages(name, data, message):
    with pytest.raises(InvalidInput, match=message):
        documents.parse(data, name)


def test_zip_bomb_is_refused_before_unpacking():
    with pytest.raises(InvalidInput, match="zip bomb"):
        documents.parse(samples.make_zip_bomb(), "bomb.docx")


def test_docx_that_is_a_zip_but_not_word_is_damaged():
    out = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(InvalidInput, match="damaged or not a Word document"):
        documents.parse(out.getvalue(), "fake.docx")


def test_password_protected_pdf():
    with pytest.raises(InvalidInput, match="password-protected"):
        documents.parse(samples.encrypt_pdf(samples.make_pdf(samples.PDF_PAGES)), "locked.pdf")


def test_file_over_the_upload_limit():
    with pytest.raises(InvalidInput, match="over the upload limit"):
        documents.parse(b"word " * 1000, "big.txt", max_bytes=1000)


def test_mixed_encodings_are_read_and_said():
    data = "Première ligne en UTF-8.\n".encode() + "Deuxième ligne en Latin-1.\n".encode("cp1252")
    doc = documents.parse(data, "mixed.txt")
    assert doc.texts() == ["Première ligne en UTF-8.", "Deuxième ligne en Latin-1."]
    assert any("Windows-1252" in n for n in doc.notes)
    srt = b"1\n00:00:01,000 --> 00:00:02,000\n" + "Déjà vu\n".encode("cp1252")
    assert documents.parse(srt, "a.srt").texts() == ["Déjà vu"]


def test_output_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "out.docx"
    documents.write_output(target, b"complete")
    assert target.read_bytes() == b"complete" and not list(tmp_path.glob(".*partial*"))

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError):
        documents.write_output(tmp_path / "half.docx", b"x" * 1000)
    assert not (tmp_path / "half.docx").exists() and not list(tmp_path.glob(".*partial*"))


def test_an_empty_answer_keeps_the_source_sentence():
    class Silent(UpperEngine):
        def translate_batch(self, texts, source, target):
            return ["" for _ in texts]

    translator = Translator(Silent(), "de", "en")
    assert translator.translate(["Hello world. Second one."]) == ["Hello world. Second one."]
    assert translator.stats.empty == 2
