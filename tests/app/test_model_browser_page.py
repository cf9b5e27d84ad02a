"""AppTest of the Models page's browser: a hub search shows each form's prediction and a badge; an unreachable
hub says so in one line and lists the catalog; a loaded model's card shows the prediction beside the measurement."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import fake_hub  # noqa: E402
from test_model_browser import _repos, fixed_calibration  # noqa: E402

from llmos_core.models.browser import calibration as calibration_module  # noqa: E402
from llmos_core.models.browser import hub  # noqa: E402


@pytest.fixture
def calibrated(monkeypatch):
    monkeypatch.setattr(calibration_module, "machine", lambda settings, refresh=False: fixed_calibration())


def test_search_shows_predictions_and_badges(monkeypatch, calibrated, app_engine, new_app):
    server, url = fake_hub.serve(_repos())
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        app = new_app()
        app.switch_page("app_pages/models.py").run()
        app.text_input(key="models_search_query").set_value("qwen 0.5b").run()
        app.button(key="models_search").click().run()
    finally:
        server.shutdown()
    assert not app.exception and not app.error
    text = " ".join(m.value for m in app.markdown)
    assert "acme/qwen-0.5b-instruct" in text and "gated" in text and "runs well" in text
    assert "recommended: llamacpp Q8_0" in text
    frames = [d.value for d in app.dataframe if "badge" in d.value.columns and "model" not in d.value.columns]
    assert frames and set(frames[0]["form"]) == {"llamacpp Q4_K_M", "llamacpp Q8_0", "transformers fp32"}
    assert any("no GGUF file" in c.value for c in app.caption)


def test_the_tiers_list_next_models_for_this_machine(calibrated, app_engine, new_app):
    """Offline (no hub call): well-known models this machine's class runs well, predicted here."""
    app = new_app()
    app.switch_page("app_pages/models.py").run()
    assert not app.exception and not app.error
    assert any("CPU only" in c.value for c in app.caption)
    tiers = [d.value for d in app.dataframe if "model" in d.value.columns and "badge" in d.value.columns]
    assert tiers and "Qwen/Qwen2.5-0.5B-Instruct" in list(tiers[0]["model"])
    assert set(tiers[0]["badge"]) == {"runs well"}


def test_an_unreachable_hub_lists_the_catalog(monkeypatch, calibrated, app_engine, new_app):
    server, url = fake_hub.serve(_repos(), delay_s=3)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub, "TIMEOUT_S", 0.5)
    try:
        app = new_app()
        app.switch_page("app_pages/models.py").run()
        app.text_input(key="models_search_query").set_value("qwen").run()
        app.button(key="models_search").click().run()
    finally:
        server.shutdown()
    assert not app.exception and not app.error
    assert any("did not answer" in i.value for i in app.info)
    assert any("smollm2-135m-instruct" in list(d.value.get("name", [])) for d in app.dataframe)


def test_a_loaded_model_shows_its_prediction_beside_the_measurement(calibrated, app_engine, new_app, tiny_causal):
    name = app_engine.catalog.register(app_engine.catalog.resolve(str(tiny_causal))).name
    app_engine.models.load(name)
    app = new_app()
    app.switch_page("app_pages/models.py").run()
    assert not app.exception
    assert any("predicted" in c.value and "measured" in c.value for c in app.caption)
