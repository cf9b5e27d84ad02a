"""The chat service shared by every browser session, the CLI and the HTTP API: who runs, on what, and when.

How a reply is made (GenerationService.stream), like one pass of vLLM's engine core (schedule, execute,
update from output) with the roles in their own modules:
  1. admission: each (model, backend) has a lane with a number of running slots (the runner's own
     `max_active`, else the service's) and a bounded waiting line; a full line raises errors.Busy ("N ahead
     of you") instead of hanging, and a waiting request yields TokenEvent(queued=N) so the page can say
     where it stands. Order and fairness live here: a runner is never sent more than its slots (inside
     one, a request may still wait for room in a shared KV cache, see llamacpp_batch.py). Fair sharing
     between users (accounts/): a freed slot goes to the waiting request whose user runs the fewest replies
     in the lane (round-robin across users, in order within one); a signed-in user never holds a lane's last
     slot, so a second user starts at once beside eight streams of a first; and a user's replies, running
     and waiting, count against their `concurrent_generations` limit (LimitReached past it).
  2. `models.use(name, backend)` pins the model (loading it if it was evicted), and RUNNERS[backend] builds
     its runner once per resident model (models/runner.py: the contract), told its capacity and how to
     reserve working memory.
  3. prompt.build_prompt renders and tokenizes the messages, dropping the oldest turns to fit.
  4. runner.stream yields (text, tokens so far); output.Reply applies stop strings and timing; the
     `finally:` sets `cancel`, so a page that was left or a Stop press ends the generation and frees the
     slot at once.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import closing
from typing import TYPE_CHECKING, Callable, Iterator

from ..accounts import LimitReached, User
from ..backend_choice import BackendChoice, SpeedBook, choose_backend
from ..errors import Busy, InvalidInput
from ..models import llamacpp
from ..models.catalog import CAUSAL_LM
from ..models.prefix_cache import room_bytes
from ..models.runner import Runner, RunnerBudget, RunnerFactory
from ..models.transformers_runner import TransformersRunner
from . import constraints
from .output import Reply
from .prompt import build_prompt, build_raw_prompt, check_messages
from .request import ChatResult, SamplingParams, TokenEvent

if TYPE_CHECKING:
    from ..models.manager import ModelManager, ResidentModel

# Backend name -> the runner it chats through. Another backend registers here.
RUNNERS: dict[str, RunnerFactory] = {"transformers": TransformersRunner, "transformers-int8": TransformersRunner,
                                     "llamacpp": llamacpp.LlamaCppRunner}


class _Ticket:
    """A request waiting for a slot, and whose it is."""

    def __init__(self, user: int):
        self.user = user


class _Lane:
    """The requests of one (model, backend): how many run (per user), who waits (in order)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0
        self.by_user: dict[int, int] = {}      # user id -> replies running in this lane
        self.waiting: deque[_Ticket] = deque()

    def next_ticket(self, limit: int) -> "_Ticket | None":
        """The waiting request that takes the next free slot: the user running the fewest here first (the
        earliest of theirs), skipping users who may not take one more."""
        best = None
        for ticket in self.waiting:
            running = self.by_user.get(ticket.user, 0)
            if self.below_cap(ticket.user, limit) and (best is None or running < self.by_user.get(best.user, 0)):
                best = ticket
        return best

    def below_cap(self, user: int, limit: int) -> bool:
        """A signed-in user (id > 0) leaves one slot of a shared lane for someone else; the local admin of a
        single-user start may use them all."""
        return user == 0 or limit < 2 or self.by_user.get(user, 0) < limit - 1

    def may_take(self, user: int, limit: int) -> bool:
        return self.active < limit and self.below_cap(user, limit)

    def take(self, user: int) -> None:
        self.active += 1
        self.by_user[user] = self.by_user.get(user, 0) + 1

    def give_back(self, user: int) -> None:
        self.active -= 1
        self.by_user[user] -= 1
        if not self.by_user[user]:
            del self.by_user[user]


class GenerationService:
    """Admission per model, pinning, runners; prompts and output through their own modules."""

    def __init__(self, models: "ModelManager", max_active: int = 4, max_waiting: int = 8,
                 runners: dict[str, RunnerFactory] | None = None):
        self.models = models
        self.max_active, self.max_waiting = max_active, max_waiting
        self.runners = RUNNERS if runners is None else runners
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._runners: dict[tuple[str, str], Runner] = {}
        self._lock = threading.Lock()
        self.speeds = SpeedBook()   # single-stream speeds per backend, quoted in the auto choice's reason
        # Called with (model name, last TokenEvent) when a reply ends (the API's metrics count every reply).
        self.observers: list[Callable[[str, TokenEvent], None]] = []
        self.limits_for: Callable[[User], object] | None = None   # the engine's Accounts.limits_for
        self._held: dict[int, int] = {}    # user id -> replies running or waiting, over every lane

    # ---- admission ----
    def _lane(self, key) -> _Lane:
        with self._lock:
            return self._lanes.setdefault(key, _Lane())

    def _limit(self, backend: str) -> int:
        """Running slots of a backend's lane: what its runner can serve at once, else the service's setting."""
        own = getattr(self.runners.get(backend), "max_active", None)
        return self.max_active if own is None else max(1, int(own))

    def _hold(self, user: User | None) -> int:
        """Count a reply against its user's concurrent_generations limit (LimitReached past it); the user id."""
        if user is None:
            return 0
        limit = self.limits_for(user).concurrent_generations if self.limits_for else None
        with self._lock:
            held = self._held.get(user.id, 0)
            if limit is not None and held >= limit:
                raise LimitReached(f"you have {held} replies being written at once, your limit is {limit}",
                                   "wait for one to finish (or stop it); an admin can raise your limit")
            self._held[user.id] = held + 1
        return user.id

    def _unhold(self, user_id: int, counted: bool) -> None:
        if not counted:
            return
        with self._lock:
            self._held[user_id] -= 1
            if not self._held[user_id]:
                del self._held[user_id]

    def _admit(self, lane: _Lane, name: str, limit: int, cancel: threading.Event,
               started: float, user: int = 0) -> Iterator[TokenEvent]:
        """Takes a running slot (returns True), yielding queued events while it waits; False if cancelled
        while waiting. Raises Busy when the waiting line is full."""
        with lane.cond:
            if not lane.waiting and lane.may_take(user, limit):
                lane.take(user)
                return True
            if len(lane.waiting) >= self.max_waiting:
                raise Busy(f"{name} is busy: {lane.active} replies running and {len(lane.waiting)} waiting, "
                           f"{lane.active + len(lane.waiting)} ahead of you")
            ticket = _Ticket(user)
            lane.waiting.append(ticket)
        try:
            while True:
                with lane.cond:
                    if lane.active < limit and lane.next_ticket(limit) is ticket:
                        lane.waiting.remove(ticket)
                        lane.take(user)
                        lane.cond.notify_all()
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

    def _release(self, lane: _Lane, user: int = 0) -> None:
        with lane.cond:
            lane.give_back(user)
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
    def runner(self, resident: "ResidentModel") -> Runner:
        """The runner of a resident model, built on first use and again after the model was reloaded."""
        key = (resident.name, resident.backend)
        with self._lock:
            runner = self._runners.get(key)
            if runner is not None and (runner.resident is not resident or not runner.alive()):
                runner.close()
                runner = None
            if runner is None:
                factory = self.runners.get(resident.backend)
                if factory is None:
                    raise InvalidInput(f"chat has no runner for the {resident.backend} backend",
                                       f"use one of: {', '.join(self.runners)}")
                budget = RunnerBudget(
                    capacity=self._limit(resident.backend),
                    reserve_memory=lambda nbytes, what: self.models.set_working_memory(resident, nbytes, what),
                    prefix_cache_bytes=room_bytes(self.models.settings))
                runner = self._runners[key] = factory(resident, budget)
            return runner

    # ---- requests ----
    def stream(self, name: str, messages: list[dict], params: SamplingParams, backend: str = "auto",
               cancel: threading.Event | None = None, continue_final: bool = False, *,
               raw_prompt: str | None = None, user: User | None = None) -> Iterator[TokenEvent]:
        """Yield TokenEvents for one reply; the last has done=True. Closing the generator cancels the reply.

        With `raw_prompt`, that text is completed as it is (no template; `messages` is ignored). `user`: whose
        reply it is (fair sharing and limits); None: the engine's own work, outside any user's share."""
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        if user is not None:      # someone else's unpublished model reads as a missing one
            self.models.catalog.check_visible(user, name)
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
        user_id = self._hold(user)
        try:
            admitted = yield from self._admit(lane, name, self._limit(backend), cancel, started, user_id)
            if not admitted:
                yield TokenEvent(done=True, finish_reason="cancelled", elapsed_s=time.perf_counter() - started)
                return
            with self.models.use(name, backend) as resident:
                runner = self.runner(resident)
                params = constraints.bind(params, runner)   # a grammar compiled for this model, or none
                plan = (build_raw_prompt(runner, raw_prompt, params.max_new_tokens) if raw_prompt is not None
                        else build_prompt(runner, messages, params.max_new_tokens, continue_final))
                reply = Reply(TokenEvent(prompt_tokens=len(plan.input_ids), dropped_messages=plan.dropped,
                                         backend=backend, backend_reason=choice.reason),
                              list(params.stop) + plan.stop, params.max_new_tokens, started)
                yield reply.event   # the prompt fits: callers learn of early errors before any token
                owner = {"user": user_id} if getattr(runner, "takes_user", False) else {}
                for delta, count in runner.stream(plan.input_ids, params, cancel, **owner):
                    yield reply.step(delta, count)
                    if reply.stopped or cancel.is_set():
                        break
                self.speeds.record(name, backend, reply.event.tokens_per_s, lane.active)
                last = reply.finish(cancel.is_set())
                for observe in list(self.observers):
                    observe(name, last)
                yield last
        finally:
            cancel.set()        # a page that was left, or a Stop: the runner ends the generation now
            if admitted:
                self._release(lane, user_id)
            self._unhold(user_id, user is not None)

    def generate(self, name: str, messages: list[dict], params: SamplingParams, backend: str = "auto",
                 cancel: threading.Event | None = None, continue_final: bool = False,
                 on_text: Callable[[str], None] | None = None, user: User | None = None) -> ChatResult:
        """The whole reply at once (CLI --json, tests, benchmarks); `on_text` sees each piece as it comes."""
        parts, last = [], TokenEvent()
        with closing(self.stream(name, messages, params, backend, cancel, continue_final, user=user)) as stream:
            for event in stream:
                if event.text:
                    parts.append(event.text)
                    if on_text:
                        on_text(event.text)
                last = event
        return ChatResult("".join(parts), last.stats())

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()
