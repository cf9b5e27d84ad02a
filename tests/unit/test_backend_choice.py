"""The auto backend choice: llama.cpp for one user of a GGUF model on the CPU, transformers on a GPU, for
non-GGUF models, without the binding, and under load; forced choices are checked; reasons quote speeds."""
import pytest

from llmos_core.backend_choice import SpeedBook, choose_backend
from llmos_core.errors import InvalidInput
from llmos_core.models.catalog import EMBEDDED, ModelSpec

GGUF = EMBEDDED["gemma-3-270m"]
FOLDER = ModelSpec(name="tiny", source="local", location="/x")
ALL = {"transformers": 1, "transformers-int8": 1, "llamacpp": 1}


def pick(spec=GGUF, requested="auto", device="cpu", backends=ALL, **kw):
    return choose_backend(spec, requested, device_kind=device, backends=backends, **kw)


def test_one_user_of_a_gguf_model_on_the_cpu_gets_llamacpp():
    choice = pick()
    assert choice.backend == "llamacpp" and choice.reason.startswith("llama.cpp:")


def test_gpu_non_gguf_and_missing_binding_go_to_transformers():
    assert pick(device="cuda").backend == "transformers"
    assert pick(FOLDER).backend == "transformers"   # int8 only for GGUF models (already 4-bit)
    without = {"transformers": 1, "transformers-int8": 1}
    choice = pick(backends=without, llamacpp_reason="llama-cpp-python does not import: ImportError")
    assert choice.backend == "transformers-int8" and "ImportError" in choice.reason
    assert pick(backends={"transformers": 1}, llamacpp_reason="x").backend == "transformers"


def test_many_users_queue_on_llamacpp_by_default():
    # measured on the CPU: 8 chats one after another on llama.cpp out-serve any batching of them
    queued = pick(in_flight={"llamacpp": 7, "transformers-int8": 2})
    assert queued.backend == "llamacpp" and "7 chat(s) ahead" in queued.reason


def test_with_batch_after_set_load_switches_to_batching_and_new_requests_join_it(monkeypatch):
    monkeypatch.setenv("LLMOS_BATCH_AFTER", "2")
    assert pick(in_flight={"llamacpp": 1}).backend == "llamacpp"
    busy = pick(in_flight={"llamacpp": 2})
    assert busy.backend == "transformers-int8" and "one at a" in busy.reason
    joined = pick(in_flight={"llamacpp": 0, "transformers-int8": 2})
    assert joined.backend == "transformers-int8" and "joins the 2" in joined.reason


def test_forced_backends_are_checked():
    assert pick(requested="transformers").backend == "transformers"
    with pytest.raises(InvalidInput, match="not a GGUF"):
        pick(FOLDER, requested="llamacpp")
    with pytest.raises(InvalidInput, match="not available here: no binding"):
        pick(requested="llamacpp", backends={"transformers": 1}, llamacpp_reason="no binding")
    with pytest.raises(InvalidInput, match="unknown backend"):
        pick(requested="vllm")


def test_reason_quotes_measured_single_stream_speeds():
    speeds = SpeedBook()
    speeds.record("gemma-3-270m", "llamacpp", 52.0)
    speeds.record("gemma-3-270m", "transformers", 80.0, concurrent=4)   # batched: not one user's speed
    assert "x faster" not in pick(speeds=speeds).reason
    speeds.record("gemma-3-270m", "transformers", 20.0)
    assert "2.6x faster here for one user (52 vs 20 tokens/s measured)" in pick(speeds=speeds).reason
