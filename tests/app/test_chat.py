"""AppTest of the Chat page with tiny models: send, stream, regenerate, continue, switch conversation,
bad input, and two tabs on one conversation."""
import pytest

from llmos_core.engine import get_engine
from llmos_core.errors import Busy
from llmos_core.settings import Settings
from llmos_core.accounts import LOCAL_ADMIN


@pytest.fixture
def engine(home):
    return get_engine(Settings.from_env())


@pytest.fixture
def chat_app(new_app, engine, tiny_causal):
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name

    def make():
        at = new_app()
        at.switch_page("app_pages/chat.py").run()
        assert not at.exception, at.exception
        at.selectbox(key="chat_model").set_value(name).run()
        at.number_input(key="chat_max_new_tokens").set_value(8).run()
        at.slider(key="chat_temperature").set_value(1.5).run()
        return at
    return make


def send(at, text):
    at.chat_input(key="chat_input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def roles(at):
    return [m.name for m in at.chat_message]


def test_page_opens_with_the_embedded_chat_model_and_its_sampling(new_app):
    at = new_app()
    at.switch_page("app_pages/chat.py").run()
    assert not at.exception
    assert at.selectbox(key="chat_model").value == "smollm2-135m-instruct"
    assert at.slider(key="chat_temperature").value == 0.2
    assert at.slider(key="chat_top_p").value == 0.9
    assert at.slider(key="chat_repetition_penalty").value == 1.1
    at.selectbox(key="chat_model").set_value("gemma-3-270m").run()
    assert any("base model" in i.value for i in at.info)       # the plain-format note
    assert at.slider(key="chat_temperature").value == 0.7      # its own recommended sampling


def test_send_streams_a_reply_and_saves_it_with_figures(chat_app, engine):
    at = send(chat_app(), "Hello, how are you?")
    assert roles(at) == ["user", "assistant"]
    assert at.chat_message[0].markdown[0].value == "Hello, how are you?"
    assert any("tokens" in c.value for c in at.chat_message[1].caption)
    [conv] = engine.conversations.list(LOCAL_ADMIN)
    saved = engine.conversations.get(LOCAL_ADMIN, conv["id"])
    assert saved["title"] == "Hello, how are you?" and saved["settings"]["max_new_tokens"] == 8
    reply = saved["messages"][1]
    assert reply["role"] == "assistant" and 0 < reply["stats"]["tokens"] <= 8 and reply["stats"]["ttft_s"] is not None


def test_regenerate_replaces_and_continue_extends_the_last_reply(chat_app, engine):
    at = send(chat_app(), "Tell me about the fox.")
    cid = engine.conversations.list(LOCAL_ADMIN)[0]["id"]
    first = engine.conversations.messages(LOCAL_ADMIN, cid)[-1]
    at.number_input(key="chat_seed").set_value(99).run()
    at.button(key="chat_regenerate").click().run()
    assert not at.exception and roles(at) == ["user", "assistant"]
    again = engine.conversations.messages(LOCAL_ADMIN, cid)
    assert len(again) == 2 and again[-1]["id"] > first["id"]        # a new reply, never a reused id
    at.button(key="chat_continue").click().run()
    assert not at.exception
    continued = engine.conversations.messages(LOCAL_ADMIN, cid)
    assert len(continued) == 2 and continued[-1]["content"].startswith(again[-1]["content"])
    assert continued[-1]["stats"]["tokens"] > 0


def test_new_chat_and_switching_between_conversations(chat_app, engine):
    at = send(chat_app(), "first conversation")
    at.button(key="chat_new").click().run()
    assert roles(at) == []
    send(at, "second conversation")
    convs = engine.conversations.list(LOCAL_ADMIN)
    assert [c["title"] for c in convs] == ["second conversation", "first conversation"]
    at.button(key=f"chat_open_{convs[1]['id']}").click().run()
    assert at.chat_message[0].markdown[0].value == "first conversation"
    at.text_input(key="chat_title").set_value("Renamed").run()
    at.button(key="chat_rename").click().run()
    assert engine.conversations.get(LOCAL_ADMIN, convs[1]["id"])["title"] == "Renamed"
    at.button(key="chat_delete").click().run()
    assert [c["title"] for c in engine.conversations.list(LOCAL_ADMIN)] == ["second conversation"]
    assert roles(at) == []


def test_an_empty_message_gets_a_clear_error(chat_app, engine):
    at = send(chat_app(), "   ")
    assert any("empty" in e.value for e in at.error)
    assert engine.conversations.list(LOCAL_ADMIN) == [] or engine.conversations.list(LOCAL_ADMIN)[0]["messages"] == 0


def test_two_tabs_on_one_conversation_lose_nothing(chat_app, engine):
    tab_a = send(chat_app(), "from tab A")
    cid = engine.conversations.list(LOCAL_ADMIN)[0]["id"]
    tab_b = chat_app()
    tab_b.button(key=f"chat_open_{cid}").click().run()
    send(tab_b, "from tab B")
    send(tab_a, "tab A again, unaware of B")                  # A's view is stale
    assert any("another tab" in w.value for w in tab_a.warning)
    contents = [m["content"] for m in engine.conversations.messages(LOCAL_ADMIN, cid)]
    assert contents[0] == "from tab A" and contents[2] == "from tab B" and len(contents) == 4
    assert "tab A again, unaware of B" not in contents
    assert roles(tab_a) == ["user", "assistant", "user", "assistant"]   # A was reloaded


def test_too_long_a_prompt_and_an_evicted_model(chat_app, engine):
    at = send(chat_app(), "fox " * 400)
    assert any("too long" in e.value for e in at.error)
    assert roles(at) == ["user"]                                 # kept; "Answer" retries it
    name = at.selectbox(key="chat_model").value
    engine.models.unload(name)                                   # evicted between two turns
    send(at, "hello again")
    assert not at.error and roles(at)[-1] == "assistant"
    assert engine.models.is_resident(name)


def test_a_refused_regenerate_keeps_the_old_reply(chat_app, engine, monkeypatch):
    at = send(chat_app(), "Tell me about the fox.")
    cid = engine.conversations.list(LOCAL_ADMIN)[0]["id"]
    before = engine.conversations.messages(LOCAL_ADMIN, cid)

    def refuse(*args, **kwargs):
        raise Busy("the model is busy: 3 replies running and 4 waiting, 7 ahead of you")
        yield   # a generator, as the real stream is

    monkeypatch.setattr(engine.chat, "stream", refuse)
    at.button(key="chat_regenerate").click().run()
    assert not at.exception and any("busy" in e.value for e in at.error)
    assert engine.conversations.messages(LOCAL_ADMIN, cid) == before              # the old reply is still there
    assert roles(at) == ["user", "assistant"]
