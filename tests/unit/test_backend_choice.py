"""The auto backend choice: llama.cpp for one user of a GGUF model on the CPU, transformers on a GPU, for
non-GGUF models, without the binding; many users join llama.cpp's batch; forced choices are checked; reasons quote speeds."""
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


def test_many_users_of_a_gguf_model_join_the_llamacpp_batch():
    # measured on the CPU: llama.cpp decoding 8 chats together out-serves transformers batching them
    joined = pick(in_flight={"llamacpp": 7, "transformers-int8": 2})
    assert joined.backend == "llamacpp" and "joins the 7 chat(s)" in joined.reason and "together" in joined.reason


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
