"""What the MCP tools and resources do, over the same use cases as the pages and the CLI; every argument is
checked here first, since an MCP client (and the model driving it) may send anything.

Each function takes the engine, the acting user (accounts.User: the CLI's user over stdio, the key's user over
HTTP; server.py decides) and plain values, returns JSON-ready data, and raises LLMOSError subclasses with a
hint (server.py turns them into tool errors). Everything goes through the scoped use cases, as the pages and
the API do: another user's collection, job or registered model reads exactly as a missing one. Names go
through the engine's own gates (catalog names, `check_collection_name`, `check_name`); a file path must lie
inside the user's own files (`files_root`: the data folder for an admin, users/<id>/ for anyone else;
`paths.inside`, symlinks resolved); sizes are bounded before anything is read or decoded; jobs are submitted
as a web visitor's are (`origin="web"`: file parameters inside the user's files, no model code).
"""
from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from ..access import WEB
from ..accounts import User, user_home
from ..errors import InvalidInput
from ..generation import SamplingParams
from ..jobs.kinds import KINDS, kind_module
from ..jobs.scheduler import STATES
from ..models.catalog import CAUSAL_LM, DEFAULT_CHAT_MODEL
from ..paths import inside, slug
from ..rag.index import check_collection_name
from ..translation.isolation import parse_in_child
from ..translation.languages import check_language
from ..translation.model_choice import default_translation_model
from ..usecases import ask as asking
from ..usecases import translate as translation
from ..usecases.models import list_catalog

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 200
MAX_TEXT_CHARS = 200_000         # a prompt or all messages together; the model's window is the real limit
MAX_NEW_TOKENS = 4096
MAX_DOCUMENT_BYTES = 32 * 1024**2  # one JSON-RPC message carries it (base64: a third more)
MAX_JOB_PARAMS_BYTES = 64 * 1024
MAX_PASSAGE_CHARS = 600          # of each cited passage in an answer
OUTPUT_FOLDER = Path("mcp") / "translations"   # under the data folder, where saved translations go
JOB_KEYS = ("id", "kind", "state", "priority", "device", "est_memory", "progress", "description", "message",
            "waiting", "exit_code", "created", "started", "finished", "resumable")


# ---------------------------------------------------------------- chat

def chat_messages(prompt: str | None, messages: list[dict] | None) -> list[dict]:
    """A prompt, or OpenAI-style messages (system/user/assistant, text content), never both, never empty."""
    if (prompt is None) == (messages is None):
        raise InvalidInput("give either a prompt or messages", "prompt: one user message; messages: a conversation")
    if prompt is not None:
        messages = [{"role": "user", "content": prompt}]
    if not messages or len(messages) > MAX_MESSAGES:
        raise InvalidInput(f"{len(messages or [])} messages: give 1 to {MAX_MESSAGES}")
    clean = []
    for number, message in enumerate(messages, start=1):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise InvalidInput(f"message {number} must have a role ({', '.join(ROLES)}) and text content")
        clean.append({"role": role, "content": content})
    if sum(len(m["content"]) for m in clean) > MAX_TEXT_CHARS:
        raise InvalidInput(f"the messages pass {MAX_TEXT_CHARS:,} characters", "send a shorter text")
    if not any(m["content"].strip() for m in clean if m["role"] == "user"):
        raise InvalidInput("there is no user message with text", "say something to the model")
    return clean


def files_root(engine, actor: User) -> Path:
    """The folder whose files `actor` may name and where their saved translations go: the data folder for an
    admin, their own users/<id>/ otherwise (accounts/ownership.py `user_home`)."""
    return engine.settings.home if actor.is_admin else user_home(engine.settings.home, actor)


def visible_model(engine, actor: User, model: str):
    """The catalog entry, if `actor` may use it (someone else's unpublished model reads as missing)."""
    engine.catalog.check_visible(actor, model)
    return engine.catalog.get(model)


def chat(engine, actor: User, model: str, prompt: str | None = None, messages: list[dict] | None = None,
         max_tokens: int = 256, temperature: float | None = None) -> dict:
    spec = visible_model(engine, actor, model)
    if spec.task != CAUSAL_LM:
        raise InvalidInput(f"{model} is a {spec.task} model, not a chat model", "see the llmos://models resource")
    params = SamplingParams.for_model(spec.sampling, max_new_tokens=max_tokens, temperature=temperature,
                                      do_sample=None if temperature is None else temperature > 0)
    result = engine.chat.generate(model, chat_messages(prompt, messages), params, user=actor)
    stats = result.stats
    return {"text": result.text, "model": model, "finish_reason": stats.get("finish_reason"),
            "tokens": stats.get("tokens"), "tokens_per_s": stats.get("tokens_per_s")}


# ---------------------------------------------------------------- translate

def document_bytes(engine, actor: User, path: str | None, content_base64: str | None, text: str | None,
                   filename: str | None) -> tuple[str, bytes]:
    """Exactly one of: a file inside the actor's files (`files_root`), base64 bytes, or plain text; bounded
    before it is read."""
    given = [name for name, value in (("path", path), ("content_base64", content_base64), ("text", text))
             if value is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of path, content_base64 or text",
                           "path: a file inside the LLM OS data folder; content_base64 with filename; or text")
    limit = min(MAX_DOCUMENT_BYTES, engine.settings.max_upload_mb * 1024**2)
    if path is not None:
        home = files_root(engine, actor)
        file = inside(home, home / path, "the document")   # a relative path counts from the user's folder
        if not file.is_file():
            raise InvalidInput(f"there is no file {path!r} in your files", f"paths count from {home}")
        if file.stat().st_size > limit:
            raise InvalidInput(f"{path} is {file.stat().st_size:,} bytes; the limit is {limit:,}")
        return file.name, file.read_bytes()
    name = Path(filename or ("document.txt" if text is not None else "")).name
    if not name:
        raise InvalidInput("content_base64 needs a filename", "its suffix says the format, e.g. report.docx")
    if text is not None:
        data = text.encode("utf-8")
    else:
        if len(content_base64) > limit * 4 // 3 + 4:
            raise InvalidInput(f"the content passes {limit:,} bytes", "send a smaller document")
        try:
            data = base64.b64decode(content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"content_base64 is not base64: {exc}") from exc
    if len(data) > limit:
        raise InvalidInput(f"the document is {len(data):,} bytes; the limit is {limit:,}")
    return name, data


def translate(engine, actor: User, target: str, path: str | None = None, content_base64: str | None = None,
              text: str | None = None, filename: str | None = None, source: str = "auto",
              model: str | None = None, save: bool = False) -> dict:
    """A short document is translated now: its text comes back (a text format, unless `save`), or the file is
    saved under the data folder and its path (relative to it) comes back. A long one becomes a `translate`
    job: its id comes back, and `translation_result` saves the file once it has finished."""
    target = check_language(target, "target language")
    source = source if source == "auto" else check_language(source, "source language")
    name, data = document_bytes(engine, actor, path, content_base64, text, filename)
    doc = parse_in_child(data, name, len(data) + 1, "docx")
    model = model or default_translation_model(engine.catalog)
    visible_model(engine, actor, model)
    request = translation.TranslationRequest(model, target, source)
    if translation.runs_as_job(doc):
        job = translation.submit_upload(engine, actor, doc, request, origin=WEB)
        return {"job": job, "segments": len(doc.segments),
                "note": "a long document: it translates as a job; call translation_result with this job id "
                        "once list_jobs shows it succeeded"}
    result = translation.translate_here(engine, actor, doc, request)
    rendered = result.render(parsed=doc)
    answer = {"model": model, "target": target, "segments": len(doc.segments), "format": doc.output_format}
    if rendered.mime.startswith("text/") and not save:
        return {**answer, "text": rendered.data.decode("utf-8", errors="replace")}
    return {**answer, "saved": save_output(engine, actor, rendered.file_name, target, rendered.data)}


def translation_result(engine, actor: User, job_id: int) -> dict:
    """A finished translate job's document, saved under the actor's files; its path relative to them."""
    job = engine.scheduler.for_user(actor).get(job_id)   # another user's job: "there is no job N"
    if job["kind"] != "translate":
        raise InvalidInput(f"job {job_id} is a {job['kind']} job, not a translation")
    result = translation.read_job_result(job)
    rendered = result.render()
    return {"job": job_id, "target": result.target, "saved": save_output(engine, actor, rendered.file_name,
                                                                         result.target, rendered.data)}


def save_output(engine, actor: User, file_name: str, target: str, data: bytes) -> str:
    name, root = Path(file_name), files_root(engine, actor)
    folder = root / OUTPUT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(name.stem, 'document')}.{target}{name.suffix}"
    path.write_bytes(data)
    return str(path.relative_to(root))


# ---------------------------------------------------------------- ask

def ask(engine, actor: User, collection: str, question: str, model: str | None = None, top_k: int = 5,
        max_tokens: int = 256) -> dict:
    collection = check_collection_name(collection)
    model = model or DEFAULT_CHAT_MODEL
    params = SamplingParams.for_model(visible_model(engine, actor, model).sampling, max_new_tokens=max_tokens)
    plan = asking.prepare(engine, actor, collection, question, model, params, top_k=top_k)  # theirs only
    if plan.context is None:   # nothing matched: no model is asked
        answer = asking.finish(plan, "", {})
    else:                      # the reply counts against the actor's share (fair sharing, limits)
        result = engine.chat.generate(plan.model, plan.messages, params, user=actor)
        answer = asking.finish(plan, result.text, result.stats)
    citations = [{**c, "passage": c["passage"][:MAX_PASSAGE_CHARS]} for c in answer.citations]
    return {"answer": answer.text, "found": answer.found, "citations": citations, "model": model}


# ---------------------------------------------------------------- jobs and the monitor

def list_jobs(engine, actor: User, states: list[str] | None = None, kind: str | None = None,
              limit: int = 50) -> list[dict]:
    for state in states or []:
        if state not in STATES:
            raise InvalidInput(f"unknown job state {state!r}", f"states: {', '.join(STATES)}")
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}", f"kinds: {', '.join(sorted(KINDS))}")
    jobs = engine.scheduler.for_user(actor).list(states=states or None, kind=kind, limit=limit)
    return [{k: job.get(k) for k in JOB_KEYS} for job in jobs]


def submit_job(engine, actor: User, kind: str, params: dict, priority: int = 0) -> dict:
    """The kinds the CLI's `jobs submit` offers, with a web visitor's limits (access.check_job_params), as
    the actor's job (their queued-jobs limit); a file parameter must lie inside the actor's files and a
    `model` must be one they may use."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}", f"kinds: {', '.join(sorted(KINDS))}")
    if len(json.dumps(params)) > MAX_JOB_PARAMS_BYTES:
        raise InvalidInput(f"the job's parameters pass {MAX_JOB_PARAMS_BYTES:,} bytes")
    if not actor.is_admin:
        root = files_root(engine, actor)
        for name in getattr(kind_module(kind), "PATH_PARAMS", ()):
            if params.get(name):
                inside(root, root / str(params[name]), f"the job's {name}")
    if isinstance(params.get("model"), str):
        engine.catalog.check_visible(actor, params["model"])
    jobs = engine.scheduler.for_user(actor)
    job_id = jobs.submit(kind, params, priority, origin=WEB)
    job = jobs.get(job_id)
    return {"id": job_id, "state": job["state"], "description": job["description"],
            "scheduler_running": engine.scheduler.is_alive()}


def monitor(engine) -> dict:
    """The sampler's latest snapshot (the Monitor page's figures); None until its first sample."""
    return {"sample": engine.sampler.latest(), "running": engine.sampler.running}


# ---------------------------------------------------------------- resources

def collections(engine, actor: User) -> list[dict]:
    return asking.list_collections(engine, actor)


def collection_files(engine, actor: User, collection: str) -> list[dict]:
    return asking.list_documents(engine, actor, check_collection_name(collection))


def models(engine, actor: User) -> list[dict]:
    """The catalog as `actor` sees it, each model with its status: loaded (in memory), ready (its files on
    disk) or not fetched."""
    loaded = {m["name"] for m in engine.models.resident()}
    return [{"name": e.name, "task": e.task, "source": e.source, "chat_template": e.chat,
             "status": "loaded" if e.name in loaded else "ready" if e.ready else "not fetched",
             "description": e.description} for e in list_catalog(engine, actor)]
