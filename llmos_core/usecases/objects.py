"""LLM OS's own objects, as one user sees them: conversations, collections, jobs. The API's /llmos/v1 routes
(api/objects.py) call these; the pages and the CLI reach the same stores with the same actor.

Every function takes the acting user first; another user's id raises the store's usual "not found"
(ConversationNotFound, JobError), so a caller cannot tell someone else's object from a missing one.
"""
from __future__ import annotations

from ..accounts import User
from ..errors import InvalidInput
from . import ask
from .quota import check_storage

MAX_MESSAGES = 1000          # a stored conversation posted whole: bounded
MAX_CONTENT = 200_000        # characters per message
ROLES = ("system", "user", "assistant")
JOB_FIELDS = ("id", "kind", "state", "description", "progress", "message", "created", "started", "finished",
              "priority", "device", "est_memory", "peak_memory", "exit_code", "owner")


def _conversation(row: dict) -> dict:
    return {"id": row["id"], "object": "conversation", "title": row["title"], "model": row["model"],
            "created": row["created"], "updated": row["updated"], "owner": row["owner"],
            **({"messages": [{"id": m["id"], "role": m["role"], "content": m["content"], "created": m["created"]}
                             for m in row["messages"]]} if isinstance(row["messages"], list)
               else {"message_count": row["messages"]})}


def list_conversations(engine, actor: User, search: str = "", limit: int = 200) -> list[dict]:
    return [_conversation(r) for r in engine.conversations.list(actor, limit=max(1, min(int(limit), 1000)),
                                                                 search=search)]


def get_conversation(engine, actor: User, conversation_id: int) -> dict:
    return _conversation(engine.conversations.get(actor, conversation_id))


def create_conversation(engine, actor: User, title: str, messages: list[dict], model: str = "") -> dict:
    """Store a conversation whole (a script's transcript): checked, then written in order."""
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise InvalidInput(f"messages must be a list of at most {MAX_MESSAGES}")
    for number, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(f"message {number} needs a role ({', '.join(ROLES)}) and a text content")
        if len(m["content"]) > MAX_CONTENT:
            raise InvalidInput(f"message {number} is longer than {MAX_CONTENT} characters")
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput("title must be a text of at most 200 characters")
    check_storage(engine, actor, sum(len(m["content"]) for m in messages))
    conversation_id = engine.conversations.create(actor, model or "", title=title or "New chat")
    for m in messages:
        engine.conversations.append(conversation_id, m["role"], m["content"])
    if title:                      # the first user message must not replace a title the caller gave
        engine.conversations.rename(actor, conversation_id, title)
    return get_conversation(engine, actor, conversation_id)


def list_collections(engine, actor: User) -> list[dict]:
    return [{"id": c["name"], "object": "collection", "name": c["name"], "embed_model": c["embed_model"],
             "created": c["created"], "documents": c["documents"], "chunks": c["chunks"], "owner": c["owner"]}
            for c in ask.list_collections(engine, actor)]


def _job(row: dict) -> dict:
    return {"object": "job", **{k: row.get(k) for k in JOB_FIELDS}}


def list_jobs(engine, actor: User, limit: int = 200) -> list[dict]:
    return [_job(j) for j in engine.scheduler.for_user(actor).list(limit=max(1, min(int(limit), 1000)))]


def get_job(engine, actor: User, job_id: int) -> dict:
    return _job(engine.scheduler.for_user(actor).get(job_id))
