"""The generation service against a fake runner and a fake model manager: no model, no torch. Admission,
queueing, cancel, stop strings, figures, and what a runner is told when it is built (models/runner.py)."""
from __future__ import annotations

import threading

import pytest

from llmos_core.errors import Busy
from llmos_core.generation import GenerationService

from generation_fakes import USER, FakeModels, FakeRunner, params


@pytest.fixture
def service():
    FakeRunner.built = []
    svc = GenerationService(FakeModels(), max_active=1, max_waiting=1, runners={"transformers": FakeRunner})
    yield svc
    svc.close()


def test_a_reply_streams_with_its_figures_and_ends_at_its_length(service):
    events = list(service.stream("m", USER, params(), "transformers"))
    first, last = events[0], events[-1]
    assert first.prompt_tokens == len("User: hello\nAssistant:") and first.tokens == 0
    assert "".join(e.text for e in events) == "abcdef"
    assert last.done and last.finish_reason == "length" and last.tokens == 6 and last.ttft_s is not None
    assert service.models.pins == 0 and service.queue_depth("m") == {"running": 0, "waiting": 0}


def test_stop_strings_cut_the_reply_and_the_plain_format_stops_before_the_users_turn(service):
    result = service.generate("m", USER, params(stop=["de"]), "transformers")
    assert result.text == "abc" and result.stats["finish_reason"] == "stop"
    FakeRunner.reply = "ok\nUser: forged"
    try:
        result = service.generate("m", USER, params(max_new_tokens=14), "transformers")
    finally:
        FakeRunner.reply = "abcdefghij"
    assert result.text == "ok" and result.stats["finish_reason"] == "stop"


def test_the_runner_is_told_its_capacity_and_reserves_through_the_budget(service):
    service.generate("m", USER, params(), "transformers")
    service.generate("m", USER, params(), "transformers")
    assert len(FakeRunner.built) == 1                     # one runner per resident model, reused
    runner = FakeRunner.built[0]
    assert runner.budget.capacity == 1                    # the service's max_active: the runner has no limit of its own
    runner.budget.reserve_memory(1234, "a cache")
    assert service.models.reserved == [("m", 1234, "a cache")]
    runner.closed = True                                  # its model was unloaded: a new runner next time
    service.generate("m", USER, params(), "transformers")
    assert len(FakeRunner.built) == 2


def test_a_runner_with_its_own_limit_sets_its_lanes_slots():
    class EightAtOnce(FakeRunner):
        max_active = 8

    svc = GenerationService(FakeModels(), max_active=1, runners={"transformers": EightAtOnce})
    assert svc._limit("transformers") == 8
    svc.generate("m", USER, params(), "transformers")
    assert FakeRunner.built[-1].budget.capacity == 8


def test_the_line_is_bounded_says_who_is_ahead_and_moves_on(service):
    first = service.stream("m", USER, params(), "transformers")
    next(first)                                           # running, holding the only slot
    FakeRunner.built[0].gate.clear()                      # and slow
    second = service.stream("m", USER, params(), "transformers")
    assert next(second).queued == 1
    with pytest.raises(Busy, match="ahead of you"):
        next(service.stream("m", USER, params(), "transformers"))
    first.close()                                         # the page was left: its slot comes free
    FakeRunner.built[0].gate.set()
    rest = list(second)
    assert rest[-1].done and rest[-1].tokens == 6
    assert service.queue_depth("m") == {"running": 0, "waiting": 0}


def test_cancel_ends_a_running_reply_and_a_waiting_one(service):
    cancel = threading.Event()
    stream = service.stream("m", USER, params(max_new_tokens=100), "transformers", cancel=cancel)
    next(stream), next(stream)
    runner = FakeRunner.built[0]
    runner.gate.clear()
    waiting_cancel = threading.Event()
    waiting = service.stream("m", USER, params(), "transformers", cancel=waiting_cancel)
    assert next(waiting).queued == 1
    waiting_cancel.set()
    assert list(waiting)[-1].finish_reason == "cancelled"
    cancel.set()
    last = list(stream)[-1]
    assert last.finish_reason == "cancelled" and last.tokens < 100 and runner.ended.is_set()
    assert service.queue_depth("m") == {"running": 0, "waiting": 0} and service.models.pins == 0


def test_runners_never_reach_back_into_the_service():
    """models/ (runners included) imports nothing of generation/: what a runner needs, it is given."""
    import ast
    from pathlib import Path

    import llmos_core.models as models
    for path in Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:   # ours, not transformers.generation
                assert not (node.module or "").startswith("generation"), f"{path.name} imports {node.module}"


def test_control_tokens_that_take_the_whitespace_beside_them_take_it_from_the_pieces():
    from llmos_core.models.runner import strip_beside_controls

    pieces = [("hi  ", False), ("<|end|>", True), ("\n next", False), ("<|end|>", True)]
    assert strip_beside_controls(pieces, frozenset({"<|end|>"}), frozenset({"<|end|>"})) == [
        ("hi", False), ("<|end|>", True), ("next", False), ("<|end|>", True)]
    assert strip_beside_controls(pieces, frozenset(), frozenset()) == pieces
