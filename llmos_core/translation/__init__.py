"""Document translation: a document in, the same format out, its structure kept.

    doc = documents.parse(data, "report.docx")            # checked, cut into segments
    with translator.open_engine(engine, "opus-mt-en-de") as model:
        texts = Translator(model, target="de").translate(doc.texts(), progress)
    documents.write_output("report.de.docx", doc.render(texts))

segment.py holds the segment and what protects its content (tags, URLs, numbers, glossary terms);
alignment.py puts placeholders back into a translation that lost or broke them;
parsed.py the parsed document and its limits; formats.py the registry each format module (text_formats,
html_format, office_formats) adds itself to; documents.py the checks every file passes and the entry;
isolation.py the same parse in a child process with CPU and memory limits, for untrusted uploads;
languages.py the language list and detection; seq2seq_engine and causal_engine the engines;
translator.py the batching, caching Translator; job.py the job kind.
"""
from .documents import ParsedDocument, parse, parse_pasted, write_output
from .languages import detect_language
from .segment import Segment, parse_glossary
from .translator import Translator, open_engine

__all__ = ["ParsedDocument", "Segment", "Translator", "detect_language", "open_engine", "parse", "parse_pasted",
           "parse_glossary", "write_output"]
