"""Saved conversations: CRUD, exports, conflicts between tabs, survival across a restart; the chat CLI."""
from __future__ import annotations

import json

import pytest

from llmos_core.__main__ import main
from llmos_core.conversations import Conflict, Conversations, ConversationNotFound, title_from
from llmos_core.engine import Engine
from llmos_core.errors import Busy, InvalidInput
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.accounts import LOCAL_ADMIN


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "llmos.db")


def test_a_conversation_records_its_turns_model_and_settings(store):
    convs = Conversations(store)
    cid = convs.create(LOCAL_ADMIN, "smollm2-135m-instruct", {"temperature": 0.2, "system": "Be brief."})
    first = convs.append(cid, "user", "What is the capital of France?\nAnd why?", expect_last=None)
    second = convs.append(cid, "assistant", "Paris.", {"tokens": 3, "ttft_s": 0.1}, expect_last=first)
    c = convs.get(LOCAL_ADMIN, cid)
    assert c["title"] == "What is the capital of France? And why?"      # from the first message
    assert c["model"] == "smollm2-135m-instruct" and c["settings"]["temperature"] == 0.2
    assert [(m["id"], m["role"], m["content"]) for m in c["messages"]] == [
        (first, "user", "What is the capital of France?\nAnd why?"), (second, "assistant", "Paris.")]
    assert c["messages"][1]["stats"] == {"tokens": 3, "ttft_s": 0.1}
    convs.rename(LOCAL_ADMIN, cid, "  Geography ")
    convs.set_settings(LOCAL_ADMIN, cid, "gemma-3-270m", {"temperature": 0.7})
    listed = convs.list(LOCAL_ADMIN)
    assert listed[0]["title"] == "Geography" and listed[0]["messages"] == 2 and listed[0]["model"] == "gemma-3-270m"
    with pytest.raises(InvalidInput):
        convs.rename(LOCAL_ADMIN, cid, "   ")


def test_exports_hold_every_turn(store):
    convs = Conversations(store)
    cid = convs.create(LOCAL_ADMIN, "m", {"temperature": 0.2, "system": "Be brief."})
    convs.append(cid, "user", "hi")
    convs.append(cid, "assistant", "hello **there**", {"tokens": 4, "ttft_s": 0.2, "tokens_per_s": 9.5})
    data = json.loads(convs.export_json(LOCAL_ADMIN, cid))
    assert data["model"] == "m" and [m["content"] for m in data["messages"]] == ["hi", "hello **there**"]
    md = convs.export_markdown(LOCAL_ADMIN, cid)
    assert md.startswith("# hi") and "## System\n\nBe brief." in md and "## Assistant\n\nhello **there**" in md
    assert "4 tokens" in md and "9.5 tokens/s" in md


def test_two_tabs_cannot_interleave_turns(store):
    convs = Conversations(store)
    cid = convs.create(LOCAL_ADMIN, "m")
    seen = convs.append(cid, "user", "from tab A", expect_last=None)
    convs.append(cid, "assistant", "reply", expect_last=seen)
    with pytest.raises(Conflict):               # tab B still believes `seen` is the last message
        convs.append(cid, "user", "from tab B", expect_last=seen)
    with pytest.raises(Conflict):               # only the last message may be regenerated away
        convs.delete_message(cid, seen)
    with convs.answering(cid):
        with pytest.raises(Busy):
            with convs.answering(cid):
                pass
    assert not convs.is_answering(cid)
    assert [m["content"] for m in convs.messages(LOCAL_ADMIN, cid)] == ["from tab A", "reply"]


def test_delete_removes_messages_and_missing_ones_say_so(store):
    convs = Conversations(store)
    cid = convs.create(LOCAL_ADMIN, "m")
    convs.append(cid, "user", "hi")
    convs.delete(LOCAL_ADMIN, cid)
    assert convs.list(LOCAL_ADMIN) == [] and store.query("SELECT COUNT(*) AS n FROM messages")[0]["n"] == 0
    with pytest.raises(ConversationNotFound):
        convs.get(LOCAL_ADMIN, cid)
    with pytest.raises(ConversationNotFound):
        convs.append(cid, "user", "late")


def test_conversations_survive_a_restart(tmp_path):
    first = Engine(Settings(home=tmp_path / "home"), primary=False, start_threads=False)
    cid = first.conversations.create(LOCAL_ADMIN, "m", {"seed": 3})
    first.conversations.append(cid, "user", "remember me")
    first.close()
    second = Engine(Settings(home=tmp_path / "home"), primary=False, start_threads=False)
    c = second.conversations.get(LOCAL_ADMIN, cid)
    assert c["settings"] == {"seed": 3} and c["messages"][0]["content"] == "remember me"
    second.close()


def test_title_from_shortens_long_first_lines():
    assert title_from("  ") == "New chat"
    assert len(title_from("word " * 40)) == 60 and title_from("word " * 40).endswith("…")


def test_cli_chat_streams_through_the_engine(home, tiny_causal, capsys):
    engine = Engine(Settings.from_env())                 # primary: it serves the control socket
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
        assert main(["chat", "--model", name, "--temperature", "1.5", "--seed", "5", "--max-new-tokens", "8",
                     "--json", "hello there"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["stats"]["tokens"] > 0 and result["params"]["seed"] == 5 and result["params"]["temperature"] == 1.5
        assert main(["chat", "--model", name, "--temperature", "1.5", "--seed", "5", "--max-new-tokens", "8",
                     "hello there"]) == 0
        out = capsys.readouterr()
        assert out.out.rstrip("\n") == result["text"]     # streamed text = the whole reply
        assert "tokens/s" in out.err
        assert main(["chat", "--model", name, "--temperature", "0", "hi"]) == 1   # a clear error, no traceback
        assert "temperature" in capsys.readouterr().err
    finally:
        engine.close()
