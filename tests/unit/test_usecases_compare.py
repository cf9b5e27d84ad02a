"""Compare side by side: the use case on a real engine with two tiny models (both answer, figures, saved and
reopened, Stop), its concurrency and failures with fake sources, and `chat --compare` through the socket."""
from __future__ import annotations

import json
import threading

import pytest

from llmos_core.__main__ import main
from llmos_core.comparisons import ComparisonNotFound, Comparisons
from llmos_core.engine import Engine
from llmos_core.errors import Busy, InvalidInput, LLMOSError
from llmos_core.generation import SamplingParams, TokenEvent
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.usecases import compare
from llmos_core.accounts import LOCAL_ADMIN

GREEDY = SamplingParams(temperature=1.5, max_new_tokens=6, seed=3)   # tiny random models: sampling gives text


@pytest.fixture
def engine(home, tiny_causal, tiny_base):
    engine = Engine(Settings.from_env(), start_threads=False)
    engine.tiny = [engine.catalog.register(engine.catalog.resolve(str(folder))).name
                   for folder in (tiny_causal, tiny_base)]
    yield engine
    engine.close()


def test_two_models_answer_with_their_figures_and_the_comparison_reopens(engine):
    comparison = compare.start_comparison(engine, LOCAL_ADMIN, engine.tiny, "Tell me about the fox.", params=GREEDY,
                                          system="Be brief.")
    assert [a.model for a in compare.models_to_load(engine, comparison)] == engine.tiny
    for answer in compare.models_to_load(engine, comparison):
        compare.load_model(engine, answer)
    assert compare.models_to_load(engine, comparison) == []
    with comparison.running() as updates:
        for _ in updates:
            pass
    for answer in comparison.answers:
        stats = answer.stats()
        assert answer.ended and not answer.error and answer.text
        assert 0 < stats["tokens"] <= 6 and stats["ttft_s"] is not None and stats["backend"] == "transformers"
        assert stats["finish_reason"] in ("stop", "length") and stats["model"] == answer.model
    saved = engine.comparisons.get(LOCAL_ADMIN, comparison.saved_id)
    assert saved["prompt"] == "Tell me about the fox." and saved["system"] == "Be brief."
    assert saved["title"] == "Tell me about the fox." and saved["settings"]["max_new_tokens"] == 6
    assert [(a["model"], a["text"]) for a in saved["answers"]] == [(a.model, a.text) for a in comparison.answers]
    assert engine.comparisons.list(LOCAL_ADMIN)[0]["models"] == engine.tiny
    engine.comparisons.delete(LOCAL_ADMIN, comparison.saved_id)
    with pytest.raises(ComparisonNotFound):
        engine.comparisons.get(LOCAL_ADMIN, comparison.saved_id)


def test_stop_cancels_every_answer_frees_the_lanes_and_keeps_what_was_written(engine):
    long = SamplingParams(temperature=1.5, max_new_tokens=200, seed=3)
    comparison = compare.start_comparison(engine, LOCAL_ADMIN, engine.tiny, "Write a long story.", params=long)
    with comparison.running() as updates:
        for answer in updates:
            if answer.text:
                break           # a Stop press: the page's script run ends while the answers stream
    saved = engine.comparisons.get(LOCAL_ADMIN, comparison.saved_id)["answers"]
    assert any(a["text"] for a in saved), (saved, [(a.text, a.last) for a in comparison.answers])
    assert all(a["stats"]["finish_reason"] == "cancelled" for a in saved)
    assert all(a["stats"]["tokens"] < 200 for a in saved)
    for answer in comparison.answers:
        assert engine.chat.queue_depth(answer.model, answer.backend) == {"running": 0, "waiting": 0}


def fake_comparison(tmp_path, source, models=("a", "b")):
    return compare.Comparison(list(models), "Hi", GREEDY, "", source, Comparisons(Store(tmp_path / "c.db")),
                              actor=LOCAL_ADMIN)


def test_the_answers_run_at_the_same_time(tmp_path):
    both_started = threading.Barrier(2, timeout=10)   # sequential answers would break it: each waits for the other

    def source(model, messages, params, backend, cancel):
        both_started.wait()
        yield TokenEvent(text=model.upper(), tokens=1, ttft_s=0.01, elapsed_s=0.01)
        yield TokenEvent(tokens=1, ttft_s=0.01, elapsed_s=0.02, done=True, finish_reason="stop")

    comparison = fake_comparison(tmp_path, source)
    with comparison.running() as updates:
        list(updates)
    assert [(a.text, a.error) for a in comparison.answers] == [("A", ""), ("B", "")]


def test_a_failing_model_is_reported_in_its_column_and_the_others_answer(tmp_path):
    def source(model, messages, params, backend, cancel):
        if model == "busy":
            raise Busy("busy is busy: 8 ahead of you")
        if model == "broken":
            yield TokenEvent(text="half")
            raise RuntimeError("the connection dropped")
        yield TokenEvent(text="fine", tokens=1, ttft_s=0.01, elapsed_s=0.01)
        yield TokenEvent(tokens=1, ttft_s=0.01, elapsed_s=0.01, done=True, finish_reason="stop")

    comparison = fake_comparison(tmp_path, source, ("busy", "ok", "broken"))
    with comparison.running() as updates:
        list(updates)
    busy, ok, broken = comparison.comparisons.get(LOCAL_ADMIN, comparison.saved_id)["answers"]
    assert "8 ahead of you" in busy["error"] and busy["stats"]["finish_reason"] == "error"
    assert ok["text"] == "fine" and not ok["error"] and ok["stats"]["finish_reason"] == "stop"
    assert broken["text"] == "half" and "connection dropped" in broken["error"]


def test_a_comparison_needs_two_or_three_known_models_and_a_prompt(engine):
    a, b = engine.tiny
    for models, prompt, message in [([a], "Hi", "2 or 3 models"), ([a, b, a, b], "Hi", "got 4"),
                                    ([a, b], "  ", "empty"), ([a, "nope"], "Hi", "nope")]:
        with pytest.raises(LLMOSError, match=message):
            compare.check_request(engine.catalog, models, prompt)
    with pytest.raises(InvalidInput):
        compare.start_comparison(engine, LOCAL_ADMIN, ["", a], "Hi", params=GREEDY)


def test_cli_compare_prints_every_answer_as_json_and_saves_it(engine, capsys):
    a, b = engine.tiny
    code = main(["chat", "--compare", f"{a},{b}", "Hello there", "--temperature", "1.5", "--seed", "3", "--max-new-tokens", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [x["model"] for x in out["answers"]] == [a, b]
    for answer in out["answers"]:
        assert answer["text"] and not answer["error"] and 0 < answer["stats"]["tokens"] <= 4
        assert answer["stats"]["backend"] == "transformers" and answer["stats"]["ttft_s"] is not None
    saved = engine.comparisons.get(LOCAL_ADMIN, out["comparison"])
    assert [x["text"] for x in saved["answers"]] == [x["text"] for x in out["answers"]]
    code = main(["chat", "--compare", f"{a},{b}", "Hello there", "--temperature", "1.5", "--max-new-tokens", "4"])
    printed = capsys.readouterr()
    assert code == 0 and f"=== {a}" in printed.out and f"=== {b}" in printed.out
    assert "tokens, first token" in printed.err and "saved as comparison" in printed.err
    code = main(["chat", "--compare", a, "Hello"])
    assert code == 1 and "2 or 3 models" in capsys.readouterr().err
