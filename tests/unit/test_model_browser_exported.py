"""A LoRA fine-tune exported to GGUF is estimated as the plain GGUF it is; one not exported is refused with
what to do: pure functions, the GGUF header read stubbed."""
from pathlib import Path

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.models.browser import shape as shape_module
from llmos_core.models.catalog import ModelSpec

SMOL = shape_module.Shape("llama", 134_515_008, layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, vocab=49_152)


def test_an_exported_lora_fine_tune_is_read_from_its_gguf(monkeypatch, tmp_path):
    gguf = tmp_path / "ft.Q8_0.gguf"
    read = []
    monkeypatch.setattr(shape_module.fetch, "gguf_path", lambda spec, settings: Path(spec.data["gguf"]))
    monkeypatch.setattr(shape_module, "shape_from_gguf", lambda path: read.append(path) or SMOL)
    spec = ModelSpec("ft", "trained", str(tmp_path),
                     data={"base_model": "smollm2-135m-instruct", "adapter": True, "gguf": str(gguf)})
    assert shape_module.local_shape(spec, settings=None) is SMOL and read == [gguf]


def test_a_lora_adapter_not_exported_says_to_export_it(tmp_path):
    spec = ModelSpec("ft", "trained", str(tmp_path), data={"base_model": "smollm2-135m-instruct", "adapter": True})
    with pytest.raises(InvalidInput, match="export it to GGUF"):
        shape_module.local_shape(spec, settings=None)
