"""Ask your documents: collections of uploaded files, and questions answered from them with citations.

    report = add_files(engine, user, "handbook", [("leave.docx", data)])       # parse, chunk, embed
    plan = prepare(engine, user, "handbook", "How many days of leave?", model, params)
    result = answer(engine, plan, params)      # or stream engine.chat.stream(model, plan.messages, ...)
                                               # and call finish(plan, text, stats)

Uploads are parsed in a limited child process (translation/isolation.py), cut into passages
(rag/chunking.py), stored with a full-text index and embedded by a sentence-embedding model held by the
memory manager (it is loaded, counted and evicted like any model, and a chat in progress pins its own
model, so indexing never evicts it): rag/ingest.py, here for small uploads, in an `index` job
(rag/job.py, with progress on the Jobs page) for large ones (runs_as_job, submit_files).
A question no passage matches gets NOT_FOUND without asking the model, so nothing is invented.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import weakref
from dataclasses import dataclass, field, replace
from typing import Callable

from ..accounts import User
from ..errors import InvalidInput, LLMOSError
from ..generation import SamplingParams
from ..rag import ingest
from ..rag.answer import NOT_FOUND, Context, build_messages, choose_context, citations, follow_up
from ..rag.grounding import check_claims, new_words, same_polarity
from ..rag.model_choice import default_ask_model  # noqa: F401  (the page and the CLI choose with it)
from ..rag.index import DocumentIndex, check_collection_name
from ..rag.ingest import (FILE_TYPES, FileReport, Progress, collection_folder, embed_texts,  # noqa: F401
                          safe_file_name)
from ..rag.quotes import (DECLINED, UNCHECKED, ModelWording, Quote, clean_wording, compose_reply, make_quotes,
                          passage_citations, wording_messages)
from ..rag.retrieve import Retrieval, retrieve  # noqa: F401  (retrieve: tests and bench use it from here)
from ..rag.sentences import choose_quotes, question_cue, rank_sentences, satisfies
from . import quota as limits

JOB_BYTES_DEFAULT = 256 * 1024
MAX_NEW_WORDS = 0.4          # a wording with more of its words from elsewhere than the quotes is not shown
WORDING_TOKENS = 48          # the model's wording is one short sentence
_indexes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def index_for(engine) -> DocumentIndex:
    """One index per database, so its vector matrices are read once and shared by every session."""
    index = _indexes.get(engine.store)
    if index is None:
        index = _indexes[engine.store] = DocumentIndex(engine.store)
    return index


def add_files(engine, actor: User, collection: str, files: list[tuple[str, bytes]], embed_model: str | None = None,
              progress: Progress | None = None) -> list[FileReport]:
    """Parse, chunk and embed the files here, in this process (small uploads; see runs_as_job)."""
    limits.check_storage(engine, actor, sum(len(data) for _, data in files))
    return ingest.add_files(engine, index_for(engine), collection, files, actor.id, embed_model, progress)


def job_bytes() -> int:
    """Uploads larger than this in all are indexed by an `index` job (embedding runs at a few passages a
    second on a CPU: a few hundred KB of text is minutes). LLMOS_INDEX_JOB_BYTES overrides it."""
    try:
        return max(0, int(os.environ.get("LLMOS_INDEX_JOB_BYTES", str(JOB_BYTES_DEFAULT))))
    except ValueError:
        return JOB_BYTES_DEFAULT


def runs_as_job(files: list[tuple[str, bytes]]) -> bool:
    return sum(len(data) for _, data in files) > job_bytes()


def submit_files(engine, actor: User, collection: str, files: list[tuple[str, bytes]], embed_model: str | None = None,
                 origin: str = "local") -> int:
    """Keep the files under the data folder and queue an `index` job for them; returns the job id."""
    check_collection_name(collection)
    if not files:
        raise InvalidInput("no files to add", "choose one or more documents: " + ", ".join(FILE_TYPES))
    limits.check_storage(engine, actor, sum(len(data) for _, data in files))
    index = index_for(engine)
    model = ingest.embedding_model(engine, index, collection, embed_model)
    index.create_collection(collection, model, actor.id)   # listed at once; another user's name is refused
    digest = hashlib.sha256(b"".join(hashlib.sha256(data).digest() for _, data in files)).hexdigest()[:16]
    folder = engine.settings.uploads_dir / f"index-{digest}"   # retention.py prunes it once no job names it
    folder.mkdir(parents=True, exist_ok=True)
    for number, (name, data) in enumerate(files):   # numbered: the job keeps the upload order
        (folder / f"{number:04d}-{safe_file_name(name)}").write_bytes(data)
    return engine.scheduler.for_user(actor).submit(
        "index", {"input": str(folder), "collection": collection, "embed_model": model},
        origin=origin)


def list_collections(engine, actor: User) -> list[dict]:
    return index_for(engine).collections(actor)


def list_documents(engine, actor: User, collection: str) -> list[dict]:
    index = index_for(engine)
    index.collection(collection, actor)    # another user's collection reads as a missing one
    return index.documents(collection)


def remove_collection(engine, actor: User, collection: str) -> None:
    if not index_for(engine).remove_collection(collection, actor):
        raise InvalidInput(f"there is no collection {collection!r}", "see `python -m llmos_core collections list`")
    shutil.rmtree(collection_folder(engine, collection), ignore_errors=True)


def remove_document(engine, actor: User, collection: str, name: str) -> None:
    index_for(engine).collection(collection, actor)
    if not index_for(engine).remove_document(check_collection_name(collection), name):
        raise InvalidInput(f"{collection} holds no document {name!r}")
    (collection_folder(engine, collection) / safe_file_name(name)).unlink(missing_ok=True)


# ---- asking ----
@dataclass
class AskPlan:
    collection: str
    question: str
    model: str
    retrieval: Retrieval
    context: Context | None          # None: nothing matched, the model is not asked
    messages: list[dict] = field(default_factory=list)   # the passages for the model (Chat with documents)
    quotes: list[Quote] = field(default_factory=list)     # the sentences that answer (Ask); [] = none does
    verdict: str = ""                # why these sentences, or why none
    user: User | None = None         # who asks: the generation service shares its slots fairly by user
    passages_turn: int | None = None  # a follow-up over the same passages: the history's turn that carries them

    @property
    def found(self) -> bool:
        return self.context is not None and bool(self.context.sources)

    @property
    def answered(self) -> bool:
        return self.found and bool(self.quotes)


@dataclass
class Answer:
    text: str
    found: bool
    citations: list[dict]
    meter: dict
    stats: dict
    quotes: list[Quote] = field(default_factory=list)
    wording: ModelWording | None = None
    verdict: str = ""
    grounding: dict | None = None    # Chat with documents: the check of the model's free answer

    @property
    def answered(self) -> bool:
        return bool(self.quotes)

    def to_dict(self) -> dict:
        return {"answer": self.text, "found": self.found, "answered": self.answered, "verdict": self.verdict,
                "quotes": [q.to_dict() for q in self.quotes],
                "model_wording": None if self.wording is None else self.wording.to_dict(),
                "citations": self.citations, "context": self.meter, "stats": self.stats,
                **({"grounding": self.grounding} if self.grounding is not None else {})}


def prepare(engine, actor: User, collection: str, question: str, model: str, params: SamplingParams,
            history: list[dict] | None = None, top_k: int = 5) -> AskPlan:
    """Retrieve, choose the sentences that answer, and fit what matched into `model`'s window (counting
    with its own tokenizer). `history`: the earlier turns; an assistant turn's `stats` (as saved by Chat)
    let a follow-up over the same passages repeat the earlier prompt (rag/answer.py, follow_up)."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("the question is empty", "type a question")
    history = list(history or [])
    index = index_for(engine)
    info = index.collection(collection, actor)   # another user's collection reads as a missing one
    embed = remembered(embed_texts(engine, info["embed_model"]))     # the question is embedded once
    retrieval = retrieve(index, collection, question, embed, top_k)
    if not retrieval.found:
        return AskPlan(collection, question, model, retrieval, None, user=actor)
    chosen, verdict = choose_quotes(question, rank_sentences(question, retrieval.passages, embed))
    quotes = make_quotes(chosen, retrieval.passages)
    backend = engine.chat.choose_backend(model).backend
    with engine.models.use(model, backend) as resident:
        runner = engine.chat.runner(resident)
        count = lambda text: len(runner.encode([(text, False)]))       # noqa: E731
        documents = {p.chunk.document for p in retrieval.passages}
        whole = {d["name"]: index.document_text(d["id"]) for d in index.documents(collection) if d["name"] in documents}
        context = choose_context(retrieval.passages, whole, count, runner.context_tokens, params.max_new_tokens,
                                 question, history)
        again = follow_up(context, history, whole, count)    # the same passages: the earlier prompt, repeated
    if again is not None:
        context, turn = again
    else:
        turn = None
    if not context.sources:
        raise LLMOSError(f"no passage fits in {model}'s window of {runner.context_tokens} tokens beside the question "
                         "and history", "shorten the question, start a new conversation, or lower max new tokens")
    return AskPlan(collection, question, model, retrieval, context, build_messages(question, context, history, turn),
                   quotes, verdict, actor, turn)


def remembered(embed: Callable[[list[str]], list[list[float]]]) -> Callable[[list[str]], list[list[float]]]:
    """`embed` that computes each text once (retrieval and the sentence ranking both need the question)."""
    seen: dict[str, list[float]] = {}

    def embed_once(texts: list[str]) -> list[list[float]]:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, embed(new)))
        return [seen[t] for t in texts]
    return embed_once


def finish(plan: AskPlan, text: str, stats: dict) -> Answer:
    """The model's free answer over the passages (Chat with documents), its citations, and the check of
    its numbers and names against the passages it was given."""
    if plan.context is None:
        return Answer(NOT_FOUND, False, [], {}, {})
    sources = [plan.context.whole_text] if plan.context.whole_document else [p.chunk.text for p in plan.context.sources]
    return Answer(text, True, citations(text, plan.context), plan.context.meter.to_dict(), stats,
                  grounding=check_claims(text, sources).to_dict())


def answer(engine, plan: AskPlan, params: SamplingParams, on_text: Callable[[str], None] | None = None) -> Answer:
    """Ask's reply: the quoted sentences with their citations, then the model's wording when every number,
    time and name in it is in the quotes (else one more try, constrained to copy them; else the quotes
    alone, saying so). `on_text` sees the reply once it is checked (nothing unchecked is shown)."""
    if plan.context is None:
        return finish(plan, "", {})
    citations_ = passage_citations(plan.retrieval.passages, plan.quotes)
    if not plan.quotes:
        return Answer(DECLINED, True, citations_, {}, {}, [], None, plan.verdict)
    wording, stats, meter = write_wording(engine, plan, params)
    result = Answer(compose_reply(plan.quotes, wording), True, citations_, meter, stats, plan.quotes, wording,
                    plan.verdict)
    if on_text is not None:
        on_text(result.text)
    return result


def write_wording(engine, plan: AskPlan, params: SamplingParams) -> tuple[ModelWording, dict, dict]:
    """The model's answer from the quotes, checked claim by claim against them; a second, stricter try when
    the first says something the quotes do not. Returns the wording, the last try's stats and the meter."""
    sources = [q.text for q in plan.quotes]
    short = replace(params, max_new_tokens=min(params.max_new_tokens, WORDING_TOKENS),
                    stop=list(params.stop) + ["\n"])          # one line is all that is shown
    wording, stats, meter = ModelWording(None), {}, {}
    for strict in (False, True):
        messages = wording_messages(plan.question, plan.quotes, strict)
        result = engine.chat.generate(plan.model, messages, short, user=plan.user)
        stats = result.stats
        meter = wording_meter(plan.context.meter.window if plan.context.meter else 0, result.stats)
        text = clean_wording(result.text)
        report = check_claims(text, sources)
        # "Yes." holds no wrong number, and answers no "how many": the wording must give what is asked for
        in_form = bool(text) and satisfies(question_cue(plan.question), text, plan.question) != 0.0
        novel = new_words(text, sources + [plan.question])     # it rephrases the quotes, or says something else
        polarity = same_polarity(text, sources)                # "never" in the quote, "yes, you can" in the wording
        wording.tries.append({"text": text, "strict": strict, "grounding": report.to_dict(), "answers_the_form": in_form,
                              "new_words": round(novel, 2), "same_polarity": polarity})
        if text and report.supported and in_form and novel <= MAX_NEW_WORDS and polarity:
            wording.text = text
            return wording, stats, meter
    wording.note = UNCHECKED
    return wording, stats, meter


def wording_meter(window: int, stats: dict) -> dict:
    """The window's use by the wording's prompt (the quotes and the question) and its reply."""
    prompt, reply = int(stats.get("prompt_tokens") or 0), int(stats.get("tokens") or 0)
    return {"window": window, "used": prompt + reply, "quotes and question": prompt, "reply": reply,
            "free": max(0, window - prompt - reply)}
