"""AppTest of feedback where people are: thumbs and Edit under Chat replies, "This one is better" in
Compare, the Feedback page (list, filter, upload, keep for training), and the Train page's evaluation of a
finished run with Promote (Chat then opens with the promoted model)."""
import json
import time

import pytest

from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.engine import get_engine
from llmos_core.settings import Settings
from llmos_core.usecases import datasets, feedback


@pytest.fixture
def engine(home):
    return get_engine(Settings.from_env())


def _conversation(engine):
    cid = engine.conversations.create(LOCAL_ADMIN, "tiny-m", {"temperature": 0.5})
    engine.conversations.append(cid, "user", "Capital of France?")
    mid = engine.conversations.append(cid, "assistant", "Lyon.", {"model": "tiny-m", "tokens": 2})
    return cid, mid


def test_thumbs_edit_and_compare_choice_are_recorded(new_app, engine):
    cid, mid = _conversation(engine)
    at = new_app()
    at.switch_page("app_pages/chat.py").run()
    at.button(key=f"chat_open_{cid}").click().run()
    at.button(key=f"chat_fb_up_{mid}").click().run()
    assert not at.exception, at.exception
    [record] = feedback.list_feedback(engine, LOCAL_ADMIN)
    assert (record["label"], record["completion"], record["model"]) == (1, "Lyon.", "tiny-m")
    at.button(key=f"chat_fb_up_{mid}").click().run()                  # a second click takes it back
    assert feedback.list_feedback(engine, LOCAL_ADMIN) == []
    at.button(key=f"chat_fb_down_{mid}").click().run()
    at.text_area(key=f"chat_fb_edit_text_{mid}").set_value("Paris.").run()
    at.button(key=f"chat_fb_edit_save_{mid}").click().run()
    [pair] = feedback.list_feedback(engine, LOCAL_ADMIN)
    assert (pair["kind"], pair["chosen"], pair["rejected"]) == ("pair", "Paris.", "Lyon.")
    assert pair["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert any("Your edit is kept" in c.value for c in at.caption)

    comparison = engine.comparisons.create(LOCAL_ADMIN, "Name a colour", ["a", "b"])
    engine.comparisons.finish(comparison, [{"model": "a", "text": "Seven", "stats": {}, "error": ""},
                                           {"model": "b", "text": "Blue.", "stats": {}, "error": ""}])
    at.run()
    at.button(key=f"chat_compare_open_{comparison}").click().run()
    at.button(key="chat_compare_better_1").click().run()
    assert not at.exception, at.exception
    chosen = [r for r in feedback.list_feedback(engine, LOCAL_ADMIN, kind="pair") if r["source"] == "compare"]
    assert [(r["chosen"], r["rejected"], r["model"]) for r in chosen] == [("Blue.", "Seven", "b")]
    assert any("You preferred this one" in c.value for c in at.caption)


def test_feedback_page_lists_filters_uploads_and_keeps_for_training(new_app, engine):
    cid, mid = _conversation(engine)
    feedback.rate_reply(engine, LOCAL_ADMIN, cid, mid, "down")
    at = new_app()
    at.switch_page("app_pages/feedback.py").run()
    assert not at.exception, at.exception
    assert any("No feedback of this kind" in i.value for i in at.info)      # pairs by default: none yet
    at.radio(key="feedback_kind").set_value("Thumbs (KTO)").run()
    table = at.dataframe[0].value
    assert list(table["reply"]) == ["Lyon."] and list(table["label"]) == ["down"]
    at.radio(key="feedback_kind").set_value("Pairs (DPO, ORPO)").run()
    assert at.file_uploader(key="feedback_upload").proto.max_upload_size_mb == 64   # the reader's limit, shown
    rows = "".join(json.dumps({"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "model": "up-m"}) + "\n"
                   for i in range(3))
    at.file_uploader(key="feedback_upload").set_value(("prefs.jsonl", rows.encode(), "application/json")).run()
    at.button(key="feedback_import").click().run()
    assert any("Added 3 record(s)" in s.value for s in at.success)
    at.selectbox(key="feedback_model").set_value("up-m").run()
    assert len(at.dataframe[0].value) == 3
    at.button(key="feedback_keep").click().run()
    assert any("Saved as" in s.value for s in at.success)
    bad = b'{"prompt": "q", "chosen": "same", "rejected": "same"}\n'
    at.file_uploader(key="feedback_upload").set_value(("bad.jsonl", bad, "application/json")).run()
    at.button(key="feedback_import").click().run()
    assert any("line 1" in e.value and "What to do" in e.value for e in at.error) and not at.exception


def test_train_page_evaluates_a_finished_run_and_promotes_it(new_app, engine, tiny_causal, tiny_base, tmp_path):
    tuned, base = [engine.catalog.register(engine.catalog.resolve(str(f))).name for f in (tiny_causal, tiny_base)]
    text = "".join(json.dumps({"prompt": f"Who jumps {i}?", "response": "The fox."}) + "\n" for i in range(20))
    data = datasets.upload_dataset(engine.settings, LOCAL_ADMIN, "qa.jsonl", text.encode()).path
    job_id = engine.store.execute(
        "INSERT INTO jobs (kind, params, state, created, finished, result, description, owner) "
        "VALUES ('train', ?, 'succeeded', ?, ?, ?, 'a finished run', 0)",
        (json.dumps({"model": base, "data": str(data), "seed": 42, "validation_fraction": 0.1}), time.time(),
         time.time(), json.dumps({"model": tuned, "steps": 1}))).lastrowid
    at = new_app()
    at.session_state["train_model"] = base   # before the page's estimate: no embedded model is touched
    at.switch_page("app_pages/train.py").run()
    key = f"train_eval_{job_id}"
    at.multiselect(key=f"{key}_metrics").set_value(["f1", "rule"])   # a form: sent with its submit button
    at.text_input(key=f"{key}_phrase").set_value("fox")
    at.number_input(key=f"{key}_tokens").set_value(4)
    at.button(key=f"FormSubmitter:{key}_form-Evaluate").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    shown = [m.value for m in (*at.success, *at.info, *at.warning)]
    assert any("On 2 held-out prompts" in s and "95 % interval" in s for s in shown), shown
    assert [list(d.value["metric"]) for d in at.dataframe if "metric" in d.value] == [["f1", "rule"]]
    at.button(key=f"{key}_promote").click().run()
    assert any("now your default model" in s.value for s in at.success)
    at.switch_page("app_pages/chat.py").run()
    assert at.selectbox(key="chat_model").value == tuned
