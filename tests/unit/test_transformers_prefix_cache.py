"""The transformers runner's prefix cache (models/transformers_prefix.py) with tiny models: a prompt that
starts with a finished prompt's blocks computes only the rest, with the same greedy reply token for token
as without the cache; another model never hits; the cached blocks stay within LLMOS_PREFIX_CACHE_MB."""
from __future__ import annotations

import threading

import pytest

from llmos_core.engine import Engine
from llmos_core.generation import SamplingParams
from llmos_core.models import transformers_prefix, transformers_runner
from llmos_core.settings import Settings

TEXT = ("The quick brown fox jumps over the lazy dog. LLM OS runs language models on this machine. "
        "Translate the document and keep its structure. Hello, how are you today? I am fine, thank you. ") * 2
GREEDY = SamplingParams(max_new_tokens=10, do_sample=False)


@pytest.fixture
def picked(monkeypatch):
    """The token ids each request samples, in order (requests run one at a time here)."""
    tokens: list[int] = []
    sample = transformers_runner._Request.sample

    def record(self, scores):
        token = sample(self, scores)
        tokens.append(token)
        return token
    monkeypatch.setattr(transformers_runner._Request, "sample", record)
    return tokens


def open_engine(home, folders, **settings) -> tuple[Engine, list]:
    engine = Engine(Settings(home=home, **settings), primary=False, start_threads=False)
    names = [engine.catalog.register(engine.catalog.resolve(str(f))).name for f in folders]
    return engine, [engine.chat.runner(engine.models.load(n, "transformers")) for n in names]


def reply(runner, ids: list[int], picked: list[int]) -> list[int]:
    picked.clear()
    for _ in runner.stream(ids, GREEDY, threading.Event()):
        pass
    return list(picked)


def test_cached_and_uncached_greedy_replies_are_identical(tmp_path, tiny_causal, picked):
    cached_engine, (cached,) = open_engine(tmp_path / "on", [tiny_causal])
    plain_engine, (plain,) = open_engine(tmp_path / "off", [tiny_causal], prefix_cache=False)
    try:
        assert cached.prefix.enabled and cached.prefix.cap_blocks > 0 and not plain.prefix.enabled
        # Small pages with the cache on (finer matches), the usual ones without it.
        assert cached.page == transformers_prefix.PREFIX_PAGE < plain.page
        first = cached.encode([(TEXT, False)])
        assert len(first) > 3 * cached.page
        answer = reply(cached, first, picked)
        follow_up = first + answer + cached.encode([(" And the fox?", False)])     # a conversation's next turn
        replies = [answer, reply(cached, first, picked)]
        saved = cached.resident.prefix_cache()["tokens_saved"]
        replies.append(reply(cached, follow_up, picked))
        # The next turn reads its earlier prompt and reply (all but the last reply token, never computed) from the
        # cache, to within one page: it computes its new text and less than a page before it.
        assert cached.resident.prefix_cache()["tokens_saved"] - saved > len(first) + len(answer) - 1 - cached.page
        stats = cached.resident.prefix_cache()
        assert stats["prompts"] == 3 and stats["hits"] == 2 and stats["tokens_saved"] >= 2 * 3 * cached.page
        assert 0 < stats["bytes"] <= stats["capacity_bytes"] and stats["entries"] >= 3
        assert replies == [reply(plain, first, picked), reply(plain, first, picked), reply(plain, follow_up, picked)]
        assert all(replies) and plain.resident.prefix_cache()["hits"] == 0
    finally:
        cached_engine.close()
        plain_engine.close()


def test_a_cached_state_is_never_used_by_another_model(tmp_path, tiny_causal, tiny_base, picked):
    engine, (one, other) = open_engine(tmp_path / "home", [tiny_causal, tiny_base])
    try:
        ids = one.encode([(TEXT, False)])
        reply(one, ids, picked)
        reply(other, ids, picked)
        assert one.resident.prefix_cache()["entries"] > 0
        assert other.resident.prefix_cache()["hits"] == 0 and one.resident.prefix_cache()["hits"] == 0
        reply(one, ids, picked)
        assert one.resident.prefix_cache()["hits"] == 1 and other.resident.prefix_cache()["hits"] == 0
    finally:
        engine.close()


def test_cached_blocks_stay_within_the_setting_least_recently_used_going_first(tmp_path, tiny_causal, picked):
    engine, (runner,) = open_engine(tmp_path / "home", [tiny_causal], prefix_cache_mb=0.04)
    try:
        prompts = [runner.encode([(f"{n} {TEXT}", False)]) for n in range(3)]   # distinct from the first token
        for ids in prompts:
            reply(runner, ids, picked)
            stats = runner.resident.prefix_cache()
            blocks = len(ids) // runner.page       # each prompt's full blocks: more than the room holds twice over
            assert stats["bytes"] <= stats["capacity_bytes"] < 2 * blocks * runner.prefix.block_bytes
        assert stats["entries"] == runner.prefix.cap_blocks and stats["hits"] == 0
        reply(runner, prompts[0], picked)            # evicted by the two after it
        assert runner.resident.prefix_cache()["hits"] == 0
        reply(runner, prompts[0], picked)            # cached again just now
        assert runner.resident.prefix_cache()["hits"] == 1
    finally:
        engine.close()
