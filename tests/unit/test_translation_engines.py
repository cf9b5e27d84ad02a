"""Real models through the real path: a tiny seq2seq (BART) and a tiny causal LM, loaded by the engine's
memory manager; the CLI; the job kind's run(ctx); each family's language codes."""
from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest

import translation_samples as samples
from llmos_core.engine import Engine
from llmos_core.errors import InvalidInput
from llmos_core.jobs.context import JobContext
from llmos_core.settings import Settings
from llmos_core.translation import documents, job, open_engine
from llmos_core.translation.seq2seq_engine import Seq2SeqEngine
from llmos_core.translation.translator import Translator


@pytest.fixture
def engine(home, tiny_seq2seq, tiny_base):
    eng = Engine(Settings.from_env(), primary=False, start_threads=False)
    for folder, name in ((tiny_seq2seq, "tiny-mt"), (tiny_base, "tiny-lm")):
        spec = eng.catalog.resolve(str(folder))
        spec.name = name
        eng.catalog.register(spec)
    yield eng
    eng.close()


def _timings(text: str) -> list[str]:
    return re.findall(r"^\d\d:\d\d:\d\d,\d{3} --> .*$", text, re.M)


def test_tiny_seq2seq_keeps_structure_of_every_format(engine):
    from docx import Document

    with open_engine(engine, "tiny-mt") as model:
        assert isinstance(model, Seq2SeqEngine) and model.family == "generic"
        for name, data in (("a.md", samples.MARKDOWN.encode()), ("a.srt", samples.SRT.encode()),
                           ("a.html", samples.HTML.encode()), ("a.docx", samples.make_docx())):
            doc = documents.parse(data, name)
            translator = Translator(model, "de", "en", batch_size=4)
            out = doc.render(translator.translate(doc.texts()))
            assert translator.stats.unique > 0 and translator.stats.batches >= 1
            if name == "a.md":
                assert re.findall(r"```.*?```", out.decode(), re.S) == re.findall(r"```.*?```", samples.MARKDOWN, re.S)
                assert out.decode().count("|") == samples.MARKDOWN.count("|")
            if name == "a.srt":
                assert _timings(out.decode()) == _timings(samples.SRT)
            if name == "a.html":
                assert re.findall(r"<[^>]+>", out.decode()) == re.findall(r"<[^>]+>", samples.HTML)
            if name == "a.docx":
                before, after = Document(io.BytesIO(data)), Document(io.BytesIO(out))
                assert [p.style.name for p in after.paragraphs] == [p.style.name for p in before.paragraphs]
                assert len(after.tables[0]._cells) == len(before.tables[0]._cells)
        assert engine.models.is_resident("tiny-mt")
    assert engine.models.resident()[0]["in_use"] == 0   # unpinned after use


def test_tiny_causal_lm_by_prompting(engine):
    with open_engine(engine, "tiny-lm") as model:
        assert "translates better" in model.notes[0]
        prompt = model.prompt("Hello ⟦0⟧.", "en", "de")
        assert "English: Thank you for your help.\nGerman: Vielen Dank für Ihre Hilfe." in prompt
        assert prompt.endswith("English: Hello ⟦0⟧.\nGerman:")
        doc = documents.parse(samples.SRT.encode(), "a.srt")
        texts = Translator(model, "de", "en", batch_size=3).translate(doc.texts())
    out = doc.render(texts).decode()
    assert _timings(out) == _timings(samples.SRT) and "10" in out


def test_language_tokens_per_family():
    vocab = {"deu_Latn": 5, "eng_Latn": 6, "__de__": 7, "__en__": 8, "de_DE": 9, "en_XX": 10, ">>deu<<": 11}
    tokenizer = SimpleNamespace(get_vocab=lambda: vocab, unk_token_id=0,
                                convert_tokens_to_ids=lambda t: vocab.get(t, 0))
    engine = Seq2SeqEngine.__new__(Seq2SeqEngine)
    engine.tokenizer, engine.name = tokenizer, "m"
    for family, wanted in (("nllb", "deu_Latn"), ("m2m100", "__de__"), ("mbart50", "de_DE")):
        engine.family = family
        assert engine._lang_token("de") == wanted
    engine.family = "nllb"
    with pytest.raises(InvalidInput, match="does not know the language French"):
        engine._lang_token("fr")
    engine.family = "marian"
    assert engine._prefix("en", "de") == ">>deu<< "
    engine.family = "t5"
    assert engine._prefix("en", "de") == "translate English to German: "


def test_opus_mt_pair_is_checked():
    model = SimpleNamespace(config=SimpleNamespace(model_type="marian"))
    engine = Seq2SeqEngine(model, SimpleNamespace(), name="opus-mt-en-de", location="Helsinki-NLP/opus-mt-en-de")
    engine.check("en", "de")
    with pytest.raises(InvalidInput, match="translates en to de, not to fr"):
        engine.check("en", "fr")


def test_cli_translate(engine, tmp_path, capsys):
    from llmos_core.__main__ import main

    source = tmp_path / "notes.md"
    source.write_text(samples.MARKDOWN)
    glossary = tmp_path / "terms.txt"
    glossary.write_text("server = Dienst\n")
    out = tmp_path / "notes.de.md"
    code = main(["translate", str(source), "--to", "de", "--from", "en", "--model", "tiny-mt", "--glossary",
                 str(glossary), "-o", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == str(out) and out.exists() and result["segments"] > 10
    assert result["backend"] == "transformers" and result["backend_reason"]   # the engine that ran, and why
    assert "Dienst" in out.read_text() and 'print("keep this code")' in out.read_text()
    assert main(["translate", str(tmp_path / "missing.md"), "--to", "de"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_bad_input_battery(home, tmp_path, capsys):
    """Every bad file through the CLI: exit code 1, one clear line on stderr, no traceback; no model is loaded."""
    from llmos_core.__main__ import main

    for name, data, message in (("empty.txt", b"", "is empty"), ("binary.md", bytes(range(256)) * 40, "binary data"),
                                ("bomb.docx", samples.make_zip_bomb(), "zip bomb"),
                                ("truncated.docx", samples.make_docx()[:3000], "damaged"),
                                ("entities.docx", samples.make_entity_bomb_docx(), "entity amplification|damaged"),
                                ("locked.pdf", samples.encrypt_pdf(samples.make_pdf(samples.PDF_PAGES)), "password"),
                                ("scan.pdf", samples.make_pdf([[]]), "no text layer"),
                                ("line.txt", b"word " * 420_000, "characters long")):
        path = tmp_path / name
        path.write_bytes(data)
        assert main(["translate", str(path), "--to", "de", "--model", "none"]) == 1, name
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, (name, err)


def test_job_validate_run_and_describe(engine, tmp_path):
    settings = Settings.from_env()
    upload = tmp_path / "film.srt"
    upload.write_bytes(samples.SRT.encode())
    params = job.validate({"input": str(upload), "target": "de", "source": "en", "model": "tiny-mt"}, settings)
    assert params["segments"] == 3 and job.describe(params) == "Translate film.srt to German with tiny-mt"
    assert job.estimate(params, settings)["memory_bytes"] > 0
    # Through the scheduler's submit (validate + estimate of the kind), run here directly as the worker would.
    job_id = engine.scheduler.submit("translate", {"input": str(upload), "target": "de", "source": "en",
                                                   "model": "tiny-mt"})
    assert engine.scheduler.get(job_id)["description"] == "Translate film.srt to German with tiny-mt"
    ctx = JobContext(job_id=job_id, kind="translate", params=params, settings=settings, store=engine.store,
                     work_dir=tmp_path / "job1")
    result = job.run(ctx)
    output = (tmp_path / "job1" / "film.srt")
    assert result["output"] == str(output) and _timings(output.read_bytes().decode()) == _timings(samples.SRT)
    saved = json.loads((tmp_path / "job1" / job.SEGMENTS_FILE).read_text())
    assert len(saved["sources"]) == len(saved["translations"]) == 3
    assert engine.scheduler.metrics(job_id) and engine.scheduler.get(job_id)["progress"] == 1.0
    cancelled = JobContext(job_id=job_id, kind="translate", params=params, settings=settings, store=engine.store,
                           work_dir=tmp_path / "job2")
    cancelled.cancel()
    assert job.run(cancelled) == {"cancelled": True}
    assert not (tmp_path / "job2" / "film.srt").exists()
    with pytest.raises(InvalidInput, match="malformed timing"):
        bad = tmp_path / "bad.srt"
        bad.write_text("1\nnot a timing\nHi\n")
        job.validate({"input": str(bad), "target": "de", "model": "tiny-mt"}, settings)
