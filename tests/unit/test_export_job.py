"""The `export` job kind: what it accepts and refuses before queueing, and what admission is told."""
import pytest

from llmos_core.errors import LLMOSError
from llmos_core.models.catalog import Catalog, ModelSpec
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.training import export_job


@pytest.fixture
def settings(home, tiny_causal):
    settings = Settings.from_env()
    store = Store(settings.db_path)
    catalog = Catalog(store)
    catalog.register(ModelSpec(name="root-gguf", source="gguf", location=str(tiny_causal)))
    catalog.register(ModelSpec(name="plain", source="local", location=str(tiny_causal)))
    catalog.register(ModelSpec(name="ft", source="trained", location=str(tiny_causal), data={"base_model": "root-gguf"}))
    catalog.register(ModelSpec(name="ft-of-plain", source="trained", location=str(tiny_causal),
                               data={"base_model": "plain"}))
    store.close()
    return settings


def test_a_fine_tune_of_a_gguf_is_accepted_with_its_form(settings):
    assert export_job.validate({"model": "ft", "quant": "q4"}, settings) == {"model": "ft", "quant": "q4"}
    assert export_job.validate({"model": "ft"}, settings)["quant"] == "q8_0"
    assert export_job.describe({"model": "ft", "quant": "q4"}) == "Export ft to a Q4 GGUF"


@pytest.mark.parametrize("params, says", [
    ({"model": "plain"}, "not a fine-tuned model"),
    ({"model": "ft-of-plain"}, "did not come from a GGUF file"),
    ({"model": "ft", "quant": "q2"}, "unknown GGUF form"),
    ({"model": "ft", "input": "/etc/passwd"}, "does not take input"),
    ({"model": "nope"}, "nope"),
])
def test_what_cannot_be_exported_is_refused_before_queueing(settings, params, says):
    with pytest.raises(LLMOSError) as refused:
        export_job.validate(params, settings)
    assert says in str(refused.value)


def test_admission_is_told_the_merged_weights_and_the_output(settings, tiny_causal):
    from llmos_core.device import choose_device
    from llmos_core.models.backends import TransformersBackend

    store = Store(settings.db_path)
    weights = TransformersBackend(settings, choose_device("cpu", "float32"), Catalog(store)).estimate(
        Catalog(store).get("ft"))
    store.close()
    estimate = export_job.estimate({"model": "ft", "quant": "q8_0"}, settings)
    assert estimate["device"] == "cpu" and estimate["memory_bytes"] == int(2 * weights + 250 * 1024**2) > 0
