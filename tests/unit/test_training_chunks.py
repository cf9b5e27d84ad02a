"""Documents -> a continued pre-training set: cleaning, chunks that never pass the token length (paragraphs,
then sentences, then token slices), parsing in the isolated child, the kept JSONL training like any text
file; and the formatted examples (Alpaca's instruction/input/output) the model will see."""
from __future__ import annotations

import json

import pytest

import tiny_models
from translation_samples import make_docx, make_pdf
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.errors import InvalidInput
from llmos_core.settings import Settings
from llmos_core.training import chunks, data
from llmos_core.usecases import datasets


@pytest.fixture(scope="module")
def tok():
    return tiny_models.make_tokenizer(chat_template=False)


def count(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_cleaning_drops_tags_page_numbers_and_running_headers():
    texts = ["Report \ue0000\ue001bold\ue0001\ue001 text,   spread  out.", "12", "ACME Corp — confidential",
             "Second paragraph.", "ACME Corp — confidential", "ACME Corp — confidential", "— 3 —"]
    kept, dropped = chunks.clean_paragraphs(texts)
    assert kept == ["Report bold text, spread out.", "Second paragraph."]
    assert dropped == 5
    assert chunks.clean_paragraphs(["Page 3 of 9", "p. 4", "1984 was a year."])[0] == ["1984 was a year."]


def test_no_chunk_passes_the_length_and_no_text_is_lost(tok):
    sentence = "The quick brown fox jumps over the lazy dog."
    paragraphs = ["A short opening.", " ".join([sentence] * 12), "x" * 300, "A closing line."]
    result = chunks.make_chunks(paragraphs, tok, 32)
    assert len(result.texts) > 3
    for text, n in zip(result.texts, result.tokens):
        assert n == count(tok, text) and n <= 32
    joined = " ".join(result.texts).split()
    assert joined.count("fox") == 12 and "opening." in joined and "closing" in joined
    assert result.texts[0].startswith("A short opening.")           # short paragraphs share a chunk
    assert all(len(t) < 300 for t in result.texts)                  # the unbroken run was cut at tokens


def test_short_paragraphs_are_joined_up_to_the_length(tok):
    result = chunks.make_chunks([f"Paragraph number {i} is here." for i in range(20)], tok, 64)
    assert len(result.texts) < 20 and all(n <= 64 for n in result.tokens)
    assert result.texts[0].split("\n\n")[:2] == ["Paragraph number 0 is here.", "Paragraph number 1 is here."]


def test_bad_lengths_and_empty_documents_are_refused(tok):
    with pytest.raises(InvalidInput, match="out of range"):
        chunks.make_chunks(["text"], tok, 4)
    with pytest.raises(InvalidInput, match="no text"):
        chunks.make_chunks(["12", "   ", "—"], tok, 64)


@pytest.fixture
def tiny(home, tiny_base):
    from llmos_core.models.catalog import Catalog
    from llmos_core.store import Store

    settings = Settings.from_env()
    catalog = Catalog(Store(settings.db_path))
    spec = catalog.resolve(str(tiny_base))
    spec.name = "tiny"
    catalog.register(spec)
    return settings


def test_documents_become_a_text_training_set(tiny):
    settings = tiny
    html = b"<html><body><h1>Foxes</h1><p>The fox is quick.</p><p>Page 1</p><p>It jumps over dogs.</p></body></html>"
    pdf = make_pdf([["Foxes live in forests.", "7"], ["They hunt at night."]])
    documents = datasets.read_documents(settings, [("a.html", html), ("report.docx", make_docx()), ("b.pdf", pdf)])
    assert documents.names == ["a.html", "report.docx", "b.pdf"]
    text = " ".join(documents.paragraphs)
    assert "The fox is quick." in text and "Everything went well." in text and "hunt at night" in text
    result = datasets.chunk_documents(settings, documents, "tiny", 24)
    assert all(n <= 24 for n in result.tokens) and "Page 1" not in " ".join(result.texts)
    kept = datasets.save_chunks(settings, LOCAL_ADMIN, documents, result, 24)
    assert kept.name.startswith("a-and-2-chunks24") and kept.name.endswith(".jsonl")
    rows = [json.loads(line) for line in kept.path.read_text().splitlines()]
    assert [r["text"] for r in rows] == result.texts
    assert datasets.read_dataset(kept).shape == data.TEXT          # trains like any text file


def test_documents_are_checked_before_parsing(tiny):
    with pytest.raises(InvalidInput, match="not a document"):
        datasets.read_documents(tiny, [("run.exe", b"MZ...")])
    with pytest.raises(InvalidInput):                               # parsed in the child, refused there
        datasets.read_documents(tiny, [("broken.docx", b"PK\x03\x04 not a zip really")])


def test_alpaca_input_joins_the_prompt_and_the_preview_shows_the_formatted_example(tiny, tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps({"instruction": "Translate.", "input": "Hello", "output": "Bonjour"}) + "\n"
                    + json.dumps({"instruction": "Greet.", "input": "", "output": "Hi!"}) + "\n")
    dataset = data.load(path)
    assert [e["prompt"] for e in dataset.examples] == ["Translate.\n\nHello", "Greet."]
    mapped = data.load(path, {"prompt": "output", "input": "instruction", "response": "output"})
    assert mapped.examples[0]["prompt"] == "Bonjour\n\nTranslate."
    assert datasets.tokenizer_ready(tiny, "tiny")
    first, _ = datasets.formatted_examples(tiny, dataset, "tiny")
    assert first["prompt"].endswith("Assistant:") and "Translate.\n\nHello" in first["prompt"]
    assert first["response"] == " Bonjour"
