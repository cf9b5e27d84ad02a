"""Ask end to end with the embedded models (all-MiniLM-L6-v2 ranks, SmolLM2 on llama.cpp words) on two
documents of the evaluation set (tests/data/qa/) and three of its questions: the reply quotes the
sentence that holds the expected words with its citation, any model wording shown passed the check, and a
question the documents do not answer is declined. bench/quality.py runs the whole set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.__main__ import main
from llmos_core.engine import Engine
from llmos_core.rag.grounding import check_claims
from llmos_core.settings import Settings
from llmos_core.usecases import ask
from llamacpp_required import binding  # noqa: F401

pytestmark = pytest.mark.slow
QA = Path(__file__).resolve().parents[1] / "data" / "qa"


@pytest.fixture
def engine(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    reports = ask.add_files(engine, LOCAL_ADMIN, "qa", [(name, (QA / name).read_bytes()) for name in ("library.md", "lab-safety.txt")])
    assert [r.status for r in reports] == ["embedded", "embedded"]
    yield engine
    engine.close()


def test_ask_quotes_the_answer_and_declines_what_the_documents_do_not_say(engine, binding, capsys):  # noqa: F811
    questions = {q["question"]: q for q in json.loads((QA / "questions.json").read_text())["questions"]}
    engine.close()                        # the CLI makes its own engine over the same data folder
    for question in ["What is the late fee for a library item?", "Who is the laboratory manager?"]:
        assert main(["ask", "--collection", "qa", "--json", question]) == 0
        reply = json.loads(capsys.readouterr().out)
        assert reply["answered"] and reply["quotes"], reply
        quote = reply["quotes"][0]
        assert all(w.lower() in quote["text"].lower() for w in questions[question]["expect"])
        assert quote["file"] == questions[question]["file"] and reply["citations"][0]["cited"]
        assert reply["citations"][0]["number"] == quote["number"] and quote["text"] in reply["citations"][0]["passage"]
        wording = reply["model_wording"]
        assert 1 <= len(wording["tries"]) <= 2
        if wording["shown"]:
            assert check_claims(wording["text"], [q["text"] for q in reply["quotes"]]).supported
            assert wording["text"] in reply["answer"]
    assert main(["ask", "--collection", "qa", "--json", "How many parking spaces does the library have?"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert not reply["answered"] and reply["quotes"] == [] and reply["model_wording"] is None
