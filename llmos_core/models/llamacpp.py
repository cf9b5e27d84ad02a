"""The llama.cpp backend: GGUF models on the CPU through llama-cpp-python, and its token stream.

On a CPU, decoding is bound by the bytes read per token: the 4-bit GGUF weights that llama.cpp
reads as they are go 2.5-3.5x faster than the fp32 weights transformers de-quantizes them into.
The binding is optional: `availability()` says whether it imports and, if not, why; the engine
registers this backend only when it does, and everything else keeps working through transformers.

A loaded model is a `LlamaCppModel`: the `Llama` instance plus a lock, because one llama.cpp
context holds one sequence's KV cache and is not thread-safe; requests on it take turns.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psutil

from ..errors import InvalidInput, LoadCancelled, ModelLoadError, ModelNotFound
from ..settings import Settings
from . import fetch
from .backends import Loaded
from .catalog import CAUSAL_LM, ModelSpec

# Context length a chat gets: long enough for a conversation, short enough that the KV cache stays
# a few tens of MB on the embedded models (Gemma 270M: 18 KB a token, SmolLM2: 23 KB a token).
N_CTX = 4096
# Compute buffers and the logits row, measured at 35-45 MB on the embedded models with n_batch 512.
COMPUTE_FIXED = 48 * 1024**2
# llama.cpp's names for general.file_type, for the Models page ("Q4_K_M" says more than "15").
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}

_availability: tuple[bool, str] | None = None


def availability() -> tuple[bool, str]:
    """(True, version) when llama-cpp-python imports; else (False, why), the reason shown on the Models page."""
    global _availability
    if _availability is None:
        if os.environ.get("LLMOS_DISABLE_LLAMACPP", "") in ("1", "true", "yes"):
            _availability = (False, "disabled by LLMOS_DISABLE_LLAMACPP")
        else:
            try:
                import llama_cpp
                _availability = (True, f"llama-cpp-python {llama_cpp.__version__}")
            except Exception as exc:   # ImportError, or OSError when libllama.so is missing or built wrong
                _availability = (False, f"llama-cpp-python does not import: {type(exc).__name__}: {exc}")
    return _availability


@dataclass
class LlamaCppModel:
    """What the manager holds for a llama.cpp model: the Llama instance and the lock its users take turns on."""
    llama: Any
    path: Path
    n_ctx: int
    threads: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        # special=True: chat templates write <|im_start|> and friends as text; they must become their tokens.
        bos = self.llama.detokenize([self.llama.token_bos()], special=True).decode("utf-8", "ignore")
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos and not (bos and text.startswith(bos)),
                                   special=True)


class GGUFTokenizer:
    """A thin tokenizer over the GGUF vocabulary, so code written for a transformers tokenizer can count and
    format: encode, decode, eos/bos ids, and the chat template the GGUF carries (None if it has none)."""

    def __init__(self, model: LlamaCppModel):
        self._model = model
        llama = model.llama
        self.eos_token_id = llama.token_eos()
        self.bos_token_id = llama.token_bos()
        self.chat_template = llama.metadata.get("tokenizer.chat_template") or None
        self.eos_token = llama.detokenize([self.eos_token_id], special=True).decode("utf-8", "ignore")
        self.bos_token = llama.detokenize([self.bos_token_id], special=True).decode("utf-8", "ignore")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._model.tokenize(text, add_bos=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        text = self._model.llama.detokenize(list(ids), special=not skip_special_tokens)
        return text.decode("utf-8", "replace")

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False, **_) -> str | list[int]:
        if not self.chat_template:
            raise InvalidInput("this GGUF has no chat template", "use a plain prompt format for it")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(self.chat_template, eos_token=self.eos_token, bos_token=self.bos_token,
                                        add_generation_prompt=add_generation_prompt)
        text = formatter(messages=messages).prompt
        return self.encode(text) if tokenize else text


def read_metadata(path: Path) -> dict[str, str]:
    """The GGUF's key-value header through llama.cpp's own reader (vocab only: 0.3-0.6 s, no weights)."""
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _metadata_cache:
        from llama_cpp import Llama

        try:
            llama = Llama(str(path), vocab_only=True, verbose=False)
        except Exception as exc:   # ValueError "Failed to load model from file" on a bad file
            raise ModelLoadError(f"llama.cpp cannot read {path.name}: {exc}") from exc
        _metadata_cache[key] = dict(llama.metadata)
        llama.close()
    return _metadata_cache[key]


_metadata_cache: dict[tuple[str, int], dict[str, str]] = {}


def kv_cache_bytes(metadata: dict[str, str], n_ctx: int) -> int:
    """K and V in f16 for every layer and position: 2 x layers x n_ctx x kv_heads x head_dim x 2 bytes."""
    arch = metadata.get("general.architecture", "llama")

    def number(name: str, default: int = 0) -> int:
        value = metadata.get(f"{arch}.{name}")
        return int(float(value)) if value not in (None, "") else default

    heads = number("attention.head_count", 1)
    kv_heads = number("attention.head_count_kv", heads)
    head_dim = number("embedding_length") // max(heads, 1)
    key_dim, value_dim = number("attention.key_length", head_dim), number("attention.value_length", head_dim)
    return number("block_count") * n_ctx * kv_heads * (key_dim + value_dim) * 2


def context_length(metadata: dict[str, str]) -> int:
    arch = metadata.get("general.architecture", "llama")
    trained = int(metadata.get(f"{arch}.context_length") or N_CTX)
    return min(N_CTX, trained)


def process_rss() -> int:
    return psutil.Process().memory_info().rss


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def threads(self) -> int:
        return self.settings.threads or os.cpu_count() or 1

    def _gguf(self, spec: ModelSpec) -> Path:
        if spec.source not in ("embedded", "gguf") or spec.task != CAUSAL_LM:
            raise ModelNotFound(f"{spec.name} is not a GGUF model", "llama.cpp runs GGUF files; use transformers")
        return fetch.gguf_path(spec, self.settings)

    def estimate(self, spec: ModelSpec) -> int:
        """GGUF file size (the weights are read as stored) + the KV cache for the context + compute buffers."""
        path = self._gguf(spec)
        metadata = read_metadata(path)
        return path.stat().st_size + kv_cache_bytes(metadata, context_length(metadata)) + COMPUTE_FIXED

    def load(self, spec: ModelSpec, progress: fetch.Progress, cancel: threading.Event | None = None) -> Loaded:
        from llama_cpp import Llama

        path = self._gguf(spec)
        if cancel is not None and cancel.is_set():
            raise LoadCancelled("the load was cancelled")
        metadata = read_metadata(path)
        n_ctx = context_length(metadata)
        progress(0.5, f"loading {path.name} into llama.cpp ({self.threads} threads, context {n_ctx})")
        before = process_rss()
        try:
            llama = Llama(str(path), n_ctx=n_ctx, n_threads=self.threads, n_threads_batch=self.threads,
                          verbose=False)
            # One token through the network maps every weight page in, so the RSS below is the real
            # footprint (mmapped weights count once touched) and the first reply does not pay for it.
            llama.eval([llama.token_bos()])
            llama.reset()
        except Exception as exc:
            raise ModelLoadError(f"llama.cpp could not load {path.name}: {type(exc).__name__}: {exc}") from exc
        measured = process_rss() - before
        model = LlamaCppModel(llama, path, n_ctx, self.threads)
        file_type = FILE_TYPES.get(int(metadata.get("general.file_type", -1)), "GGUF")
        return Loaded(model, GGUFTokenizer(model), max(measured, 0), {
            "gguf": str(path), "device": "cpu", "dtype": file_type, "form": f"GGUF {file_type} via llama.cpp",
            "n_ctx": n_ctx, "threads": self.threads, "file_bytes": path.stat().st_size,
            "kv_bytes": kv_cache_bytes(metadata, n_ctx)})

    def unload(self, loaded: Loaded) -> None:
        model: LlamaCppModel | None = loaded.model
        if model is not None:
            with model.lock:   # never free the context under a running generation
                model.llama.close()
        loaded.model = None
        loaded.tokenizer = None


def stream_completion(model: LlamaCppModel, prompt: str | list[int], **kwargs) -> Iterator[str]:
    """The reply's text piece by piece (see stream_tokens for the arguments)."""
    for text, _ in stream_tokens(model, prompt, **kwargs):
        if text:
            yield text


def stream_tokens(model: LlamaCppModel, prompt: str | list[int], *, max_new_tokens: int = 256,
                  temperature: float = 0.7, top_p: float = 1.0, top_k: int = 0,
                  repetition_penalty: float = 1.0, do_sample: bool = True, seed: int | None = None,
                  stop: list[str] | tuple[str, ...] = (), cancel: threading.Event | None = None,
                  stats: dict | None = None) -> Iterator[tuple[str, int]]:
    """Yield (text, tokens so far) per generated token (text may be empty: half a character); stops at `stop` strings (never yielded), EOS, `max_new_tokens`,
    or at once when `cancel` is set (checked before each token and while waiting for the model).

    The sampling controls mean what they mean in transformers: do_sample False (or temperature 0) is greedy;
    top_k 0 and top_p 1 switch those filters off; min_p is off (llama-cpp-python defaults it to 0.05).
    One difference: llama.cpp's repetition penalty looks back over the last 64 tokens, not the whole text.
    The prompt's longest prefix already in the KV cache (the conversation so far) is not evaluated again,
    except with a seed, which promises a repeatable reply.
    `stats`, if given, receives prompt_tokens, new_tokens, first_token_s and seconds.
    """
    started = time.perf_counter()
    # One sequence per context: wait our turn. Wake 4 times a second to see a cancel: queued requests
    # polling faster stole measurable time (the GIL) from the one that is decoding.
    while not model.lock.acquire(timeout=0.25):
        if cancel is not None and cancel.is_set():
            return
    pieces = None
    try:
        tokens = model.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if len(tokens) >= model.n_ctx:
            raise InvalidInput(f"the prompt is {len(tokens)} tokens; this model's context holds {model.n_ctx}",
                               "start a new conversation or shorten the message")
        greedy = not do_sample or temperature <= 0
        if seed is not None and not greedy:
            # Re-using a cached prompt prefix re-evaluates its last token alone, whose logits differ in the
            # last bits from the batched prefill's; a seed promises the same reply, so evaluate it afresh.
            model.llama.reset()
        pieces = model.llama.create_completion(
            tokens, max_tokens=max(1, int(max_new_tokens)), stream=True, stop=list(stop) or [],
            temperature=0.0 if greedy else float(temperature), top_p=float(top_p) if top_p else 1.0,
            top_k=int(top_k or 0), min_p=0.0, repeat_penalty=float(repetition_penalty or 1.0),
            seed=seed if seed is not None else int.from_bytes(os.urandom(4), "little"))
        new_tokens, first = 0, None
        for chunk in pieces:
            if cancel is not None and cancel.is_set():
                break
            choice = chunk["choices"][0]
            if choice["finish_reason"] is None:   # the closing chunk carries only the reason
                new_tokens += 1
            if first is None:
                first = time.perf_counter() - started
            yield choice["text"], new_tokens
        if stats is not None:
            stats.update(prompt_tokens=len(tokens), new_tokens=new_tokens, first_token_s=first,
                         seconds=time.perf_counter() - started)
    finally:
        if pieces is not None:
            pieces.close()   # ends llama-cpp-python's generator now, not at garbage collection
        model.lock.release()


class LlamaCppRunner:
    """The chat service's runner for llama.cpp (the interface is in generation.py's docstring): one request
    at a time per model, the service queues the rest; the prompt prefix already in the KV cache (the
    conversation so far) is not evaluated again."""

    max_active = 1

    def __init__(self, resident, service=None):
        self.resident, self.loaded = resident, resident.loaded
        self.model: LlamaCppModel = resident.model
        self.tokenizer: GGUFTokenizer = resident.tokenizer
        self.chat_template = self.tokenizer.chat_template
        self.context_tokens = self.model.n_ctx

    def encode(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def render_chat(self, messages: list[dict], continue_final: bool) -> str:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=not continue_final)
        if continue_final:   # carry on inside the last reply: cut the end-of-turn the template wrote after it
            last = messages[-1]["content"]
            end = text.rfind(last)
            text = text[:end + len(last)] if end >= 0 else text
        return text

    def stream(self, input_ids: list[int], params, cancel: threading.Event) -> Iterator[tuple[str, int]]:
        # Stop strings stay with the service (the same for every backend); llama.cpp stops at EOS itself.
        yield from stream_tokens(self.model, input_ids, max_new_tokens=params.max_new_tokens,
                                 temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                                 repetition_penalty=params.repetition_penalty, do_sample=params.do_sample,
                                 seed=params.seed, cancel=cancel)

    def alive(self) -> bool:
        return self.loaded.model is not None

    def close(self) -> None:
        self.model = None
