"""The llama.cpp backend: GGUF models on the CPU through llama-cpp-python, and its chat runner.

On a CPU, decoding is bound by the bytes read per token: the 4-bit GGUF weights that llama.cpp
reads as they are go 2.5-3.5x faster than the fp32 weights transformers de-quantizes them into.
The binding is optional: `availability()` says whether it imports and, if not, why; the engine
registers this backend only when it does, and everything else keeps working through transformers.

A loaded model is a `LlamaCppModel`: the weights and vocabulary, one context whose KV cache up to
PARALLEL chats share, and the BatchDecoder that decodes them together (llamacpp_batch.py).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from ..errors import InvalidInput, LoadCancelled, ModelLoadError, ModelNotFound
from ..settings import Settings
from . import batched_form, fetch, llama_compute
from .backends import Loaded
from .catalog import ModelSpec
from .llamacpp_batch import CACHE_SEQUENCES, MAX_OUTPUTS, N_BATCH, PARALLEL, BatchDecoder, stream
from .prefix_cache import prefix_cache_cells
from .prompt_lookup import MAX_DRAFT
from .runner import Piece, RunnerBudget, strip_beside_controls

# Context length one chat gets: long enough for a conversation, short enough that the KV cache stays
# a few tens of MB on the embedded models (Gemma 270M: 18 KB a token, SmolLM2: 23 KB a token).
N_CTX = 4096
# The KV cache the PARALLEL chats share holds this many chats' full contexts: one long conversation
# always fits, and several short ones run together; more would cost memory a CPU demo rarely uses.
SHARED_CONTEXTS = 2
# Compute buffers and the logits rows (PARALLEL x n_vocab floats), measured at 35-45 MB on the
# embedded models with n_batch 512.
COMPUTE_FIXED = 48 * 1024**2
DRAFT_ROW_BYTES = 4 * (MAX_OUTPUTS - PARALLEL)   # logits rows prompt-lookup drafts add, per vocabulary word
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


def new_context(weights, *, n_ctx: int, threads: int, sequences: int = 1, outputs: int = 1,
                n_batch: int = N_BATCH, per_sequence: int = 1):
    """A llama.cpp context on loaded weights. `outputs`: logits rows one decode may return; llama.cpp sizes
    its compute buffer for that many (n_batch rows of 262k floats would be 512 MB on Gemma)."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
    params.n_seq_max, params.n_outputs_max = sequences, outputs
    params.n_outputs_max_per_seq = outputs if sequences == 1 else per_sequence
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = True   # the sequences share one pool of cells, taken as each needs them
    params.swa_full = True     # sliding-window layers keep every position: a cached prefix can be cut anywhere
    with _quiet_llama_log():   # it warns that swa_full costs memory: known, and counted in the estimate
        ctx = llama_cpp.llama_init_from_model(weights.model, params)
    if ctx is None:
        raise ModelLoadError(f"llama.cpp could not create a context of {n_ctx} tokens",
                             "free some memory, or lower the context")
    return ctx


@contextmanager
def _quiet_llama_log():
    from llama_cpp._logger import logger

    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class LlamaCppModel:
    """What the manager holds for a llama.cpp model: weights and vocabulary (llama-cpp-python's LlamaModel),
    one context shared by up to PARALLEL sequences, and the decoder that serves them."""

    def __init__(self, path: Path, n_ctx: int, threads: int, cache_cells: int = 0, reuse: bool = True,
                 lookup: bool = False):
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)   # llama.cpp logs every tensor and buffer to stderr otherwise
        self.path, self.n_ctx, self.threads = path, n_ctx, threads
        self.kv_cells = n_ctx * SHARED_CONTEXTS + cache_cells   # cache_cells: the prefix cache's room
        self.weights = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(),
                                  verbose=False)
        self.vocab = self.weights.vocab
        self.n_vocab = self.weights.n_vocab()
        self.metadata = self.weights.metadata()
        self.bos_text = self.detokenize([self.token_bos()], special=True)   # a template that writes it adds no second
        try:
            self.ctx = new_context(self.weights, n_ctx=self.kv_cells, threads=threads,
                                   sequences=PARALLEL + CACHE_SEQUENCES, outputs=MAX_OUTPUTS,
                                   per_sequence=1 + MAX_DRAFT)
        except BaseException:
            self.weights.close()
            raise
        self.decoder = BatchDecoder(self.ctx, self.vocab, self.n_vocab, self.kv_cells, cache_slots=CACHE_SEQUENCES,
                                    reuse=reuse, lookup=lookup, cell_bytes=kv_cache_bytes(self.metadata, 1),
                                    max_outputs=MAX_OUTPUTS)

    def prefix_cache_stats(self) -> dict:   # the manager's status reads it (Monitor, /metrics)
        return self.decoder.cache_stats()
    def warm_up(self) -> None:
        """One token through the network maps every weight page in, so the RSS measured after is the real
        footprint (mmapped weights count once touched) and the first reply does not pay for it."""
        import llama_cpp

        token = (llama_cpp.llama_token * 1)(self.token_bos())   # kept alive: the batch only points at it
        batch = llama_cpp.llama_batch_get_one(token, 1)
        if llama_compute.decode(self.ctx, batch) != 0:
            raise ModelLoadError(f"llama.cpp could not evaluate a token of {self.path.name}")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def token_bos(self) -> int:
        return self.weights.token_bos()

    def token_eos(self) -> int:
        return self.weights.token_eos()

    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """special=True reads `<|im_start|>` and friends in the text as their control tokens: only for text a
        chat template wrote, never for what a user or a document wrote (it could forge a turn)."""
        bos = self.bos_text
        return self.weights.tokenize(text.encode("utf-8"), add_bos=add_bos and not (bos and text.startswith(bos)),
                                     special=special)

    def tokenize_pieces(self, pieces: list[Piece], add_bos: bool = True) -> list[int]:
        """A prompt as pieces (runner.py): control pieces read as their token, text pieces as text. Cut at
        control tokens, as llama.cpp cuts a whole string itself, so an ordinary prompt gets the same ids."""
        ids = []
        for text, control in strip_beside_controls(pieces, *self._control_strips):
            ids += self.tokenize(text, add_bos=add_bos and not ids, special=control)
        return ids

    @functools.cached_property
    def _control_attrs(self) -> dict[str, int]:
        """Text -> attributes of the vocabulary's control tokens (one pass over it: 60 ms for SmolLM2's
        49k tokens, about 0.3 s for Gemma's 262k, so it is done at load)."""
        import llama_cpp

        found = {}
        for token in range(self.n_vocab):
            if llama_cpp.llama_vocab_is_control(self.vocab, token):
                text = (llama_cpp.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8", "replace")
                if text:
                    found[text] = llama_cpp.llama_vocab_get_attr(self.vocab, token)
        return found

    @functools.cached_property
    def control_texts(self) -> frozenset[str]:
        return frozenset(self._control_attrs)

    @functools.cached_property
    def _control_strips(self) -> tuple[frozenset[str], frozenset[str]]:
        import llama_cpp

        return tuple(frozenset(text for text, attr in self._control_attrs.items() if attr & flag)
                     for flag in (llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP, llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP))

    @functools.cached_property
    def newline_tokens(self) -> frozenset[int]:
        """Tokens whose text holds a line break (a translation ends with its line). One pass over the
        vocabulary, on first use."""
        import llama_cpp

        found, buffer = set(), ctypes.create_string_buffer(256)
        for token in range(self.n_vocab):
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
            if n > 0 and b"\n" in buffer.raw[:n]:
                found.add(token)
        return frozenset(found)

    def detokenize(self, ids, special: bool = False) -> str:
        return self.weights.detokenize(list(ids), special=special).decode("utf-8", "replace")

    def close(self) -> None:
        import llama_cpp

        if self.weights is None:
            return
        self.decoder.close()   # ends running requests first: never free the context under a decode
        llama_cpp.llama_free(self.ctx)
        self.weights.close()
        self.ctx = self.weights = None


class GGUFTokenizer:
    """A thin tokenizer over the GGUF vocabulary, so code written for a transformers tokenizer can count and
    format: encode, decode, eos/bos ids, and the chat template the GGUF carries (None if it has none)."""

    def __init__(self, model: LlamaCppModel):
        self._model = model
        self.eos_token_id = model.token_eos()
        self.bos_token_id = model.token_bos()
        self.chat_template = model.metadata.get("tokenizer.chat_template") or None
        self.eos_token = model.detokenize([self.eos_token_id], special=True)
        self.bos_token = model.bos_text

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # Like a transformers tokenizer's: control tokens written in the text are read as such (templates).
        return self._model.tokenize(text, add_bos=add_special_tokens, special=True)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._model.detokenize(ids, special=not skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False, **_) -> str | list[int]:
        if not self.chat_template:
            raise InvalidInput("this GGUF has no chat template", "use a plain prompt format for it")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(self.chat_template, eos_token=self.eos_token, bos_token=self.bos_token,
                                        add_generation_prompt=add_generation_prompt)
        text = formatter(messages=messages).prompt
        return self.encode(text) if tokenize else text


def file_type_of(metadata: dict) -> int:
    """general.file_type (llama.cpp's LLAMA_FTYPE), -1 when the header does not say."""
    try:
        return int(metadata.get("general.file_type", -1))
    except (TypeError, ValueError):
        return -1


def read_metadata(path: Path) -> dict[str, str]:
    """The GGUF's key-value header through llama.cpp's own reader (vocab only: no weights, no context)."""
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _metadata_cache:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        try:
            header = LlamaModel(path_model=str(path), params=params, verbose=False)
        except Exception as exc:   # ValueError "Failed to load model from file" on a bad file
            raise ModelLoadError(f"llama.cpp cannot read {path.name}: {exc}") from exc
        _metadata_cache[key] = {**header.metadata(), "llmos.n_vocab": str(header.n_vocab())}
        header.close()
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
        if not spec.has_gguf:
            raise ModelNotFound(f"{spec.name} is not a GGUF model", "llama.cpp runs GGUF files; use transformers, "
                                "or export a fine-tune to GGUF: python -m llmos_core models export NAME")
        return fetch.gguf_path(spec, self.settings)

    def cache_cells(self, metadata: dict) -> int:
        """Cells added to the shared KV cache for the prefix cache (LLMOS_PREFIX_CACHE_MB of them)."""
        return prefix_cache_cells(self.settings, kv_cache_bytes(metadata, 1), context_length(metadata) * SHARED_CONTEXTS)

    def estimate(self, spec: ModelSpec) -> int:
        """Served GGUF's size (the weights are read as stored) + the shared KV cache, the prefix cache's cells
        included + compute buffers."""
        path = self._gguf(spec)
        metadata = read_metadata(path)
        kv_cells = context_length(metadata) * SHARED_CONTEXTS + self.cache_cells(metadata)
        served = batched_form.expected_bytes(path, file_type_of(metadata), self.settings)
        vocab = int(metadata.get("llmos.n_vocab") or 262144)
        return served + kv_cache_bytes(metadata, kv_cells) + COMPUTE_FIXED + DRAFT_ROW_BYTES * vocab

    def load(self, spec: ModelSpec, progress: fetch.Progress, cancel: threading.Event | None = None) -> Loaded:
        shipped = self._gguf(spec)
        if cancel is not None and cancel.is_set():
            raise LoadCancelled("the load was cancelled")
        shipped_type = file_type_of(read_metadata(shipped))
        if batched_form.needs_conversion(shipped_type):
            progress(0.2, f"{shipped.name} is {batched_form.UNBATCHED[shipped_type]}, which llama.cpp cannot batch: "
                          "serving its Q8_0 copy (made once)")
        path = batched_form.served_path(shipped, shipped_type, self.settings, self.threads)
        metadata = read_metadata(path)
        n_ctx = context_length(metadata)
        progress(0.5, f"loading {path.name} into llama.cpp ({self.threads} threads, context {n_ctx}, "
                      f"{PARALLEL} chats at once)")
        before = process_rss()
        model = None
        try:
            model = LlamaCppModel(path, n_ctx, self.threads, self.cache_cells(metadata), self.settings.prefix_cache,
                                  self.settings.prompt_lookup)
            model.warm_up()
            model.control_texts   # read the vocabulary now, with the load, not at the first prompt
        except Exception as exc:
            if model is not None:
                model.close()
            if isinstance(exc, ModelLoadError):
                raise
            raise ModelLoadError(f"llama.cpp could not load {path.name}: {type(exc).__name__}: {exc}") from exc
        measured = process_rss() - before
        file_type = FILE_TYPES.get(file_type_of(metadata), "GGUF")
        form = f"GGUF {file_type} via llama.cpp" + (
            f" (a copy of the shipped {FILE_TYPES.get(shipped_type)}: batched kernels)" if path != shipped else "")
        return Loaded(model, GGUFTokenizer(model), max(measured, 0), {
            "gguf": str(path), "device": "cpu", "dtype": file_type, "form": form, "shipped_gguf": str(shipped),
            "n_ctx": n_ctx, "parallel": PARALLEL, "kv_cells": model.kv_cells, "threads": self.threads,
            "file_bytes": path.stat().st_size, "kv_bytes": kv_cache_bytes(metadata, model.kv_cells)})

    def unload(self, loaded: Loaded) -> None:
        model: LlamaCppModel | None = loaded.model
        if model is not None:
            model.close()
        loaded.model = None
        loaded.tokenizer = None


class LlamaCppRunner:
    """The chat service's runner for llama.cpp (the contract: runner.py): up to PARALLEL requests decode
    together in the model's BatchDecoder; the prompt prefix a slot already holds (the conversation so far)
    is not evaluated again. Its KV cache is part of the model's estimate, so it reserves nothing more."""

    max_active = PARALLEL
    takes_user = True     # stream(..., user=id): the decoder admits rows round-robin across users

    def __init__(self, resident, budget: RunnerBudget | None = None):
        self.resident, self.loaded = resident, resident.loaded
        self.model: LlamaCppModel = resident.model
        self.tokenizer: GGUFTokenizer = resident.tokenizer
        self.chat_template = self.tokenizer.chat_template
        self.context_tokens = self.model.n_ctx

    @property
    def control_tokens(self) -> frozenset[str]:
        return self.model.control_texts

    def encode(self, pieces: list[Piece]) -> list[int]:
        return self.model.tokenize_pieces(pieces)

    def render_chat(self, messages: list[dict], continue_final: bool) -> str:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=not continue_final)
        if continue_final:   # carry on inside the last reply: cut the end-of-turn the template wrote after it
            last = messages[-1]["content"]
            end = text.rfind(last)
            text = text[:end + len(last)] if end >= 0 else text
        return text

    def stream(self, input_ids: list[int], params, cancel: threading.Event,
               user: int = 0) -> Iterator[tuple[str, int]]:
        # Stop strings stay with the service (the same for every backend); the decoder stops at EOS itself.
        if len(input_ids) >= self.model.n_ctx:
            raise InvalidInput(f"the prompt is {len(input_ids)} tokens; this model's context holds "
                               f"{self.model.n_ctx}", "start a new conversation or shorten the message")
        yield from stream(self.model.decoder, input_ids, params, cancel, user)

    def alive(self) -> bool:
        return self.loaded.model is not None

    def close(self) -> None:
        self.model = None
