"""Password guessing backs off per address and per account, whatever the number of sessions it uses.

After FREE failures in a row a key (an address, or an account's name) waits BASE seconds before its next
try, and each further failure doubles the wait, up to CAP. A success clears the account and the address.
Kept in memory: the web app and the API run in one process, and a restart is slower than the waits.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE = 5          # failures allowed before any wait
BASE = 1.0        # the first wait, seconds
CAP = 300.0       # the longest wait
MAX_KEYS = 10_000  # bounded memory: the oldest keys are forgotten first


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0     # monotonic time before which a try is refused
    last: float = 0.0


class Backoff:
    def __init__(self, free: int = FREE, base: float = BASE, cap: float = CAP, clock=time.monotonic):
        self.free, self.base, self.cap, self.clock = free, base, cap, clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait_s(self, *keys: str) -> float:
        """How long the longest of these keys must still wait (0: a try may go ahead)."""
        now = self.clock()
        with self._lock:
            return max([0.0] + [r.until - now for k in keys if (r := self._records.get(k)) and r.until > now])

    def fail(self, *keys: str) -> float:
        """Count a failure for each key; returns the wait it now has (the longest)."""
        now, longest = self.clock(), 0.0
        with self._lock:
            for key in keys:
                record = self._records.setdefault(key, _Record())
                record.failures += 1
                record.last = now
                if record.failures >= self.free:
                    record.until = now + min(self.cap, self.base * 2 ** (record.failures - self.free))
                    longest = max(longest, record.until - now)
            if len(self._records) > MAX_KEYS:
                for key, _ in sorted(self._records.items(), key=lambda kv: kv[1].last)[: len(self._records) - MAX_KEYS]:
                    del self._records[key]
        return longest

    def succeed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)
