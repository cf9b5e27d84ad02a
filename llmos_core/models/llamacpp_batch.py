"""Continuous batching on one llama.cpp context: up to PARALLEL chats decode together, one token each per step.

Why: a decode step on the CPU reads every weight once, however many sequences it carries, so sequences that
step together share that cost. Measured on this 2-core machine with the embedded Gemma 3 270M (Q4_K_M), in
one run: 77 tokens/s for one sequence, 130 in all for 4 together, 183 for 8 (docs/BENCHMARKS.md).

How (one thread per loaded model runs `_loop`; its llama_decode calls run on llama_compute.py's thread):
  - A request (prompt ids, sampling, cancel event) waits in line until a slot is free (a llama.cpp sequence
    id) and the KV cache the slots share can hold its prompt plus max_new_tokens. Those cells are reserved
    at admission, so a running request never finds the cache full; requests are admitted round-robin
    across users (the user with the fewest rows running first: fair_steps.py's `next_in_line`), in order
    within one user.
  - Each slot remembers which tokens its KV cells hold, and idle slots beyond PARALLEL keep finished
    prompts (the prefix cache, prefix_cache.py): a request evaluates only what no slot holds of its
    prompt (a conversation's next turn, a translation's few-shot examples shared with llama_memory_seq_cp).
    Cells of idle slots are given up, least recently used first, when a new request needs the room.
  - One step is one llama_decode of one batch: the last sampled token of every sequence that is writing
    (with prompt-lookup drafts for greedy rows: prompt_lookup.py), then pieces of prompts being read (up to
    n_batch tokens in all). Logits are asked only where a next token is due: at the end of a prompt, after
    each sampled token and after each draft. A short prompt arriving beside writers is read in a step of
    its own (never two such steps in a row), so a newcomer's first token does not wait for eight other
    rows (bench/fairness.py). A newcomer of a user with no row running also stops the step in flight
    (fair_steps.py): its prompt is read next, and the stopped step is done again after it.
  - A request that must answer in a shape (JSON schema, tool call) has its own grammar: its row is masked
    to the tokens the grammar allows before it is sampled (generation/constraints.py), so rows with
    different schemas, or none, still share each step.
  - Each request samples its row of logits with its own RequestSampler (sampling.py, the same code as
    the transformers runner: repetition penalty, then greedy, or temperature, top-k, top-p and a draw
    from its own seeded generator), so requests keep their own settings inside one batch.
  - A cancelled request leaves at the next step and its slot is free at once; closing the decoder (the
    model is unloaded) ends every request with an error that says so.
"""
from __future__ import annotations

import codecs
import ctypes
import queue
import threading
import time
from typing import Any, Iterator

from ..errors import InvalidInput, ModelLoadError
from ..sampling import RequestSampler
from . import llama_compute
from .fair_steps import StepInterrupt, may_interrupt, next_in_line
from .prefix_cache import PrefixCache, Slot
from .prompt_lookup import Lookup, eligible

# Sequences decoded together; also llama.cpp's n_seq_max for the context.
PARALLEL = 8
# Tokens one llama_decode may carry: the writing sequences' tokens plus pieces of prompts being read.
N_BATCH = 512
# Sequence ids beyond PARALLEL that only keep the cells of finished prompts (the prefix cache): a
# conversation's next turn, or a document's next question, finds its prefix there.
CACHE_SEQUENCES = 24
# Logits rows one decode may return: one per row, plus prompt-lookup drafts (1 MB each on Gemma's vocab).
MAX_OUTPUTS = PARALLEL + 24

_END = object()   # put on a request's queue when it is finished


class _Request:
    """One reply being made: the prompt still to read, the sampler, and the queue its tokens go out on."""

    def __init__(self, prompt: list[int], params: Any, cancel: threading.Event, vocab, user: int = 0):
        self.prompt, self.params, self.cancel, self.user = prompt, params, cancel, user
        self.reserve = len(prompt) + params.max_new_tokens   # KV cells it may come to hold
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.todo: list[int] = []          # prompt tokens not yet evaluated
        self.reused = 0                    # prompt tokens found in the slot's cache, not evaluated again
        self.next_token: int | None = None  # sampled, to be fed in the next step
        self.generated = 0
        self.slot: Slot | None = None
        self.finished = False
        self.lookup: Lookup | None = None   # set at admission when the decoder drafts for it
        self._text = codecs.getincrementaldecoder("utf-8")("replace")   # half a character waits for its rest
        self._vocab, self.sampler = vocab, RequestSampler(prompt, params)
        # Tokens that end this reply once written (a translation ends with its line: any newline token).
        self.stop_tokens = frozenset(getattr(params, "stop_token_ids", ()))
        # Its own grammar, if it must answer in a shape (generation/constraints.py): masks its row only.
        constraint = getattr(params, "constraint", None)
        self.grammar = constraint.start() if constraint is not None else None

    def piece(self, token: int) -> str:
        import llama_cpp

        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return self._text.decode(buffer.raw[:max(n, 0)])

    def finish(self, outcome: object = _END) -> None:
        if not self.finished:
            self.finished = True
            self.out.put(outcome)


class BatchDecoder:
    """Serves every request on one llama.cpp context (see the module docstring). `submit` from any thread;
    the tokens come back on the request's queue."""

    def __init__(self, ctx, vocab, n_vocab: int, kv_cells: int, slots: int = PARALLEL, n_batch: int = N_BATCH,
                 *, cache_slots: int = 0, reuse: bool = True, lookup: bool = False, cell_bytes: int = 0,
                 max_outputs: int = PARALLEL):
        import llama_cpp

        self.ctx, self.vocab, self.n_vocab = ctx, vocab, n_vocab
        self.kv_cells, self.n_batch = kv_cells, n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.cache = PrefixCache(self.memory, slots, cache_slots, reuse, cell_bytes)
        self.slots = self.cache.slots
        self.lookup, self.max_outputs = lookup, max(max_outputs, slots)
        self.drafted = self.accepted = 0  # prompt lookup: tokens guessed, guesses kept
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.steps = 0                    # llama_decode calls so far (tests and figures)
        self.readers_only_steps = 0       # steps that left the writers out for a newcomer's prompt (tests, figures)
        self._last_readers_only = False   # the last step left the writers out (a short prompt went first)
        self.interrupt = StepInterrupt(ctx)   # a second user's newcomer stops the step in flight
        self._last_stopped = False        # the last llama_decode was stopped: the next one may not be
        self._waiting: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # ---- from request threads ----
    def submit(self, prompt: list[int], params: Any, cancel: threading.Event, user: int = 0) -> _Request:
        if not prompt:
            raise InvalidInput("the prompt is empty", "write a message first")
        if len(prompt) + params.max_new_tokens > self.kv_cells:
            raise InvalidInput(f"the prompt ({len(prompt)} tokens) and reply ({params.max_new_tokens}) do not fit "
                               f"this model's {self.kv_cells}-token cache", "shorten the message or the reply")
        request = _Request(list(prompt), params, cancel, self.vocab, user)
        with self._cond:
            if self._closed:
                request.finish(ModelLoadError("the model was unloaded", "load it again"))
                return request
            self._waiting.append(request)
            if self.interrupt.armed and self._starts_next(request):
                self.interrupt.stop()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="llamacpp-batch", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return request

    def _starts_next(self, request: _Request) -> bool:
        """Whether `request` would be admitted at once and may stop the step in flight (fair_steps.py).
        Called under the lock while the loop is inside llama_decode: the slots do not change meanwhile."""
        running = self._running()
        room = bool(self.cache.free()) and sum(r.reserve for r in running) + request.reserve <= self.kv_cells
        return self._waiting[next_in_line(self._waiting, running)] is request and may_interrupt(
            request, running, room, self.n_batch)

    def wake(self) -> None:
        """A request was cancelled: let the loop see it now, even if it sleeps."""
        with self._cond:
            self._cond.notify_all()

    def stats(self) -> dict:
        with self._cond:
            return {"running": sum(s.request is not None for s in self.slots), "waiting": len(self._waiting),
                    "cached_tokens": sum(len(s.tokens) for s in self.slots), "steps": self.steps}

    @property
    def shared_tokens(self) -> int:
        """Prompt tokens shared from another slot's cells, not evaluated (tests and figures)."""
        return self.cache.shared_tokens

    def cache_stats(self) -> dict:
        """The prefix cache and prompt lookup as Monitor and /metrics show them."""
        with self._cond:
            return {**self.cache.stats(self.kv_cells), "lookup": self.lookup, "drafted": self.drafted,
                    "accepted": self.accepted}

    def drop_cached(self) -> int:
        """Give up every idle sequence's cells (the prefix cache's entries); returns the cells dropped."""
        with self._cond:
            return self.cache.drop_idle()

    def close(self) -> None:
        """End every request (the model is being unloaded) and stop the thread; the caller frees the context."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._end_all(ModelLoadError("the model was unloaded while this reply was being written",
                                     "send the message again"))
        if self.batch is not None:
            import llama_cpp

            llama_cpp.llama_batch_free(self.batch)
            self.batch = None

    # ---- the loop ----
    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closed and not self._waiting and not self._running():
                        self._cond.wait()
                    if self._closed:
                        return
                    self._drop_cancelled()
                    self._admit()
                if self._running():
                    self._step()
        except Exception as exc:   # a bug or a llama.cpp failure: no request may hang on it
            self._end_all(ModelLoadError(f"llama.cpp failed while generating: {type(exc).__name__}: {exc}",
                                         "unload the model and load it again"))
            with self._cond:
                self._thread = None

    def _running(self) -> list[_Request]:
        return [s.request for s in self.slots if s.request is not None]

    def _end_all(self, error: Exception) -> None:
        with self._cond:
            requests, self._waiting = self._waiting + self._running(), []
            for slot in self.slots:
                slot.request = None
        for request in requests:
            request.finish(error)

    def _release(self, request: _Request, outcome: object = _END) -> None:
        slot = request.slot
        if slot is not None and slot.request is request:
            self.cache.release(slot)
        request.finish(outcome)

    def _drop_cancelled(self) -> None:
        for request in [r for r in self._waiting if r.cancel.is_set()]:
            self._waiting.remove(request)
            request.finish()
        for request in self._running():
            if request.cancel.is_set():
                self._release(request)

    def _admit(self) -> None:
        """Move waiting requests into free slots, round-robin across users, while the shared cache can hold them."""
        while self._waiting:
            chosen = next_in_line(self._waiting, self._running())
            request = self._waiting[chosen]
            free = self.cache.free()
            reserved = sum(r.reserve for r in self._running())
            if not free or reserved + request.reserve > self.kv_cells:
                return   # the next in line waits, and so does everyone behind it
            self._waiting.pop(chosen)
            params = request.params
            # A seed promises a repeatable reply: read the whole prompt, as the first time (a prefix read in
            # another batch can differ in the last bits of its logits).
            fresh = params.seed is not None and params.do_sample and params.temperature > 0
            slot, keep = self.cache.place(free, request.prompt, fresh, reserved + request.reserve, self.kv_cells)
            request.slot, slot.request = slot, request
            request.todo, request.reused = request.prompt[keep:], keep
            if self.lookup and eligible(params, request.grammar):
                request.lookup = Lookup(request.prompt, True)

    def _step(self) -> None:
        """One llama_decode over every running request, then the sampled tokens of each that asked."""
        import llama_cpp
        import numpy as np
        import torch

        batch, n = self.batch, 0
        fed: list[tuple[_Request, list[int]]] = []
        wants: list[tuple[_Request, list[int], list[int] | None]] = []   # request, logits rows, drafts (writers)

        def add(request: _Request, tokens: list[int], logits: int) -> list[int]:
            """Feed `tokens`; logits for the last `logits` of them. Returns those rows' batch indices."""
            nonlocal n
            slot = request.slot
            start = len(slot.tokens)   # a request is in a step once: as a writer or as a reader
            for i, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + i, 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = i >= len(tokens) - logits
                n += 1
            fed.append((request, tokens))
            return list(range(n - logits, n))

        running = self._running()
        writers = [r for r in running if not r.todo and r.next_token is not None]
        # A reader whose whole remaining prompt fits this step gets a step of its own: its first token then
        # waits for its prompt alone, not for every writer's row too (a second user's question beside eight
        # streams). Writers lose one step for it, never two in a row, so a stream of arrivals cannot stall them.
        readers_only = bool(writers) and not self._last_readers_only and any(
            request.todo for request in running) and sum(len(r.todo) for r in running) <= self.n_batch
        self._last_readers_only = readers_only
        self.readers_only_steps += readers_only
        # Drafts only fill the step up to PARALLEL rows: beside eight writers an extra row costs as much as it may
        # save (each computes Gemma's 262k-word output layer), beside one it is nearly free.
        spare = min(self.max_outputs - len(writers) - sum(1 for r in running if r.todo), PARALLEL - len(writers))
        for request in ([] if readers_only else writers):   # writers first: their token, and lookup's drafts
            drafts = []
            if request.lookup is not None and spare > 0:
                room = min(spare, request.params.max_new_tokens - request.generated - 1,
                           self.kv_cells - len(request.slot.tokens) - 1)
                drafts = request.lookup.draft(request.next_token, room)
                spare -= len(drafts)
            tokens = [request.next_token] + drafts
            wants.append((request, add(request, tokens, len(tokens)), drafts))
        for request in running:               # then readers, as much of their prompt as fits
            if request.todo and n < self.n_batch:
                piece = request.todo[:self.n_batch - n]
                last = len(piece) == len(request.todo)
                rows = add(request, piece, int(last))
                if last:
                    wants.append((request, rows, None))
        if n == 0:
            return
        batch.n_tokens = n
        with self._cond:   # a step carrying writers may be stopped, unless the last was readers-only or stopped
            self.interrupt.arm(bool(writers) and not readers_only and not self._last_readers_only
                               and not self._last_stopped)
        started = time.perf_counter()
        code = llama_compute.decode(self.ctx, batch)
        with self._cond:
            self._last_stopped = self.interrupt.disarm(code, time.perf_counter() - started)
        if self._last_stopped:   # llama.cpp removed the step's cells; nothing was sampled: it is done again later
            for request, _ in fed:
                llama_cpp.llama_memory_seq_rm(self.memory, request.slot.seq_id, len(request.slot.tokens), -1)
            return
        self.steps += 1
        if code != 0:
            for request, _ in fed:
                llama_cpp.llama_memory_seq_rm(self.memory, request.slot.seq_id, -1, -1)
                request.slot.tokens = []
                self._release(request, ModelLoadError(
                    f"llama.cpp could not decode this batch (code {code})", "send the message again"))
            return
        for request, tokens in fed:
            if request.todo:
                request.slot.tokens.extend(tokens)
                request.todo = request.todo[len(tokens):]
        # Every row is sampled before any token is handed out: a reader's thread woken by its token takes the GIL
        # (the service's stop strings, the API's event loop), and woken mid-loop it held up the rows still to
        # sample; woken after, it runs while the next llama_decode has let the GIL go.
        sampled: list[tuple[_Request, list[tuple[str, int]]]] = []
        for request, rows, drafts in wants:
            written = self._sample_row(request, rows, drafts, np, torch)
            sampled.append((request, written))
        for request, written in sampled:
            for out in written:
                request.out.put(out)
            if request.next_token is None:   # it ended: at EOS, at its length, or at a stop token
                self._release(request)

    def _sample_row(self, request: _Request, rows: list[int], drafts: list[int] | None, np,
                    torch) -> list[tuple[str, int]]:
        """Sample the row's positions in order: each draft equal to what was sampled before it is kept, the
        first that differs ends the run (the rejected drafts' cells are removed). Sets next_token (None when
        the reply ended); returns the pieces written. `drafts` is None for a reader (its prompt's end)."""
        import llama_cpp

        written, kept = [], 0          # kept: drafts accepted (their cells stay)
        fed_first, request.next_token = request.next_token, None
        guesses = drafts or []
        for j, index in enumerate(rows):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))
            scores = torch.from_numpy(logits)   # a view: read before the next decode
            if request.grammar is not None:
                scores = request.grammar.mask(scores)
            token = request.sampler.sample(scores)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            request.generated += 1
            written.append((request.piece(token), request.generated))
            if request.grammar is not None:
                request.grammar.accept(token)
                if request.grammar.finished:   # the shape is complete: its end-of-text need not be decoded
                    break
            if request.generated >= request.params.max_new_tokens or token in request.stop_tokens:
                break
            if j < len(guesses) and token == guesses[j]:
                kept += 1
                continue
            request.next_token = token
            break
        if drafts is not None:   # a writer: its token and the kept drafts are in the cache now
            cache = [fed_first] + guesses[:kept]
            request.slot.tokens.extend(cache)
            if len(guesses) > kept:
                llama_cpp.llama_memory_seq_rm(self.memory, request.slot.seq_id, len(request.slot.tokens), -1)
            if request.lookup is not None:
                request.lookup.record(cache, len(guesses), kept)
                self.drafted, self.accepted = self.drafted + len(guesses), self.accepted + kept
        return written


def stream(decoder: BatchDecoder, prompt: list[int], params: Any, cancel: threading.Event,
           user: int = 0) -> Iterator[tuple[str, int]]:
    """(text, tokens so far) per generated token of one request; text may be empty (half a character).
    Returns at EOS, max_new_tokens, or soon after `cancel` is set; closing the generator cancels."""
    request = decoder.submit(prompt, params, cancel, user)
    try:
        while True:
            item = request.out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not request.finished:
            cancel.set()
            decoder.wake()


def read_reply(request: _Request) -> str:
    """The whole text of a submitted request, once it ends (for a caller that submits many rows, then reads
    each: they decode together meanwhile)."""
    pieces = []
    while True:
        item = request.out.get()
        if item is _END:
            return "".join(pieces)
        if isinstance(item, BaseException):
            raise item
        pieces.append(item[0])
