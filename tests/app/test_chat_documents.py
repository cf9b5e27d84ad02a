"""AppTest of "Attach documents" on the Chat page: with a collection attached, a message is answered
from its passages (through usecases/ask.py) and the reply shows its citations, also after a rerun; a
message no passage matches gets the not-found answer; the conversation keeps its attachment.
The embedder is a stand-in (hashed bag of words), so no embedding model loads."""
import json
import shutil

import pytest

from llmos_core.embeddings import Embeddings, EmbeddingService
from llmos_core.engine import get_engine
from llmos_core.settings import Settings
from llmos_core.usecases import ask
from rag_samples import bag_of_words
from llmos_core.accounts import LOCAL_ADMIN

POLICY = b"# Leave\n\n## Annual leave\n\nEvery employee receives 27 days of paid annual leave per year.\n"
SECURITY = b"Password rules\n\nPasswords must be at least 14 characters long.\n"


@pytest.fixture
def engine(home, monkeypatch):
    monkeypatch.setattr(EmbeddingService, "embed", lambda self, model, texts: Embeddings(bag_of_words(texts), 0))
    return get_engine(Settings.from_env())


@pytest.fixture
def tiny_chat(engine, tiny_causal, tmp_path):
    folder = tmp_path / "tiny-wide"            # a 2,048-token window: rotary positions, only the config changes
    shutil.copytree(tiny_causal, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return engine.catalog.register(engine.catalog.resolve(str(folder))).name


def test_attached_documents_answer_with_citations(engine, tiny_chat, new_app):
    ask.add_files(engine, LOCAL_ADMIN, "handbook", [("policy.md", POLICY), ("security.txt", SECURITY)])
    at = new_app(timeout=120)
    at.switch_page("app_pages/chat.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="chat_collection").options == ["None", "handbook"]
    at.selectbox(key="chat_model").set_value(tiny_chat).run()
    at.number_input(key="chat_max_new_tokens").set_value(8).run()
    at.selectbox(key="chat_collection").set_value("handbook").run()
    at.chat_input(key="chat_input").set_value("How long must passwords be?").run()
    assert not at.exception, at.exception
    labels = [e.label for e in at.chat_message[1].expander]
    assert labels and labels[0].startswith("[1] security.txt")
    [conversation] = engine.conversations.list(LOCAL_ADMIN)
    saved = engine.conversations.get(LOCAL_ADMIN, conversation["id"])
    reply = saved["messages"][-1]
    assert saved["settings"]["collection"] == "handbook" and reply["stats"]["citations"][0]["file"] == "security.txt"
    assert reply["stats"]["context"]["passages"] > 0
    grounding = reply["stats"]["grounding"]             # the tiny model's words, checked against the passages
    assert grounding["method"] and isinstance(grounding["claims"], list)
    unsupported = [c for c in grounding["claims"] if not c["supported"]]
    assert bool(unsupported) == any("Not in the documents" in w.value for w in at.chat_message[1].warning)

    at.chat_input(key="chat_input").set_value("Where do penguins live?").run()
    assert not at.exception, at.exception
    assert at.chat_message[3].markdown[0].value == ask.NOT_FOUND

    at.button(key="chat_new").click().run()                 # a new chat keeps the choice; an old one brings its own
    at.selectbox(key="chat_collection").set_value("None").run()
    at.button(key=f"chat_open_{conversation['id']}").click().run()
    assert at.selectbox(key="chat_collection").value == "handbook"
