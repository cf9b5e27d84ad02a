"""Word (.docx, by python-docx) and PDF (by pypdf: text out, .docx or .txt back).

docx: every paragraph of the body, its tables (nested too), text boxes, headers and footers is a
segment. Within a paragraph, runs of one formatting are grouped; the most used formatting is the
base and every other group (bold, italic, a hyperlink) is wrapped in an open/close tag pair, so the
translation can put the bold word where the target language puts it. Runs that hold more than text
(a picture, a tab, a field) stay where they are as a single tag. Render rebuilds each paragraph's
runs from copies of the originals, so fonts, sizes and colours come back with the text.

pdf: the text layer only, page by page; lines are joined into paragraphs (a short line, a line
ending a sentence, or a bullet starts a new one; a hyphen at a line end is joined). The layout of a
PDF cannot be rebuilt from its text, so the result is a .docx (one page per page) or a .txt (pages
split by a form feed), and the page says so. A PDF without a text layer (a scan) is refused.
"""
from __future__ import annotations

import copy
import io
import re

from ..errors import InvalidInput
from .formats import Format, register
from .parsed import ParsedDocument
from .segment import TAG_TOKEN, Segment, TaggedText, without_reserved

# ---- docx ----
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_RUN_TEXT_ONLY = {f"{W}rPr", f"{W}t", f"{W}lastRenderedPageBreak"}
# Characters XML 1.0 cannot hold (lxml refuses them): a PDF's text layer or a model's output may have them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _open_docx(data: bytes, name: str):
    from docx import Document

    try:
        return Document(io.BytesIO(data))
    except Exception as exc:   # PackageNotFoundError, KeyError (missing part), XMLSyntaxError, ...
        raise InvalidInput(f"{name} is damaged or not a Word document: {type(exc).__name__}: {exc}",
                           "open it in Word and save it as .docx again") from exc


def _docx_paragraphs(document) -> list:
    """Every <w:p> in a fixed order: the body (tables and text boxes included), then headers/footers."""
    paragraphs = list(document.element.body.iter(f"{W}p"))
    rels = sorted(document.part.rels.values(), key=lambda r: r.rId)
    for rel in rels:
        if rel.reltype.endswith(("/header", "/footer")) and not rel.is_external:
            paragraphs += list(rel.target_part.element.iter(f"{W}p"))
    return paragraphs


def _docx_items(p) -> list[dict]:
    """The paragraph's runs and hyperlinks as items: text groups (adjacent runs of one formatting),
    hyperlinks, and opaque runs (pictures, tabs, fields) that are kept whole."""
    items: list[dict] = []
    for child in p:
        if child.tag == f"{W}r":
            if {c.tag for c in child} <= _RUN_TEXT_ONLY:
                rpr = child.find(f"{W}rPr")
                signature = _xml(rpr)
                text = "".join(t.text or "" for t in child.iter(f"{W}t"))
                if items and items[-1]["kind"] == "text" and items[-1]["signature"] == signature:
                    items[-1]["elements"].append(child)
                    items[-1]["text"] += text
                else:
                    items.append({"kind": "text", "signature": signature, "elements": [child], "text": text})
            else:
                items.append({"kind": "opaque", "elements": [child], "text": ""})
        elif child.tag == f"{W}hyperlink":
            text = "".join(t.text or "" for t in child.iter(f"{W}t"))
            items.append({"kind": "link", "elements": [child], "text": text})
    return items


def _xml(element) -> bytes:
    from lxml import etree

    return b"" if element is None else etree.tostring(element)


def _base_signature(items: list[dict]) -> bytes | None:
    weights: dict[bytes, int] = {}
    for item in items:
        if item["kind"] == "text":
            weights[item["signature"]] = weights.get(item["signature"], 0) + len(item["text"])
    return max(weights, key=weights.get) if weights else None


def _docx_kind(p) -> str:
    style = p.find(f"{W}pPr/{W}pStyle")
    style_id = (style.get(f"{W}val") or "") if style is not None else ""
    ancestors = {a.tag for a in p.iterancestors()}
    if style_id.lower().startswith(("heading", "title", "subtitle")) or p.find(f"{W}pPr/{W}outlineLvl") is not None:
        return "heading"
    if p.find(f"{W}pPr/{W}numPr") is not None or style_id.lower().startswith("list"):
        return "list"
    if f"{W}tc" in ancestors:
        return "cell"
    return "paragraph"


def _parse_docx(doc: ParsedDocument) -> None:
    document = _open_docx(doc.data, doc.name)
    for index, p in enumerate(_docx_paragraphs(document)):
        items = _docx_items(p)
        if not any(item["text"].strip() for item in items):
            continue
        base = _base_signature(items)
        tagged = TaggedText()
        for k, item in enumerate(items):
            if item["kind"] == "opaque":
                tagged.tag(f"s{k}")
            elif item["kind"] == "text" and item["signature"] == base:
                tagged.text(item["text"])
            else:
                tagged.tag(f"o{k}")
                tagged.text(item["text"])
                tagged.tag(f"c{k}")
        doc.segments.append(Segment(tagged.value(), {"p": index}, kind=_docx_kind(p), tags=tagged.tags))


def _set_run_text(run, text: str) -> None:
    for child in list(run):
        if child.tag != f"{W}rPr":
            run.remove(child)
    t = run.makeelement(f"{W}t", {})
    t.text = _NOT_XML.sub("", text)
    t.set(XML_SPACE, "preserve")
    run.append(t)


def _render_docx(doc: ParsedDocument, translations: list[str], keep_source: bool = False) -> bytes:
    """keep_source: each translated paragraph follows a copy of its source paragraph (bilingual.py)."""
    document = _open_docx(doc.data, doc.name)
    paragraphs = _docx_paragraphs(document)
    for segment, translated in zip(doc.segments, translations):
        p = paragraphs[segment.ref["p"]]
        if keep_source:
            p.addprevious(copy.deepcopy(p))
        items = _docx_items(p)
        base = _base_signature(items)
        base_run = next((i["elements"][0] for i in items if i["kind"] == "text" and i["signature"] == base), None)
        new: list = []
        current: int | None = None
        last = 0
        for match in list(TAG_TOKEN.finditer(translated)) + [None]:
            piece = translated[last:match.start() if match else len(translated)]
            if piece:
                new.append(_docx_text_element(p, items, current, base_run, piece))
            if match is None:
                break
            last = match.end()
            index = int(match.group(1))
            tag = segment.tags[index] if index < len(segment.tags) else ""
            k = int(tag[1:]) if tag[1:].isdigit() else -1
            if not 0 <= k < len(items):
                continue
            if tag[0] == "o":
                current = k
            elif tag[0] == "c":
                current = None
            elif tag[0] == "s":
                new.append(items[k]["elements"][0])
        old = [e for item in items for e in item["elements"]]
        position = list(p).index(old[0]) if old else len(p)
        for element in old:
            p.remove(element)
        for offset, element in enumerate(new):
            p.insert(position + offset, element)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _docx_text_element(p, items: list[dict], current: int | None, base_run, text: str):
    """A run (or hyperlink) copied from the original whose formatting this text carries."""
    item = items[current] if current is not None else None
    if item is not None and item["kind"] == "link":
        link = copy.deepcopy(item["elements"][0])
        runs = link.findall(f"{W}r")
        for extra in runs[1:]:
            link.remove(extra)
        if runs:
            _set_run_text(runs[0], text)
        else:
            run = link.makeelement(f"{W}r", {})
            _set_run_text(run, text)
            link.append(run)
        return link
    template = item["elements"][0] if item is not None and item["kind"] == "text" else base_run
    run = copy.deepcopy(template) if template is not None else p.makeelement(f"{W}r", {})
    _set_run_text(run, text)
    return run


# ---- pdf ----
_BULLET = re.compile(r"^\s*(?:[-•*▪◦]|\d+[.)])\s+")


def _pdf_pages(data: bytes, name: str, max_pages: int) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")   # some PDFs are encrypted with an empty user password
            except DependencyError as exc:
                raise InvalidInput(f"{name} is encrypted with a method this machine cannot open ({exc})",
                                   "save an unprotected copy of the PDF and upload that") from exc
            if not opened:
                raise InvalidInput(f"{name} is password-protected",
                                   "save an unprotected copy of the PDF and upload that")
        if len(reader.pages) > max_pages:
            raise InvalidInput(f"{name} has {len(reader.pages):,} pages (the limit is {max_pages:,})",
                               "split the PDF into smaller files")
        pages = []
        for page in reader.pages:
            try:   # layout mode keeps the blank lines between paragraphs; plain mode drops them
                text = page.extract_text(extraction_mode="layout") or ""
            except Exception:   # pypdf's layout mode fails on some fonts; plain text is still better than none
                text = page.extract_text() or ""
            text = _NOT_XML.sub("", text)
            pages.append("\n".join(re.sub(r"\s{2,}", " ", line).strip() for line in text.splitlines()))
        return pages
    except InvalidInput:
        raise
    except Exception as exc:   # pypdf on a damaged file raises many kinds (PdfReadError, LimitReachedError, ...)
        raise InvalidInput(f"{name} is damaged: it cannot be read as a PDF ({type(exc).__name__}: {exc})",
                           "open it in a PDF viewer and save or print it to a new PDF") from exc


def pdf_paragraphs(page_text: str) -> list[str]:
    lines = [line.rstrip() for line in page_text.splitlines()]
    width = max((len(line.strip()) for line in lines), default=0)
    paragraphs, current = [], []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            if current:
                paragraphs.append(current)
            current = []
            continue
        if current:
            prev = current[-1]
            ends = prev.endswith((".", "!", "?", ":", "。", "！", "？"))
            if (ends and len(prev) < 0.85 * width) or len(prev) < 0.5 * width or _BULLET.match(stripped):
                paragraphs.append(current)
                current = []
        current.append(stripped)
    if current:
        paragraphs.append(current)
    out = []
    for lines_ in paragraphs:
        text = lines_[0]
        for line in lines_[1:]:
            if text.endswith("-") and line[:1].islower():   # a word hyphenated at the line end
                text = text[:-1] + line
            else:
                text += " " + line
        out.append(text)
    return out


def _parse_pdf(doc: ParsedDocument) -> None:
    pages = _pdf_pages(doc.data, doc.name, doc.limits.max_pdf_pages)
    for number, page_text in enumerate(pages):
        for k, paragraph in enumerate(pdf_paragraphs(page_text)):
            doc.segments.append(Segment(without_reserved(paragraph), {"page": number, "para": k}))
    if not doc.segments:
        raise InvalidInput(f"{doc.name} has no text layer: it looks like a scanned image ({len(pages)} page(s))",
                           "run OCR on it first (for example ocrmypdf), then upload the result")
    doc.notes.append(f"A PDF's layout cannot be rebuilt: the translation is a .{doc.output_format} with the "
                     "PDF's pages and paragraphs" + (" (one page per page)." if doc.output_format == "docx"
                                                     else " (pages separated by a form feed)."))


def _render_pdf(doc: ParsedDocument, translations: list[str]) -> bytes:
    pages: dict[int, list[str]] = {}
    for segment, translated in zip(doc.segments, translations):
        pages.setdefault(segment.ref["page"], []).append(translated)
    count = max(pages) + 1 if pages else 0
    if doc.output_format == "txt":
        return "\n\f\n".join("\n\n".join(pages.get(n, [])) for n in range(count)).encode("utf-8") + b"\n"
    from docx import Document
    from docx.enum.text import WD_BREAK

    document = Document()
    for n in range(count):
        paragraphs = pages.get(n, [])
        for text in paragraphs:
            document.add_paragraph(_NOT_XML.sub("", text))
        if n < count - 1:
            document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def parse(doc: ParsedDocument) -> None:
    (_parse_docx if doc.format == "docx" else _parse_pdf)(doc)


def render(doc: ParsedDocument, translations: list[str]) -> bytes:
    return (_render_docx if doc.format == "docx" else _render_pdf)(doc, translations)


_DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
register(Format("docx", (".docx",), _DOCX_MIME, "docx", parse, render))
register(Format("pdf", (".pdf",), "application/pdf", "pdf", parse, render))
