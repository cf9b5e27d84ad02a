"""The chat-turn use case over real saved conversations and a fake generation service: send, regenerate
(the old reply stays until the new one is complete), continue, refusals, Stop."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmos_core.conversations import Conflict, Conversations
from llmos_core.errors import Busy, InvalidInput, LLMOSError
from llmos_core.generation import SamplingParams, TokenEvent
from llmos_core.store import Store
from llmos_core.usecases import chat as chat_turns
from llmos_core.accounts import LOCAL_ADMIN


class FakeChat:
    """Replies with the given pieces; `refuse` is raised at the first event, as the real service does."""

    def __init__(self):
        self.pieces = ["Hello", " there"]
        self.refuse: LLMOSError | None = None
        self.requests: list[dict] = []

    def choose_backend(self, name):
        return SimpleNamespace(backend="fake", reason="a test")

    def stream(self, name, messages, params, backend="auto", cancel=None, continue_final=False, user=None):
        self.requests.append({"messages": messages, "continue_final": continue_final})
        if self.refuse is not None:
            raise self.refuse
        yield TokenEvent(prompt_tokens=3, backend=backend)
        tokens = 0
        for piece in self.pieces:
            tokens += 1
            yield TokenEvent(text=piece, tokens=tokens, ttft_s=0.01, elapsed_s=0.02 * tokens)
        yield TokenEvent(tokens=tokens, done=True, finish_reason="stop", elapsed_s=0.1)


@pytest.fixture
def engine(tmp_path):
    loaded = set()
    models = SimpleNamespace(is_resident=lambda name, backend: name in loaded, load=lambda name, backend: loaded.add(name))
    return SimpleNamespace(conversations=Conversations(Store(tmp_path / "llmos.db")), chat=FakeChat(), models=models)


def turn(engine, cid, kind, prompt="", **kw):
    return chat_turns.start_turn(engine, LOCAL_ADMIN, cid, kind, model="m", params=SamplingParams(max_new_tokens=8),
                                 system="Be brief.", prompt=prompt, **kw)


def reply(t, stop_after: int | None = None) -> None:
    """Read the reply as a page would; stop_after: leave after that many text pieces (a Stop press)."""
    with t.replying() as stream:
        seen = 0
        for event in stream.events():
            if event.text:
                seen += 1
                if stop_after is not None and seen >= stop_after:
                    break


def contents(engine, cid):
    return [(m["role"], m["content"]) for m in engine.conversations.messages(LOCAL_ADMIN, cid)]


def test_send_creates_the_conversation_and_saves_the_reply_with_its_figures(engine):
    t = turn(engine, None, "send", "Hi", seen_last=None)
    assert t.needs_loading
    t.load_model()
    assert not t.needs_loading
    reply(t)
    cid = t.conversation_id
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Hello there")]
    assert t.saved.message_id == engine.conversations.last_message_id(cid)
    assert t.saved.stats["model"] == "m" and t.saved.stats["tokens"] == 2 and t.saved.stats["finish_reason"] == "stop"
    assert engine.chat.requests[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "Hi"}]
    assert engine.conversations.get(LOCAL_ADMIN, cid)["settings"]["system"] == "Be brief."


def test_regenerate_replaces_the_reply_only_once_the_new_one_is_complete(engine):
    t = turn(engine, None, "send", "Hi")
    reply(t)
    cid, old_id = t.conversation_id, t.saved.message_id
    engine.chat.pieces = ["Another", " answer"]
    again = turn(engine, cid, "regenerate")
    assert engine.chat.requests and contents(engine, cid)[-1] == ("assistant", "Hello there")   # still there
    reply(again)
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Another answer")]
    assert again.saved.message_id > old_id                         # a new id: stale tabs see the change
    assert engine.chat.requests[-1]["messages"][-1] == {"role": "user", "content": "Hi"}   # the old reply not sent


@pytest.mark.parametrize("refusal", [Busy("m is busy: 4 ahead of you"), InvalidInput("the prompt is too long")])
def test_a_refused_regenerate_keeps_the_old_reply(engine, refusal):
    t = turn(engine, None, "send", "Hi")
    reply(t)
    cid = t.conversation_id
    engine.chat.refuse = refusal
    again = turn(engine, cid, "regenerate")
    with pytest.raises(type(refusal)):
        reply(again)
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Hello there")]
    assert not engine.conversations.is_answering(cid)              # the claim was released


def test_a_stopped_regenerate_keeps_the_old_reply_and_a_stopped_send_keeps_what_was_written(engine):
    t = turn(engine, None, "send", "Hi")
    reply(t, stop_after=1)
    cid = t.conversation_id
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Hello")]
    assert t.saved.stats["finish_reason"] == "cancelled"
    again = turn(engine, cid, "regenerate")
    reply(again, stop_after=1)
    assert again.saved.kept_old and again.saved.message_id is None
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Hello")]


def test_continue_extends_the_last_reply_in_place(engine):
    t = turn(engine, None, "send", "Hi")
    reply(t)
    cid, reply_id = t.conversation_id, t.saved.message_id
    engine.chat.pieces = [", friend"]
    more = turn(engine, cid, "continue")
    reply(more)
    assert contents(engine, cid)[-1] == ("assistant", "Hello there, friend")
    assert more.saved.message_id == reply_id and engine.chat.requests[-1]["continue_final"]


def test_answer_after_an_unanswered_message_appends_a_reply(engine):
    cid = engine.conversations.create(LOCAL_ADMIN, "m")
    engine.conversations.append(cid, "user", "Hi")
    reply(turn(engine, cid, "regenerate"))        # the page's "Answer" button
    assert contents(engine, cid) == [("user", "Hi"), ("assistant", "Hello there")]


def test_bad_turns_are_refused_before_anything_changes(engine):
    with pytest.raises(InvalidInput, match="empty"):
        turn(engine, None, "send", "   ")
    assert engine.conversations.list(LOCAL_ADMIN) == []
    cid = engine.conversations.create(LOCAL_ADMIN, "m")
    with pytest.raises(InvalidInput, match="no reply to continue"):
        turn(engine, cid, "continue")
    with pytest.raises(InvalidInput, match="unknown chat action"):
        turn(engine, cid, "shout")
    first = engine.conversations.append(cid, "user", "seen")
    engine.conversations.append(cid, "user", "from another tab")
    with pytest.raises(Conflict):
        turn(engine, cid, "send", "stale", seen_last=first)
    with engine.conversations.answering(cid):
        with pytest.raises(LLMOSError, match="another tab"):
            turn(engine, cid, "send", "while busy")
    assert [c for _, c in contents(engine, cid)] == ["seen", "from another tab"]
