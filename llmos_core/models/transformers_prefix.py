"""The prefix cache of the transformers runner (transformers_runner.py).

transformers' continuous batching keeps the KV state in blocks (`page` tokens of every layer), and with block
sharing on, a finished prompt's full blocks (its reply's included) stay behind, hashed by their tokens and the
blocks before them: a new request whose prompt starts with cached blocks takes them and computes only the rest
(PagedAttentionCache.search_prefix_match). On its own that keeps cached blocks in whatever pages happen to be
free, uncounted and evicted all at once under pressure. Here it gets a room of its own: LLMOS_PREFIX_CACHE_MB
of pages added to the batching cache (counted with the model like the rest of it), cached blocks kept within
that room, least recently used first (a prompt's last blocks go before its first, so a shared start stays
longest), and figures for Monitor and /metrics in the llama.cpp cache's shape (prefix_cache.figures).

The cache lives inside one runner's batching cache, that is one loaded model (an adapter is merged into its
own copy at load: backends.py), so a state is never used across models or adapters. Prefixes are matched in
whole blocks, so with the cache on the runner asks for small ones (PREFIX_PAGE tokens, shared_page): a prompt
recomputes its new text and less than a block before it. Models with sliding-window layers (Gemma 3) get no block
sharing from transformers, so no cache (and transformers' default pages).
"""
from __future__ import annotations

import itertools
from functools import partial

from .prefix_cache import figures

# Tokens of a block when the prefix cache is on. transformers matches whole blocks, so a prompt recomputes the
# tokens after its last whole cached block: with 256-token blocks (transformers' default, the runner's CACHE_PAGE)
# a conversation's next turn computed up to 255 tokens of the previous turn again (a fifth of a 1,000-token prompt);
# with 16, at most 15 besides its new text. Decode speed is the same (docs/figures/h30c.md): the attention reads
# the same tokens, gathered from more, smaller blocks.
PREFIX_PAGE = 16


def shared_page(page: int) -> int:
    """The page (tokens a block) of a batching cache whose blocks the prefix cache shares."""
    return min(page, PREFIX_PAGE)


def shares_blocks(config) -> bool:
    """Whether transformers' continuous batching can share this model's blocks: every layer full attention
    (a sliding-window layer's blocks are overwritten in place). Asked before the room is allocated."""
    try:
        from transformers.generation.continuous_batching.cache import ATTN_TYPE_TO_ALLOCATOR, group_layers_by_attn_type
        return all(ATTN_TYPE_TO_ALLOCATOR[kind].supports_block_sharing for kind in group_layers_by_attn_type(config))
    except Exception:     # another transformers version, or a layer type it does not batch: no cache
        return False


class BlockCache:
    """Counts and bounds the cached blocks of one continuous-batching cache (`attach` is called from the
    batching thread, as the cache is made; the figures are read from any thread)."""

    def __init__(self, cap_blocks: int, page: int):
        self.cap_blocks, self.page = max(0, cap_blocks), page
        self.enabled = self.cap_blocks > 0
        self.cache = None
        self.allocators: list = []
        self.block_bytes = 0
        self.prompts = self.hits = self.tokens_saved = 0

    def attach(self, cache) -> None:
        """Hook the PagedAttentionCache: count its prefix matches, bound its cached blocks."""
        if cache is self.cache:          # the same cache again (the batching loop restarted): hooked already
            return
        self.cache = cache
        if not self.enabled or not getattr(cache, "use_prefix_sharing", False):
            self.enabled = False
            return
        self.allocators = list(cache.cache_allocators.values())
        self.block_bytes = sum(a.bytes_per_block for a in self.allocators)
        search = cache.search_prefix_match

        def search_counted(request_id: str, prompt_ids: list[int]) -> int:
            found = search(request_id, prompt_ids)
            if found:
                self.hits += 1
                self.tokens_saved += found
            return found

        cache.search_prefix_match = search_counted
        for allocator in self.allocators:
            allocator.free_blocks = partial(self._free_blocks, allocator)

    def _free_blocks(self, allocator, request_id: str, no_cache: bool = False) -> None:
        """transformers' free_blocks, releasing the blocks last first (so the least recently used cached block
        is a prompt's end, never the start another prompt shares), then the room's bound kept."""
        blocks = allocator.block_table.pop(request_id, [])
        freed = [block for block in reversed(blocks) if allocator.ledger.release(block, no_cache)]
        allocator.pool.free_blocks(allocator.index, freed)
        ledger = allocator.ledger
        over = len(ledger.cached_blocks) - self.cap_blocks
        if over > 0:
            victims = list(itertools.islice(ledger.cached_blocks, over))
            for block in victims:
                del ledger.cached_blocks[block]
                ledger.hash_to_block.pop(ledger.block_to_hash.pop(block), None)
            allocator.pool.free_blocks(allocator.index, victims)

    def stats(self) -> dict:
        """Entries are cached blocks (`page` tokens of every layer each); bytes, the KV they hold."""
        entries = max((len(a.ledger.cached_blocks) for a in self.allocators), default=0)
        held = sum(len(a.ledger.cached_blocks) * a.bytes_per_block for a in self.allocators)
        return figures(self.enabled, entries, held, self.cap_blocks * self.block_bytes, self.prompts, self.hits,
                       self.tokens_saved, f"blocks of {self.page} tokens")
