"""Feedback records: thumbs and edits on Chat replies, a Compare choice, per user; export, upload, filters."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmos_core.accounts import LOCAL_ADMIN, User
from llmos_core.comparisons import ComparisonNotFound, Comparisons
from llmos_core.conversations import ConversationNotFound, Conversations
from llmos_core.errors import InvalidInput
from llmos_core.feedback import read_labelled, read_pairs
from llmos_core.feedback.store import FeedbackStore
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.usecases import feedback

ALICE, BOB = User(5, "alice", "user"), User(6, "bob", "user")


@pytest.fixture
def eng(tmp_path):
    store = Store(tmp_path / "llmos.db")
    return SimpleNamespace(store=store, settings=Settings(home=tmp_path), conversations=Conversations(store),
                           comparisons=Comparisons(store), feedback=FeedbackStore(store))


def _conversation(eng, actor=ALICE):
    cid = eng.conversations.create(actor, "m1", {"temperature": 0.2, "system": "Be brief."})
    eng.conversations.append(cid, "user", "Hi?")
    first = eng.conversations.append(cid, "assistant", "Hello there, friend.", {"model": "m1"})
    eng.conversations.append(cid, "user", "Capital of France?")
    second = eng.conversations.append(cid, "assistant", "Lyon.", {"model": "m1"})
    return cid, first, second


def test_thumbs_and_edit_make_labelled_examples_and_pairs(eng, tmp_path):
    cid, first, second = _conversation(eng)
    feedback.rate_reply(eng, ALICE, cid, first, "up")
    feedback.rate_reply(eng, ALICE, cid, second, "down")
    feedback.edit_reply(eng, ALICE, cid, second, "Paris.")
    feedback.rate_reply(eng, ALICE, cid, second, "down")        # a thumbs-down keeps the edit
    shown = feedback.conversation_feedback(eng, ALICE, cid)
    assert shown[first]["label"] == 1 and shown[second]["kind"] == "pair"
    [pair] = feedback.list_feedback(eng, ALICE, kind="pair")
    assert pair["chosen"] == "Paris." and pair["rejected"] == "Lyon." and pair["model"] == "m1"
    assert pair["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                              {"role": "assistant", "content": "Hello there, friend."},
                              {"role": "user", "content": "Capital of France?"}]
    assert pair["settings"] == {"temperature": 0.2}
    exported = tmp_path / "pairs.jsonl"
    exported.write_text(feedback.export_jsonl(eng, ALICE, kind="pair"))
    assert [p.chosen for p in read_pairs(exported)] == ["Paris."]
    labelled = tmp_path / "kto.jsonl"
    labelled.write_text(feedback.export_jsonl(eng, ALICE, kind="labelled"))
    assert [(x.completion, x.label) for x in read_labelled(labelled)] == [("Hello there, friend.", True)]
    feedback.rate_reply(eng, ALICE, cid, first, None)             # taken back
    assert feedback.list_feedback(eng, ALICE, kind="labelled") == []
    kept = feedback.save_for_training(eng, ALICE, kind="pair")
    assert kept.parent.name == "datasets" and read_pairs(kept)[0].rejected == "Lyon."


def test_bad_edits_and_messages_are_refused(eng):
    cid, first, _ = _conversation(eng)
    with pytest.raises(InvalidInput, match="same as the reply"):
        feedback.edit_reply(eng, ALICE, cid, first, "  Hello there, friend. ")
    with pytest.raises(InvalidInput, match="empty"):
        feedback.edit_reply(eng, ALICE, cid, first, " ")
    user_message = eng.conversations.messages(ALICE, cid)[0]["id"]
    with pytest.raises(InvalidInput, match="not a reply"):
        feedback.rate_reply(eng, ALICE, cid, user_message, "up")
    with pytest.raises(InvalidInput, match="unknown vote"):
        feedback.rate_reply(eng, ALICE, cid, first, "meh")


def test_another_users_conversation_comparison_and_records_read_as_missing(eng):
    cid, first, _ = _conversation(eng)
    feedback.rate_reply(eng, ALICE, cid, first, "up")
    with pytest.raises(ConversationNotFound):
        feedback.rate_reply(eng, BOB, cid, first, "down")
    with pytest.raises(ConversationNotFound):
        feedback.edit_reply(eng, BOB, cid, first, "mine now")
    comparison = eng.comparisons.create(ALICE, "Q", ["a", "b"])
    with pytest.raises(ComparisonNotFound):
        feedback.prefer_answer(eng, BOB, comparison, 0)
    assert feedback.list_feedback(eng, BOB) == [] and feedback.export_jsonl(eng, BOB, kind="labelled") == ""
    assert feedback.conversation_feedback(eng, BOB, cid) == {}
    [record] = feedback.list_feedback(eng, ALICE)
    with pytest.raises(InvalidInput, match="does not exist"):
        feedback.delete_feedback(eng, BOB, record["id"])
    assert feedback.list_feedback(eng, LOCAL_ADMIN) == []              # an admin's own list and export: theirs
    assert len(feedback.list_feedback(eng, LOCAL_ADMIN, everyone=True)) == 1   # asked for, an admin sees all
    assert feedback.list_feedback(eng, BOB, everyone=True) == []
    feedback.delete_feedback(eng, ALICE, record["id"])
    assert feedback.list_feedback(eng, ALICE) == []


def test_compare_choice_is_a_pair_against_each_written_answer(eng):
    comparison = eng.comparisons.create(ALICE, "Name a colour", ["a", "b", "c"], {"temperature": 0.7}, system="Short.")
    eng.comparisons.finish(comparison, [{"model": "a", "text": "Blue.", "stats": {}, "error": ""},
                                        {"model": "b", "text": "Seven", "stats": {}, "error": ""},
                                        {"model": "c", "text": "", "stats": {}, "error": "busy"}])
    with pytest.raises(InvalidInput, match="cannot be chosen"):
        feedback.prefer_answer(eng, ALICE, comparison, 2)
    feedback.prefer_answer(eng, ALICE, comparison, 1)
    feedback.prefer_answer(eng, ALICE, comparison, 0)                # changing one's mind replaces it
    [pair] = feedback.list_feedback(eng, ALICE, kind="pair")
    assert (pair["chosen"], pair["rejected"], pair["model"]) == ("Blue.", "Seven", "a")
    assert pair["settings"]["rejected_model"] == "b" and pair["prompt"][0] == {"role": "system", "content": "Short."}
    assert feedback.comparison_choice(eng, ALICE, comparison) == 0
    assert feedback.list_feedback(eng, ALICE, model="b") == [] and eng.feedback.models(ALICE) == ["a"]


def test_upload_checks_every_row_before_storing_any(eng):
    good = "\n".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no", "model": "m2"})
                     for i in range(3))
    assert feedback.import_file(eng, ALICE, "prefs.jsonl", good.encode()) == 3
    assert len(feedback.list_feedback(eng, ALICE, model="m2", kind="pair")) == 3
    with pytest.raises(InvalidInput, match="line 2"):
        feedback.import_file(eng, ALICE, "bad.jsonl", (good.splitlines()[0] + "\n{oops\n").encode())
    assert len(feedback.list_feedback(eng, ALICE)) == 3
    csv_text = "prompt,completion,label\nq,a,true\nq,b,0\n"
    assert feedback.import_file(eng, ALICE, "k.csv", csv_text.encode(), kind="labelled") == 2
    with pytest.raises(InvalidInput, match="not a preference data format"):
        feedback.import_file(eng, ALICE, "x.exe", b"MZ")


def test_promote_makes_a_users_default_until_the_model_goes(eng):
    from llmos_core.models.catalog import CAUSAL_LM, DEFAULT_CHAT_MODEL, Catalog, ModelSpec
    from llmos_core.usecases import evaluate
    eng.catalog = Catalog(eng.store)
    eng.catalog.register(ModelSpec(name="alices-tune", source="local", location="/nowhere"), owner=ALICE.id)
    assert evaluate.default_model(eng, ALICE) == DEFAULT_CHAT_MODEL
    assert evaluate.promote(eng, ALICE, "alices-tune") == CAUSAL_LM
    assert evaluate.default_model(eng, ALICE) == "alices-tune"
    assert evaluate.default_model(eng, ALICE, choices=["other"]) == DEFAULT_CHAT_MODEL
    assert evaluate.default_model(eng, BOB) == DEFAULT_CHAT_MODEL            # a default is per user
    with pytest.raises(Exception, match="no model named"):
        evaluate.promote(eng, BOB, "alices-tune")                           # someone else's model: missing
    eng.catalog.remove("alices-tune")
    assert evaluate.default_model(eng, ALICE) == DEFAULT_CHAT_MODEL
