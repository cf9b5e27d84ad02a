"""A chat turn on a saved conversation: send a message, regenerate the last reply, or continue it.

The Chat page lays out the bubbles; this module does the workflow: create the conversation, refuse
while another tab is answering, append the user's message against the last one it saw, claim the
conversation for the reply, and save the reply when the stream ends (all of it, or what was written
before a Stop). Regenerate keeps the old reply until the new one is complete: a refusal (busy, too
long, a model that fails to load) or a Stop leaves the conversation as it was.

With a collection attached (documents, as on the Ask page), a send or regenerate first retrieves
passages for the user's message through usecases/ask.py (`prepare`): the model gets them numbered in
the last user turn, and the saved reply's stats carry its citations and context meter. When no
passage matches, the reply says so (ask.NOT_FOUND) and no model is asked.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..accounts import User
from ..errors import InvalidInput, LLMOSError
from ..generation import SamplingParams, TokenEvent
from . import ask

SEND, REGENERATE, CONTINUE = "send", "regenerate", "continue"
ANY = "any"   # seen_last when the caller does not track what it last saw


@dataclass
class SavedReply:
    """How a turn ended: the reply's text and figures, and the message that holds it (None: nothing saved)."""
    text: str
    stats: dict
    message_id: int | None
    kept_old: bool = False      # a regenerate that did not complete: the previous reply stays


@dataclass
class ReplyStream:
    """The reply being written: iterate `events()` to draw it; `text` gathers what came so far."""
    first: TokenEvent
    stream: Iterator[TokenEvent]
    last: TokenEvent = field(init=False)
    parts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last = self.first

    def events(self) -> Iterator[TokenEvent]:
        for event in itertools.chain([self.first], self.stream):
            self.last = event
            if event.text:
                self.parts.append(event.text)
            yield event

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ChatTurn:
    """One turn, made by `start_turn`; then `load_model()` if `needs_loading`, then `with turn.replying()`."""

    def __init__(self, engine, actor: User, conversation_id: int, kind: str, history: list[dict], model: str,
                 params: SamplingParams, system: str, replacing: dict | None, continue_from: dict | None,
                 plan: "ask.AskPlan | None" = None):
        self.engine, self.actor, self.conversation_id, self.kind = engine, actor, conversation_id, kind
        self.model, self.params, self.system = model, params, system
        self.history = history              # the messages the reply answers
        self.replacing = replacing          # regenerate: the reply that stays until the new one is complete
        self.continue_from = continue_from  # continue: the reply being extended
        self.backend = engine.chat.choose_backend(model).backend   # decided now, so a load loads the right copy
        self.plan = plan                    # documents attached: the passages retrieved for this turn
        self.saved: SavedReply | None = None

    @property
    def needs_loading(self) -> bool:
        if self.plan is not None and not self.plan.found:
            return False                    # no passage matched: the model is not asked
        return not self.engine.models.is_resident(self.model, self.backend)

    def load_model(self) -> None:
        self.engine.models.load(self.model, self.backend)

    def messages(self) -> list[dict]:
        if self.plan is not None:
            return self.plan.messages       # the passages, numbered, in the last user turn
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return system + [{"role": m["role"], "content": m["content"]} for m in self.history]

    @contextmanager
    def replying(self) -> Iterator[ReplyStream]:
        """Claim the conversation and open the stream; a refusal raises here, before any reply is shown.
        On leaving (done, Stop, or an error while drawing) the generation is cancelled and the reply saved."""
        conversations = self.engine.conversations
        with conversations.answering(self.conversation_id):   # a second tab gets "busy" before any work starts
            if self.plan is not None and not self.plan.found:    # nothing matched: say so, ask no model
                stream = iter([TokenEvent(text=ask.NOT_FOUND, done=True, finish_reason="not_found")])
            else:
                stream = self.engine.chat.stream(self.model, self.messages(), self.params, backend=self.backend,
                                                 cancel=threading.Event(),
                                                 continue_final=self.continue_from is not None, user=self.actor)
            reply = ReplyStream(next(stream), stream)     # busy, too long, not a chat model: raised here
            expect_last = conversations.last_message_id(self.conversation_id)
            try:
                yield reply
            finally:
                getattr(stream, "close", lambda: None)()   # cancels the generation now, its slot is freed
                self.saved = self._save(reply, expect_last)

    def _save(self, reply: ReplyStream, expect_last: int | None) -> SavedReply:
        conversations, last = self.engine.conversations, reply.last
        stats = {**last.stats(), "model": self.model}
        if self.plan is not None:           # what the reply stands on: its passages, the window's use
            answered = ask.finish(self.plan, reply.text, stats)
            stats.update(collection=self.plan.collection, citations=answered.citations, context=answered.meter,
                         grounding=answered.grounding)   # each number and name of the reply, looked for in them
            if self.plan.passages_turn is not None:    # a follow-up: its passages sit in that earlier turn
                stats["passages_turn"] = self.plan.passages_turn
        complete = last.done and last.finish_reason != "cancelled"
        if not last.done:
            stats["finish_reason"] = "cancelled"
        text = reply.text
        if self.continue_from is not None:
            conversations.update_message(self.continue_from["id"], self.continue_from["content"] + text, stats)
            return SavedReply(self.continue_from["content"] + text, stats, self.continue_from["id"])
        if self.replacing is not None:
            if not complete:
                return SavedReply(text, stats, None, kept_old=True)
            message_id = conversations.replace_last(self.conversation_id, self.replacing["id"], text, stats)
            return SavedReply(text, stats, message_id)
        if text or last.done:
            message_id = conversations.append(self.conversation_id, "assistant", text, stats, expect_last=expect_last)
            return SavedReply(text, stats, message_id)
        return SavedReply(text, stats, None)


def start_turn(engine, actor: User, conversation_id: int | None, kind: str, *, model: str, params: SamplingParams,
               system: str = "", prompt: str = "", seen_last: int | None | str = ANY,
               collection: str | None = None) -> ChatTurn:
    """Check and record the turn's start: a new conversation if none, the user's message for `send`.
    `actor`: who sends it; someone else's conversation reads as not found, before anything is written.
    `seen_last` is the last message id the caller showed; a send against a changed conversation is a Conflict.
    `collection`: documents attached to the conversation, answered from as on the Ask page."""
    if kind not in (SEND, REGENERATE, CONTINUE):
        raise InvalidInput(f"unknown chat action {kind!r}", "send, regenerate or continue")
    if kind == SEND and not prompt.strip():
        raise InvalidInput("the message is empty", "type something first")
    if collection:          # before any change: a deleted collection is refused with the message unsent
        ask.list_documents(engine, actor, collection)
    conversations = engine.conversations
    if conversation_id is None:
        conversation_id = conversations.create(actor, model)
    conversations.check(actor, conversation_id)
    if conversations.is_answering(conversation_id):   # before any change: another tab's reply is still being written
        raise LLMOSError("a reply in this conversation is being written in another tab",
                         "wait for it to finish (or stop it there), then try again")
    if kind == SEND:
        conversations.append(conversation_id, "user", prompt, expect_last=seen_last)
    history = conversations.messages(actor, conversation_id)
    replacing = continue_from = None
    if kind == REGENERATE and history and history[-1]["role"] == "assistant":
        replacing, history = history[-1], history[:-1]
    if kind == CONTINUE:
        if not history or history[-1]["role"] != "assistant":
            raise InvalidInput("there is no reply to continue", "send a message first")
        continue_from = history[-1]
    conversations.set_settings(actor, conversation_id, model, {**params.to_dict(), "system": system,
                                                         **({"collection": collection} if collection else {})})
    plan = None
    if collection and kind != CONTINUE and history and history[-1]["role"] == "user":
        earlier = [{"role": m["role"], "content": m["content"], "stats": m.get("stats") or {}} for m in history[:-1]]
        plan = ask.prepare(engine, actor, collection, history[-1]["content"], model, params, history=earlier)
    return ChatTurn(engine, actor, conversation_id, kind, history, model, params, system, replacing, continue_from, plan)
