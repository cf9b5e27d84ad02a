"""AppTest of the Home and Models pages, with a tiny model through the real load path."""
import pytest

from llmos_core.engine import get_engine
from llmos_core.settings import Settings


@pytest.fixture
def app(new_app):
    return new_app()


def test_home_shows_the_machine_and_links(app):
    assert app.title[0].value.endswith("LLM OS")
    labels = [m.label for m in app.metric]
    assert {"Device", "Models in memory", "Memory budget"} <= set(labels)
    assert app.metric[0].value == "CPU"


def test_models_page_lists_the_catalog(app):
    app.switch_page("app_pages/models.py").run()
    assert not app.exception
    frame = app.dataframe[0].value
    assert list(frame["name"][:2]) == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert any("No model is loaded" in i.value for i in app.info)


def test_load_and_unload_from_the_page(app, tiny_causal):
    engine = get_engine(Settings.from_env())
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    app.switch_page("app_pages/models.py").run()
    app.selectbox(key="models_choice").set_value(name).run()
    app.button(key="models_load").click().run()
    assert not app.exception and not app.error
    assert engine.models.is_resident(name)
    assert any(name in m.value for m in app.markdown)          # its card under "In memory"
    app.button(key=f"models_unload_{name}_transformers").click().run()
    assert not engine.models.is_resident(name)


def test_an_admin_publishes_a_registered_model_from_the_page(app, tiny_causal):
    engine = get_engine(Settings.from_env())
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    app.switch_page("app_pages/models.py").run()
    frame = app.dataframe[0].value
    assert dict(zip(frame["name"], frame["whose"]))[name] == "yours"
    app.selectbox(key="models_choice").set_value(name).run()
    assert app.button(key="models_publish").label == "Publish to every user"
    app.button(key="models_publish").click().run()
    assert not app.exception and not app.error
    assert engine.catalog.get(name).data["shared"]
    assert dict(zip(app.dataframe[0].value["name"], app.dataframe[0].value["whose"]))[name] == "published"
    assert app.button(key="models_publish").label == "Withdraw from every user"


def test_a_bad_pull_shows_a_message_not_a_traceback(app):
    app.switch_page("app_pages/models.py").run()
    app.text_input(key="models_ref").set_value("no such model").run()
    app.button(key="models_pull").click().run()
    assert not app.exception
    assert app.error and "not a catalog name" in app.error[0].value
    # A folder outside the data folder is refused before it is looked at (LLMOS_ADMIN=1 lifts that).
    app.text_input(key="models_ref").set_value("/no/such/folder").run()
    app.button(key="models_pull").click().run()
    assert app.error and "outside" in app.error[0].value


def test_a_refused_load_shows_the_figures(new_app, monkeypatch, tiny_causal):
    monkeypatch.setenv("LLMOS_MEMORY_BUDGET", "1MB")
    at = new_app()
    engine = get_engine(Settings.from_env())
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    at.switch_page("app_pages/models.py").run()
    at.selectbox(key="models_choice").set_value(name).run()
    at.button(key="models_load").click().run()
    assert at.error and "needs" in at.error[0].value and "budget" in at.error[0].value
    assert at.warning and "needs" in at.warning[0].value   # the refusals list


def test_without_llamacpp_the_pages_say_why_and_chat_falls_back(new_app, monkeypatch):
    from llmos_core.models import llamacpp

    monkeypatch.setenv("LLMOS_DISABLE_LLAMACPP", "1")      # as on a machine where the binding did not build
    monkeypatch.setattr(llamacpp, "_availability", None)
    at = new_app()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception
    assert any("llama.cpp backend unavailable" in w.value and "LLMOS_DISABLE_LLAMACPP" in w.value
               for w in at.warning)
    at.switch_page("app_pages/chat.py").run()
    assert not at.exception
    # The embedded GGUF chat model is served by transformers (int8 on the CPU), and the page says why.
    assert any("llama.cpp is not available" in c.value for c in at.caption)


def test_a_fine_tune_offers_its_gguf_export_and_a_refusal_reads_as_a_message(app, tiny_causal):
    from llmos_core.models.catalog import ModelSpec

    engine = get_engine(Settings.from_env())
    base = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    engine.catalog.register(ModelSpec(name="tiny-ft", source="trained", location=str(tiny_causal),
                                      data={"base_model": base, "job": 1}))
    app.switch_page("app_pages/models.py").run()
    app.selectbox(key="models_choice").set_value("tiny-ft").run()
    assert any("Export it to GGUF" in c.value for c in app.caption)
    app.button(key="models_export").click().run()
    # the tiny model was not made from a GGUF: there is no tokenizer to copy, and the page says so
    assert not app.exception
    assert app.error and "did not come from a GGUF file" in app.error[0].value


def test_a_gguf_fine_tune_is_exported_by_a_queued_job_and_the_page_follows_it(app, tiny_causal):
    """The export runs as a job (admitted by memory), not in the server; the page shows the job, not a second button."""
    from llmos_core.models.catalog import ModelSpec

    engine = get_engine(Settings.from_env())
    engine.scheduler.stop()   # the job stays queued: what the page shows of it is what is tested here
    engine.catalog.register(ModelSpec(name="root-gguf", source="gguf", location=str(tiny_causal)))
    engine.catalog.register(ModelSpec(name="gguf-ft", source="trained", location=str(tiny_causal),
                                      data={"base_model": "root-gguf", "job": 1}))
    app.switch_page("app_pages/models.py").run()
    app.selectbox(key="models_choice").set_value("gguf-ft").run()
    app.radio(key="models_export_quant").set_value("q4").run()
    app.button(key="models_export").click().run()
    assert not app.exception and not app.error
    jobs = engine.scheduler.list(kind="export")
    assert [j["params"] for j in jobs] == [{"model": "gguf-ft", "quant": "q4"}]
    assert any(f"queued as job {jobs[0]['id']}" in s.value for s in app.success)
    app.run()
    assert "models_export" not in [b.key for b in app.button]   # one export at a time per model
    assert any(f"Export job {jobs[0]['id']}" in p.proto.text for p in app.get("progress"))


def test_home_shows_doctors_checks_and_warns_of_a_problem(new_app, monkeypatch, tmp_path):
    at = new_app()
    lines = " ".join(m.value for m in at.markdown)
    assert "**packages**: all" in lines and "**llama.cpp**" in lines and "**data folder**" in lines
    assert not any("problem(s) with this install" in w.value for w in at.warning)
    from llmos_core import lockcheck
    lock = tmp_path / "requirements.txt"
    lock.write_text("psutil==0.0.1\n")
    monkeypatch.setattr(lockcheck, "find_lock", lambda name="requirements.txt": lock)
    at.run()
    assert not at.exception
    assert any("1 problem(s) with this install" in w.value and "pip install -r requirements.txt" in w.value
               for w in at.warning)
