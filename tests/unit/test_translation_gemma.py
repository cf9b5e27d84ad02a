"""Slow: the embedded gemma-3-270m translates a short text by few-shot prompting, offline."""
import pytest

from llmos_core.engine import Engine
from llmos_core.settings import Settings
from llmos_core.translation import documents, open_engine
from llmos_core.translation.translator import Translator


@pytest.mark.slow
def test_gemma_translates_a_short_text(embedded_home):
    engine = Engine(Settings(home=embedded_home), primary=False, start_threads=False)
    try:
        doc = documents.parse(b"# Hello\n\nThank you very much. The meeting starts at 10.\n", "short.md")
        with open_engine(engine, "gemma-3-270m") as model:
            translator = Translator(model, "de", "en", batch_size=4)
            texts = translator.translate(doc.texts())
        out = doc.render(texts).decode()
    finally:
        engine.close()
    assert out.startswith("# ") and "\n\n" in out
    assert "10" in out                                     # the number survived (as a placeholder)
    body = texts[1].lower()
    assert body != doc.texts()[1].lower() and any(w in body for w in ("danke", "vielen", "treffen", "beginnt")), out
