"""The prefix cache of the llama.cpp batch decoder (llamacpp_batch.py): which sequence of the shared KV cache
a prompt goes to, which of its tokens are found there already, and which idle sequences give up their cells.

The cache is the KV cells themselves: each sequence id (a slot) remembers the tokens its cells hold. Besides
the PARALLEL running rows, CACHE_SEQUENCES idle sequences keep the cells of finished prompts, so a
conversation's next turn, a regenerated reply or a translation row finds its start there and reads only the
rest. Nothing is copied: a prompt that starts like another takes a second sequence id on the same cells
(llama_memory_seq_cp). When room is needed, idle sequences give up their cells, least recently used first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

MAX_KV_CELLS = 65536   # the prefix cache never makes the shared cache larger (bounded attention masks)


def prefix_cache_cells(settings, kv_bytes_per_cell: int, shared_cells: int) -> int:
    """Cells the prefix cache adds to a llama.cpp model's shared KV cache (`shared_cells` for the running
    chats): LLMOS_PREFIX_CACHE_MB of them, within MAX_KV_CELLS in all. The loader allocates them and the
    model browser predicts them (browser/predict.py), so admission and the prediction agree."""
    return cells_for(settings.prefix_cache_mb if settings.prefix_cache else 0, kv_bytes_per_cell, shared_cells)


def room_bytes(settings) -> int:
    """LLMOS_PREFIX_CACHE_MB in bytes where the prefix cache is on (the transformers runner's room), else 0."""
    return int(settings.prefix_cache_mb * 1024**2) if settings.prefix_cache else 0


def cells_for(cache_mb: float, kv_bytes_per_cell: int, shared_cells: int) -> int:
    wanted = int(cache_mb * 1024**2) // max(kv_bytes_per_cell, 1)
    return max(0, min(wanted, MAX_KV_CELLS - shared_cells))


# A slot is taken over by a prompt that starts with all its tokens but at most this many (else they are shared).
TAIL_TOKENS = 16
# A prompt that finds at least this many of its tokens cached counts as a prefix-cache hit.
HIT_TOKENS = 16


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)   # what this sequence's KV cells hold, by position
    request: Any = None
    last_used: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """The slots (sequence ids) of one context and what their cells hold; figures for Monitor and /metrics.
    Called by the decoder's loop only (its lock held where a request thread could read)."""

    def __init__(self, memory, slots: int, cache_slots: int = 0, reuse: bool = True, cell_bytes: int = 0):
        self.memory, self.reuse, self.cell_bytes = memory, reuse, cell_bytes
        self.slots = [Slot(i) for i in range(slots + cache_slots)]
        self.parallel = slots                 # rows running at once; the other sequences only keep cells
        self.prompts = self.hits = self.reused_tokens = 0   # admitted, found cached, tokens not read again
        self.shared_tokens = 0                # prompt tokens shared from another slot's cells

    def free(self) -> list[Slot] | None:
        """The slots a new row may take; None when PARALLEL rows already run."""
        free = [s for s in self.slots if s.request is None]
        return free if len(free) > len(self.slots) - self.parallel else None

    def place(self, free: list[Slot], prompt: list[int], fresh: bool, room: int, kv_cells: int) -> tuple[Slot, int]:
        """The slot `prompt` goes to and the tokens found cached (not read again); idle slots' cells are given
        up, least recently used first, until `room` more cells fit in `kv_cells`. `fresh`: read it whole."""
        import llama_cpp

        fresh = fresh or not self.reuse
        slot, keep = self._choose(free, prompt, fresh)
        if keep < len(slot.tokens):
            if not llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, keep, -1):
                llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
                keep = 0
            slot.tokens = slot.tokens[:keep]
        if not fresh:
            keep = self._share(slot, keep, prompt)
        idle = sorted((s for s in free if s is not slot and s.tokens), key=lambda s: s.last_used)
        held = sum(len(s.tokens) for s in idle)
        while idle and room + held > kv_cells:
            victim = idle.pop(0)
            llama_cpp.llama_memory_seq_rm(self.memory, victim.seq_id, -1, -1)
            held -= len(victim.tokens)
            victim.tokens = []
        self.prompts += 1
        self.hits += keep > 1 and keep >= min(HIT_TOKENS, len(prompt) - 1)
        self.reused_tokens += keep
        return slot, keep

    def _choose(self, free: list[Slot], prompt: list[int], fresh: bool) -> tuple[Slot, int]:
        """A slot whose cells start the prompt (all but a few: a conversation's next turn, whose last reply
        may read back as other tokens) is taken; otherwise an empty slot, or the least recently used one, so
        a prompt that shares only its start with another conversation never throws that conversation's
        cells away (it shares them instead: _share)."""
        if not fresh:
            scored = [(common_prefix(s.tokens, prompt), s) for s in free if s.tokens]
            scored = [(n, s) for n, s in scored if n > 1 and len(s.tokens) - n <= TAIL_TOKENS]
            if scored:
                n, slot = max(scored, key=lambda pair: (pair[0], pair[1].last_used))
                return slot, min(n, len(prompt) - 1)
        return min(free, key=lambda s: (bool(s.tokens), s.last_used)), 0

    def _share(self, slot: Slot, keep: int, prompt: list[int]) -> int:
        """When another slot (running or idle) holds a longer start of `prompt` than `slot` does, its cells
        are shared into `slot` (llama_memory_seq_cp: in the unified cache the cells get a second sequence id,
        nothing is copied or evaluated). This is how rows that share a prompt prefix (a translation's
        few-shot examples) read it once. Returns the prompt tokens `slot` now holds."""
        import llama_cpp

        source = max((s for s in self.slots if s is not slot), default=None,
                     key=lambda s: common_prefix(s.tokens, prompt))
        shared = 0 if source is None else min(common_prefix(source.tokens, prompt), len(prompt) - 1)
        if shared <= keep:
            return keep
        llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        llama_cpp.llama_memory_seq_cp(self.memory, source.seq_id, slot.seq_id, 0, shared)
        slot.tokens = prompt[:shared]
        self.shared_tokens += shared
        return shared

    def release(self, slot: Slot) -> None:
        slot.request, slot.last_used = None, time.monotonic()

    def drop_idle(self) -> int:
        """Give up every idle slot's cells (the cache's entries); returns the cells dropped."""
        import llama_cpp

        idle = [s for s in self.slots if s.request is None and s.tokens]
        for slot in idle:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        dropped = sum(len(s.tokens) for s in idle)
        for slot in idle:
            slot.tokens = []
        return dropped

    def stats(self, kv_cells: int) -> dict:
        """Entries are idle slots holding a prompt's cells; bytes count each one's cells (cells two entries
        share are counted twice: an upper bound, inside the KV cache allocated at load)."""
        idle = [s for s in self.slots if s.request is None and s.tokens]
        cells = min(sum(len(s.tokens) for s in idle), kv_cells)
        return figures(self.reuse, len(idle), cells * self.cell_bytes, kv_cells * self.cell_bytes, self.prompts,
                       self.hits, self.reused_tokens)


def figures(enabled: bool, entries: int, nbytes: int, capacity_bytes: int, prompts: int, hits: int,
            tokens_saved: int, entries_are: str = "prompts") -> dict:
    """A prefix cache's figures as Monitor and /metrics show them (both runners' caches report these)."""
    return {"enabled": enabled, "entries": entries, "entries_are": entries_are, "bytes": nbytes,
            "capacity_bytes": capacity_bytes,
            "prompts": prompts, "hits": hits, "hit_rate": round(hits / prompts, 3) if prompts else 0.0,
            "tokens_saved": tokens_saved}
