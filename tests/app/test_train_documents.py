"""The Train page's data step from documents (AppTest): upload an HTML document, see clean chunks of the
chosen token length, keep them as a training set that the page then selects; and the formatted example
of a mapped CSV (instruction/input/output) shown live."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DOCUMENTS = "Documents (continued pre-training)"
STORY = "".join(f"<p>The fox number {i} jumps over the lazy dog and runs far away.</p><p>Page {i}</p>"
                for i in range(30))


@pytest.fixture
def eng(home, monkeypatch, app_engine, tiny_base):
    spec = app_engine.catalog.resolve(str(tiny_base))
    spec.name = "tiny"
    app_engine.catalog.register(spec)
    return app_engine


def train_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["train_model"] = "tiny"        # no embedded model is touched
    at.session_state["train_docs_model"] = "tiny"
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    return at


def test_documents_become_chunks_kept_as_a_training_set(eng):
    at = train_page()
    at.radio(key="train_source").set_value(DOCUMENTS).run()
    assert any("Upload documents" in i.value for i in at.info)
    at.file_uploader(key="train_docs_upload").set_value(
        [("story.html", f"<html><body>{STORY}</body></html>".encode(), "text/html")]).run()
    at.number_input(key="train_docs_tokens").set_value(48).run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any("chunks" in c.value and "30 paragraphs left out" in c.value for c in at.caption)
    preview = at.dataframe[0].value
    assert list(preview.columns) == ["tokens", "text"] and (preview["tokens"] <= 48).all()
    assert preview["text"][0].startswith("The fox number 0 jumps") and "Page" not in preview["text"][0]

    # A model never converted is not converted behind the user's back: the page asks first.
    at.selectbox(key="train_docs_model").set_value("gemma-3-270m").run()
    assert any("has not been converted yet" in i.value for i in at.info) and not at.dataframe
    assert at.button(key="train_docs_prepare").label.startswith("Convert gemma-3-270m")
    at.selectbox(key="train_docs_model").set_value("tiny").run()

    at.button(key="train_docs_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.radio(key="train_source").value == "A data file"
    assert at.selectbox(key="train_dataset").value.startswith("story-chunks48")
    assert any("rows of **text**" in c.value for c in at.caption)


def test_a_mapped_csv_shows_the_example_the_model_will_see(eng):
    at = train_page()
    rows = "\n".join(f"Add {i} and 1.,Use digits.,{i + 1}" for i in range(30))
    at.file_uploader(key="train_upload").set_value(("sums.csv", f"task,hint,result\n{rows}\n".encode(),
                                                    "text/csv")).run()
    at.selectbox(key="train_map_prompt").set_value("task").run()
    at.selectbox(key="train_map_input").set_value("hint").run()
    at.selectbox(key="train_map_response").set_value("result").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = [c.value for c in at.code]
    assert any("Add 0 and 1.\n\nUse digits." in s and s.rstrip().endswith("Assistant:") for s in shown)
    assert " 1" in shown
