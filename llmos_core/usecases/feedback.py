"""Feedback on replies, collected where people already are, and the preference data made from it.

Chat: thumbs up / down on an assistant message (a labelled example: prompt, completion, label) and "edit the
reply" (a preference pair: the edit is chosen, the original rejected). Compare: "this one is better" (a pair
of the answer picked against each other answer). Each record keeps the conversation so far, the model and
its settings (feedback/store.py). The Feedback page lists, filters, exports and uploads them; the CLI
exports (`python -m llmos_core feedback export`).

Every entry point takes the acting user; a conversation or comparison of someone else reads as not found.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..accounts import User
from ..accounts.ownership import user_home
from ..errors import InvalidInput
from ..feedback import pairs as pairlib

MAX_UPLOAD_MB = pairlib.MAX_FILE_BYTES // 1024**2   # the upload widget says and enforces the reader's limit
from ..feedback.store import LABELLED, PAIR, as_labelled, as_pair
from ..training import data as datalib

UP, DOWN = "up", "down"


# ---------------------------------------------------------------- Chat

def _chat_context(engine, actor: User, conversation_id: int, message_id: int) -> tuple[dict, list[dict], dict]:
    """(the assistant message, the prompt it answered, the conversation's settings), read as the actor."""
    conversation = engine.conversations.get(actor, conversation_id)   # someone else's: not found
    messages = conversation["messages"]
    index = next((i for i, m in enumerate(messages) if m["id"] == message_id), None)
    if index is None or messages[index]["role"] != "assistant":
        raise InvalidInput(f"message {message_id} is not a reply in this conversation", "reload the page")
    settings = dict(conversation["settings"])
    system = settings.pop("system", "")
    prompt = ([{"role": "system", "content": system}] if str(system).strip() else []) + \
        [{"role": m["role"], "content": m["content"]} for m in messages[:index]]
    if not prompt or prompt[-1]["role"] != "user":
        raise InvalidInput("this reply does not answer a user's message", "rate a reply to one of your messages")
    return messages[index], prompt, settings


def rate_reply(engine, actor: User, conversation_id: int, message_id: int, vote: str | None) -> int | None:
    """Thumbs up or down on a Chat reply (None takes it back). A thumbs-down keeps an edit already made
    (the pair says more); a thumbs-up replaces it. Returns the record's id (None when taken back)."""
    if vote not in (UP, DOWN, None):
        raise InvalidInput(f"unknown vote {vote!r}", "up or down")
    message, prompt, settings = _chat_context(engine, actor, conversation_id, message_id)
    ref = f"chat:{conversation_id}:{message_id}"
    if vote is None:
        engine.feedback.delete_ref(actor, ref)
        return None
    existing = engine.feedback.by_refs(actor, ref).get(ref)
    if vote == DOWN and existing is not None and existing["kind"] == PAIR:
        return existing["id"]
    return engine.feedback.put(actor, source="chat", ref=ref, model=message["stats"].get("model", ""),
                               settings=settings, prompt=prompt, completion=message["content"], label=vote == UP)


def edit_reply(engine, actor: User, conversation_id: int, message_id: int, text: str) -> int:
    """"Edit the reply": what it should have said. A pair, the edit chosen and the original rejected."""
    message, prompt, settings = _chat_context(engine, actor, conversation_id, message_id)
    if not text.strip():
        raise InvalidInput("the edited reply is empty", "write what the reply should have said")
    if text.strip() == message["content"].strip():
        raise InvalidInput("the edit is the same as the reply", "change the text, or give it a thumbs up instead")
    pairlib.check_size("the edit", prompt, text, message["content"])
    return engine.feedback.put(actor, source="chat", ref=f"chat:{conversation_id}:{message_id}",
                               model=message["stats"].get("model", ""), settings=settings, prompt=prompt,
                               completion=message["content"], label=None, chosen=text, rejected=message["content"])


def conversation_feedback(engine, actor: User, conversation_id: int) -> dict[int, dict]:
    """What the actor said about this conversation's replies, by message id (for drawing the buttons)."""
    return {int(ref.rsplit(":", 1)[1]): row
            for ref, row in engine.feedback.by_refs(actor, f"chat:{conversation_id}").items()}


# ---------------------------------------------------------------- Compare

def prefer_answer(engine, actor: User, comparison_id: int, index: int) -> list[int]:
    """"This one is better" in a comparison: a pair of answer `index` against each other answer that has
    text (a failed or empty answer is not a rejected reply). Choosing again replaces the earlier choice."""
    comparison = engine.comparisons.get(actor, comparison_id)   # someone else's: not found
    answers = comparison["answers"]
    if not 0 <= index < len(answers) or not answers[index]["text"].strip() or answers[index]["error"]:
        raise InvalidInput("that answer cannot be chosen", "pick an answer that was written in full")
    system = comparison["system"]
    prompt = ([{"role": "system", "content": system}] if system.strip() else []) + \
        [{"role": "user", "content": comparison["prompt"]}]
    chosen = answers[index]
    engine.feedback.delete_ref(actor, f"compare:{comparison_id}")
    ids = []
    for j, other in enumerate(answers):
        if j == index or other["error"] or not other["text"].strip() or other["text"] == chosen["text"]:
            continue
        ids.append(engine.feedback.put(
            actor, source="compare", ref=f"compare:{comparison_id}:{j}", model=chosen["model"],
            settings={**comparison["settings"], "rejected_model": other["model"], "chosen_index": index},
            prompt=prompt, completion=chosen["text"], chosen=chosen["text"], rejected=other["text"]))
    if not ids:
        raise InvalidInput("no other answer to prefer it to", "a choice needs two answers with different text")
    return ids


def comparison_choice(engine, actor: User, comparison_id: int) -> int | None:
    """The index of the answer the actor chose in this comparison, if they chose one."""
    rows = engine.feedback.by_refs(actor, f"compare:{comparison_id}")
    return next((row["settings"].get("chosen_index") for row in rows.values()), None)


# ---------------------------------------------------------------- the Feedback page and the CLI

def list_feedback(engine, actor: User, model: str | None = None, kind: str | None = None,
                  everyone: bool = False) -> list[dict]:
    """The actor's own records, newest first, with `kind` "pair" or "labelled" (`everyone`: an admin's view
    of all users' records; for anyone else it is their own still)."""
    if kind not in (None, PAIR, LABELLED):
        raise InvalidInput(f"unknown kind {kind!r}", f"{PAIR} or {LABELLED}")
    return engine.feedback.list(actor, model=model or None, kind=kind, mine=not everyone)


def export_jsonl(engine, actor: User, model: str | None = None, kind: str = PAIR) -> str:
    """Pairs (prompt, chosen, rejected: DPO, ORPO) or labelled examples (prompt, completion, label: KTO)
    as JSONL text, each row with its model and settings."""
    rows = list_feedback(engine, actor, model, kind)
    return pairlib.dumps_jsonl(as_pair(r) if kind == PAIR else as_labelled(r) for r in rows)


def save_for_training(engine, actor: User, model: str | None = None, kind: str = PAIR) -> Path:
    """The export kept among the actor's data files, so the Train page can pick it."""
    text = export_jsonl(engine, actor, model, kind)
    if not text:
        raise InvalidInput("there is no feedback of that kind to save", "rate some replies in Chat first")
    name = f"feedback-{kind}s" + (f"-{model}" if model else "") + ".jsonl"
    return datalib.save_upload(engine.settings, name, text.encode("utf-8"),
                               owner_home=user_home(engine.settings.home, actor))


def import_file(engine, actor: User, filename: str, data: bytes, kind: str = PAIR) -> int:
    """Upload JSONL or CSV (pairs: prompt/chosen/rejected; labelled: prompt/completion/label) as records of
    the actor. All rows are checked before any is stored. Returns how many were added."""
    suffix = Path(filename).suffix.lower()
    if suffix not in pairlib.SUFFIXES:
        raise InvalidInput(f"{filename}: {suffix or 'no extension'} is not a preference data format", "upload .jsonl or .csv")
    if len(data) > pairlib.MAX_FILE_BYTES:
        raise InvalidInput(f"{filename} is {len(data) / 1024**2:.1f} MB, over the "
                           f"{pairlib.MAX_FILE_BYTES // 1024**2} MB limit", "split the file into smaller ones")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / (Path(filename).stem[:60] + suffix)
        path.write_bytes(data)
        records = pairlib.read_pairs(path) if kind == PAIR else pairlib.read_labelled(path)
    for r in records:
        common = dict(source="upload", ref=None, model=r.model or "", settings=r.settings, prompt=r.prompt)
        if kind == PAIR:
            engine.feedback.put(actor, **common, completion=r.rejected, chosen=r.chosen, rejected=r.rejected)
        else:
            engine.feedback.put(actor, **common, completion=r.completion, label=r.label)
    return len(records)


def delete_feedback(engine, actor: User, feedback_id: int) -> None:
    engine.feedback.delete(actor, feedback_id)
