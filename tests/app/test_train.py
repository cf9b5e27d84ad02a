"""The Train page in AppTest: upload and check data, the estimate, launch a real job on a tiny model
through the engine's scheduler, follow its curve, and read the result. Fragment timers never fire
in AppTest, so each check does a plain rerun."""
from __future__ import annotations

from pathlib import Path

import pytest
from job_helpers import wait_for
from streamlit.testing.v1 import AppTest


APP = str(Path(__file__).resolve().parents[2] / "app.py")
FOX = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def one_thread(home, monkeypatch):
    monkeypatch.setenv("LLMOS_THREADS", "1")   # tiny tensors on a busy 2-core machine: one thread is faster


@pytest.fixture
def eng(one_thread, app_engine, tiny_base):   # one_thread first: the engine reads LLMOS_THREADS when made
    spec = app_engine.catalog.resolve(str(tiny_base))
    spec.name = "tiny"
    app_engine.catalog.register(spec)
    return app_engine


def train_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["train_model"] = "tiny"   # before the first estimate: no embedded model is touched
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, data: bytes, mime: str = "text/plain") -> AppTest:
    at.file_uploader(key="train_upload").set_value((name, data, mime)).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_bad_files_get_clear_messages(eng):
    at = train_page()
    assert any("Upload a data file" in i.value for i in at.info)
    upload(at, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(200)))
    assert any("looks like a binary file" in e.value for e in at.error)
    upload(at, "broken.jsonl", b'{"text": "fine"}\n{"text": "fine"}\n{"text": broken\n')
    assert any("line 3: not valid JSON" in e.value for e in at.error)
    upload(at, "short.txt", b"Too short to fill a block.")
    assert any("shorter than one block of 128" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Start training"]   # nothing can be launched from bad data
    assert eng.scheduler.list() == []


def test_csv_mapping_preview_and_estimate(eng):
    rows = "\n".join(f"Question {i}?,Answer number {i}." for i in range(40))
    at = upload(train_page(), "qa.csv", f"q,a\n{rows}\n".encode(), "text/csv")
    assert any("no field" in e.value for e in at.error)   # q/a are not names it can guess
    at.selectbox(key="train_map_prompt").set_value("q").run()
    at.selectbox(key="train_map_response").set_value("a").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("**40** rows of **prompt/response**" in c.value for c in at.caption)
    preview = at.dataframe[0].value
    assert list(preview.columns) == ["prompt", "response"] and preview["prompt"][0] == "Question 0?"
    assert metric(at, "Blocks (train / val)") == "36 / 4"
    # No run has taught the estimate yet: the time is there, marked as a first estimate.
    assert metric(at, "Memory") != "N/A" and metric(at, "Time (first estimate)") != "N/A"
    assert not [n for n in at.number_input if n.key == "train_workers"]   # Ray Train workers: only with LLMOS_CLUSTER


def test_launch_watch_and_result(eng):
    at = upload(train_page(), "fox.txt", "\n\n".join([FOX] * 30).encode())
    at.radio(key="train_preset").set_value("Full fine-tune").run()
    at.number_input(key="train_max_steps_Full fine-tune").set_value(30).run()
    at.number_input(key="train_learning_rate_Full fine-tune").set_value(0.01).run()
    at.number_input(key="train_block_size_Full fine-tune").set_value(32).run()
    at.text_input(key="train_name").input("fox-page").run()
    assert metric(at, "Steps") == "30"
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    (job,) = eng.scheduler.list(kind="train")
    assert job["description"] == "Full fine-tune on tiny -> fox-page"
    wait_for(lambda: len([m for m in eng.scheduler.metrics(job["id"]) if "loss" in m]) >= 3, 120, "first steps")
    at.run()
    curve = at.get("plotly_chart")[0].proto.spec
    assert "training loss" in curve
    wait_for(lambda: eng.scheduler.get(job["id"])["state"] in ("succeeded", "failed"), 180, "the job to end")
    at.run()
    assert not at.exception, at.exception
    assert eng.scheduler.get(job["id"])["state"] == "succeeded", eng.scheduler.log_tail(job["id"])
    assert any("**fox-page** is in the catalog" in s.value for s in at.success)
    results = next(d.value for d in at.dataframe if "before" in d.value.columns and "" in d.value.columns)
    loss = results.set_index("")
    assert loss.loc["validation loss", "after"] < loss.loc["validation loss", "before"]
    samples = next(d.value for d in at.dataframe if "prompt" in d.value.columns and "after" in d.value.columns)
    assert any("lazy dog" in s for s in samples["after"])
    assert "fox-page" in eng.catalog.names()


def test_a_preference_file_and_the_method_form_show_only_what_applies(eng):
    import json

    rows = "".join(json.dumps({"prompt": f"Question {i}?", "chosen": f"Answer {i}. Over and out.",
                               "rejected": f"Answer {i}."}) + "\n" for i in range(20))
    at = upload(train_page(), "prefs.jsonl", rows.encode(), "application/json")
    assert any("**20** rows of **preference**" in c.value for c in at.caption), [c.value for c in at.caption]
    labels = lambda: {n.label for n in at.number_input} | {s.label for s in at.selectbox}   # noqa: E731
    assert "Beta" not in labels() and "LoRA rank" in labels()   # LoRA (supervised on the chosen replies)
    at.selectbox(key="train_method_Quick LoRA").set_value("dpo").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"Beta", "Weights trained", "LoRA rank"} <= labels()
    # The method's measured defaults, not the LoRA preset's (params.PREFERENCE_DEFAULTS)
    assert at.number_input(key="train_learning_rate_dpo_lora").value == 1e-3
    assert at.number_input(key="train_sft_weight_dpo_lora").value == 1.0
    assert metric(at, "Blocks (train / val)") == "18 / 2"   # a block is a pair here
    at.selectbox(key="train_weights").set_value("full").run()
    assert "Beta" in labels() and "LoRA rank" not in labels()
