"""`translate`: a document in, the translated document out, in the same format (a PDF as .docx or .txt).

    python -m llmos_core translate report.docx --to de [--from en] [--model NAME] [--glossary FILE] -o out.docx

Runs in this process with its own engine (the model is loaded here, then freed); the output file is
written only once the whole document is translated.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..engine import Engine
from ..errors import InvalidInput
from ..models.catalog import DEFAULT_BASE_MODEL
from ..settings import Settings
from ..translation import documents, parse_glossary
from ..translation.isolation import parse_in_child
from ..translation.languages import LANGUAGES
from ..translation.model_choice import coverage_warning, default_translation_model
from ..translation.segment import to_display
from ..usecases import translate as translation
from . import acting_user, print_json, progress_printer


def register(subparsers) -> None:
    p = subparsers.add_parser("translate", help="translate a document ("
                              + " ".join(f".{t}" for t in translation.FILE_TYPES) + "), keeping its format")
    p.add_argument("input", help="the document to translate")
    p.add_argument("--to", dest="target", required=True, help="target language code: " + " ".join(sorted(LANGUAGES)))
    p.add_argument("--from", dest="source", default="auto", help="source language code (default: detected)")
    p.add_argument("--model", help="catalog name; default: the first translation (seq2seq) model, else the "
                                    f"best prompted LM (the embedded {DEFAULT_BASE_MODEL})")
    p.add_argument("--glossary", help="file of term pairs, one a line: term = translation (over the terms "
                   "saved for the language pair from the Translate page, which are always used)")
    p.add_argument("--pdf-as", choices=["docx", "txt"], default="docx", help="output format for a PDF (default docx)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--backend", default="auto", choices=["auto", "transformers", "transformers-int8", "llamacpp"],
                   help="what runs a prompted LM (default auto: llama.cpp for a GGUF model on the CPU)")
    p.add_argument("-o", "--output", help="output file (default: NAME.<lang>.<ext> beside the input)")
    p.add_argument("--json", action="store_true", help="print the output path and figures as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    path = Path(args.input)
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist or is not a file")
    glossary = parse_glossary(Path(args.glossary).read_text(encoding="utf-8")) if args.glossary else {}
    doc = parse_in_child(path.read_bytes(), path.name, settings.max_upload_mb * 1024**2, args.pdf_as)
    output = Path(args.output) if args.output else path.with_name(f"{path.stem}.{args.target}.{doc.output_format}")
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        model = args.model or default_translation_model(engine.catalog)
        request = translation.TranslationRequest(model, args.target, args.source, glossary, args.pdf_as,
                                                 args.batch_size, args.backend)
        outside = coverage_warning(engine.catalog.get(request.model), args.source, args.target)
        report = progress_printer("")
        done = translation.translate_here(
            engine, acting_user(args, engine.store), doc, request,
            None if args.json else lambda n, total, eta: report(n / max(total, 1), f"{n}/{total} segments"
                                                                + (f", {eta:.0f} s left" if eta is not None else "")),
            load_progress=None if args.json else progress_printer(f"{request.model} "))
    finally:
        engine.close()
    documents.write_output(output, doc.render(done.translations))
    stats = done.stats
    # kept_source: how many segments are still in the source language; not_translated: which, with their text
    result = {**stats, "output": str(output), "model": request.model, "format": doc.format,
              "output_format": doc.output_format, "notes": [*doc.notes, *stats.get("notes", []), *([outside] if outside else [])],
              "not_translated": [{"segment": i + 1, "source": to_display(done.sources[i])} for i in done.untranslated]}
    if args.json:
        print_json(result)
    else:
        for note in result["notes"]:
            print(f"note: {note}", file=sys.stderr)
        print(f"{output} ({len(done.translations)} segments from {stats['source']} in {stats['seconds']:.1f} s; "
              f"{stats['cached']} from the cache; {stats['backend_reason'] or stats['backend']})")
        if done.untranslated:
            print(f"{done.not_translated}: kept in the source language, translate them by hand:")
            for row in result["not_translated"]:
                print(f"  segment {row['segment']}: {row['source'][:120]}")
    return 0
