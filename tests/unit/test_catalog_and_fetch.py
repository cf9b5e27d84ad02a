import socket
import time

import numpy as np
import pytest

import fake_hub
from llmos_core.engine import Engine
from llmos_core.errors import InvalidInput, ModelLoadError, ModelNotFound, OfflineError
from llmos_core.models import fetch
from llmos_core.models.catalog import EMBEDDED, Catalog
from llmos_core.settings import Settings
from llmos_core.store import Store


@pytest.fixture
def catalog(tmp_path):
    return Catalog(Store(tmp_path / "db.sqlite"))


def test_embedded_defaults_are_listed_first(catalog):
    names = catalog.names()
    assert names[:2] == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert EMBEDDED["smollm2-135m-instruct"].chat and not EMBEDDED["gemma-3-270m"].chat
    assert EMBEDDED["smollm2-135m-instruct"].sampling["temperature"] == 0.2


def test_resolve_local_folder_gguf_and_hub_id(catalog, tiny_causal, tiny_seq2seq, tmp_path):
    assert catalog.resolve(str(tiny_causal)).source == "local"
    assert catalog.resolve(str(tiny_seq2seq)).task == "seq2seq"
    gguf = tmp_path / "My Model.gguf"
    gguf.write_bytes(b"GGUF")
    assert catalog.resolve(str(gguf)).source == "gguf"
    spec = catalog.resolve("Helsinki-NLP/opus-mt-en-de")
    assert (spec.source, spec.location, spec.name) == ("hub", "Helsinki-NLP/opus-mt-en-de", "opus-mt-en-de")
    assert not spec.trust_remote_code


def test_resolve_refuses_what_is_not_a_model(catalog, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInput, match="not a .gguf"):
        catalog.resolve(str(tmp_path / "notes.txt"))
    with pytest.raises(InvalidInput, match="no config.json"):
        catalog.resolve(str(tmp_path))
    with pytest.raises(ModelNotFound):
        catalog.resolve("not a model at all")


def test_register_and_remove(catalog, tiny_causal):
    spec = catalog.register(catalog.resolve(str(tiny_causal)))
    assert catalog.get(spec.name).location == str(tiny_causal)
    with pytest.raises(InvalidInput, match="already"):
        catalog.register(spec)
    with pytest.raises(InvalidInput):
        catalog.register(EMBEDDED["gemma-3-270m"])
    catalog.remove(spec.name)
    with pytest.raises(ModelNotFound):
        catalog.get(spec.name)


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00garbage", b"not a gguf at all" * 100])
def test_corrupt_or_truncated_gguf_is_refused_clearly(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelLoadError) as info:
        fetch.read_gguf_summary(bad)
    assert "bad.gguf" in str(info.value)


def test_truncated_embedded_gguf_is_refused(tmp_path):
    good = fetch.gguf_path(EMBEDDED["gemma-3-270m"], Settings(home=tmp_path / "home"))
    cut = tmp_path / "cut.gguf"
    with open(good, "rb") as src:
        cut.write_bytes(src.read(2_000_000))
    with pytest.raises(ModelLoadError):
        fetch.read_gguf_summary(cut)


def test_gguf_header_gives_parameter_count(tmp_path):
    path = fetch.gguf_path(EMBEDDED["gemma-3-270m"], Settings(home=tmp_path / "h"))
    started = time.perf_counter()
    summary = fetch.read_gguf_summary(path)
    # The Train page's check waits on this: gguf's GGUFReader took about 10 s (its 262k-token vocabulary).
    assert time.perf_counter() - started < 3
    assert summary["architecture"] == "gemma3"
    assert summary["parameters"] == 268_098_176
    # The shape the training estimate needs before conversion, as the converted config.json says it.
    assert summary["shape"] == {"hidden": 640, "layers": 18, "heads": 4, "intermediate": 2048, "vocab": 262_144}


def test_gguf_header_reader_agrees_with_the_gguf_package(tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

    path = tmp_path / "small.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list([f"token{i}" for i in range(1000)])   # a string array, as vocabularies are
    writer.add_embedding_length(64)
    writer.add_block_count(3)
    writer.add_array("tokenizer.ggml.scores", [0.5] * 1000)
    writer.add_tensor("a", np.ones((3, 64), dtype=np.float32))
    writer.add_tensor("b", np.ones(64, dtype=np.float16))
    writer.add_tensor("c", np.zeros((2, 68), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q8_0)   # 2 x 64 values
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    summary = fetch.read_gguf_summary(path)
    assert summary["architecture"] == "llama"
    assert summary["shape"] == {"vocab": 1000, "hidden": 64, "layers": 3}
    assert summary["parameters"] == sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors) == 384
    path.write_bytes(path.read_bytes()[:-30])   # into the last tensor's data (past its padding)
    with pytest.raises(ModelLoadError, match="cut short"):
        fetch.read_gguf_summary(path)


def test_offline_setting_fails_at_once(tmp_path):
    with pytest.raises(OfflineError, match="offline"):
        fetch.download("owner/model", Settings(home=tmp_path, offline=True))


def test_unreachable_hub_fails_with_offline_error(tmp_path, monkeypatch):
    with socket.socket() as sock:   # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(OfflineError, match="cannot reach"):
        fetch.download("owner/model", Settings(home=tmp_path))


def test_download_from_a_fake_hub_then_load(home, tiny_causal, monkeypatch):
    server, url = fake_hub.serve({"tiny/chat-model": tiny_causal})
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        engine = Engine(Settings.from_env(), start_threads=False)
        with pytest.raises(ModelNotFound, match="does not exist"):
            fetch.download("tiny/missing", engine.settings)
        progress = []
        spec = engine.catalog.resolve("tiny/chat-model")
        folder = fetch.model_folder(spec, engine.settings, lambda f, m: progress.append(f))
        assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
        assert progress[-1] == pytest.approx(1.0)
        assert fetch.is_ready(spec, engine.settings)
        engine.catalog.register(spec)
        model = engine.models.load(spec.name)
        assert model.measured_bytes > 0
        engine.close()
    finally:
        server.shutdown()
