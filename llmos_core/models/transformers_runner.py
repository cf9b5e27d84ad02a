"""The chat runner for transformers models (the contract: runner.py).

The transformers runner uses transformers' continuous batching (ContinuousBatchingManager): requests
join and leave the running batch at any step. Its built-in per-request processors cover temperature,
top-k and top-p only (repetition penalty is dropped, do_sample and the seed are global), so we add one
processor of our own, PerRequestSampler, that does all of the sampling per request (repetition penalty,
greedy or temperature/top-k/top-p, a torch.Generator per seed) and hands the manager a one-hot row that
its greedy argmax then picks. Every request keeps its own settings inside one shared batch. If the
manager cannot be built for a model, a generate() runner serves one request at a time instead.
Its prefix cache (transformers_prefix.py): finished prompts' KV blocks kept in a room of the batching cache, so a
prompt starting with them computes only the rest (batched rows only: the generate() fallback reads every prompt).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
from typing import TYPE_CHECKING, Iterator

from ..errors import LLMOSError
from ..sampling import RequestSampler
from . import compute_thread
from .runner import CONTEXT_CAP, Piece, RunnerBudget, strip_beside_controls
from .prefix_cache import cells_for
from .transformers_prefix import BlockCache, shared_page, shares_blocks

if TYPE_CHECKING:
    from .manager import ResidentModel

log = logging.getLogger(__name__)

# Tokens per page of the continuous-batching KV cache.
CACHE_PAGE = 256


class _Request(RequestSampler):
    """A request of the transformers runner: its sampler, its grammar if it must answer in a shape
    (generation/constraints.py: its row is masked before it is sampled), and the queue its outputs arrive on."""

    def __init__(self, input_ids: list[int], params):
        super().__init__(input_ids, params)
        self.outputs: queue.Queue = queue.Queue()
        constraint = getattr(params, "constraint", None)
        self.grammar = constraint.start() if constraint is not None else None

    def sample(self, scores) -> int:
        if self.grammar is None:
            return super().sample(scores)
        token = super().sample(self.grammar.mask(scores))
        self.grammar.accept(token)
        return token


class IncrementalDecoder:
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

    max_active = None   # as many as the service admits: the budget's capacity sizes the batching cache

    def __init__(self, resident: "ResidentModel", budget: RunnerBudget):
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
        specials = [token for token in self.tokenizer.added_tokens_decoder.values() if token.special]
        self.control_tokens = frozenset(token.content for token in specials)
        self._lstrip = frozenset(token.content for token in specials if token.lstrip)
        self._rstrip = frozenset(token.content for token in specials if token.rstrip)
        # A page is at most an eighth of the window, so a short-window model still finds its prefixes cached.
        self.page = CACHE_PAGE if self.context_tokens >= 8 * CACHE_PAGE else max(16, self.context_tokens // 8)
        sharing = budget.prefix_cache_bytes > 0 and shares_blocks(config)
        if sharing:        # smaller pages, finer prefix matches (transformers_prefix.py)
            self.page = shared_page(self.page)
        per_token = kv_bytes_per_token(config, self.model.dtype)
        live_pages = math.ceil(budget.capacity * self.context_tokens / self.page) + 2
        # The prefix cache's room (transformers_prefix.py): LLMOS_PREFIX_CACHE_MB, within the cells llama.cpp allows.
        room = cells_for(budget.prefix_cache_bytes / 1024**2, per_token, live_pages * self.page) if sharing else 0
        self.prefix = BlockCache(room // self.page, self.page)
        self.cache_pages = live_pages + self.prefix.cap_blocks
        page_bytes = self.page * per_token
        try:
            # The batching KV cache (the prefix cache's room included) is allocated up front: counted with the
            # model, or refused when it does not fit (the model then serves one request at a time through generate()).
            budget.reserve_memory(self.cache_pages * page_bytes, "continuous-batching KV cache")
            self._manager = self._start_manager(budget.capacity)
        except Exception as exc:   # no room, or an architecture CB cannot serve: say so in the log, use generate()
            log.warning("continuous batching unavailable for %s (%s); using generate() per request",
                        resident.name, exc)
        if self._manager is None:
            self.prefix.enabled = False
        resident.runner_cache = self.prefix.stats
        if self._manager is not None:
            self._dispatcher = threading.Thread(target=self._dispatch, name=f"llmos-chat-{resident.name}",
                                                daemon=True)
            self._dispatcher.start()

    @property
    def batching(self) -> bool:
        return self._manager is not None

    def encode(self, pieces: list[Piece]) -> list[int]:
        # A rendered template already holds the special tokens it wants; the plain format gets the tokenizer's.
        # split_special_tokens: a `<|user|>` in the text is read as text, never as the control token.
        ids = []
        for text, control in strip_beside_controls(pieces, self._lstrip, self._rstrip):
            if control:
                ids.append(self.tokenizer.convert_tokens_to_ids(text))
            else:
                ids += self.tokenizer(text, add_special_tokens=not self.chat_template and not ids,
                                      split_special_tokens=True)["input_ids"]
        return ids

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
        cb_config = ContinuousBatchingConfig(num_blocks=self.cache_pages, page_size=self.page, max_batch_tokens=512,
                                             use_async_batching=False, allow_block_sharing=self.prefix.enabled)
        manager = self.model.init_continuous_batching(generation_config=gen_config, continuous_batching_config=cb_config)
        create = manager._create_batch_processor

        def create_and_attach():     # on the batching thread, before any request: the cache is made here
            processor = compute_thread.run_torch(create)   # its zeroed cache: one OpenMP pool (below)
            self.prefix.attach(processor.cache)
            return processor
        manager._create_batch_processor = create_and_attach
        processors = manager.logit_processor
        processors.logits_processor.append(PerRequestSampler())
        processors.tensors_required += 1
        processors.do_processing = True
        self._route_outputs_directly(manager)
        _steps_on_compute_thread(manager)
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

    def stream(self, input_ids: list[int], params, cancel: threading.Event) -> Iterator[tuple[str, int]]:
        if self._manager is None:
            yield from self._stream_generate(input_ids, params, cancel)
            return
        with self._lock:
            self._counter += 1
            request_id = f"r-{self._counter}"
            request = self._requests[request_id] = _Request(input_ids, params)
            self.prefix.prompts += 1
        decoder, count, finished = IncrementalDecoder(self.tokenizer), 0, False
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
        decoder, count = IncrementalDecoder(self.tokenizer), 0
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


def _steps_on_compute_thread(manager) -> None:
    """Each batching step (the forward pass, the logits processors, the sampling) runs on the process's compute
    thread (compute_thread.py): torch shares llama.cpp's libgomp, and the batching thread's own pool of OpenMP
    workers beside another thread's made its parallel regions sleep at their barriers (Gemma 3 270M fp32 after
    a 1,153-token prompt: 0.58 tok/s from the batching thread, 3.2-3.8 here; docs/figures/h31d.md).
    The batching thread still schedules, admits and delivers."""
    step = manager._generation_step
    manager._generation_step = lambda: compute_thread.run_torch(step)


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
