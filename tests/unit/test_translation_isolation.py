"""Parsing in a child process under CPU and memory limits: the bad-input battery every upload path (the
page, the job's validation, the CLI) goes through, each file a clear message or a correct result; the
once-quadratic inputs parse well inside a small CPU limit; a parse over its limits is stopped and said."""
from __future__ import annotations

import pytest

import translation_samples as samples
from llmos_core.errors import InvalidInput
from llmos_core.translation import documents
from llmos_core.translation.isolation import parse_in_child

MB = 1024**2


def child_parse(data: bytes, name: str, **kwargs):
    return parse_in_child(data, name, 200 * MB, **kwargs)


def test_the_child_gives_the_same_document_as_parsing_here():
    for data, name in ((samples.MARKDOWN.encode(), "a.md"), (samples.SRT.encode(), "a.srt"),
                       (samples.HTML.encode(), "a.html"), (samples.make_docx(), "a.docx"),
                       (samples.make_pdf(samples.PDF_PAGES), "a.pdf")):
        here, there = documents.parse(data, name), child_parse(data, name)
        assert there.segments == here.segments and there.notes == here.notes, name
        assert there.render(there.texts()) == here.render(here.texts()) and there.data is data


BAD_UPLOADS = [
    ("empty.txt", b"", "is empty"),
    ("binary.txt", bytes(range(256)) * 40, "binary data, not text"),
    ("utf16-without-bom.md", "Hello world".encode("utf-16-le"), "binary data"),
    ("bad-bom.txt", b"\xef\xbb\xbfok \xff\xfe broken", "not valid utf-8"),
    ("truncated.docx", samples.make_docx()[:3000], "damaged"),
    ("corrupt.docx", b"PK\x03\x04" + bytes(range(256)) * 10, "damaged"),
    ("bomb.docx", samples.make_zip_bomb(), "zip bomb"),
    ("locked.pdf", samples.encrypt_pdf(samples.make_pdf(samples.PDF_PAGES)), "password-protected"),
    ("scan.pdf", samples.make_pdf([[], []]), "no text layer"),
    ("truncated.pdf", samples.make_pdf(samples.PDF_PAGES)[:200], "damaged|no text layer"),
    ("line.txt", b"word " * (2 * MB // 5), "line 1 is 2,097,150 characters long"),
    ("line.md", b"# " + b"x" * 2 * MB, "characters long"),
    ("line.html", b"<p>" + b"word " * (2 * MB // 5) + b"</p>", "segment 1 .* characters long"),
]


# ids by name: a test id holding megabytes of bytes would land in PYTEST_CURRENT_TEST, too big for the child's env
@pytest.mark.parametrize("name,data,message", BAD_UPLOADS, ids=[name for name, _, _ in BAD_UPLOADS])
def test_bad_uploads_get_a_clear_message(name, data, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        child_parse(data, name)
    assert "Traceback" not in str(caught.value)


def test_a_wrongly_encoded_file_is_read_and_said():
    doc = child_parse("Ærger og glæde på én linje.\n".encode("cp1252"), "latin.txt")
    assert doc.texts() == ["Ærger og glæde på én linje."] and "Windows-1252" in doc.notes[0]


def test_an_xml_entity_bomb_is_not_expanded():
    try:   # libxml2 refuses the amplification outright; an older one leaves the entity unexpanded
        doc = child_parse(samples.make_entity_bomb_docx(), "laughs.docx")
    except InvalidInput as exc:
        assert "entity amplification" in exc.message
    else:
        assert "Annual report" in doc.texts() and all("lollol" not in t for t in doc.texts())


def test_fifty_thousand_subtitles_parse_whole():
    blocks = "".join(f"{k}\n00:00:{k % 60:02d},000 --> 00:00:{k % 60:02d},500\nLine {k} of the film.\n\n"
                     for k in range(1, 50_001))
    doc = child_parse(blocks.encode(), "long.srt")
    assert len(doc.segments) == 50_000 and doc.texts()[-1] == "Line 50000 of the film."


def test_html_scripts_and_event_handlers_never_reach_a_segment():
    doc = child_parse(samples.HOSTILE_HTML.encode(), "page.html")
    texts = " ".join(doc.texts())
    for hostile in ("alert", "steal", "cookie", "evil", "pwn", "svg text", "javascript", "background"):
        assert hostile not in texts, hostile
    assert doc.render(doc.texts()).decode() == samples.HOSTILE_HTML


# Each of these took seconds to hours before the parsers were made linear (a heading of 8,000 spaces:
# 1.1 s, growing with the square); at ~190,000 characters each must finish inside a 3 s CPU limit.
N = 190_000
ONCE_QUADRATIC = {
    "heading of spaces": (b"# " + b" " * N + b"x\n", "a.md"),
    "line of brackets": (b"a " + b"[" * N + b"\n", "a.md"),
    "open images": (b"a " + b"![a](" * (N // 5) + b"\n", "a.md"),
    "backticks then text": (b"a " + b"`" * (N // 2) + b"x" * (N // 2) + b"\n", "a.md"),
    "open tags in markdown": (b"a " + b"<a" * (N // 2) + b"\n", "a.md"),
    "table separator of spaces": (b"a|b\n|" + b" " * N + b"-x\n", "a.md"),
    "subtitle of many lines": (b"1\n00:00:01,000 --> 00:00:02,000\n" + b"word two\n" * (N // 9), "a.srt"),
    "subtitle of open tags": (b"1\n00:00:01,000 --> 00:00:02,000\n" + b"<a" * (N // 2) + b"\n", "a.srt"),
    "html of open tags": (b"<p>a " + b"<a" * (N // 2), "a.html"),
    "html of open end tags": (b"<p>a " + b"</" * (N // 2), "a.html"),
    "html of entities": (b"<p>a " + b"&" * N, "a.html"),
}


@pytest.mark.parametrize("case", list(ONCE_QUADRATIC))
def test_once_quadratic_inputs_parse_within_a_small_cpu_limit(case):
    data, name = ONCE_QUADRATIC[case]
    try:
        child_parse(data, name, cpu_s=3)
    except InvalidInput as exc:   # a clear refusal (too long a segment, no text) is fine; running out is not
        assert "CPU" not in exc.message and "took too long" not in exc.message, exc.message


def test_a_parse_over_its_cpu_limit_is_stopped_and_said():
    many_lines = b"A short line of prose.\n" * 1_500_000   # ~35 MB: many seconds of parsing
    with pytest.raises(InvalidInput, match="CPU time"):
        child_parse(many_lines, "long.txt", cpu_s=1)


def test_a_parse_over_its_memory_limit_is_stopped_and_said():
    many_lines = b"A short line of prose.\n" * 1_000_000
    with pytest.raises(InvalidInput, match="memory"):
        child_parse(many_lines, "long.txt", memory_bytes=160 * MB)
