"""Document translation: a document in, the same format out, its structure kept.

    doc = documents.parse(data, "report.docx")            # checked, cut into segments
    with translator.open_engine(engine, "opus-mt-en-de") as model:
        texts = Translator(model, target="de").translate(doc.texts(), progress)
    documents.write_output("report.de.docx", doc.render(texts))

segment.py holds the segment and what protects its content (tags, URLs, numbers, glossary terms);
documents.py the formats' entry and the limits; text_formats, html_format and office_formats the
formats; translator.py the engines and the batching, caching Translator; job.py the job kind.
"""
from .documents import ParsedDocument, parse, parse_pasted, write_output
from .segment import Segment, parse_glossary
from .translator import Translator, detect_language, open_engine

__all__ = ["ParsedDocument", "Segment", "Translator", "detect_language", "open_engine", "parse", "parse_pasted",
           "parse_glossary", "write_output"]
