"""Documents in, segments out, and back: which format a file is, the limits every upload passes, and
the output written whole or not at all.

`parse(data, filename)` checks the bytes (size, real type, zip-bomb cap, encoding) and hands them to
the format registered for the file's suffix (text_formats: txt md srt; html_format; office_formats:
docx pdf), which fills in the segments with pointers to their places. `ParsedDocument.render(translations)`
re-reads the original and puts each translation in its place, so the same parse can be rendered again
after the user edits a segment. Untrusted uploads are parsed in a child process: see isolation.py.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from ..errors import InvalidInput, format_bytes
from . import formats
from . import html_format, office_formats, text_formats  # noqa: F401  (each registers its formats)
from .parsed import ParsedDocument, ParseLimits, decode_text

__all__ = ["ParsedDocument", "ParseLimits", "decode_text", "detect_format", "parse", "parse_pasted", "write_output"]

# A .docx is a zip: refuse one that would unpack to more than this, or to absurdly many files.
MAX_UNZIPPED_BYTES = 256 * 1024**2
MAX_ZIP_ENTRIES = 5000
DEFAULT_MAX_BYTES = 200 * 1024**2


def detect_format(filename: str, data: bytes) -> str:
    """The format from the name, checked against what the bytes really are."""
    suffix = Path(filename).suffix.lower()
    fmt = formats.by_suffix(suffix)
    if fmt is None:
        raise InvalidInput(f"{filename}: {suffix or 'no extension'} is not a format this page translates",
                           "upload .txt, .md, .docx, .pdf, .srt or .html")
    actual = sniff(data)
    if fmt.content == "docx" and actual == "ole":
        raise InvalidInput(f"{filename} is password-protected (or an old .doc file)",
                           "remove the password in Word (File > Info > Protect Document) or save as .docx, "
                           "then upload again")
    if fmt.content != "text" and actual != fmt.content:
        raise InvalidInput(f"{filename} is not a real {fmt.name.upper()} file"
                           + (f" (it looks like {_describe(actual)})" if actual != "text" else ""),
                           f"upload the original .{fmt.name}, or give the file its right extension")
    if fmt.content == "text" and actual != "text":
        raise InvalidInput(f"{filename} is {_describe(actual)}, not text", "give the file its right extension")
    return fmt.name


def sniff(data: bytes) -> str:
    head = data[:8]
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "docx"
    if head.lstrip().startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if _looks_binary(data[:65536]):
        return "binary"
    return "text"


def _describe(kind: str) -> str:
    return {"docx": "a zip or .docx file", "pdf": "a PDF", "ole": "an old Office file",
            "binary": "binary data"}.get(kind, kind)


def _looks_binary(chunk: bytes) -> bool:
    if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):   # UTF-16 text with a BOM
        return False
    if b"\x00" in chunk:
        return True
    control = sum(1 for b in chunk if b < 32 and b not in (9, 10, 12, 13, 27))
    return bool(chunk) and control / len(chunk) > 0.05


def check_zip(data: bytes, filename: str) -> None:
    """Refuse a corrupt zip, or one that unpacks to more than MAX_UNZIPPED_BYTES (a zip bomb)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"{filename} is damaged: it cannot be opened as a .docx ({exc})",
                           "open it in Word and save it again") from exc
    if len(entries) > MAX_ZIP_ENTRIES:
        raise InvalidInput(f"{filename} holds {len(entries)} files inside; a document has far fewer",
                           "this does not look like a real .docx")
    # The declared sizes bound what zipfile will ever unpack, so summing them is enough.
    total = sum(e.file_size for e in entries)
    if total > MAX_UNZIPPED_BYTES:
        raise InvalidInput(f"{filename} would unpack to {format_bytes(total)} (limit {format_bytes(MAX_UNZIPPED_BYTES)})",
                           "this looks like a zip bomb, not a document; it was not opened")


def parse(data: bytes, filename: str, max_bytes: int = DEFAULT_MAX_BYTES, pdf_output: str = "docx",
          limits: ParseLimits | None = None) -> ParsedDocument:
    """Check and cut a document into segments. Raises InvalidInput with a clear message for bad files."""
    if len(data) > max_bytes:
        raise InvalidInput(f"{filename} is {format_bytes(len(data))}, over the upload limit of {format_bytes(max_bytes)}",
                           "split the document, or raise LLMOS_MAX_UPLOAD_MB")
    if not data.strip():
        raise InvalidInput(f"{filename} is empty", "upload a document with some text in it")
    fmt = detect_format(filename, data)
    if fmt == "docx":
        check_zip(data, filename)
    if pdf_output not in ("docx", "txt"):
        raise InvalidInput(f"a PDF can be written as docx or txt, not {pdf_output}")
    doc = ParsedDocument(fmt, filename, [], data, output_format=pdf_output if fmt == "pdf" else fmt,
                         limits=limits or ParseLimits())
    formats.get(fmt).parse(doc)
    if not doc.segments:
        raise InvalidInput(f"{filename} has no text to translate", "upload a document with some text in it")
    doc.check_limits()
    return doc


def parse_pasted(text: str) -> ParsedDocument:
    if not text.strip():
        raise InvalidInput("nothing was pasted", "paste some text, or upload a document")
    return parse(text.encode("utf-8"), "pasted.txt")


def write_output(path: Path | str, data: bytes) -> Path:
    """Write to a temporary name beside the target, then rename: a reader sees all of it or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path
