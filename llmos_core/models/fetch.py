"""Getting a model's files ready for transformers: assemble and convert GGUF once, download hub ids.

Everything ends in a folder that `from_pretrained` loads in seconds. Work happens in a temporary
folder that is renamed into place when complete, under a file lock, so two processes asking for
the same model convert it once and a cancelled or crashed conversion leaves nothing half-written.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import mmap
import os
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .. import paths
from ..errors import InvalidInput, LoadCancelled, ModelLoadError, ModelNotFound, OfflineError
from ..settings import Settings
from .catalog import ModelSpec, embedded_gguf_path

Progress = Callable[[float, str], None]   # (fraction 0..1, what is happening)


def _no_progress(fraction: float, message: str) -> None:
    pass


def model_folder(spec: ModelSpec, settings: Settings, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Path:
    """The local folder in Hugging Face format for `spec`, creating it if needed."""
    progress = progress or _no_progress
    if spec.source in ("embedded", "gguf"):
        gguf = gguf_path(spec, settings, progress)
        return convert_gguf(gguf, converted_folder(spec, settings), progress, cancel)
    if spec.source == "hub":
        return download(spec.location, settings, progress, cancel)
    folder = Path(spec.location)
    if not folder.is_dir():
        raise ModelNotFound(f"the folder of {spec.name} is gone: {folder}", "register the model again")
    return folder


def gguf_path(spec: ModelSpec, settings: Settings, progress: Progress | None = None) -> Path:
    if spec.source == "embedded":
        (progress or _no_progress)(0.02, "assembling the embedded GGUF")
        return embedded_gguf_path(spec, settings.cache_dir)
    if spec.source == "gguf":
        return Path(spec.location)
    if spec.data.get("gguf"):   # exported from a fine-tune (export_gguf.py)
        path = Path(spec.data["gguf"])
        if not path.is_file():
            raise ModelNotFound(f"the GGUF exported from {spec.name} is gone: {path}",
                                f"export it again: python -m llmos_core models export {spec.name}")
        return path
    raise ModelNotFound(f"{spec.name} has no GGUF file")


def converted_folder(spec: ModelSpec, settings: Settings) -> Path:
    """models/<name> (embedded) or models/<name>-<hash of the file>; a name that leads out of models/ is refused
    here, before anything is written, deleted or renamed there. (New names pass paths.check_name when they are
    given; this also covers specs built by hand and names registered before that check.)"""
    name = spec.name
    if spec.source != "embedded":
        name += "-" + hashlib.sha1(str(Path(spec.location).resolve()).encode()).hexdigest()[:8]
    # Spelling only: the name may not climb out, but a converted folder the user linked in stays usable.
    return paths.inside(settings.models_dir, settings.models_dir / name, "the converted model's folder",
                        follow_links=False)


def is_ready(spec: ModelSpec, settings: Settings) -> bool:
    """True when loading needs no conversion or download."""
    if spec.source in ("embedded", "gguf"):
        return (converted_folder(spec, settings) / COMPLETE_MARK).exists()
    if spec.source == "hub":
        return (_hub_folder(spec.location, settings) / COMPLETE_MARK).exists()
    return Path(spec.location).is_dir()


COMPLETE_MARK = ".llmos-complete"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_gguf_summary(path: Path) -> dict:
    """Architecture and parameter count from a GGUF header; a corrupt or truncated file raises ModelLoadError."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            arch, n_params, shape = _read_gguf_header(buffer)
    except FileNotFoundError as exc:
        raise ModelNotFound(f"no GGUF file at {path}") from exc
    except Exception as exc:   # struct.error, ValueError, KeyError on cut, empty or foreign files
        raise ModelLoadError(f"{path.name} is not a readable GGUF file ({type(exc).__name__}: {exc})",
                             "the file may be truncated or corrupt; download it again") from exc
    if n_params == 0:
        raise ModelLoadError(f"{path.name} holds no tensors", "the file is truncated or corrupt")
    return {"architecture": arch, "parameters": n_params, "file_bytes": path.stat().st_size, "shape": shape}


# struct formats of GGUF's fixed-size value types (gguf.GGUFValueType); 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


# Metadata keys (after "<architecture>.") that give a model's shape, for the training estimate before conversion.
GGUF_SHAPE_KEYS = {"embedding_length": "hidden", "block_count": "layers", "attention.head_count": "heads",
                   "feed_forward_length": "intermediate"}


def _read_gguf_header(buffer) -> tuple[str, int, dict]:
    """(architecture, parameters, shape) from the GGUF header in `buffer`, skipping the metadata it does not
    need; shape holds hidden, layers, heads, intermediate and vocab where the header says them.
    By hand: gguf's GGUFReader turns every metadata array into numpy views, and Gemma's 262k-token
    vocabulary made one call take about 10 s here (the Train page's check waited on two); this takes 0.02 s."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if buffer[:4] != b"GGUF":
        raise ValueError("no GGUF magic number")
    order = "<" if struct.unpack_from("<I", buffer, 4)[0] < 0x10000 else ">"   # big-endian files exist
    u64 = struct.Struct(order + "Q")
    version, n_tensors, n_kv = struct.unpack_from(order + "IQQ", buffer, 4)
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old")
    pos = 24

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from(order + fmt, buffer, pos)
        pos += struct.calcsize(order + fmt)
        return values

    def skip_strings(count: int) -> None:
        nonlocal pos
        for _ in range(count):
            pos += 8 + u64.unpack_from(buffer, pos)[0]
        if pos > len(buffer):
            raise ValueError("cut inside a string")

    def skip_value(kind: int) -> None:
        nonlocal pos
        if kind == 8:
            skip_strings(1)
        elif kind == 9:
            item, count = take("IQ")
            if item == 8:
                skip_strings(count)
            elif item in _GGUF_SCALARS:
                pos += count * struct.calcsize(_GGUF_SCALARS[item])
            else:
                for _ in range(count):
                    skip_value(item)
        else:
            pos += struct.calcsize(_GGUF_SCALARS[kind])

    arch, alignment, shape = "unknown", 32, {}
    for _ in range(n_kv):
        start = pos
        skip_strings(1)
        key = bytes(buffer[start + 8:pos])
        (kind,) = take("I")
        field = GGUF_SHAPE_KEYS.get(key.split(b".", 1)[-1].decode(errors="replace"))
        if field and kind in (4, 5, 10, 11):   # u32, i32, u64, i64
            (shape[field],) = take(_GGUF_SCALARS[kind])
        elif key == b"tokenizer.ggml.tokens" and kind == 9:
            _, shape["vocab"] = take("IQ")   # the item type, then the count
            pos -= 12
            skip_value(kind)
        elif key == b"general.architecture" and kind == 8:
            start = pos
            skip_value(kind)
            arch = bytes(buffer[start + 8:pos]).decode()
        elif key == b"general.alignment" and kind == 4:
            (alignment,) = take("I")
        else:
            skip_value(kind)
    n_params = data_bytes = 0
    for _ in range(n_tensors):
        skip_strings(1)   # the tensor's name
        (n_dims,) = take("I")
        dims = take(f"{n_dims}Q")
        kind, offset = take("IQ")
        block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        n_params += math.prod(dims)
        data_bytes = max(data_bytes, offset + math.prod(dims) // block * type_bytes)
    if -(-pos // alignment) * alignment + data_bytes > len(buffer):
        raise ValueError("the tensor data is cut short")
    return arch, n_params, shape


def convert_gguf(gguf: Path, target: Path, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> Path:
    """GGUF -> fp32 safetensors folder, once. Later loads take seconds instead of de-quantizing again."""
    progress = progress or _no_progress
    if (target / COMPLETE_MARK).exists():
        return target
    with file_lock(target.parent / f".{target.name}.lock"):
        if (target / COMPLETE_MARK).exists():   # another process finished it while we waited
            return target
        summary = read_gguf_summary(gguf)
        _check_cancel(cancel)
        progress(0.1, f"de-quantizing {gguf.name} ({summary['parameters'] / 1e6:.0f}M parameters); "
                      "this happens once and takes about a minute")
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        paths.remove_tree(tmp, target.parent)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                _check_cancel(cancel)
                progress(0.35, "reading the weights")
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            except LoadCancelled:
                raise
            except Exception as exc:
                raise ModelLoadError(f"transformers could not read {gguf.name}: {exc}",
                                     "this GGUF architecture may not be supported by transformers") from exc
            _check_cancel(cancel)
            progress(0.8, "writing safetensors")
            # save_pretrained refuses a GGUF-loaded model while it still carries the quantizer.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            (tmp / "llmos-source.json").write_text(json.dumps({"gguf": str(gguf), **summary, "converted": time.time()}))
            del model
            _check_cancel(cancel)
            (tmp / COMPLETE_MARK).write_text("ok\n")
            paths.remove_tree(target, target.parent)
            paths.move(tmp, target, target.parent)
        finally:
            paths.remove_tree(tmp, target.parent)
    progress(1.0, "converted")
    return target


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise LoadCancelled("the load was cancelled")


# ---- Hugging Face hub ----

def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hub_folder(repo_id: str, settings: Settings) -> Path:
    hub = settings.models_dir / "hub"
    return paths.inside(hub, hub / repo_id.replace("/", "--"), "the download folder")


def download(repo_id: str, settings: Settings, progress: Progress | None = None,
             cancel: threading.Event | None = None) -> Path:
    """Download a hub repository into the data folder, resumably, with byte progress.

    Safetensors are preferred: `.bin` weights are fetched only when a repository has no safetensors.
    Offline (settings or no route to the hub) fails at once with OfflineError.
    """
    progress = progress or _no_progress
    target = _hub_folder(repo_id, settings)
    if (target / COMPLETE_MARK).exists():
        return target
    if settings.offline:
        raise OfflineError(f"cannot download {repo_id}: offline mode is on (LLMOS_OFFLINE / HF_HUB_OFFLINE)")
    try:
        import huggingface_hub
        from huggingface_hub import HfApi
        from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as exc:
        raise ModelLoadError("huggingface_hub is not installed", "pip install -r requirements.txt") from exc

    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint)
    progress(0.0, f"asking {endpoint} about {repo_id}")
    try:
        info = api.model_info(repo_id, files_metadata=True, timeout=10)
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFound(f"{repo_id} does not exist on the hub (or is private)",
                            "check the spelling: owner/name, as on the model's page") from exc
    except GatedRepoError as exc:
        raise ModelNotFound(f"{repo_id} is gated: accept its licence on the hub and log in",
                            "run `huggingface-cli login` first") from exc
    except Exception as exc:   # connection refused, DNS failure, timeout: all mean "no hub from here"
        raise OfflineError(f"cannot reach the hub for {repo_id}: {type(exc).__name__}") from exc

    files = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    wanted = _choose_files(files)
    if not any(name.endswith((".safetensors", ".bin")) for name in wanted):
        raise ModelNotFound(f"{repo_id} has no model weights (safetensors or bin)")
    total = sum(files[name] for name in wanted) or 1
    staging = target.parent / f".{target.name}.partial"   # kept across attempts: downloads resume
    staging.mkdir(parents=True, exist_ok=True)
    done = 0
    with file_lock(target.parent / f".{target.name}.lock"):
        for name in wanted:
            _check_cancel(cancel)
            watcher = _ByteWatcher(staging, done, total, name, progress)
            watcher.start()
            try:
                huggingface_hub.hf_hub_download(repo_id, name, local_dir=str(staging), endpoint=endpoint,
                                                etag_timeout=10)
            except Exception as exc:
                raise OfflineError(f"the download of {repo_id}/{name} failed: {type(exc).__name__}: {exc}",
                                   "check the connection and pull again; finished files are kept") from exc
            finally:
                watcher.stop()
            done += files[name]
            progress(min(done / total, 1.0), f"downloaded {name}")
        (staging / COMPLETE_MARK).write_text("ok\n")
        paths.remove_tree(target, target.parent)
        paths.move(staging, target, target.parent)
    return target


def _choose_files(files: dict[str, int]) -> list[str]:
    names = [n for n in files if "/" not in n or n.startswith(("tokenizer", "spm"))]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    keep = []
    for name in names:
        if name.endswith((".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx", ".gguf", ".ot")):
            if name.endswith(".bin") and not has_safetensors and not name.startswith("training_args"):
                keep.append(name)
            continue
        if name.endswith((".safetensors", ".json", ".model", ".txt", ".py", ".tiktoken")) or "tokenizer" in name:
            keep.append(name)
    return sorted(keep)


class _ByteWatcher(threading.Thread):
    """Reports download bytes by watching the file grow; hub downloads give no callback per chunk."""

    def __init__(self, folder: Path, done: int, total: int, name: str, progress: Progress):
        super().__init__(daemon=True)
        self.folder, self.done, self.total, self.name, self.progress = folder, done, total, name, progress
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.5):
            current = sum(p.stat().st_size for p in self.folder.rglob("*.incomplete") if p.is_file())
            self.progress(min((self.done + current) / self.total, 0.999), f"downloading {self.name}")

    def stop(self) -> None:
        self._stop.set()


def check_folder(folder: Path) -> None:
    if not (folder / "config.json").exists():
        raise InvalidInput(f"{folder} is not a model folder (no config.json)")
