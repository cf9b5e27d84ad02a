"""Constrained decoding: a grammar per request, a token mask per row of the batch, with llguidance.

A request that must answer in a shape (a JSON schema, any JSON object, a tool call) carries a grammar in
SamplingParams.grammar: llguidance's grammar as text, plain data like the rest of the settings. Once the
service knows the model's runner, `bind` gives the params a `RowGrammars` (the compiled grammar for that
model's vocabulary); each runner starts one `RowGrammar` per request and, before sampling that request's
row, masks every token the grammar does not allow (`mask`), then tells it the token sampled (`accept`).
So each row of a batch keeps its own grammar: eight clients with eight schemas still decode in one batch.

Why llguidance (and not xgrammar): it is in the lock and runs on both runners' vocabularies (a Hugging
Face tokenizer, or llama.cpp's vocabulary read token by token); its masks are computed lazily per step
from a derivative-based lexer and an Earley parser, about 80-90 us a token here for a 20-field schema
(docs/figures/h29a.md), and compiling a schema takes milliseconds, so no ahead-of-time table per schema
is needed. Costs that are paid once: the vocabulary's token trie (1.3 s for SmolLM2's 49k tokens, 6 s for
Gemma's 262k; kept per loaded model) and each grammar's compile (kept per model and grammar, LRU).

A schema feature llguidance cannot enforce (uniqueItems, not, if/then, look-around in a pattern, ...) is
an InvalidInput that names it, never a reply that quietly ignores it.
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from ..errors import InvalidInput

log = logging.getLogger(__name__)

MAX_SCHEMA_CHARS = 64 * 1024     # a schema is compiled and held in memory: bounded like any input
GRAMMARS_PER_MODEL = 64          # compiled grammars kept per loaded model, least recently used out first
# Compact JSON (no whitespace between tokens): a small model cannot wander off into endless blank lines,
# and properties come in the schema's order, as OpenAI's strict mode writes them.
JSON_OPTIONS = {"whitespace_flexible": False}


# ---------------------------------------------------------------- grammars (plain data)


def json_schema_grammar(schema: Any) -> str:
    """llguidance's grammar for a JSON schema (a dict). The schema's features are checked when it is
    compiled for a model (`RowGrammars.compile`); only its shape and size are checked here."""
    from llguidance import LLMatcher

    if not isinstance(schema, dict):
        raise InvalidInput("the JSON schema must be an object", 'send e.g. {"type": "object", "properties": {...}}')
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_CHARS:
        raise InvalidInput(f"the JSON schema has {len(text):,} characters; at most {MAX_SCHEMA_CHARS:,} are accepted",
                           "send a smaller schema")
    try:
        return LLMatcher.grammar_from_json_schema(json.dumps(closed_objects(schema)), defaults=JSON_OPTIONS)
    except ValueError as exc:
        raise InvalidInput(f"the JSON schema cannot be read: {exc}"[:300], "send a valid JSON schema") from exc


MAX_SCHEMA_DEPTH = 64
# Where subschemas sit in a schema: keywords holding one, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalItems", "contains", "not", "if", "then", "else", "propertyNames")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def closed_objects(schema: Any, depth: int = 0) -> Any:
    """The schema with every object that names its properties, and says nothing of others, closed to others
    (additionalProperties: false), as llama.cpp's grammar converter and OpenAI's strict mode do. Why: a client
    such as LangChain's bind_tools sends a tool's parameters without additionalProperties, and JSON Schema
    then allows any other property: a small model given that freedom writes invented ones until max_tokens
    (SmolLM2, langchain-openai, 2026-12-07). An object that says additionalProperties keeps what it says."""
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidInput(f"the JSON schema nests deeper than {MAX_SCHEMA_DEPTH} levels", "send a flatter schema")
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out \
            and "patternProperties" not in out and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    for key in _ONE + ("additionalProperties",):
        if isinstance(out.get(key), dict):
            out[key] = closed_objects(out[key], depth + 1)
    for key in _MANY:
        if isinstance(out.get(key), list):
            out[key] = [closed_objects(item, depth + 1) for item in out[key]]
    for key in _NAMED:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed_objects(item, depth + 1) for name, item in out[key].items()}
    return out


def json_object_grammar() -> str:
    """Any JSON object ({"type": "json_object"})."""
    return json_schema_grammar({"type": "object"})


def lark_grammar(lark: str) -> str:
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_lark(lark)


# ---------------------------------------------------------------- per model: vocabulary and compiled grammars


class RowGrammars:
    """The grammars of one loaded model: its llguidance tokenizer and its compiled grammars (LRU, by the
    grammar's text). `start(grammar)` gives a fresh matcher for one request: a copy of the compiled one."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self.eos = list(tokenizer.eos_tokens)
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, grammar: str):
        """The compiled grammar (cached); an InvalidInput naming what cannot be enforced."""
        from llguidance import LLMatcher

        with self._lock:
            if grammar in self._compiled:
                self._compiled.move_to_end(grammar)
                return self._compiled[grammar]
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)   # the GIL is let go while it compiles
        if matcher.is_error():
            raise InvalidInput(f"the schema cannot be enforced: {_first_line(matcher.get_error())}",
                               "remove that feature from the schema (LLM OS enforces every part of a schema "
                               "or refuses it)")
        with self._lock:
            self._compiled[grammar] = matcher
            while len(self._compiled) > GRAMMARS_PER_MODEL:
                self._compiled.popitem(last=False)
        return matcher

    def start(self, grammar: str) -> "RowGrammar":
        return RowGrammar(self.compile(grammar).deep_copy(), self.vocab_size, self.eos)


class BoundGrammar:
    """What a runner's request finds in params.constraint: `start()` -> its own RowGrammar."""

    def __init__(self, grammars: RowGrammars, grammar: str):
        self.grammars, self.grammar = grammars, grammar
        grammars.compile(grammar)   # errors now, before the request is sent to the runner

    def start(self) -> "RowGrammar":
        return self.grammars.start(self.grammar)


class RowGrammar:
    """One request's matcher: masks its row of logits, follows the tokens sampled."""

    def __init__(self, matcher, vocab_size: int, eos: list[int]):
        import numpy as np

        self.matcher, self.vocab_size, self.eos = matcher, vocab_size, eos
        self.words = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self.failed = False

    def allowed(self):
        """A bool array (vocab_size,): the tokens the grammar allows next."""
        import numpy as np

        self.matcher.unsafe_compute_mask_ptr(self.words.ctypes.data, self.words.nbytes)
        return np.unpackbits(self.words.view(np.uint8), bitorder="little")[:self.vocab_size].view(bool)

    def mask(self, scores):
        """`scores` (V,) with -inf where the grammar forbids the token (a new tensor; the row is not changed).
        Tokens past the grammar's vocabulary (a padded embedding) are forbidden too. In numpy on the CPU:
        torch's element-wise ops over a 262k row start its thread pool, which on a busy machine cost up to
        hundreds of milliseconds a token (measured), where numpy's single thread costs tens of microseconds."""
        import numpy as np
        import torch

        allowed = self.allowed()
        if not allowed.any():   # an error state (a bug, logged by accept): end-of-text only
            allowed = np.zeros_like(allowed)
            allowed[[t for t in self.eos if t < allowed.size]] = True
        n = min(scores.numel(), allowed.size)
        if scores.device.type != "cpu":
            out = torch.full_like(scores, float("-inf"))
            out[:n] = scores[:n].masked_fill(~torch.from_numpy(allowed[:n]).to(scores.device), float("-inf"))
            return out
        out = np.full(scores.numel(), -np.inf, dtype=np.float32)
        np.copyto(out[:n], scores[:n].detach().float().numpy(), where=allowed[:n])
        return torch.from_numpy(out)

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)) and not self.failed:
            self.failed = True
            log.warning("the grammar refused a sampled token: %s", _first_line(self.matcher.get_error()))

    @property
    def finished(self) -> bool:
        """The grammar allows nothing more: the reply is complete (its end-of-text need not be decoded)."""
        return self.matcher.is_stopped()


# ---------------------------------------------------------------- binding to a runner's model

_MODELS: "weakref.WeakKeyDictionary[Any, RowGrammars]" = weakref.WeakKeyDictionary()
_MODELS_LOCK = threading.Lock()
_BUILD_LOCK = threading.Lock()


def grammars_for(runner) -> RowGrammars:
    """The RowGrammars of a runner's loaded model, built on first use (its vocabulary's trie: seconds)."""
    model = runner.resident.model
    with _MODELS_LOCK:
        found = _MODELS.get(model)
    if found is not None:
        return found
    with _BUILD_LOCK:   # one build at a time: two first requests on one model build its trie once
        with _MODELS_LOCK:
            found = _MODELS.get(model)
        return found if found is not None else _build(runner, model)


def _build(runner, model) -> RowGrammars:
    vocab = getattr(model, "vocab", None)
    if vocab is not None:                 # llama.cpp: the GGUF's vocabulary, token by token
        from llguidance.llamacpp import lltokenizer_from_vocab

        tokenizer, size = lltokenizer_from_vocab(vocab), model.n_vocab
    else:                                 # transformers: the fast tokenizer, ending at the runner's EOS ids
        from llguidance.hf import from_tokenizer

        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        size = max(int(getattr(config, "vocab_size", 0) or 0), len(runner.tokenizer))
        try:
            tokenizer = from_tokenizer(runner.tokenizer, n_vocab=size, eos_token=list(runner.eos))
        except ValueError as exc:
            raise InvalidInput(f"constrained output needs a fast tokenizer; {runner.resident.name} has none",
                               "use another model, or leave response_format and tools out") from exc
    grammars = RowGrammars(tokenizer, size)
    with _MODELS_LOCK:
        return _MODELS.setdefault(model, grammars)


def bind(params, runner):
    """`params` with its grammar compiled for the runner's model (params.constraint), or as they are."""
    if not getattr(params, "grammar", None):
        return params
    return replace(params, constraint=BoundGrammar(grammars_for(runner), params.grammar))


def _first_line(text: str) -> str:
    """An error on one line: llguidance's messages span several (a regex error quotes the pattern)."""
    return " ".join((text or "unknown error").split())[:300]
