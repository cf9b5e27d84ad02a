"""A runner's output -> the events a caller sees: stop strings, timing, why the reply ended.

The runner yields (new text, tokens so far), already decoded: ids to text is its tokenizer's job.
`Reply` cuts the text at the first stop string (holding back what may be the start of one), times the
first token and says why the reply ended. Like vLLM's detokenizer stage, it is apart from scheduling and
from the model, and the same for every backend.
"""
from __future__ import annotations

import time

from .request import TokenEvent


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


class Reply:
    """The events of one reply, from its first event (prompt figures) to the last (done, finish reason)."""

    def __init__(self, first: TokenEvent, stop: list[str], max_new_tokens: int, started: float):
        self.event, self.started, self.max_new_tokens = first, started, max_new_tokens
        self.scanner = StopScanner(stop)
        self.stopped = False

    def step(self, delta: str, tokens: int) -> TokenEvent:
        """The event for one step of the runner; `stopped` is set when a stop string ended the reply."""
        now = time.perf_counter() - self.started
        ttft = self.event.ttft_s if self.event.ttft_s is not None or tokens <= 0 else now
        text, self.stopped = self.scanner.feed(delta)
        self.event = self.event.next(text=text, tokens=tokens, elapsed_s=now, ttft_s=ttft)
        return self.event

    def finish(self, cancelled: bool) -> TokenEvent:
        """The last event: the text held back (empty after a stop string) and why it ended."""
        reason = ("stop" if self.stopped else "cancelled" if cancelled else
                  "length" if self.event.tokens >= self.max_new_tokens else "stop")
        self.event = self.event.next(text=self.scanner.flush(), done=True, finish_reason=reason,
                                     elapsed_s=time.perf_counter() - self.started)
        return self.event
