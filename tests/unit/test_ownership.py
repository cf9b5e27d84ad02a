"""Private data: user B cannot read, list, rename, delete or use user A's conversation, comparison,
collection, job or glossary, by id or by name; another user's id reads exactly as a missing one. An admin
sees all. Per-user limits (queued jobs, storage, concurrent generations) stop with a clear message."""
from __future__ import annotations

import pytest

from llmos_core.accounts import LimitReached, User, user_home
from llmos_core.comparisons import ComparisonNotFound
from llmos_core.conversations import ConversationNotFound
from llmos_core.engine import Engine
from llmos_core.errors import InvalidInput, JobError
from llmos_core.generation import SamplingParams
from llmos_core.rag.index import DocumentIndex
from llmos_core.settings import Settings
from llmos_core.translation.glossary import Glossary
from llmos_core.usecases import ask, objects
from llmos_core.usecases import chat as chat_turns
from llmos_core.usecases import translate as translation

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    engine = Engine(Settings(home=tmp_path_factory.mktemp("owners")), primary=False, start_threads=False)
    admin = engine.accounts.add_user("root", PASSWORD, role="admin")
    a = engine.accounts.add_user("alice", PASSWORD)
    b = engine.accounts.add_user("bob", PASSWORD)
    yield engine, admin, a, b
    engine.close()


def test_a_conversation_is_its_owners_alone(world):
    engine, admin, a, b = world
    convs = engine.conversations
    cid = objects.create_conversation(engine, a, "alice's plans", [{"role": "user", "content": "secret plan"}])["id"]
    for read in (lambda: convs.get(b, cid), lambda: convs.messages(b, cid), lambda: convs.export_json(b, cid),
                 lambda: convs.export_markdown(b, cid), lambda: convs.rename(b, cid, "mine now"),
                 lambda: convs.delete(b, cid), lambda: objects.get_conversation(engine, b, cid)):
        with pytest.raises(ConversationNotFound) as theirs:
            read()
        with pytest.raises(ConversationNotFound) as missing:
            convs.get(b, 10**9)
        assert str(theirs.value).replace(str(cid), "N") == str(missing.value).replace(str(10**9), "N")
    with pytest.raises(ConversationNotFound):      # a chat turn on someone else's id writes nothing
        chat_turns.start_turn(engine, b, cid, "send", model="m", params=SamplingParams(), prompt="hijack")
    assert convs.list(b) == [] and convs.list(b, search="secret") == []
    assert [c["id"] for c in convs.list(a, search="SECRET")] == [cid]   # search reaches the messages
    assert [c["id"] for c in convs.list(admin)] == [cid] and convs.list(admin, mine=True) == []
    assert [m["content"] for m in convs.get(a, cid)["messages"]] == ["secret plan"]
    assert convs.get(admin, cid)["owner"] == a.id and engine.accounts.names()[a.id] == "alice"


def test_a_comparison_is_its_owners_alone(world):
    engine, admin, a, b = world
    comparison_id = engine.comparisons.create(a, "Which is better?", ["m1", "m2"])
    with pytest.raises(ComparisonNotFound):
        engine.comparisons.get(b, comparison_id)
    with pytest.raises(ComparisonNotFound):
        engine.comparisons.delete(b, comparison_id)
    assert engine.comparisons.list(b) == [] and engine.comparisons.get(admin, comparison_id)["owner"] == a.id


def test_a_collection_is_its_owners_alone_and_its_name_is_taken(world):
    engine, admin, a, b = world
    index = ask.index_for(engine)
    index.create_collection("alices-docs", "bag", a.id)
    for call in (lambda: ask.list_documents(engine, b, "alices-docs"), lambda: ask.remove_collection(engine, b, "alices-docs"),
                 lambda: ask.remove_document(engine, b, "alices-docs", "x.md"), lambda: index.collection("alices-docs", b)):
        with pytest.raises(InvalidInput, match="no collection"):
            call()
    with pytest.raises(InvalidInput, match="taken"):
        index.create_collection("alices-docs", "bag", b.id)
    assert ask.list_collections(engine, b) == [] and objects.list_collections(engine, b) == []
    assert [c["name"] for c in ask.list_collections(engine, a)] == ["alices-docs"]
    assert [c["owner"] for c in ask.list_collections(engine, admin)] == [a.id]
    assert isinstance(DocumentIndex(engine.store).find("alices-docs"), dict)


def test_a_job_its_log_and_its_queue_place_are_its_owners_alone(world):
    engine, admin, a, b = world
    jobs = engine.scheduler.jobs
    job_id = jobs.insert("benchmark", {}, 0, "cpu", 0, None, "alice's job", None,
                         lambda i: engine.settings.jobs_dir / f"{i}.log", owner=a.id)
    mine, theirs = engine.scheduler.for_user(a), engine.scheduler.for_user(b)
    assert mine.get(job_id)["owner"] == a.id and [j["id"] for j in mine.list()] == [job_id]
    for call in (theirs.get, theirs.cancel, theirs.resume, theirs.delete, theirs.log_tail, theirs.metrics,
                 theirs.usage, theirs.waiting_reason, lambda i: objects.get_job(engine, b, i)):
        with pytest.raises(JobError, match=f"there is no job {job_id}"):
            call(job_id)
    assert theirs.list() == [] and theirs.queue() == [] and objects.list_jobs(engine, b) == []
    assert [j["id"] for j in engine.scheduler.for_user(admin).list()] == [job_id]
    engine.accounts.set_limits("alice", queued_jobs=1)      # one queued already: the next is refused
    with pytest.raises(LimitReached, match="limit is 1"):
        mine.submit("benchmark", {"seconds": 1})
    mine.delete(job_id)


def test_glossary_and_translation_memory_are_per_user(world):
    engine, admin, a, b = world
    Glossary.for_home(user_home(engine.settings.home, a)).put("en", "de", "engine", "Motor")
    assert translation.saved_glossary(engine, a, "en", "de") == {"engine": "Motor"}
    assert translation.saved_glossary(engine, b, "en", "de") == {}
    assert translation.remove_from_glossary(engine, b, "en", "de", ["engine"]) == 0
    assert translation.saved_glossary(engine, a, "en", "de") == {"engine": "Motor"}


def test_storage_limit_stops_with_a_clear_message(world):
    engine, admin, a, b = world
    engine.accounts.set_limits("bob", storage_bytes=100)
    with pytest.raises(LimitReached, match="storage limit"):
        objects.create_conversation(engine, b, "big", [{"role": "user", "content": "x" * 200}])
    objects.create_conversation(engine, b, "small", [{"role": "user", "content": "x" * 50}])


def test_stores_refuse_a_call_without_an_acting_user(world):
    engine = world[0]
    with pytest.raises(TypeError, match="acting User"):
        engine.conversations.list(None)
    with pytest.raises(TypeError):
        engine.scheduler.for_user("alice")
    assert User(5, "x", "admin").is_admin


def test_a_fine_tuned_model_is_its_owners_until_an_admin_publishes_it(world, tmp_path):
    from llmos_core.errors import ModelNotFound
    from llmos_core.models.catalog import ModelSpec
    from llmos_core.usecases.models import list_catalog, model_names

    engine, admin, a, b = world
    engine.catalog.register(ModelSpec(name="alices-tune", source="trained", location=str(tmp_path)), owner=a.id)
    assert "alices-tune" in model_names(engine, a) and "alices-tune" not in model_names(engine, b)
    assert "alices-tune" not in [e.name for e in list_catalog(engine, b)]
    with pytest.raises(ModelNotFound):
        engine.catalog.check_visible(b, "alices-tune")
    with pytest.raises(ModelNotFound):       # chatting with it by name: refused as a missing model
        next(engine.chat.stream("alices-tune", [{"role": "user", "content": "hi"}], SamplingParams(), user=b))
    embedded = [s for s in engine.catalog.visible(b) if s.is_embedded]
    assert embedded                           # the embedded models are shared with everyone
    from llmos_core.accounts import NotAllowed
    from llmos_core.usecases.models import publish_model

    def sharing(actor):
        return {e.name: e.sharing for e in list_catalog(engine, actor)}

    assert sharing(a)["alices-tune"] == "yours" and sharing(admin)["alices-tune"] == "alice's"
    assert sharing(b)[embedded[0].name] == "built in"
    with pytest.raises(NotAllowed):          # only an admin publishes, even the owner
        publish_model(engine, a, "alices-tune")
    publish_model(engine, admin, "alices-tune")
    assert "alices-tune" in model_names(engine, b) and sharing(b)["alices-tune"] == "published"
    assert [s.data["owner"] for s in engine.catalog.visible(admin) if s.name == "alices-tune"] == [a.id]
    publish_model(engine, admin, "alices-tune", shared=False)   # withdrawn: Bob's again reads as missing
    assert "alices-tune" not in model_names(engine, b)
    with pytest.raises(ModelNotFound):
        publish_model(engine, admin, "no-such-model")


def test_training_data_files_are_their_owners_alone(world):
    from llmos_core.training.job import validate
    from llmos_core.usecases import datasets

    engine, admin, a, b = world
    kept = datasets.upload_dataset(engine.settings, a, "notes.txt", b"alice's private notes\n\nmore of them")
    assert kept.path.parent == user_home(engine.home, a) / "datasets"
    assert [d.name for d in datasets.list_datasets(engine.settings, a)] == [kept.name]
    assert datasets.list_datasets(engine.settings, b) == []                  # bob's list does not show it
    assert not datasets.find_dataset(engine.settings, b, kept.name).path.exists()   # nor does his lookup
    # A job on a kept file reads it where it is (no copy into the shared folder).
    clean = validate({"model": "smollm2-135m-instruct", "data": str(kept.path), "method": "lora"}, engine.settings)
    assert clean["data"] == str(kept.path.resolve())


def test_the_monitor_names_a_jobs_owner_to_admins_and_hides_it_from_other_users(world, monkeypatch):
    from llmos_core.usecases.monitor import HIDDEN, snapshot_for

    engine, admin, a, b = world
    monkeypatch.setenv("LLMOS_DEV", "1")
    job_id = engine.scheduler.for_user(a).submit("benchmark", {"seconds": 1})
    snap = {"processes": [{"pid": 7, "label": f"benchmark job {job_id}", "role": "job", "job_id": job_id,
                           "command": "python -m llmos_core.jobs.worker secret-args"},
                          {"pid": 8, "label": "python", "role": "other", "job_id": None, "command": "python"}],
            "llmos": {f"job {job_id}": {"label": f"benchmark job {job_id}", "cpu": 1.0, "rss": 1, "gpu_mem": 0}}}
    assert snapshot_for(engine, a, snap)["processes"][0]["label"] == f"benchmark job {job_id}"
    theirs = snapshot_for(engine, b, snap)
    assert theirs["processes"][0]["label"] == HIDDEN and theirs["processes"][0]["command"] == ""
    assert theirs["llmos"][f"job {job_id}"]["label"] == HIDDEN
    assert theirs["processes"][1]["label"] == "python"                      # the machine's own processes stay
    assert snapshot_for(engine, admin, snap)["processes"][0]["label"] == f"benchmark job {job_id} · alice"
    assert snap["processes"][0]["label"] == f"benchmark job {job_id}"        # the sampler's copy is untouched
