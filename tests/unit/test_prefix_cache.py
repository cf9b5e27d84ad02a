"""The prefix cache and prompt-lookup decoding on the llama.cpp runner (models/llamacpp_batch.py,
models/prompt_lookup.py): replies identical with and without them, a conversation's cells kept across
other conversations, eviction when the shared cache is short of room, two prompts with one prefix at once,
and the figures Monitor and /metrics show.
"""
import threading

import pytest
from llamacpp_required import binding  # noqa: F401 (a fixture)

from llmos_core.api.metrics import _prefix_cache_gauges
from llmos_core.engine import Engine
from llmos_core.generation import SamplingParams
from llmos_core.models import llamacpp, llamacpp_batch, prompt_lookup
from llmos_core.settings import Settings

CHAT = "smollm2-135m-instruct"
QUOTE = ("Copy this list exactly: Alpha-17, Bravo-42, Charlie-99, Delta-03, Echo-55, Foxtrot-61, Golf-28, "
         "Hotel-70.")


def test_drafts_come_from_the_latest_earlier_occurrence_of_the_tail():
    assert prompt_lookup.find_draft([1, 2, 3, 4, 5, 9, 1, 2, 3], 2) == [4, 5]   # the 3-gram "1 2 3"
    history = [1, 2, 3, 4, 5, 9, 9, 2, 3, 4, 6, 7, 2, 3]    # "7 2 3" is new: the 2-gram "2 3", latest first
    assert prompt_lookup.find_draft(history, 3) == [4, 6, 7]
    assert prompt_lookup.find_draft(history, 0) == []
    assert prompt_lookup.find_draft([5, 6, 7, 8], 4) == []      # no earlier occurrence


def test_lookup_stops_drafting_for_a_request_whose_guesses_fail():
    lookup = prompt_lookup.Lookup([1, 2, 1, 2], True)
    while lookup.enabled and lookup.drafted < 100:
        lookup.record([3], drafted=5, accepted=0)
    assert not lookup.enabled and lookup.drafted == prompt_lookup.TRIAL
    assert lookup.draft(1, 5) == []


def test_only_greedy_rows_without_a_grammar_draft():
    assert prompt_lookup.eligible(SamplingParams(do_sample=False), None)
    assert not prompt_lookup.eligible(SamplingParams(do_sample=True, temperature=0.7), None)
    assert not prompt_lookup.eligible(SamplingParams(do_sample=False), object())


@pytest.fixture
def engines(binding, embedded_home):
    """The same model twice: with the prefix cache and prompt lookup, and with neither."""
    made = {}
    try:
        for on in (True, False):
            engine = Engine(Settings(home=embedded_home, threads=1, prefix_cache=on, prompt_lookup=on),
                            primary=False, start_threads=False)
            made[on] = (engine, engine.models.load(CHAT, "llamacpp"))
        yield made
    finally:
        for engine, _ in made.values():
            engine.close()


@pytest.fixture
def cached(binding, embedded_home):
    """The model with the prefix cache and prompt lookup (the defaults)."""
    engine = Engine(Settings(home=embedded_home, threads=1), primary=False, start_threads=False)
    try:
        yield engine.models.load(CHAT, "llamacpp")
    finally:
        engine.close()


def _ids(resident, text):
    return resident.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                  tokenize=True)


def _reply(decoder, ids, max_new_tokens=40):
    return "".join(t for t, _ in llamacpp_batch.stream(decoder, ids, SamplingParams(
        do_sample=False, max_new_tokens=max_new_tokens), threading.Event()))


@pytest.mark.slow
def test_greedy_replies_are_identical_with_and_without_cache_and_lookup(engines):
    (_, on), (_, off) = engines[True], engines[False]
    for text in (QUOTE, "Name three colours."):
        plain = _reply(off.model.decoder, _ids(off, text))
        on.model.decoder.drop_cached()   # a prompt read whole: drafts guessed and checked
        assert _reply(on.model.decoder, _ids(on, text)) == plain
        assert _reply(on.model.decoder, _ids(on, text)) == plain    # now with the whole prompt cached
    stats = on.prefix_cache()
    assert stats["hits"] >= 2 and stats["tokens_saved"] > 0 and stats["entries"] >= 1
    assert stats["accepted"] > 0 and stats["drafted"] >= stats["accepted"]
    assert off.prefix_cache()["tokens_saved"] == 0 and off.prefix_cache()["drafted"] == 0
    assert on.model.decoder.drop_cached() > 0 and on.prefix_cache()["entries"] == 0


@pytest.mark.slow
def test_a_conversation_keeps_its_cells_while_others_take_turns(cached):
    resident = cached
    decoder = resident.model.decoder
    first = _ids(resident, "Tell me about lighthouses and the people who kept them.")
    _reply(decoder, first, 8)
    for other in ("Tell me about rivers.", "Tell me about mountains.", "Tell me about deserts."):
        _reply(decoder, _ids(resident, other), 8)   # share the template's first tokens with `first`
    follow_up = first + resident.model.tokenize(" And one more thing?", add_bos=False)
    request = decoder.submit(follow_up, SamplingParams(do_sample=False, max_new_tokens=4), threading.Event())
    llamacpp_batch.read_reply(request)
    assert request.reused == len(first)   # its cells were not given to the other conversations


@pytest.mark.slow
def test_least_recently_used_prompts_are_dropped_when_room_is_short(cached, monkeypatch):
    on = cached
    decoder = on.model.decoder
    prompts = [_ids(on, f"Describe the number {n} in a few words.") for n in (11, 22, 33)]
    # Room for two prompts with their replies, not three.
    monkeypatch.setattr(decoder, "kv_cells", 2 * (len(prompts[0]) + 30) + 10)
    replies = [_reply(decoder, ids, 12) for ids in prompts]
    held = [s for s in decoder.slots if s.tokens]
    assert sum(len(s.tokens) for s in held) <= decoder.kv_cells
    assert all(replies)
    request = decoder.submit(prompts[0], SamplingParams(do_sample=False, max_new_tokens=12), threading.Event())
    assert llamacpp_batch.read_reply(request)
    # the oldest prompt's own cells were dropped to make room: only the start all three share was found
    assert request.reused < len(prompts[0]) - 4


@pytest.mark.slow
def test_two_prompts_with_one_prefix_arriving_together(cached):
    decoder = cached.model.decoder
    shared = "Here are the rules of the house, read them with care: " + "be kind, be brief, be right. " * 12
    prompts = [_ids(cached, shared + "Question one: what is the first rule?"),
               _ids(cached, shared + "Question two: what is the last rule?")]

    def together() -> list:
        with decoder._cond:   # both wait in line before the loop admits either: one admission, one batch
            requests = [decoder.submit(ids, SamplingParams(do_sample=False, max_new_tokens=10), threading.Event())
                        for ids in prompts]
        return [(llamacpp_batch.read_reply(r), r.reused) for r in requests]

    first = together()
    assert all(text for text, _ in first)
    decoder.drop_cached()
    assert together() == first   # the same batch gives the same replies: no row read another's cells
    # both prompts' cells were kept: arriving together again, each reads only its last token
    assert [reused for _, reused in together()] == [len(ids) - 1 for ids in prompts]


def test_settings_size_and_turn_off_each_part(home):
    settings = Settings.from_env({"LLMOS_PREFIX_CACHE_MB": "64", "LLMOS_PROMPT_LOOKUP": "0"}, home=home)
    assert settings.prefix_cache and settings.prefix_cache_mb == 64 and not settings.prompt_lookup
    gemma = {"general.architecture": "gemma3", "gemma3.block_count": "18", "gemma3.attention.head_count": "4",
             "gemma3.attention.head_count_kv": "1", "gemma3.embedding_length": "640",
             "gemma3.attention.key_length": "256", "gemma3.attention.value_length": "256"}
    cell = llamacpp.kv_cache_bytes(gemma, 1)
    assert llamacpp.LlamaCppBackend(settings).cache_cells(gemma) == 64 * 1024**2 // cell
    off = Settings.from_env({"LLMOS_PREFIX_CACHE": "0"}, home=home)
    assert llamacpp.LlamaCppBackend(off).cache_cells(gemma) == 0 and off.prompt_lookup


def test_metrics_show_each_models_prefix_cache():
    stats = {"entries": 3, "bytes": 1000, "hit_rate": 0.5, "tokens_saved": 40, "accepted": 7}
    resident = [{"name": "m", "backend": "llamacpp", "prefix_cache": stats},
                {"name": "t", "backend": "transformers", "prefix_cache": None}]
    families = {f.name: f for f in _prefix_cache_gauges(resident)}
    assert [s.value for s in families["llmos_prefix_cache_entries"].samples] == [3]
    assert families["llmos_prefix_cache_tokens_saved"].samples[0].labels == {"model": "m", "backend": "llamacpp"}
