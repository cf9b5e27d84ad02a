"""How a streamed API reply's tokens become chunks (EventPump.groups, the API's stream interval): the first
token goes at once, tokens that come within the interval of the last text sent are joined, a held token is
sent when its interval ends even if no other comes, the last event goes at once, and nothing is lost or
reordered. The stream is a paced generator in the pump's own thread, as GenerationService.stream is."""
from __future__ import annotations

import time

import pytest

from llmos_core.api.streaming import EventPump
from llmos_core.generation import TokenEvent

from api_helpers import in_own_loop


def paced(gaps: list[float], fail: bool = False):
    """A stream as the service gives it: an admission event, one event per token after each gap, then a last
    event with no text (done), or an error in its place."""
    def open_stream(cancel):
        yield TokenEvent(prompt_tokens=3)
        for i, gap in enumerate(gaps):
            time.sleep(gap)
            yield TokenEvent(text=f"t{i} ", tokens=i + 1)
        if fail:
            raise RuntimeError("the runner failed")
        yield TokenEvent(tokens=len(gaps), done=True, finish_reason="stop")
    return open_stream


def chunks(gaps: list[float], interval: float, fail: bool = False) -> list[list[TokenEvent]]:
    async def run():
        pump = EventPump(paced(gaps, fail))
        assert (await pump.first()).prompt_tokens == 3
        return [group async for group in pump.groups(interval)]
    return in_own_loop(run)


def texts(groups: list[list[TokenEvent]]) -> list[str]:
    return ["".join(event.text for event in group) for group in groups]


def test_interval_zero_sends_each_token_alone():
    groups = chunks([0.0] * 6, interval=0)
    assert texts(groups) == ["t0 ", "t1 ", "t2 ", "t3 ", "t4 ", "t5 ", ""]
    assert groups[-1][-1].done


def test_fast_tokens_are_joined_and_none_is_lost():
    groups = chunks([0.002] * 30, interval=0.1)
    assert "".join(texts(groups)) == "".join(f"t{i} " for i in range(30))
    assert texts(groups)[0] == "t0 "             # the first token is never held
    assert len(groups) < 15                       # 30 tokens over ~0.06 s: a chunk per 100 ms, not per token
    assert groups[-1][-1].done and groups[-1][-1].tokens == 30


def test_slow_tokens_go_one_by_one():
    # tokens further apart than the interval: nothing is held for a next one
    assert texts(chunks([0.15] * 4, interval=0.05)) == ["t0 ", "t1 ", "t2 ", "t3 ", ""]


def test_a_held_token_goes_when_its_interval_ends():
    # t1 comes 5 ms after t0 went, so it waits; the next token is 0.3 s away, and t1 must not wait for it
    assert texts(chunks([0.0, 0.005, 0.3], interval=0.05)) == ["t0 ", "t1 ", "t2 ", ""]


def test_an_error_comes_after_what_was_held():
    async def run():
        pump = EventPump(paced([0.0, 0.0, 0.0], fail=True))
        await pump.first()
        seen = []
        with pytest.raises(RuntimeError, match="the runner failed"):
            async for group in pump.groups(0.05):
                seen.append(group)
        return seen
    assert "".join(texts(in_own_loop(run))) == "t0 t1 t2 "
