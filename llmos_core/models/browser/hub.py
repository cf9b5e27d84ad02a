"""The Hugging Face hub, read for the browser: search (HfApi.list_models), then per result its files with
sizes, parameter count (the safetensors or GGUF metadata the hub computes), licence, gated or not, and its
config.json (a few KB: the shape the KV cache needs). Every call has a timeout; a hub that does not answer
raises OfflineError, which the callers turn into one line and the local catalog.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import InvalidInput, ModelNotFound, OfflineError
from .. import fetch
from ..catalog import HUB_ID
from .shape import LLAMACPP, TRANSFORMERS, DTYPE_BYTES, Form, Shape, quant_of_filename, shape_from_config

TIMEOUT_S = 10
MAX_RESULTS = 20
MAX_QUERY = 200


@dataclass
class HubModel:
    repo_id: str
    parameters: int = 0
    architecture: str = "unknown"
    license: str = ""
    gated: bool = False
    downloads: int = 0
    likes: int = 0
    task: str = ""
    files: list[dict] = field(default_factory=list)     # {"name", "bytes", "kind": safetensors|gguf, "quant"}
    runners: dict = field(default_factory=dict)         # runner -> "" (it can) or why not
    shape: Shape | None = None

    def forms(self) -> list[Form]:
        forms = [Form(LLAMACPP, f["quant"], f["bytes"], f["bytes"], f["name"]) for f in self.files
                 if f["kind"] == "gguf" and not self.runners.get(LLAMACPP)]
        weights = sum(f["bytes"] for f in self.files if f["kind"] == "safetensors")
        if weights and self.parameters and not self.runners.get(TRANSFORMERS):
            forms.append(Form(TRANSFORMERS, "fp32", self.parameters * DTYPE_BYTES["fp32"], weights))
        return forms

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shape"] = self.shape.to_dict() if self.shape else None
        return data


def _api():
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        raise OfflineError("huggingface_hub is not installed", "pip install -r requirements.txt") from exc
    return HfApi(endpoint=fetch.hub_endpoint())


def _offline(settings, what: str) -> None:
    if settings.offline:
        raise OfflineError(f"cannot {what}: offline mode is on (LLMOS_OFFLINE / HF_HUB_OFFLINE)")


def search(query: str, settings, task: str = "", limit: int = 10) -> list[HubModel]:
    query = (query or "").strip()
    if not query or len(query) > MAX_QUERY:
        raise InvalidInput("give a search of 1 to 200 characters", "for example: qwen 0.5b")
    _offline(settings, "search the hub")
    api = _api()
    try:   # list_models takes no timeout (its client waits forever): bounded here
        found = _bounded(lambda: list(api.list_models(search=query, pipeline_tag=task or None, sort="downloads",
                                                      limit=max(1, min(limit, MAX_RESULTS)))))
    except Exception as exc:   # refused, DNS, timeout: no hub from here
        raise OfflineError(f"the hub did not answer the search ({type(exc).__name__})") from exc
    models = []
    for model in found:
        try:
            models.append(info(model.id, settings, api=api))
        except ModelNotFound:   # gone or private between the search and the question
            continue
    return models


def _bounded(call, timeout: float | None = None):
    """call() in a daemon thread, waited on at most TIMEOUT_S: a hub that accepts and never answers must not
    hold a page or the CLI (the thread ends with its connection; it holds nothing else)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:   # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="hub-call", daemon=True)
    thread.start()
    thread.join(TIMEOUT_S if timeout is None else timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer in {TIMEOUT_S if timeout is None else timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def info(repo_id: str, settings, api=None) -> HubModel:
    """One repository's facts, from model_info and its config.json; nothing else is downloaded."""
    if not HUB_ID.match(repo_id or ""):
        raise InvalidInput(f"{repo_id!r} is not a hub id", "write it as owner/name")
    _offline(settings, f"ask the hub about {repo_id}")
    api = api or _api()
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        meta = _bounded(lambda: api.model_info(repo_id, files_metadata=True, timeout=TIMEOUT_S))
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(f"{repo_id} does not exist on the hub (or is private)", "check the spelling") from exc
    except GatedRepoError as exc:
        raise ModelNotFound(f"{repo_id} is gated: accept its licence on the hub and log in") from exc
    except Exception as exc:
        raise OfflineError(f"the hub did not answer about {repo_id} ({type(exc).__name__})") from exc
    files = []
    for sibling in meta.siblings or []:
        name = sibling.rfilename
        if name.endswith(".safetensors"):
            files.append({"name": name, "bytes": int(sibling.size or 0), "kind": "safetensors", "quant": ""})
        elif name.endswith(".gguf"):
            files.append({"name": name, "bytes": int(sibling.size or 0), "kind": "gguf",
                          "quant": quant_of_filename(name)})
    card = meta.card_data.to_dict() if getattr(meta, "card_data", None) else {}
    licence = card.get("license") or next((t.split(":", 1)[1] for t in meta.tags or [] if t.startswith("license:")), "")
    gguf = getattr(meta, "gguf", None) or {}
    safetensors = getattr(meta, "safetensors", None)
    parameters = int(getattr(safetensors, "total", 0) or gguf.get("total") or 0)
    config = _config(api, repo_id, meta, settings)
    architecture = str(config.get("model_type") or gguf.get("architecture") or
                       ((meta.config or {}).get("model_type") if isinstance(meta.config, dict) else "") or "unknown")
    model = HubModel(repo_id, parameters, architecture, str(licence), bool(meta.gated), int(meta.downloads or 0),
                     int(meta.likes or 0), meta.pipeline_tag or "", files)
    if parameters:   # without a readable config (gated, GGUF only): the weights alone, no KV cache figure
        model.shape = shape_from_config(config, parameters) if config else Shape(architecture, parameters)
    model.runners = runner_support(model)
    return model


def _config(api, repo_id: str, meta, settings) -> dict:
    """config.json when the repository has one (GGUF-only repositories do not), bounded to 1 MB."""
    if not any(s.rfilename == "config.json" for s in meta.siblings or []):
        return {}
    try:
        from huggingface_hub import hf_hub_download

        path = _bounded(lambda: hf_hub_download(repo_id, "config.json", endpoint=fetch.hub_endpoint(), etag_timeout=TIMEOUT_S,
                               cache_dir=str(settings.cache_dir / "hub-configs")))
        with open(path, "rb") as handle:
            data = json.loads(handle.read(1024**2))
        return data if isinstance(data, dict) else {}
    except Exception:   # a config that cannot be read leaves the shape unknown, not the search failed
        return {}


def runner_support(model: HubModel) -> dict[str, str]:
    """Per runner: "" when LLM OS can run this model there, else why not."""
    support = {}
    has_gguf = any(f["kind"] == "gguf" for f in model.files)
    if not has_gguf:
        support[LLAMACPP] = "no GGUF file in this repository"
    else:
        known = _llamacpp_architectures()
        arch = model.architecture
        support[LLAMACPP] = "" if known is None or arch in known or arch == "unknown" else \
            f"llama.cpp here does not know the architecture {arch!r}"
    if not any(f["kind"] == "safetensors" for f in model.files):
        support[TRANSFORMERS] = "no safetensors weights" + (" (transformers can convert a GGUF: pull it)"
                                                            if has_gguf else "")
    else:
        support[TRANSFORMERS] = "" if _transformers_knows(model.architecture) else \
            f"transformers here does not know the architecture {model.architecture!r}"
    return support


def _transformers_knows(model_type: str) -> bool:
    """transformers' own mapping when it is imported already; else its models/<type>/ folder (importing
    transformers for this took 40 s on the loaded 2-core machine here)."""
    if "transformers" in sys.modules:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        return model_type in CONFIG_MAPPING_NAMES
    found = importlib.util.find_spec("transformers")
    if found is None or not found.submodule_search_locations or not model_type:
        return False
    root = Path(list(found.submodule_search_locations)[0]) / "models"
    return (root / model_type.replace("-", "_")).is_dir()


def _llamacpp_architectures() -> set[str] | None:
    """The architectures the gguf package (shipped with llama.cpp's converter) names; None if unknown."""
    try:
        from gguf.constants import MODEL_ARCH_NAMES
    except ImportError:
        return None
    return set(MODEL_ARCH_NAMES.values())
