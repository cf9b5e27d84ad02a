"""A blocking TokenEvent stream (GenerationService.stream) run in its own thread, awaited by the event loop.

Why a thread per request and not the event loop's thread pool: the stream blocks for as long as the
request waits in its model's queue, and it must end the moment the client goes away. The loop only
awaits an asyncio queue; `stop()` sets the service's cancel event, which ends the generation and
frees its slot at once (the service's `finally:`), as the Stop button does on the Chat page.
"""
from __future__ import annotations

import asyncio
import json
import threading
from contextlib import closing
from typing import Callable, Iterator

from ..generation import TokenEvent

_END = object()


class EventPump:
    def __init__(self, open_stream: Callable[[threading.Event], Iterator[TokenEvent]]):
        self.cancel = threading.Event()
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
                for event in stream:
                    self._put(event)
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
