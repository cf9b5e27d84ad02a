"""/llmos/v1: LLM OS's own objects for scripts, scoped to the key's user (usecases/objects.py does the work).

GET/POST /llmos/v1/conversations, GET /llmos/v1/conversations/{id}, GET /llmos/v1/collections,
GET /llmos/v1/jobs, GET /llmos/v1/jobs/{id}. Lists answer {"object": "list", "data": [...]}; another
user's id answers 404, as a missing one does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..conversations import ConversationNotFound
from ..errors import JobError
from ..usecases import objects
from .auth import request_user
from .errors import error_body

if TYPE_CHECKING:
    from ..engine import Engine


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=objects.MAX_CONTENT)


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(default="", max_length=200)
    model: str = Field(default="", max_length=200)
    messages: list[_Message] = Field(default_factory=list, max_length=objects.MAX_MESSAGES)


# Ids as SQLite stores them (a larger number is no id: a 400, never an overflow in the store), lists bounded.
ObjectId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _not_found(what: str) -> JSONResponse:
    return JSONResponse(error_body(f"there is no {what}", "invalid_request_error", "not_found"), status_code=404)


def _listing(data: list[dict]) -> dict:
    return {"object": "list", "data": data}


def register_objects(app: FastAPI, engine: "Engine") -> None:
    @app.get("/llmos/v1/conversations")
    def list_conversations(request: Request, search: Annotated[str, Query(max_length=200)] = "",
                           limit: Limit = 200) -> dict:
        return _listing(objects.list_conversations(engine, request_user(request), search, limit))

    @app.post("/llmos/v1/conversations")
    def create_conversation(body: NewConversation, request: Request):
        return objects.create_conversation(engine, request_user(request), body.title,
                                           [m.model_dump() for m in body.messages], body.model)

    @app.get("/llmos/v1/conversations/{conversation_id}")
    def get_conversation(conversation_id: ObjectId, request: Request):
        try:
            return objects.get_conversation(engine, request_user(request), conversation_id)
        except ConversationNotFound:
            return _not_found(f"conversation {conversation_id}")

    @app.get("/llmos/v1/collections")
    def list_collections(request: Request) -> dict:
        return _listing(objects.list_collections(engine, request_user(request)))

    @app.get("/llmos/v1/jobs")
    def list_jobs(request: Request, limit: Limit = 200) -> dict:
        return _listing(objects.list_jobs(engine, request_user(request), limit))

    @app.get("/llmos/v1/jobs/{job_id}")
    def get_job(job_id: ObjectId, request: Request):
        try:
            return objects.get_job(engine, request_user(request), job_id)
        except JobError:
            return _not_found(f"job {job_id}")
