"""Every parser fuzzed (hypothesis) with text made of its own markup characters: a parse either gives a
document whose segments lie in order inside the text and renders back, or refuses with InvalidInput;
nothing else escapes, and each input stays inside a time budget for its size (hypothesis's deadline).
Longer runs, bigger inputs: bench/fuzz_parsers.py.

The runs here are derandomized (the same examples every run), so that a test run is repeatable and CI
never fails on a new draw; exploring fresh inputs is what bench/fuzz_parsers.py is for, and what it
finds becomes a fixed case here (as the marker characters below did)."""
from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import translation_samples as samples
from llmos_core.errors import InvalidInput
from llmos_core.translation import documents, segment

# The characters each format gives meaning to, plus a little prose.
MARKUP = {
    "md": "#*_`[]()!<>|-=:~ \n\t\\{}&;/\"'ab1.",
    "txt": "-*•+1.) \n\tab:;!?",
    "srt": "0123456789:,-> \n\r<>/i{}\\ab",
    "html": "<>/!-=\"'& \n\tabpsi;#?",
}
# A tag-ish word now and then, so the structure is not all accidents of single characters.
PIECES = {
    "md": ["# ", "## ", "- ", "1. ", "```", "    ", "> ", "| a | b |\n|---|---|\n", "[a](b)", "![i](u)", "**", "`c`"],
    "txt": ["- ", "\n\n", "This is a line of prose that is long enough to wrap. "],
    "srt": ["1\n", "00:00:01,000 --> 00:00:02,000\n", "\n\n", "<i>", "</i>", "{\\an8}"],
    "html": ["<p>", "</p>", "<b>", "</b>", "<script>", "</script>", "<!--", "-->", "<a href='x'>", "</a>", "&amp;",
             "<br/>", "<pre>", "</pre>", "<code>", "</code>"],
}


def documents_of(fmt: str, max_size: int, min_size: int = 0):
    atom = st.one_of(st.text(alphabet=MARKUP[fmt], min_size=1, max_size=8), st.sampled_from(PIECES[fmt]))
    return st.lists(atom, min_size=min_size, max_size=max_size).map("".join)


def check(fmt: str, text: str) -> None:
    data = text.encode("utf-8")
    try:
        doc = documents.parse(data, f"fuzz.{fmt}")
    except InvalidInput:
        return
    last = 0
    for seg in doc.segments:   # segments lie in order, inside the text, never overlapping
        assert last <= seg.ref["start"] <= seg.ref["end"] <= len(text)
        last = seg.ref["end"]
    out = doc.render(doc.texts()).decode("utf-8")
    assert "\ue000" not in out and "\ue001" not in out   # every tag token went back to its tag, and the
    # file's own marker characters (reserved by the translator) were made harmless at the parse
    again = doc.render([segment.TAG_TOKEN.sub("", t).upper() for t in doc.texts()])
    assert isinstance(again, bytes)


FUZZ = settings(max_examples=60, deadline=timedelta(seconds=2), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("fmt", list(MARKUP))
@FUZZ
@given(data=st.data())
def test_parser_fuzz(fmt, data):
    check(fmt, data.draw(documents_of(fmt, 200)))


@FUZZ
@given(st.text(max_size=3000))
def test_any_text_in_any_text_format(text):
    for fmt in ("md", "txt", "srt", "html"):
        check(fmt, text)


@pytest.mark.parametrize("fmt", ["md", "txt", "srt", "html"])
@pytest.mark.parametrize("text", ["\ue000", "a \ue0000\ue001 b", "\ue001\ue000 x"])
def test_a_files_own_marker_characters_never_read_as_tags(fmt, text):
    """Found by CI's fuzzing: a lone U+E000 in the source came back out; '\ue0000\ue001' in a file would
    have been taken for tag 0."""
    if fmt == "srt":   # in a cue: a bare line is no subtitle file, and its parse would only refuse it
        text = f"1\n00:00:01,000 --> 00:00:02,000\n{text}\n"
    check(fmt, text)
    doc = documents.parse(text.encode("utf-8"), f"f.{fmt}")
    assert all("\ue000" not in t and "\ue001" not in t for t in doc.texts())


def _mutated(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12)


def _refuses_or_parses(data: bytes, name: str) -> None:
    try:
        doc = documents.parse(data, name)
    except InvalidInput:
        return
    doc.render(doc.texts())


@settings(max_examples=25, deadline=timedelta(seconds=5), derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(EDITS)
def test_damaged_pdf_fuzz(edits):
    _refuses_or_parses(_mutated(samples.make_pdf(samples.PDF_PAGES), edits), "fuzz.pdf")


@settings(max_examples=25, deadline=timedelta(seconds=5), derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(EDITS)
def test_damaged_docx_xml_fuzz(edits):
    """Flipped bytes inside the unpacked document.xml (flipping the zip's bytes only fails its CRC)."""
    source = zipfile.ZipFile(io.BytesIO(samples.make_docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            archive.writestr(item, _mutated(data, edits) if item.filename == "word/document.xml" else data)
    _refuses_or_parses(out.getvalue(), "fuzz.docx")


@FUZZ
@given(st.text(alphabet=".!?… \n\"')(Dr.ea", max_size=2000))
def test_sentences_join_back_exactly(text):
    assert "".join(s + space for s, space in segment.split_sentences(text)) == text


def test_sentence_splitting_of_long_runs_of_marks_and_abbreviations():
    # Both were quadratic (every dot of a run retried, every abbreviation re-read the sentence so far).
    for text in ("Dr. " * 50_000, "." * 200_000, "Yes! " + "?" * 100_000 + " No."):
        assert "".join(s + space for s, space in segment.split_sentences(text)) == text
