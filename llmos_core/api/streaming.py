"""A blocking TokenEvent stream (GenerationService.stream) run in its own thread, awaited by the event loop.

Why a thread per request and not the event loop's thread pool: the stream blocks for as long as the
request waits in its model's queue, and it must end the moment the client goes away. The loop only
awaits an asyncio queue; `stop()` sets the service's cancel event, which ends the generation and
frees its slot at once (the service's `finally:`), as the Stop button does on the Chat page.

`groups(interval)` joins the tokens of each interval into one chunk for a streamed reply. Why: every
chunk costs the client a wake-up and a parse (the `openai` package: about 0.6 ms of CPU) and the server a
send, and on a machine whose cores all decode, that CPU comes out of the decoding itself: a chunk per
token made a stream through the API about a tenth slower than the same stream in-process
(docs/BENCHMARKS.md). At 50 ms (the default, 20 updates a second) a stream reads as smoothly; the first
token and the last are never held, so time to first token and the end of a reply do not move. SGLang's
--stream-interval makes the same trade, counted in tokens; here it is time, so a slow model, whose
tokens come further apart than the interval, still sends each one as it comes.
"""
from __future__ import annotations

import asyncio
import json
import threading
from contextlib import closing
from typing import AsyncIterator, Callable, Iterator

from ..generation import TokenEvent

_END = object()
_FLUSH = object()   # the held tokens' interval is over


class EventPump:
    """`whole=True` (a reply that is not streamed): after the first event past the queue, the rest come as one
    event carrying all their text, so the event loop wakes twice per reply instead of once per token (with 8
    clients in one batch, 8 wake-ups a step that took the loop's thread and the GIL from the decoder)."""

    def __init__(self, open_stream: Callable[[threading.Event], Iterator[TokenEvent]], whole: bool = False):
        self.cancel = threading.Event()
        self.whole = whole
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, args=(open_stream,), name="llmos-api-request", daemon=True)
        self._thread.start()

    def _run(self, open_stream) -> None:
        try:
            with closing(open_stream(self.cancel)) as stream:
                # No break on cancel: the service ends the reply at its next step once the event is set, and
                # reading on to that last event lets it count the reply as cancelled (metrics, observers).
                # Closing the stream mid-reply skipped that, and a disconnected request went uncounted.
                admitted, parts, last = False, [], None
                for event in stream:
                    if admitted and self.whole:
                        parts.append(event.text)
                        last = event
                        continue
                    admitted = admitted or event.queued is None
                    self._put(event)
                if last is not None:
                    self._put(last.next(text="".join(parts)))
        except BaseException as exc:   # raised in the caller's task by next()
            self._put(exc)
        self._put(_END)

    def _put(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:   # the loop has closed (server shutdown): nobody is waiting any more
            self.cancel.set()

    async def next(self) -> TokenEvent | None:
        """The next event; None once the stream has ended. Re-raises what the stream raised."""
        item = await self._queue.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def groups(self, interval: float) -> AsyncIterator[list[TokenEvent]]:
        """The events after `first()`, in groups: an event that comes `interval` seconds or more after the
        last text went out goes at once; one that comes sooner is held until that interval is over, with
        any that join it. A last event (done) goes at once with what is held. Re-raises what the stream
        raised, after what was held."""
        loop = self._loop
        held: list[TokenEvent] = []
        last_text_at = float("-inf")
        timer: asyncio.TimerHandle | None = None
        try:
            while True:
                item = await self._queue.get()
                if item is _FLUSH:
                    timer = None
                elif item is _END or isinstance(item, BaseException):
                    if held:
                        yield held
                    if item is _END:
                        return
                    raise item
                else:
                    held.append(item)
                    if not (item.done or loop.time() - last_text_at >= interval):
                        if timer is None:
                            timer = loop.call_at(last_text_at + interval, self._queue.put_nowait, _FLUSH)
                        continue
                if held:
                    group, held = held, []
                    if any(event.text for event in group):
                        last_text_at = loop.time()
                    yield group
        finally:
            if timer is not None:
                timer.cancel()

    async def first(self) -> TokenEvent | None:
        """Waits out the queue (queued events) and returns the first event after admission: by then the
        model is loaded and the prompt known to fit, so errors come before any response is sent."""
        while True:
            event = await self.next()
            if event is None or event.queued is None:
                return event

    def stop(self) -> None:
        self.cancel.set()


async def watch_disconnect(receive, pump: EventPump) -> None:
    """Cancels the generation as soon as the client hangs up (the body is already read, so the next
    message the server gives is http.disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            pump.stop()
            return


def sse(data: dict | str) -> bytes:
    """One server-sent event: `data: <json>` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()
