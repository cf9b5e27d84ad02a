"""Fair sharing between users, with the generation service's fake runner (no model): a signed-in user
leaves a slot of a lane for someone else, freed slots go round-robin across users, a user's concurrent
generations stop at their limit; and the llama.cpp batch decoder's order of admission."""
from __future__ import annotations

import pytest

from llmos_core.accounts import LimitReached, Limits, User
from llmos_core.generation import GenerationService
from llmos_core.models.llamacpp_batch import next_in_line
from generation_fakes import USER, FakeModels, FakeRunner, params

A, B, C = User(1, "a", "user"), User(2, "b", "user"), User(3, "c", "user")


@pytest.fixture
def service():
    FakeRunner.built = []
    svc = GenerationService(FakeModels(), max_active=3, max_waiting=8, runners={"transformers": FakeRunner})
    yield svc
    svc.close()


def opened(service, user):
    """A stream that has asked for its slot: (stream, admitted?)."""
    stream = service.stream("m", USER, params(max_new_tokens=50), "transformers", user=user)
    first = next(stream)
    return stream, first.queued is None


def test_a_second_user_starts_at_once_beside_a_first_users_streams(service):
    service.generate("m", USER, params(max_new_tokens=1), "transformers")   # build the runner
    FakeRunner.built[0].gate.clear()                                        # replies hold their slots
    streams = [opened(service, A) for _ in range(3)]
    assert [admitted for _, admitted in streams] == [True, True, False]     # one slot is left for others
    b_stream, b_admitted = opened(service, B)
    assert b_admitted and service.queue_depth("m") == {"running": 3, "waiting": 1}
    for stream, _ in streams + [(b_stream, True)]:
        stream.close()


def test_freed_slots_go_round_robin_across_users(service):
    service.generate("m", USER, params(max_new_tokens=1), "transformers")
    FakeRunner.built[0].gate.clear()
    a1, _ = opened(service, A)
    b1, _ = opened(service, B)
    c1, _ = opened(service, C)                        # three users, one slot each: the lane is full
    a2, a2_in = opened(service, A)
    b2, b2_in = opened(service, B)
    c2, c2_in = opened(service, C)
    assert not (a2_in or b2_in or c2_in)
    lane = service._lane(("m", "transformers"))
    with lane.cond:
        assert lane.next_ticket(3).user == A.id        # all tied at one running: the earliest waits least
    b1.close()                                        # B's slot frees: B runs the fewest now
    with lane.cond:
        assert lane.next_ticket(3).user == B.id
    for stream in (a1, c1, a2, b2, c2):
        stream.close()


def test_the_local_admin_of_a_single_user_start_may_use_every_slot(service):
    service.generate("m", USER, params(max_new_tokens=1), "transformers")
    FakeRunner.built[0].gate.clear()
    streams = [service.stream("m", USER, params(max_new_tokens=50), "transformers") for _ in range(3)]
    assert all(next(s).queued is None for s in streams)
    for stream in streams:
        stream.close()


def test_concurrent_generations_stop_at_the_users_limit(service):
    service.limits_for = lambda user: Limits(concurrent_generations=2)
    service.generate("m", USER, params(max_new_tokens=1), "transformers", user=A)
    FakeRunner.built[0].gate.clear()
    held = [opened(service, A)[0] for _ in range(2)]
    with pytest.raises(LimitReached, match="limit is 2"):
        opened(service, A)
    other, admitted = opened(service, B)                # another user is not affected
    assert admitted
    held[0].close()
    again, _ = opened(service, A)                        # a finished reply gives its place back
    for stream in (held[1], other, again):
        stream.close()
    assert service._held == {}


class Row:
    def __init__(self, user):
        self.user = user


def test_the_batch_decoder_admits_the_user_with_the_fewest_rows_first():
    running = [Row(1)] * 7
    assert next_in_line([Row(1), Row(1), Row(2)], running) == 2   # B's row goes before A's eighth
    assert next_in_line([Row(1), Row(2), Row(2)], [Row(2)] * 2) == 0
    assert next_in_line([Row(3), Row(2)], []) == 0               # a tie: first come, first served
