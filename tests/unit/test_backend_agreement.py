"""Both backends on each embedded model compute the same model: perplexity of a fixed text within 5%,
and the memory manager counts the two resident forms of one model separately, each as measured."""

import pytest
from llamacpp_required import binding  # noqa: F401 (a fixture)

from llmos_core.engine import Engine
from llmos_core.models.catalog import EMBEDDED
from llmos_core.models.perplexity import FIXED_TEXT, perplexity
from llmos_core.settings import Settings


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_backends_agree_on_perplexity_and_both_forms_are_counted(binding, embedded_home, name):
    engine = Engine(Settings(home=embedded_home, threads=1), primary=False, start_threads=False)
    try:
        figures = {}
        for backend in ("llamacpp", "transformers"):
            model = engine.models.load(name, backend)
            figures[backend] = perplexity(backend, model.model, model.tokenizer, FIXED_TEXT)
        (ppl_cpp, n_cpp), (ppl_hf, n_hf) = figures["llamacpp"], figures["transformers"]
        assert n_cpp == n_hf > 50   # the same text, the same GGUF vocabulary
        assert 1.0 < ppl_hf < 200   # a real language model, not noise (a random one scores ~vocab size)
        assert abs(ppl_cpp - ppl_hf) / ppl_hf < 0.05, figures

        resident = {m["backend"]: m for m in engine.models.resident() if m["name"] == name}
        assert set(resident) == {"llamacpp", "transformers"}
        # Gemma as shipped (Q4_K_M); SmolLM2's Q4_1 as its Q8_0 copy (models/batched_form.py)
        assert resident["llamacpp"]["form"].startswith("GGUF Q4_K" if "gemma" in name else "GGUF Q8_0")
        # fp32 weights take several times the 4-bit file; each form is counted on its own, llama.cpp's with
        # the KV cache its parallel chats share (cleared at load, so resident at once).
        cpp = engine.models.load(name, "llamacpp").loaded.details
        assert resident["transformers"]["measured_bytes"] > 2 * cpp["file_bytes"]
        assert resident["llamacpp"]["measured_bytes"] > cpp["file_bytes"] + 0.8 * cpp["kv_bytes"]
        assert engine.models.reserved_bytes() >= sum(m["measured_bytes"] for m in resident.values())
        assert engine.models.unload(name, "llamacpp")
        assert [m["backend"] for m in engine.models.resident()] == ["transformers"]
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["llamacpp", "transformers"])
def test_stop_strings_and_cancel_through_the_chat_service(binding, embedded_home, backend):
    from llmos_core.generation import SamplingParams
    import threading

    engine = Engine(Settings(home=embedded_home, threads=1), primary=False, start_threads=False)
    name, messages = "smollm2-135m-instruct", [{"role": "user", "content": "Count from one to ten in words."}]
    try:
        full = engine.chat.generate(name, messages, SamplingParams(do_sample=False, max_new_tokens=16), backend)
        assert full.stats["backend"] == backend and full.stats["tokens"] == 16 and len(full.text) > 6
        stop = full.text[len(full.text) // 2:len(full.text) // 2 + 2]
        cut = engine.chat.generate(name, messages, SamplingParams(do_sample=False, max_new_tokens=16, stop=[stop]),
                                   backend)
        assert cut.text == full.text[:full.text.index(stop)] and cut.stats["finish_reason"] == "stop"

        cancel = threading.Event()
        events = []
        for event in engine.chat.stream(name, messages, SamplingParams(do_sample=False, max_new_tokens=200),
                                        backend, cancel=cancel):
            events.append(event)
            if event.tokens >= 2:
                cancel.set()
        assert events[-1].finish_reason == "cancelled" and events[-1].tokens < 10
        assert engine.chat.queue_depth(name, backend) == {"running": 0, "waiting": 0}
    finally:
        engine.close()
