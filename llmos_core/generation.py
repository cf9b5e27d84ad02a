"""Streaming chat generation shared by every browser session and the CLI: prompts, sampling, stop, queue, batching.

How a reply is made (GenerationService.stream):
  1. admission: each (model, backend) has a lane with `runner.max_active` running slots and a bounded
     waiting line; a full line raises errors.Busy ("N ahead of you") instead of hanging, and a waiting
     request yields TokenEvent(queued=N) so the page can say where it stands.
  2. `engine.models.use(name, backend)` pins the model (loading it if it was evicted).
  3. RUNNERS[backend](resident, service) gives the backend's Runner (one per resident model, reused);
     build_prompt() renders the messages with the model's chat template, or a plain dialogue for base
     models, dropping the oldest turns (never the system prompt) to fit the context.
  4. runner.stream(input_ids, params, cancel) yields (text_delta, tokens_so_far); the service applies the
     stop strings, times the first token, and yields TokenEvents; its `finally:` sets `cancel`, so a
     page that was left or a Stop press ends the generation and frees the slot at once.

Plugging in another backend (e.g. llama.cpp): write a class with
    max_active: int                     # requests it serves at once (1: the service queues the rest)
    __init__(self, resident: ResidentModel, service: GenerationService)
    chat_template -> str | None         # None: base model, the plain dialogue format is used
    context_tokens -> int               # prompt + reply must fit in this many tokens
    encode(text) -> list[int]           # token ids of a rendered prompt
    render_chat(messages, continue_final: bool) -> str   # only called when chat_template is set
    stream(input_ids, params: SamplingParams, cancel: threading.Event) -> Iterator[tuple[str, int]]
        # yields (new text, generated tokens so far); must return soon after `cancel` is set
    alive() -> bool                     # False once its model was unloaded: the service makes a new one
    close()                             # stop threads, drop references to the model
and register it: RUNNERS["llamacpp"] = LlamaCppRunner. Stop strings, timing, queueing, pinning and
truncation stay in the service, so every backend gets them the same way.

The transformers runner uses transformers' continuous batching (ContinuousBatchingManager): requests
join and leave the running batch at any step. Its built-in per-request processors cover temperature,
top-k and top-p only (repetition penalty is dropped, do_sample and the seed are global), so we add one
processor of our own, PerRequestSampler, that does all of the sampling per request (repetition penalty,
greedy or temperature/top-k/top-p, a torch.Generator per seed) and hands the manager a one-hot row that
its greedy argmax then picks. Every request keeps its own settings inside one shared batch. If the
manager cannot be built for a model, a generate() runner serves one request at a time instead.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import deque
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .backend_choice import BackendChoice, SpeedBook, choose_backend
from .errors import Busy, InvalidInput, LLMOSError
from .models import llamacpp
from .models.catalog import CAUSAL_LM
from .sampling import RequestSampler

if TYPE_CHECKING:
    from .models.manager import ModelManager, ResidentModel

log = logging.getLogger(__name__)

# A CPU demo never needs 32k tokens of context, and the KV cache for four of them would not fit.
CONTEXT_CAP = 2048
# Tokens per page of the continuous-batching KV cache.
CACHE_PAGE = 256
PLAIN_STOP = ["\nUser:", "\nuser:", "\nUSER:"]
PLAIN_NOTE = ("{name} is a base model (no chat template): it is prompted as a plain 'User:/Assistant:' "
              "dialogue and stopped before it writes the user's next turn. Replies may wander.")
ROLES = ("system", "user", "assistant")


@dataclass
class SamplingParams:
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0                 # 0: off
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None        # None: a fresh random seed per request
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.do_sample = bool(self.do_sample)
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        self.top_k, self.max_new_tokens = int(self.top_k), int(self.max_new_tokens)
        self.repetition_penalty = float(self.repetition_penalty)
        self.stop = [s for s in (self.stop or []) if s]
        if self.do_sample and not self.temperature > 0:
            raise InvalidInput(f"temperature must be above 0 when sampling, got {self.temperature}",
                               "raise the temperature, or choose greedy decoding")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInput(f"top-k must be 0 (off) or more, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise InvalidInput(f"repetition penalty must be above 0, got {self.repetition_penalty}")
        if not 1 <= self.max_new_tokens <= 8192:
            raise InvalidInput(f"max new tokens must be between 1 and 8192, got {self.max_new_tokens}")

    @classmethod
    def for_model(cls, sampling: dict | None = None, **overrides: Any) -> "SamplingParams":
        """A model's recommended sampling (ModelSpec.sampling), then the caller's overrides (None = keep)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in (sampling or {}).items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TokenEvent:
    text: str = ""                  # new text since the previous event
    tokens: int = 0                 # tokens generated so far
    prompt_tokens: int = 0
    ttft_s: float | None = None     # time to first token, from the request's start (queueing included)
    elapsed_s: float = 0.0
    queued: int | None = None       # set while waiting: how many requests are ahead
    done: bool = False
    finish_reason: str | None = None   # stop | length | cancelled
    dropped_messages: int = 0       # oldest messages left out to fit the context
    backend: str = ""               # the backend that served it, and why (backend_choice.py)
    backend_reason: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed, first token excluded (the first carries the prompt's cost)."""
        if self.ttft_s is None or self.tokens < 2 or self.elapsed_s <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.elapsed_s - self.ttft_s)

    def stats(self) -> dict:
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 3),
                "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
                "elapsed_s": round(self.elapsed_s, 3), "finish_reason": self.finish_reason,
                "dropped_messages": self.dropped_messages, "backend": self.backend,
                "backend_reason": self.backend_reason}


@dataclass
class ChatResult:
    text: str
    stats: dict


# ---------------------------------------------------------------- prompts


@dataclass
class PromptPlan:
    input_ids: list[int]
    text: str
    dropped: int            # messages dropped from the start of the history
    template: bool          # the model's chat template was used
    stop: list[str]         # stop strings the format itself needs


def check_messages(messages: list[dict], continue_final: bool = False) -> list[dict]:
    """Roles known, contents strings; the last message is a non-empty user turn (or the reply to continue)."""
    clean = []
    for m in messages:
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(f"bad message {m!r}", "each message needs a role (system/user/assistant) and text")
        clean.append({"role": m["role"], "content": m["content"]})
    turns = [m for m in clean if m["role"] != "system"]
    if not turns:
        raise InvalidInput("the prompt is empty", "type a message first")
    want = "assistant" if continue_final else "user"
    if turns[-1]["role"] != want:
        raise InvalidInput(f"the last message must be the {want}'s to " + ("continue" if continue_final else "reply to"))
    if not continue_final and not turns[-1]["content"].strip():
        raise InvalidInput("the prompt is empty", "type a message first")
    return clean


def render_plain(messages: list[dict], continue_final: bool = False) -> str:
    """A plain dialogue for base models: the system prompt as a preamble, then 'User:' / 'Assistant:' turns."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            if m["content"].strip():
                parts.append(m["content"].strip() + "\n\n")
        elif m["role"] == "user":
            parts.append(f"User: {m['content'].strip()}\n")
        else:
            parts.append(f"Assistant: {m['content'].strip()}\n")
    text = "".join(parts)
    if continue_final:
        return text.rstrip("\n")           # the model carries on from the end of its last reply
    return text + "Assistant:"


def build_prompt(runner, messages: list[dict], max_new_tokens: int, continue_final: bool = False) -> PromptPlan:
    """Render and tokenize; while prompt + reply exceed the context, drop the oldest non-system messages."""
    messages = check_messages(messages, continue_final)
    system = [m for m in messages if m["role"] == "system"][:1]
    turns = [m for m in messages if m["role"] != "system"]
    budget = runner.context_tokens - max_new_tokens
    if budget < 8:
        raise InvalidInput(f"max new tokens ({max_new_tokens}) leaves no room for the prompt in a "
                           f"{runner.context_tokens}-token context", "lower max new tokens")
    template = runner.chat_template is not None
    dropped = 0
    while True:
        chosen = system + turns[dropped:]
        text = runner.render_chat(chosen, continue_final) if template else render_plain(chosen, continue_final)
        ids = runner.encode(text)
        if len(ids) <= budget:
            return PromptPlan(ids, text, dropped, template, [] if template else list(PLAIN_STOP))
        # Drop whole exchanges: the history must still start with a user turn.
        nxt = dropped + 1
        while nxt < len(turns) and turns[nxt]["role"] != "user":
            nxt += 1
        if nxt >= len(turns) or (continue_final and nxt >= len(turns) - 1):
            raise InvalidInput(f"the message is too long: {len(ids)} prompt tokens, but only {budget} fit "
                               f"({runner.context_tokens} context minus {max_new_tokens} for the reply; "
                               f"{len(ids) - budget} too many)",
                               "shorten the message or the system prompt, or lower max new tokens")
        dropped = nxt


def build_raw_prompt(runner, prompt: str, max_new_tokens: int) -> PromptPlan:
    """A prompt taken as it is (the API's /v1/completions, for base models): no template, nothing dropped."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("the prompt is empty", "send some text to complete")
    ids = runner.encode(prompt)
    budget = runner.context_tokens - max_new_tokens
    if len(ids) > budget:
        raise InvalidInput(f"the prompt is too long: {len(ids)} tokens, but only {budget} fit "
                           f"({runner.context_tokens} context minus {max_new_tokens} for the reply; "
                           f"{len(ids) - budget} too many)", "shorten the prompt, or lower max_tokens")
    return PromptPlan(ids, prompt, 0, False, [])


class StopScanner:
    """Cuts the reply at the first stop string, holding back text that might be the start of one."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.buffer = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        """-> (text safe to show now, whether a stop string was found)."""
        self.buffer += delta
        cut = min((i for i in (self.buffer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        if self.hold == 0:
            out, self.buffer = self.buffer, ""
            return out, False
        # Keep only the tail that is a prefix of some stop string.
        keep = 0
        for n in range(min(self.hold, len(self.buffer)), 0, -1):
            tail = self.buffer[-n:]
            if any(s.startswith(tail) for s in self.stop):
                keep = n
                break
        out = self.buffer[:len(self.buffer) - keep]
        self.buffer = self.buffer[len(out):]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class _Request(RequestSampler):
    """A request of the transformers runner: its sampler, and the queue its outputs arrive on."""

    def __init__(self, input_ids: list[int], params: SamplingParams):
        super().__init__(input_ids, params)
        self.outputs: queue.Queue = queue.Queue()


# ---------------------------------------------------------------- the transformers runner


class _Decoder:
    """Token ids -> text deltas; re-decodes the whole reply so multi-byte characters come out whole."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.text = tokenizer, [], ""

    def add(self, new_ids: list[int]) -> str:
        self.ids.extend(new_ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):          # half a character: wait for the rest
            return ""
        delta, self.text = text[len(self.text):], text
        return delta


class TransformersRunner:
    """Continuous batching over one resident transformers model (see the module docstring)."""

    max_active = 4

    def __init__(self, resident: "ResidentModel", service: "GenerationService"):
        self.resident, self.loaded = resident, resident.loaded
        self.tokenizer = resident.tokenizer
        self.model = resident.model
        config = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else self.model.config
        self.context_tokens = min(getattr(config, "max_position_embeddings", None) or CONTEXT_CAP, CONTEXT_CAP)
        self.chat_template = getattr(self.tokenizer, "chat_template", None) or None
        self.eos = _eos_ids(self.model, self.tokenizer)
        self._requests: dict[str, _Request] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._closed = threading.Event()
        self._manager = None
        self._fallback = threading.Lock()     # used only when continuous batching is unavailable
        self.peak_batch = 0                   # most requests sampled in one step (tests, the page's figures)
        self.cache_pages = math.ceil(service.max_active * self.context_tokens / CACHE_PAGE) + 2
        try:
            # The batching KV cache is allocated up front: counted with the model, or refused when it
            # does not fit (the model then serves one request at a time through generate()).
            service.models.set_working_memory(resident, self.cache_pages * CACHE_PAGE * kv_bytes_per_token(
                config, self.model.dtype), "continuous-batching KV cache")
            self._manager = self._start_manager(service.max_active)
        except Exception as exc:   # no room, or an architecture CB cannot serve: say so in the log, use generate()
            log.warning("continuous batching unavailable for %s (%s); using generate() per request",
                        resident.name, exc)
        if self._manager is not None:
            self._dispatcher = threading.Thread(target=self._dispatch, name=f"llmos-chat-{resident.name}",
                                                daemon=True)
            self._dispatcher.start()

    @property
    def batching(self) -> bool:
        return self._manager is not None

    def encode(self, text: str) -> list[int]:
        # The rendered template already holds the special tokens it wants.
        return self.tokenizer(text, add_special_tokens=not self.chat_template)["input_ids"]

    def render_chat(self, messages: list[dict], continue_final: bool) -> str:
        kwargs = ({"continue_final_message": True} if continue_final else {"add_generation_prompt": True})
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
        except Exception:
            # Some templates refuse a system role: fold it into the first user message instead.
            if messages and messages[0]["role"] == "system":
                rest = [dict(m) for m in messages[1:]]
                if rest:
                    rest[0]["content"] = f"{messages[0]['content']}\n\n{rest[0]['content']}"
                return self.tokenizer.apply_chat_template(rest, tokenize=False, **kwargs)
            raise

    def alive(self) -> bool:
        return self.loaded.model is not None and not self._closed.is_set()

    def _start_manager(self, max_active: int):
        from transformers import ContinuousBatchingConfig, GenerationConfig
        from transformers.generation.continuous_batching.cb_logits_processors import (
            ContinuousBatchingLogitsProcessor)

        requests, runner = self._requests, self

        class PerRequestSampler(ContinuousBatchingLogitsProcessor):
            """Samples each row with its request's own settings; returns one-hot rows for the greedy pick."""
            supported_kwargs: dict = {}
            ignored_kwargs: tuple = ()

            def fill_defaults(self, int32_tensor) -> None:
                int32_tensor.fill_(-1)

            def prepare_tensor_args(self, requests_with_new_token):
                import torch
                # Our handle per row travels with the batch, so async batching cannot mix rows up.
                return torch.tensor([int(r.state.request_id.rsplit("-", 1)[1]) for r in requests_with_new_token],
                                    dtype=torch.int32)

            def __call__(self, scores, tensor_arg):
                import torch
                handles = tensor_arg[: scores.size(0)].tolist()
                runner.peak_batch = max(runner.peak_batch, sum(h >= 0 for h in handles))
                out = torch.full_like(scores, float("-inf"))
                for row, handle in enumerate(handles):
                    request = requests.get(f"r-{handle}")
                    if request is None:       # padding, or a request cancelled meanwhile
                        out[row] = scores[row]
                        continue
                    out[row, request.sample(scores[row])] = 0.0
                return out

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos[0]
        gen_config = GenerationConfig(do_sample=False, max_new_tokens=256, eos_token_id=self.eos, pad_token_id=pad)
        cb_config = ContinuousBatchingConfig(num_blocks=self.cache_pages, page_size=CACHE_PAGE, max_batch_tokens=512,
                                             use_async_batching=False)
        manager = self.model.init_continuous_batching(generation_config=gen_config, continuous_batching_config=cb_config)
        processors = manager.logit_processor
        processors.logits_processor.append(PerRequestSampler())
        processors.tensors_required += 1
        processors.do_processing = True
        self._route_outputs_directly(manager)
        manager.start()
        return manager

    def _route_outputs_directly(self, manager) -> None:
        """Hand each output to its request's queue from the batching thread itself: one thread hop fewer
        before the first token (each hop can wait out the GIL's 5 ms switch interval). Outputs of no
        known request (cancelled ones) still go to the shared queue, which the dispatcher drains."""
        router = getattr(manager, "output_router", None)
        if router is None or not hasattr(router, "deliver_batch") or not hasattr(router, "deliver"):
            return   # another transformers version: the dispatcher routes everything
        requests, shared = self._requests, router.deliver

        def deliver(output) -> None:
            request = requests.get(output.request_id)
            if request is not None:
                request.outputs.put(output)
            else:
                shared(output)

        router.deliver = deliver
        router.deliver_batch = lambda outputs: [deliver(output) for output in outputs]

    def _dispatch(self) -> None:
        """Routes the manager's outputs to each request's queue; stops the manager once the model is unloaded."""
        manager = self._manager
        while not self._closed.is_set():
            if self.loaded.model is None:      # the memory manager unloaded it: let the memory go
                break
            try:
                result = manager.get_result(timeout=0.1)
            except Exception as exc:           # the manager's thread died: fail what is running
                log.error("continuous batching failed: %s", exc)
                break
            if result is None:
                if not manager.is_running():
                    break
                continue
            request = self._requests.get(result.request_id)
            if request is not None:
                request.outputs.put(result)
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed.set()
        with self._lock:
            for request in self._requests.values():
                request.outputs.put(None)
        manager, self._manager = self._manager, None
        if manager is not None:
            try:
                manager.stop(block=True, timeout=10)
            except Exception as exc:
                log.warning("stopping continuous batching: %s", exc)
            model = self.loaded.model or self.model
            if hasattr(model, "destroy_cached_continuous_batching_manager"):
                model.destroy_cached_continuous_batching_manager()
        self.model = None

    def close(self) -> None:
        """Stop batching and wait for it: a batching thread still running at interpreter exit crashes it."""
        self._closed.set()
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join(timeout=15)
        if self._manager is None:
            self.model = None

    def stream(self, input_ids: list[int], params: SamplingParams, cancel: threading.Event) -> Iterator[tuple[str, int]]:
        if self._manager is None:
            yield from self._stream_generate(input_ids, params, cancel)
            return
        with self._lock:
            self._counter += 1
            request_id = f"r-{self._counter}"
            request = self._requests[request_id] = _Request(input_ids, params)
        decoder, count, finished = _Decoder(self.tokenizer), 0, False
        try:
            self._manager.add_request(input_ids, request_id=request_id, max_new_tokens=params.max_new_tokens,
                                      streaming=True, eos_token_id=self.eos)
            while not cancel.is_set():
                try:
                    result = request.outputs.get(timeout=0.05)
                except queue.Empty:
                    continue
                if result is None:
                    raise LLMOSError("the model was unloaded while it was answering", "send the message again")
                if result.error:
                    raise LLMOSError(f"generation failed: {result.error}")
                new = [t for t in result.generated_tokens[count:] if t not in self.eos]
                count = len(result.generated_tokens)
                delta = decoder.add(new) if new else ""
                if delta or new:
                    yield delta, count
                if result.is_finished():
                    finished = True
                    return
        finally:
            with self._lock:
                self._requests.pop(request_id, None)
            if not finished and self._manager is not None:
                self._manager.cancel_request(request_id)   # frees its KV pages and its batch row now

    def _stream_generate(self, input_ids, params, cancel) -> Iterator[tuple[str, int]]:
        """One request at a time through model.generate, with the same sampler and a cancel criterion."""
        import torch
        from transformers import LogitsProcessor, StoppingCriteria

        request = _Request(input_ids, params)

        class Sample(LogitsProcessor):
            def __call__(self, ids, scores):
                out = torch.full_like(scores, float("-inf"))
                out[0, request.sample(scores[0])] = 0.0
                return out

        class Cancelled(StoppingCriteria):
            def __call__(self, ids, scores, **kwargs):
                return torch.full((ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        tokens: queue.Queue = queue.Queue()

        class Streamer:
            first = True

            def put(self, value):
                if self.first:          # generate() first sends the prompt
                    self.first = False
                    return
                tokens.put(value.reshape(-1).tolist())

            def end(self):
                tokens.put(None)

        errors: list[BaseException] = []

        def work():
            with self._fallback, torch.inference_mode():
                try:
                    self.resident.model.generate(
                        torch.tensor([input_ids], device=self.resident.model.device), do_sample=False,
                        max_new_tokens=params.max_new_tokens, logits_processor=[Sample()],
                        stopping_criteria=[Cancelled()], streamer=Streamer(), eos_token_id=self.eos,
                        pad_token_id=self.eos[0])
                except BaseException as exc:
                    errors.append(exc)
                    tokens.put(None)

        thread = threading.Thread(target=work, name="llmos-chat-generate", daemon=True)
        thread.start()
        decoder, count = _Decoder(self.tokenizer), 0
        try:
            while True:
                new = tokens.get()
                if new is None:
                    break
                count += len(new)
                delta = decoder.add([t for t in new if t not in self.eos])
                yield delta, count
        finally:
            cancel.set()
            thread.join(timeout=5)
        if errors:
            raise LLMOSError(f"generation failed: {errors[0]}")


def kv_bytes_per_token(config, dtype) -> int:
    """K and V of every layer for one token: 2 x layers x kv_heads x head_dim x element size."""
    import torch

    heads = getattr(config, "num_attention_heads", 1) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    return 2 * config.num_hidden_layers * kv_heads * head_dim * element


def _eos_ids(model, tokenizer) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return ids or [-1]


# Backend name -> runner class. Another backend registers here (see the module docstring).
RUNNERS: dict[str, Callable[..., Any]] = {"transformers": TransformersRunner, "transformers-int8": TransformersRunner,
                                          "llamacpp": llamacpp.LlamaCppRunner}


# ---------------------------------------------------------------- the service


class _Lane:
    """The requests of one (model, backend): how many run, who waits (in order)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0
        self.waiting: deque[object] = deque()


class GenerationService:
    """Shared by every session: admission per model, pinning, runners, stop strings and figures."""

    def __init__(self, models: "ModelManager", max_active: int = 4, max_waiting: int = 8):
        self.models = models
        self.max_active, self.max_waiting = max_active, max_waiting
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._runners: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.speeds = SpeedBook()   # single-stream speeds per backend, quoted in the auto choice's reason
        # Called with (model name, last TokenEvent) when a reply ends, however it ended (the API's metrics).
        self.observers: list[Callable[[str, TokenEvent], None]] = []

    # ---- admission ----
    def _lane(self, key) -> _Lane:
        with self._lock:
            return self._lanes.setdefault(key, _Lane())

    def _limit(self, backend: str) -> int:
        cls = RUNNERS.get(backend)
        if cls is TransformersRunner:
            return self.max_active
        return max(1, int(getattr(cls, "max_active", 1)))

    def _admit(self, lane: _Lane, name: str, limit: int, cancel: threading.Event,
               started: float) -> Iterator[TokenEvent]:
        """Takes a running slot (returns True), yielding queued events while it waits; False if cancelled
        while waiting. Raises Busy when the waiting line is full."""
        with lane.cond:
            if lane.active < limit and not lane.waiting:
                lane.active += 1
                return True
            if len(lane.waiting) >= self.max_waiting:
                raise Busy(f"{name} is busy: {lane.active} replies running and {len(lane.waiting)} waiting, "
                           f"{lane.active + len(lane.waiting)} ahead of you")
            ticket = object()
            lane.waiting.append(ticket)
        try:
            while True:
                with lane.cond:
                    if lane.waiting[0] is ticket and lane.active < limit:
                        lane.waiting.popleft()
                        lane.active += 1
                        return True
                    ahead = lane.waiting.index(ticket) + lane.active
                    lane.cond.wait(0.2)
                if cancel.is_set():
                    return False
                yield TokenEvent(queued=ahead, elapsed_s=time.perf_counter() - started)
        finally:
            with lane.cond:
                if ticket in lane.waiting:
                    lane.waiting.remove(ticket)
                    lane.cond.notify_all()

    def _release(self, lane: _Lane) -> None:
        with lane.cond:
            lane.active -= 1
            lane.cond.notify_all()

    def queue_depth(self, name: str, backend: str = "transformers") -> dict:
        lane = self._lane((name, backend))
        with lane.cond:
            return {"running": lane.active, "waiting": len(lane.waiting)}

    def choose_backend(self, name: str, requested: str = "auto") -> BackendChoice:
        """The backend a new request on `name` gets now, and why (see backend_choice.py)."""
        with self._lock:
            lanes = [(backend, lane) for (model, backend), lane in self._lanes.items() if model == name]
        in_flight = {}
        for backend, lane in lanes:
            with lane.cond:
                in_flight[backend] = lane.active + len(lane.waiting)
        return choose_backend(self.models.catalog.get(name), requested, device_kind=self.models.device.kind,
                              backends=self.models.backends, llamacpp_reason=llamacpp.availability()[1],
                              in_flight=in_flight, speeds=self.speeds)

    # ---- runners ----
    def runner(self, resident: "ResidentModel"):
        key = (resident.name, resident.backend)
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None and (runner.resident is not resident or not runner.alive()):
                runner.close()
                runner = None
            if runner is None:
                cls = RUNNERS.get(resident.backend)
                if cls is None:
                    raise InvalidInput(f"chat has no runner for the {resident.backend} backend",
                                       f"use one of: {', '.join(RUNNERS)}")
                runner = self._runners[key] = cls(resident, self)
            return runner

    # ---- requests ----
    def stream(self, name: str, messages: list[dict], params: SamplingParams, backend: str = "auto",
               cancel: threading.Event | None = None, continue_final: bool = False, *,
               raw_prompt: str | None = None) -> Iterator[TokenEvent]:
        """Yield TokenEvents for one reply; the last has done=True. Closing the generator cancels the reply.

        With `raw_prompt`, that text is completed as it is (no template; `messages` is ignored)."""
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        spec = self.models.catalog.get(name)
        if spec.task != CAUSAL_LM:
            raise InvalidInput(f"{name} is a {spec.task} model, not a causal language model",
                               "chat needs a causal LM; translation models belong on the Translate page")
        if raw_prompt is None:
            check_messages(messages, continue_final)
        choice = self.choose_backend(name, backend)
        backend = choice.backend
        lane = self._lane((name, backend))
        admitted = False
        try:
            admitted = yield from self._admit(lane, name, self._limit(backend), cancel, started)
            if not admitted:
                yield TokenEvent(done=True, finish_reason="cancelled", elapsed_s=time.perf_counter() - started)
                return
            with self.models.use(name, backend) as resident:
                runner = self.runner(resident)
                plan = (build_raw_prompt(runner, raw_prompt, params.max_new_tokens) if raw_prompt is not None
                        else build_prompt(runner, messages, params.max_new_tokens, continue_final))
                scanner = StopScanner(list(params.stop) + plan.stop)
                event = TokenEvent(prompt_tokens=len(plan.input_ids), dropped_messages=plan.dropped,
                                   backend=backend, backend_reason=choice.reason)
                yield event         # the prompt fits: callers learn of early errors before any token
                reason = None
                for delta, count in runner.stream(plan.input_ids, params, cancel):
                    now = time.perf_counter() - started
                    if event.ttft_s is None and count > 0:
                        event.ttft_s = now
                    text, stopped = scanner.feed(delta)
                    event = _next(event, text=text, tokens=count, elapsed_s=now)
                    yield event
                    if stopped:
                        reason = "stop"
                        break
                    if cancel.is_set():
                        break
                if reason is None:
                    reason = ("cancelled" if cancel.is_set() else
                              "length" if event.tokens >= params.max_new_tokens else "stop")
                tail = scanner.flush()     # empty after a stop string; held-back text otherwise
                self.speeds.record(name, backend, event.tokens_per_s, lane.active)
                last = _next(event, text=tail, done=True, finish_reason=reason, elapsed_s=time.perf_counter() - started)
                for observe in list(self.observers):
                    observe(name, last)
                yield last
        finally:
            cancel.set()        # a page that was left, or a Stop: the runner ends the generation now
            if admitted:
                self._release(lane)

    def generate(self, name: str, messages: list[dict], params: SamplingParams, backend: str = "auto",
                 cancel: threading.Event | None = None, continue_final: bool = False,
                 on_text: Callable[[str], None] | None = None) -> ChatResult:
        """The whole reply at once (CLI --json, tests, benchmarks); `on_text` sees each piece as it comes."""
        parts, last = [], TokenEvent()
        with closing(self.stream(name, messages, params, backend, cancel, continue_final)) as stream:
            for event in stream:
                if event.text:
                    parts.append(event.text)
                    if on_text:
                        on_text(event.text)
                last = event
        return ChatResult("".join(parts), last.stats())

    def serve_control(self, progress, model: str, messages: list[dict], params: dict,
                      backend: str = "auto", continue_final: bool = False) -> dict:
        """The control socket's `chat` command: each event goes to the client as a progress line
        (message = JSON of text/tokens/queued); a client that hangs up makes `progress` raise, which
        closes the stream and cancels the generation."""
        parts, last = [], TokenEvent()
        stream = self.stream(model, messages, SamplingParams(**params), backend, None, continue_final)
        try:
            for event in stream:
                if event.text or event.queued is not None:
                    progress(event.tokens, json.dumps({"text": event.text, "queued": event.queued}))
                parts.append(event.text)
                last = event
        finally:
            stream.close()
        return {"text": "".join(parts), "stats": last.stats(), "model": model, "params": params}

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()


def _next(event: TokenEvent, **changes) -> TokenEvent:
    values = asdict(event)
    values.update(changes)
    return TokenEvent(**values)
