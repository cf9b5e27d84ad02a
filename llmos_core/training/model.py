"""The model a training run starts from, and where it runs: device and precision (Placement), the
base folder, its size before download, the tokenizer, and the model with LoRA adapters attached.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..models import fetch
from ..models.catalog import Catalog, ModelSpec
from ..settings import Settings
from . import estimate as est
from .params import TrainParams


@dataclass
class Placement:
    device: str               # "cpu" | "cuda"
    precision: str            # "fp32" | "bf16" | "fp16"
    world: int = 1            # processes in data-parallel training

    @property
    def weight_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


def choose_placement(params: TrainParams, settings: Settings) -> Placement:
    """CUDA with bf16 where supported (else fp16), else the CPU in fp32; the settings' device policy wins."""
    import torch

    on_cuda = settings.device != "cpu" and not settings.device.startswith("mps") and torch.cuda.is_available()
    if not on_cuda:
        if params.precision in ("bf16", "fp16"):
            raise InvalidInput(f"{params.precision} training needs a CUDA GPU; this run would be on the CPU",
                               "choose precision auto or fp32")
        return Placement("cpu", "fp32")
    precision = params.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise InvalidInput("this GPU does not support bf16", "choose fp16 or auto")
    count = torch.cuda.device_count()
    world = count if params.gpus == 0 else min(params.gpus, count)
    return Placement("cuda", precision, max(1, world))


def base_folder(spec: ModelSpec, settings: Settings, catalog: Catalog, progress=None) -> Path:
    """The Hugging Face folder a run starts from (an adapter's base for adapter entries)."""
    if spec.data.get("adapter"):
        return base_folder(catalog.get(spec.data["base_model"]), settings, catalog, progress)
    if spec.task != "causal-lm":
        raise InvalidInput(f"{spec.name} is a {spec.task} model; training supports causal language models",
                           "choose a causal LM such as gemma-3-270m")
    return fetch.model_folder(spec, settings, progress)


def convert_apart(spec: ModelSpec, settings: Settings, catalog: Catalog, progress=None) -> None:
    """A first run's GGUF is converted in a child process, not in the run's own: de-quantizing the weights
    and converting the tokenizer left the process 0.7 GB larger (Gemma 3 270M: 1.2 GB resident after, measured),
    which the training would have carried on top of its own peak. A failure is left to the in-process path to report."""
    import multiprocessing

    root = spec
    while root.data.get("adapter"):
        root = catalog.get(root.data["base_model"])
    if root.source not in ("embedded", "gguf") or fetch.is_ready(root, settings):
        return
    if progress:
        progress(0.1, f"converting {root.name} from GGUF, once, in its own process (about a minute)")
    child = multiprocessing.get_context("spawn").Process(target=fetch.model_folder, args=(root, settings))
    child.start()
    child.join()


def model_facts(spec: ModelSpec, settings: Settings, catalog: Catalog) -> est.ModelFacts | None:
    """Parameters and shape, from the converted folder or the GGUF header; None when not downloaded yet."""
    from ..models.backends import safetensors_parameter_bytes

    if spec.data.get("adapter"):
        return model_facts(catalog.get(spec.data["base_model"]), settings, catalog)
    if not fetch.is_ready(spec, settings):
        if spec.source in ("embedded", "gguf"):
            return est.ModelFacts.from_gguf(fetch.read_gguf_summary(fetch.gguf_path(spec, settings)))
        return None
    folder = fetch.model_folder(spec, settings)
    n_params = safetensors_parameter_bytes(folder)[0] or sum(p.stat().st_size for p in folder.glob("*.bin")) // 4
    return est.ModelFacts.from_folder(folder, n_params)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:   # batches need a pad; EOS is the usual stand-in (masked anyway)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, folder: Path, params: TrainParams, placement: Placement, catalog: Catalog):
    """The model to train: fp32 weights for full fine-tuning (AMP does the low precision), the base in
    bf16/fp16 under LoRA on a GPU; LoRA adapters added with peft. An adapter entry is merged first."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(params.seed)   # LoRA's A matrices are random: same seed, same start
    dtype = torch.float32
    if params.tuning == "lora" and placement.precision != "fp32":
        dtype = torch.bfloat16 if placement.precision == "bf16" else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    for adapter in adapter_chain(spec, catalog):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if params.tuning == "lora":
        from peft import LoraConfig, get_peft_model

        targets = ([t.strip() for t in params.lora_targets.split(",") if t.strip()]
                   if params.lora_targets != "auto" else "all-linear")
        try:
            model = get_peft_model(model, LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha,
                                                     lora_dropout=params.lora_dropout, target_modules=targets,
                                                     task_type="CAUSAL_LM"))
        except ValueError as exc:   # peft: "Target modules ... not found in the base model"
            raise InvalidInput(f"LoRA cannot attach to {spec.name}: {exc}",
                               "use lora_targets auto, or names of its linear layers") from exc
    model.config.use_cache = False   # the KV cache is for generation; training only wastes memory on it
    return model


def adapter_chain(spec: ModelSpec, catalog: Catalog) -> list[str]:
    """Adapter folders from the base upwards (an adapter trained on an adapter merges both)."""
    chain = []
    while spec.data.get("adapter"):
        chain.insert(0, spec.location)
        spec = catalog.get(spec.data["base_model"])
    return chain
