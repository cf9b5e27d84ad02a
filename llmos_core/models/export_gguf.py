"""A fine-tuned model as one GGUF file that llama.cpp serves: the merged weights written with gguf's
GGUFWriter under llama.cpp's tensor names (gguf's TensorNameMap), then quantized by llama.cpp itself
(`llama_model_quantize`, which llama-cpp-python exposes).

Why merged weights and not a GGUF LoRA adapter on the base: one file works for LoRA and full runs alike,
it is served by the same batch decoder as any GGUF, and the base stays untouched; an adapter on a 4-bit
base would also add the adapter's fp16 matmuls to every token.

The tokenizer and every metadata key come from the GGUF the base model came from (the embedded models,
or any pulled .gguf): the vocabulary is the one transformers read when it converted that GGUF, so the
exported file tokenizes exactly as the trained model did. Bases that never were a GGUF are refused.

Three conversions undo what transformers' GGUF loader did (transformers/modeling_gguf_pytorch_utils.py),
the known pitfalls that the perplexity test catches:
  - llama (also Mistral, whose GGUFs say llama): Q and K rows were un-permuted from llama.cpp's rotary
    layout (pairs interleaved) to Hugging Face's halves; permute them back (convert_hf_to_gguf's `permute`).
  - gemma, gemma2, gemma3: Hugging Face's RMSNorm computes x * (1 + w) and stores w; GGUF stores 1 + w.
  - tied embeddings: no output.weight is written; llama.cpp then reuses token_embd.weight.
Qwen2 (rotary in halves in both) needs none of them.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import LoadCancelled, ModelLoadError

Progress = Callable[[float, str], None]

# The forms offered, as llama_ftype values of llama.cpp (f16: no quantization step at all). "q4" is the
# base GGUF's own 4-bit type: its weights sit on that grid already, so a fine-tune re-quantized to it loses
# least (SmolLM2 ships Q4_1: Q4_K_M of its weights scored 16% worse than fp32, Q4_1 within 5%).
QUANTS = {"q8_0": 7, "q4": 15, "f16": 1}
FOUR_BIT = {2, 3, 14, 15}             # Q4_0, Q4_1, Q4_K_S, Q4_K_M
DEFAULT_QUANT = "q8_0"
PERMUTED_QK = {"llama"}                       # rotary pairs interleaved in llama.cpp's layout
NORM_PLUS_ONE = {"gemma", "gemma2", "gemma3"}
SUPPORTED = PERMUTED_QK | NORM_PLUS_ONE | {"qwen2"}
# Keys of the source that describe its tensors' storage, not the model: the quantizer writes its own.
# Tensors llama.cpp's converter computes from the config, absent from a Hugging Face state dict (Llama 3's
# rotary frequency factors): copied from the source as they are, since training does not change them.
COPIED_FROM_SOURCE = {"rope_freqs.weight"}
SKIPPED_KEYS = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}


class ExportError(ModelLoadError):
    """The model cannot be written as a GGUF (unknown architecture, tensors that do not match the base)."""


def permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotary halves -> llama.cpp's interleaved pairs, per head: (n_head*d, ...) rows."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_tensors(state: dict, config: dict, arch: str) -> dict[str, np.ndarray]:
    """Hugging Face state dict (name -> tensor) -> GGUF name -> numpy array, in llama.cpp's layouts.
    Matrices in f16 (the quantizer's input), vectors (norms, biases) in f32 as llama.cpp wants them."""
    import gguf

    if arch not in SUPPORTED:
        raise ExportError(f"exporting the {arch} architecture to GGUF is not supported",
                          f"supported: {', '.join(sorted(SUPPORTED))}")
    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, int(config["num_hidden_layers"]))
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    tied = bool(config.get("tie_word_embeddings", True))
    out = {}
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue   # the same matrix as the embedding
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"no GGUF name for the tensor {hf_name} of a {arch} model",
                              "the model has layers llama.cpp's architecture does not know")
        data = tensor.detach().float().cpu().numpy()
        if arch in PERMUTED_QK and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute_rotary(data, n_head)
        elif arch in PERMUTED_QK and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute_rotary(data, n_kv)
        if arch in NORM_PLUS_ONE and hf_name.endswith("norm.weight"):
            data = data + 1.0
        out[name] = data.astype(np.float16 if data.ndim > 1 else np.float32)
    return out


def check_against_source(tensors: dict[str, np.ndarray], reader) -> None:
    """Every tensor of the base GGUF is written, with the same shape: a trained model that no longer fits
    its base's vocabulary or metadata is refused here rather than producing a file that serves nonsense."""
    for source in reader.tensors:
        if source.name not in tensors:
            raise ExportError(f"the trained model has no tensor for {source.name} of its base GGUF",
                              "the model's architecture differs from the GGUF it was trained from")
        shape = tuple(int(d) for d in reversed(source.shape))   # GGUF lists dimensions innermost first
        if tensors[source.name].shape != shape:
            raise ExportError(f"{source.name} is {tensors[source.name].shape} in the trained model but "
                              f"{shape} in the base GGUF", "the vocabulary or shape changed in training")
    extra = set(tensors) - {t.name for t in reader.tensors}
    if extra:
        raise ExportError(f"the trained model has tensors its base GGUF lacks: {sorted(extra)[:3]}",
                          "the model's architecture differs from the GGUF it was trained from")


def write_f16_gguf(state: dict, config: dict, source: Path, target: Path) -> int:
    """The unquantized GGUF: the source's metadata and tokenizer, the trained tensors. Returns the
    source's file type (llama_ftype), which "q4" follows."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    tensors = gguf_tensors(state, config, arch)
    for source_tensor in reader.tensors:
        if source_tensor.name in COPIED_FROM_SOURCE and source_tensor.name not in tensors:
            tensors[source_tensor.name] = np.array(source_tensor.data, dtype=np.float32)
    check_against_source(tensors, reader)
    writer = gguf.GGUFWriter(str(target), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in SKIPPED_KEYS:
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for source_tensor in reader.tensors:   # the source's order: llama.cpp reads by name, people by order
        writer.add_tensor(source_tensor.name, tensors[source_tensor.name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    file_type = reader.fields.get("general.file_type")
    return int(file_type.contents()) if file_type is not None else 0


def quantize(source: Path, target: Path, ftype: int, threads: int, allow_requantize: bool = False) -> Path:
    """llama.cpp's own quantizer, as `llama-quantize` runs it (token embedding and output included).
    `allow_requantize`: the source is quantized already (models/batched_form.py's Q8_0 copies)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = allow_requantize
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantize {source.name} (type {ftype})", "see the log for its message")
    return target


def export_gguf(model, source: Path, target: Path, quant: str = DEFAULT_QUANT, threads: int | None = None,
                progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> Path:
    """A loaded (merged) transformers causal LM -> `target`, a GGUF in `quant`. Written beside the target
    and renamed into place, so a cancelled or failed export leaves no file llama.cpp could half-read. Its
    temporary files live in a folder of its own (_workspace): two exports at once never touch each other's."""
    progress = progress or (lambda fraction, message: None)
    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF form {quant!r}", f"use one of: {', '.join(QUANTS)}")
    with _workspace(target) as work:
        f16, partial = work / "f16.gguf", work / "partial.gguf"
        progress(0.1, f"writing the merged weights as GGUF (f16, {source.name}'s tokenizer and metadata)")
        source_type = write_f16_gguf(model.state_dict(), model.config.to_dict(), source, f16)
        _check_cancel(cancelled)
        if quant == "f16":
            f16.rename(partial)
        else:
            ftype = source_type if quant == "q4" and source_type in FOUR_BIT else QUANTS[quant]
            progress(0.6, f"quantizing to {quant.upper()} (llama_ftype {ftype}) with llama.cpp")
            quantize(f16, partial, ftype, threads or os.cpu_count() or 1)
        _check_cancel(cancelled)
        partial.rename(target)
    progress(1.0, f"{target.name} written ({target.stat().st_size / 1e6:.0f} MB)")
    return target


@contextmanager
def _workspace(target: Path) -> Iterator[Path]:
    """A folder of this export's own beside `target` (same file system: the last step is a rename), held
    under a lock for as long as the export runs and removed after it. Another export's folder is never
    touched while it runs: a folder is swept only when its lock is free (its export died) and it is old."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead_workspaces(target)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.export-"))
    try:
        with open(work / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sweep_dead_workspaces(target: Path, min_age_s: float = 60.0) -> None:
    for folder in target.parent.glob(f".{target.name}.export-*"):
        try:
            if time.time() - folder.stat().st_mtime < min_age_s:
                continue   # just made: its export may not hold its lock yet
            with open(folder / ".lock", "r") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # free: whoever made it is gone
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:   # held (BlockingIOError), or gone already
            continue


def _check_cancel(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        raise LoadCancelled("the export was cancelled")
