"""AppTest of the Translate page: upload, translate with a tiny seq2seq model, edit a segment, download;
a bad file's message; a long document as a job that the page reattaches to from the URL."""
from __future__ import annotations

import re
import time

import pytest

import translation_samples as samples
from llmos_core.engine import get_engine
from llmos_core.settings import Settings


@pytest.fixture
def app(new_app, tiny_seq2seq):
    engine = get_engine(Settings.from_env())
    spec = engine.catalog.resolve(str(tiny_seq2seq))
    spec.name = "tiny-mt"
    engine.catalog.register(spec)
    at = new_app()
    at.switch_page("app_pages/translate.py").run()
    assert not at.exception, at.exception
    return at


def _upload(at, name: str, data: bytes, mime: str = "application/octet-stream"):
    at.file_uploader(key="translate_upload").set_value((name, data, mime)).run()
    assert not at.exception, at.exception


def test_upload_translate_edit_download(app):
    assert app.selectbox(key="translate_model").options[0].startswith("tiny-mt")
    _upload(app, "film.srt", samples.SRT.encode())
    assert any("SRT · 3 segments (3 subtitle)" in c.value for c in app.caption)
    app.selectbox(key="translate_source").set_value("en")
    app.selectbox(key="translate_target").set_value("fr")
    app.button(key="translate_run").click().run(timeout=120)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    result = app.session_state["translate_result"]
    assert len(result.translations) == 3 and result.target == "fr"
    assert any("Engine: transformers" in c.value for c in app.caption)
    frame = app.dataframe[0].value   # the side-by-side editor
    assert list(frame.columns) == ["source", "translation", "check"] and len(frame) == 3
    assert frame["source"][0] == "⟦0⟧Hello there,⟦1⟧ my friend. How are you today?"
    buttons = app.get("download_button")
    assert buttons and "film.srt" in buttons[0].proto.label
    assert "film.bilingual.srt" in buttons[1].proto.label


def test_bad_file_gets_a_clear_message(app):
    _upload(app, "report.docx", b"this is plain text pretending to be Word")
    assert any("not a real DOCX" in e.value for e in app.error)
    assert app.button(key="translate_run").disabled


def _translate_pasted(app, text: str) -> None:
    app.radio(key="translate_mode").set_value("Paste text").run()
    app.text_area(key="translate_paste").set_value(text).run()
    app.selectbox(key="translate_source").set_value("en")
    app.button(key="translate_run").click().run(timeout=120)
    assert not app.exception and not app.error


def test_pasted_text_with_the_cache(app):
    _translate_pasted(app, "Hello world.\nHello world.\nGood night.")
    stats = app.session_state["translate_result"].stats
    assert stats["segments"] == 3 and stats["unique"] == 2 and stats["cached"] == 1


def test_long_document_runs_as_a_job_and_reattaches(app, monkeypatch, new_app):
    monkeypatch.setenv("LLMOS_TRANSLATE_JOB_SEGMENTS", "1")
    _upload(app, "film.srt", samples.SRT.encode())
    app.selectbox(key="translate_source").set_value("en")
    app.button(key="translate_run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    job_id = int(app.query_params["translate_job"][0] if isinstance(app.query_params["translate_job"], list)
                 else app.query_params["translate_job"])
    engine = get_engine(Settings.from_env())
    deadline = time.monotonic() + 180
    while engine.scheduler.get(job_id)["state"] not in ("succeeded", "failed", "interrupted", "cancelled"):
        assert time.monotonic() < deadline, engine.scheduler.get(job_id)
        time.sleep(1)
    assert engine.scheduler.get(job_id)["state"] == "succeeded", engine.scheduler.log_tail(job_id)
    # A "refreshed" page: a new session with only the URL's query parameter.
    fresh = new_app()
    fresh.query_params["translate_job"] = str(job_id)
    fresh.switch_page("app_pages/translate.py").run()
    fresh.run()
    assert not fresh.exception, fresh.exception
    result = fresh.session_state["translate_result"]
    assert result.job == job_id and len(result.translations) == 3
    assert "film.srt" in fresh.get("download_button")[0].proto.label


def test_hostile_uploads_get_a_message_and_the_page_goes_on(app):
    for name, data, message in (("bomb.docx", samples.make_zip_bomb(), "zip bomb"),
                                ("line.txt", b"word " * 420_000, "characters long"),
                                ("page.html", b"<p>" + b"word " * 420_000, "segment 1 .* characters long")):
        _upload(app, name, data)
        assert any(re.search(message, e.value) for e in app.error), (name, [e.value for e in app.error])
        assert app.button(key="translate_run").disabled
    _upload(app, "film.srt", samples.SRT.encode())   # the next upload is read as usual
    assert not app.error and any("3 segments" in c.value for c in app.caption)


def test_an_upload_is_parsed_once_not_on_every_rerun(app, monkeypatch):
    from llmos_core.translation import isolation

    calls = []
    parse = isolation.parse_in_child
    monkeypatch.setattr(isolation, "parse_in_child", lambda *a, **k: calls.append(a[1]) or parse(*a, **k))
    _upload(app, "film.srt", samples.SRT.encode())
    app.selectbox(key="translate_target").set_value("fr").run()
    app.selectbox(key="translate_source").set_value("en").run()
    assert not app.exception and calls == ["film.srt"]


def test_the_default_model_is_the_best_offline_one_and_an_uncovered_pair_is_warned(new_app):
    at = new_app()
    at.switch_page("app_pages/translate.py").run()
    assert not at.exception, at.exception
    model = at.selectbox(key="translate_model")
    assert model.value == "gemma-3-270m"          # not the catalog's first causal LM, the English-only SmolLM2
    assert not at.warning
    model.set_value("smollm2-135m-instruct").run()
    assert any("not on German" in w.value for w in at.warning), [w.value for w in at.warning]


def test_a_correction_goes_into_the_memory_and_the_next_document_reuses_it(app):
    _translate_pasted(app, "Hello world.\nGood night.")
    result = app.session_state["translate_result"]
    edited = {"edited_rows": {0: {"translation": "Bonjour le monde."}}, "added_rows": [], "deleted_rows": []}
    app.session_state["translate_editor"] = edited
    app.run()
    app.button(key="translate_remember").click().run()
    assert not app.exception and any("1 segment(s) saved" in s.value for s in app.success)
    app.button(key="translate_run").click().run(timeout=120)
    again = app.session_state["translate_result"]
    assert again.translations[0] == "Bonjour le monde." and again.stats["from_memory"] == 1
    assert again.translations[1] == result.translations[1]


def test_a_corrected_term_goes_into_the_glossary_in_one_click_and_the_next_translation_uses_it(app, home):
    from llmos_core.translation.glossary import Glossary

    _translate_pasted(app, "Hello world.\nGood night.")
    assert "translate_term_add" not in [b.key for b in app.button]   # no correction yet: nothing to add
    edited = {"edited_rows": {0: {"translation": "Bonjour le monde."}}, "added_rows": [], "deleted_rows": []}
    app.session_state["translate_editor"] = edited
    app.run()
    assert not app.exception, app.exception
    # prefilled from the word diff: the whole row changed, so its source words are the term
    term, meaning = app.text_input[-2], app.text_input[-1]
    assert (term.value, meaning.value) == ("Hello world", "Bonjour le monde")
    app.button(key="translate_term_add").click().run()
    assert not app.exception and any("added to the glossary" in s.value for s in app.success), app.error
    assert Glossary.for_home(home).entries("en", "de") == {"Hello world": "Bonjour le monde"}
    # the saved term, whatever the case, is masked in the next translation and comes back as saved
    _translate_pasted(app, "hello world, good night.")
    again = app.session_state["translate_result"]
    assert "Bonjour le monde" in again.translations[0] and again.stats["glossary_terms"] == 1
    # a second click updates the term, never duplicates it; an empty term is refused with a message
    app.session_state["translate_editor"] = {"edited_rows": {0: {"translation": "Salut le monde, bonne nuit."}},
                                             "added_rows": [], "deleted_rows": []}
    app.run()
    app.text_input[-2].set_value("HELLO WORLD")
    app.text_input[-1].set_value("Salut le monde")
    app.button(key="translate_term_add").click().run()
    assert Glossary.for_home(home).entries("en", "de") == {"HELLO WORLD": "Salut le monde"}
    app.text_input[-2].set_value("  ")
    app.button(key="translate_term_add").click().run()
    assert any("term is empty" in e.value for e in app.error)
    # the pair's saved terms are listed with the glossary, and a wrong one can be removed there
    remove = app.multiselect(key="translate_glossary_remove")
    assert remove.options == ["HELLO WORLD"]
    remove.set_value(["HELLO WORLD"]).run()
    app.button(key="translate_glossary_remove_run").click().run()
    assert not app.exception and any("1 term(s) removed" in s.value for s in app.success)
    assert Glossary.for_home(home).entries("en", "de") == {}
    assert "translate_glossary_remove" not in [m.key for m in app.multiselect]


def test_segments_not_translated_are_said_and_highlighted(new_app):
    """A result with a segment kept in the source language: the page says "1 segment not translated"
    above the preview, and the row's check column says so."""
    from llmos_core.translation.translator import TranslationStats
    from llmos_core.usecases.translate import TranslationResult

    at = new_app()
    at.switch_page("app_pages/translate.py").run()
    data = b"Good morning.\n\nStubborn line.\n"
    stats = TranslationStats(source="en", segments=2, unique=2, kept_source=1, kept_segments=[1]).to_dict()
    at.session_state["translate_result"] = TranslationResult("notes.txt", data, "docx", "de",
                                                             ["Good morning.", "Stubborn line."],
                                                             ["Guten Morgen.", "Stubborn line."], stats)
    at.run()
    assert not at.exception, at.exception
    assert any("1 segment not translated" in w.value for w in at.warning), [w.value for w in at.warning]
    frame = at.dataframe[0].value   # the side-by-side editor, its flagged row highlighted
    assert list(frame["check"]) == ["", "not translated"]
    labels = [b.proto.label for b in at.get("download_button")]
    assert any("notes.bilingual.txt" in label for label in labels), labels
