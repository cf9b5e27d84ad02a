"""What a model is, from metadata only (a config.json, safetensors headers, a GGUF header, the hub's file
list): its shape (`Shape`: the figures the KV cache and the FLOPs need) and its forms (`Form`: a runner, a
quantization, the bytes its weights take in memory and the bytes to download). Nothing here loads weights.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import fetch
from ..catalog import ModelSpec

LLAMACPP, TRANSFORMERS, TRANSFORMERS_INT8 = "llamacpp", "transformers", "transformers-int8"
# Bytes per weight of each llama.cpp quantization (ggml block sizes: Q4_K is 144 bytes for 256 weights...);
# used only where a form's size is not known from a file (a quantization asked for, not on offer).
QUANT_BYTES = {"F32": 4.0, "F16": 2.0, "BF16": 2.0, "Q8_0": 34 / 32, "Q6_K": 210 / 256, "Q5_K_M": 176 / 256,
               "Q5_K_S": 176 / 256, "Q5_0": 22 / 32, "Q5_1": 24 / 32, "Q4_K_M": 144 / 256, "Q4_K_S": 144 / 256,
               "Q4_0": 18 / 32, "Q4_1": 20 / 32, "Q3_K_M": 110 / 256, "Q3_K_S": 110 / 256, "Q3_K_L": 110 / 256,
               "Q2_K": 84 / 256, "IQ4_XS": 136 / 256}
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "int8": 1}
# A GGUF file's quantization, from its name as hub repositories spell it (model-Q4_K_M.gguf, model.q8_0.gguf).
_QUANT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|F32|BF16)(?![A-Za-z0-9])", re.IGNORECASE)


@dataclass
class Shape:
    architecture: str
    parameters: int
    layers: int = 0
    hidden: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    vocab: int = 0
    context: int = 0                 # trained context length
    tied_embeddings: bool = True     # the output head is the embedding table (read whole at every token)

    @property
    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden

    @property
    def compute_parameters(self) -> int:
        """Parameters multiplied per prompt token: the embedding is a lookup, the head runs on the last token."""
        return max(self.parameters - self.embedding_parameters * (1 if self.tied_embeddings else 2),
                   self.parameters // 10)

    def kv_bytes_per_token(self, element_bytes: int = 2) -> int:
        """K and V for every layer: 2 x layers x kv_heads x head_dim x element bytes (f16 by default)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * element_bytes

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Form:
    runner: str              # llamacpp | transformers
    quant: str               # Q4_K_M, Q8_0, F16 (GGUF) or fp32, bf16 (transformers)
    weight_bytes: int        # the weights in memory (a GGUF is read as stored; transformers: parameters x dtype)
    download_bytes: int = 0  # 0: on disk already
    file: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def shape_from_config(config: dict, parameters: int) -> Shape:
    """From a Hugging Face config.json (multimodal ones nest the language model's under text_config)."""
    config = config.get("text_config") or config
    hidden = int(config.get("hidden_size") or config.get("d_model") or config.get("n_embd") or 0)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or (hidden // max(heads, 1)))
    return Shape(architecture=str(config.get("model_type") or "unknown"), parameters=int(parameters),
                 layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0), hidden=hidden,
                 heads=heads, kv_heads=kv_heads, head_dim=head_dim, vocab=int(config.get("vocab_size") or 0),
                 context=int(config.get("max_position_embeddings") or config.get("n_positions") or 0),
                 tied_embeddings=bool(config.get("tie_word_embeddings", True)))


def shape_from_gguf(path: Path) -> Shape:
    """From a GGUF header (fetch's fast reader for the parameter count, llama.cpp's for the attention keys)."""
    summary = fetch.read_gguf_summary(path)
    shape = summary.get("shape", {})
    arch = summary["architecture"]
    heads, kv_heads, head_dim, context = int(shape.get("heads") or 1), 0, 0, 0
    try:
        from ..llamacpp import read_metadata

        metadata = read_metadata(path)
        kv_heads = int(float(metadata.get(f"{arch}.attention.head_count_kv") or 0))
        head_dim = int(float(metadata.get(f"{arch}.attention.key_length") or 0))
        context = int(float(metadata.get(f"{arch}.context_length") or 0))
    except Exception:   # llama.cpp missing: the plain figures below
        pass
    hidden = int(shape.get("hidden") or 0)
    return Shape(architecture=arch, parameters=int(summary["parameters"]), layers=int(shape.get("layers") or 0),
                 hidden=hidden, heads=heads, kv_heads=kv_heads or heads, head_dim=head_dim or hidden // heads,
                 vocab=int(shape.get("vocab") or 0), context=context)


def quant_of_filename(name: str) -> str:
    found = _QUANT_IN_NAME.findall(Path(name).stem)
    return found[-1].upper() if found else "GGUF"


def bytes_for(parameters: int, quant: str) -> int:
    per_weight = QUANT_BYTES.get(quant.upper()) or DTYPE_BYTES.get(quant.lower())
    if per_weight is None:
        from ...errors import InvalidInput

        raise InvalidInput(f"unknown quantization {quant!r}",
                           f"use one of: {', '.join(sorted(QUANT_BYTES))}, fp32, bf16, fp16")
    return int(parameters * per_weight)


def local_forms(spec: ModelSpec, settings, shape: Shape, dtype: str = "fp32") -> list[Form]:
    """The forms a catalog model has here: its served GGUF on llama.cpp (embedded, gguf, exported fine-tunes)
    and its weights on transformers (parameters x dtype, as the transformers backend holds them)."""
    from ..llamacpp import FILE_TYPES
    from .. import batched_form

    forms = []
    if spec.has_gguf:
        path = fetch.gguf_path(spec, settings)
        file_type = _file_type(path)
        served = batched_form.expected_bytes(path, file_type, settings)
        quant = "Q8_0" if batched_form.needs_conversion(file_type) else FILE_TYPES.get(file_type, "GGUF")
        forms.append(Form(LLAMACPP, quant, served, 0, path.name))
    forms.append(Form(TRANSFORMERS, dtype, shape.parameters * DTYPE_BYTES[dtype], 0, ""))
    return forms


def int8_form(shape: Shape) -> Form:
    """The transformers-int8 runner's weights (models/int8.py): every Linear as int8 with an fp32 and a bf16
    scale per output row; a tied embedding shares the head's int8 matrix, an untied one stays fp32. The norms
    (under 0.1% of the parameters) are counted as int8. The rows: the head's (vocab), and per layer q, k, v,
    o and the MLP's gate, up (its width each) and down, the MLP's width from the parameters left over."""
    embedding = shape.embedding_parameters
    untied = 0 if shape.tied_embeddings else embedding
    attention = 2 * shape.hidden * shape.heads * shape.head_dim + 2 * shape.hidden * shape.kv_heads * shape.head_dim
    per_layer = (shape.parameters - embedding - untied) / max(shape.layers, 1)
    mlp_width = max(per_layer - attention, 0) / (3 * max(shape.hidden, 1))
    rows = shape.vocab + shape.layers * ((shape.heads + 2 * shape.kv_heads) * shape.head_dim + 2 * shape.hidden
                                         + 2 * mlp_width)
    return Form(TRANSFORMERS_INT8, "int8", int(shape.parameters + 3 * untied + 6 * rows), 0, "")


def _file_type(path: Path) -> int:
    try:
        from ..llamacpp import file_type_of, read_metadata

        return file_type_of(read_metadata(path))
    except Exception:
        return -1


def local_shape(spec: ModelSpec, settings) -> Shape:
    """The shape of a catalog model from what is on disk: its GGUF header, else its folder's config."""
    import json

    from ..backends import safetensors_parameter_bytes

    if spec.has_gguf:   # a LoRA fine-tune exported to GGUF included: to the browser a plain GGUF
        return shape_from_gguf(fetch.gguf_path(spec, settings))
    if spec.data.get("adapter"):
        raise _not_estimable(spec, "a LoRA adapter: estimate its base model, or export it to GGUF")
    folder = Path(spec.location) if spec.source in ("local", "trained") else None
    if spec.source == "hub" and fetch.is_ready(spec, settings):
        folder = fetch.model_folder(spec, settings)
    if folder is None or not (folder / "config.json").exists():
        raise _not_estimable(spec, "its files are not on disk")
    parameters = safetensors_parameter_bytes(folder)[0] or sum(p.stat().st_size for p in folder.glob("*.bin")) // 4
    return shape_from_config(json.loads((folder / "config.json").read_text()), parameters)


def _not_estimable(spec: ModelSpec, why: str):
    from ...errors import InvalidInput

    return InvalidInput(f"{spec.name} cannot be estimated from the catalog: {why}",
                        f"give its hub id instead (python -m llmos_core models estimate {spec.location})")
