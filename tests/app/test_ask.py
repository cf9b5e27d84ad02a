"""AppTest of the Ask page: make a collection by upload (with the embedded embedding model), see each
file's status, ask with a tiny chat model and get the quoted sentence with its citation, the model's
wording marked as the model's (or the note that it could not be checked), the context meter and
citations, a question no passage matches, a bad collection name, and deleting."""
import json
import shutil

import pytest

from llmos_core.generation.request import ChatResult
from llmos_core.rag.quotes import UNCHECKED
from llmos_core.usecases import ask
from llmos_core.accounts import LOCAL_ADMIN

pytestmark = pytest.mark.slow

POLICY = b"# Leave\n\n## Annual leave\n\nEvery employee receives 27 days of paid annual leave per year.\n"
SECURITY = b"Password rules\n\nPasswords must be at least 14 characters long.\n"


@pytest.fixture
def tiny_chat(app_engine, tiny_causal, tmp_path):
    folder = tmp_path / "tiny-wide"            # a 2,048-token window: rotary positions, only the config changes
    shutil.copytree(tiny_causal, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return app_engine.catalog.register(app_engine.catalog.resolve(str(folder))).name


def collection_box(at):
    """The Collection box: its key changes when an upload makes a collection (app_pages/ask.py says why)."""
    return next(box for box in at.selectbox if box.label == "Collection")



def open_ask(new_app):
    at = new_app(timeout=180)
    at.switch_page("app_pages/ask.py").run()
    assert not at.exception, at.exception
    return at


def test_upload_ask_cite_and_delete(monkeypatch, app_engine, tiny_chat, new_app):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = open_ask(new_app)
    assert collection_box(at).value == "New collection..."
    at.text_input(key="ask_new_name").set_value("Bad Name").run()
    at.file_uploader(key="ask_upload").set_value([("policy.md", POLICY, "text/markdown")]).run()
    at.button(key="ask_add").click().run()
    assert any("not a valid collection name" in e.value for e in at.error)

    at.text_input(key="ask_new_name").set_value("handbook").run()
    at.file_uploader(key="ask_upload").set_value([("policy.md", POLICY, "text/markdown"),
                                                  ("security.txt", SECURITY, "text/plain")]).run()
    at.button(key="ask_add").click().run()
    assert not at.exception, at.exception
    assert collection_box(at).value == "handbook"
    table = at.dataframe[0].value
    assert list(table["file"]) == ["policy.md", "security.txt"] and set(table["status"]) == {"embedded"}

    at.selectbox(key="ask_model").set_value(tiny_chat).run()
    at.number_input(key="ask_max_new_tokens").set_value(16).run()
    at.chat_input(key="ask_input").set_value("How long must a password be?").run()
    assert not at.exception, at.exception
    labels = [e.label for e in at.expander]
    assert any(label.startswith("[1] security.txt") for label in labels)
    quote = "> Passwords must be at least 14 characters long.\n>\n> — **[1] security.txt"
    assert any(m.value.startswith(quote) for m in at.markdown), [m.value for m in at.markdown]
    marks = [c.value for c in at.caption]
    assert any("The model's wording" in c or UNCHECKED in c for c in marks), marks   # the tiny model's noise

    replies = iter(["Passwords must be 14 characters long [1].", "Passwords must be 12 characters long.", "At least 12."])
    monkeypatch.setattr(app_engine.chat, "generate", lambda *a, **k: ChatResult(next(replies), {"prompt_tokens": 30,
                                                                                                   "tokens": 8}))
    at.chat_input(key="ask_input").set_value("How long must a password be?").run()
    assert any("The model's wording" in c.value for c in at.caption)
    assert "Passwords must be 14 characters long [1]." in [t.value for t in at.text]
    assert any("Context:" in str(p.proto.text) for p in at.get("progress"))
    at.chat_input(key="ask_input").set_value("How long must a password be?").run()     # 12, twice: not shown
    assert any(UNCHECKED in c.value for c in at.caption)
    assert not any("12" in t.value for t in at.text) and any(m.value.startswith(quote) for m in at.markdown)

    at.chat_input(key="ask_input").set_value("What is the capital of Australia?").run()
    assert any("No passage" in w.value for w in at.warning)

    at.selectbox(key="ask_doomed").set_value("security.txt").run()
    at.button(key="ask_delete_document").click().run()
    assert [d["name"] for d in ask.list_documents(app_engine, LOCAL_ADMIN, "handbook")] == ["policy.md"]
    at.button(key="ask_delete_collection").click().run()
    assert ask.list_collections(app_engine, LOCAL_ADMIN) == []
