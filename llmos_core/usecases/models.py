"""The catalog as the Models page and `models list` show it, and pulling a model (download a hub id,
convert a GGUF or embedded model, check a local folder) into it: both call `pull_and_register`.

Pulling is idempotent: pulling a model that is already in the catalog under that name, from the same
place, makes sure its files are on disk and changes nothing else. The same name for another model is
refused, with the name it is taken by.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import access
from ..access import LOCAL, WEB
from ..accounts import NotAllowed, User
from ..errors import InvalidInput, LLMOSError, ModelNotFound, OfflineError
from ..models import browser, fetch

@dataclass
class CatalogEntry:
    name: str
    source: str             # embedded, hub, local or gguf
    task: str
    chat: bool              # has a chat template
    ready: bool             # its files are on disk
    location: str
    description: str
    sharing: str = "built in"   # built in (embedded, packaged), published (an admin shared it), yours, NAME's


def list_catalog(engine, actor: User) -> list[CatalogEntry]:
    """The models `actor` may use (catalog.visible): shared ones and their own, each marked which it is."""
    names = engine.accounts.names() if actor.is_admin else {}
    return [CatalogEntry(s.name, s.source, s.task, s.chat, fetch.is_ready(s, engine.settings), s.location,
                         s.description, _sharing(s, actor, names)) for s in engine.catalog.visible(actor)]


def _sharing(spec, actor: User, names: dict) -> str:
    if "owner" not in spec.data:
        return "built in"
    if spec.data.get("shared"):
        return "published"
    owner = spec.data["owner"]
    return "yours" if owner == actor.id else f"{names.get(owner, owner)}'s"


def publish_model(engine, actor: User, name: str, shared: bool = True) -> None:
    """An admin shares a registered model with every user (shared=False takes it back: others' chats with it
    then end at their next message, as for a deleted model)."""
    if not actor.is_admin:
        raise NotAllowed("only an admin publishes a model to every user")
    engine.catalog.publish(name, shared)
    engine.store.add_event("publish" if shared else "unpublish", name,
                           f"{name} {'published to every user' if shared else 'no longer published'} by {actor.name}")


def model_names(engine, actor: User, task: str | None = None) -> list[str]:
    return [s.name for s in engine.catalog.visible(actor) if task is None or s.task == task]


@dataclass
class PulledModel:
    name: str
    folder: Path
    source: str
    registered: bool        # False: it was in the catalog already

    def to_dict(self) -> dict:
        return {"name": self.name, "folder": str(self.folder), "source": self.source, "registered": self.registered}


def pull_and_register(engine, actor: User, ref: str, *, name: str = "", task: str | None = None,
                      trust_remote_code: bool = False, progress=None, origin: str = LOCAL) -> PulledModel:
    """`ref`: a catalog name, a Hugging Face id (owner/name), a local folder or a .gguf file. `name`, if given,
    becomes a folder name: paths.check_name refuses anything else. From the web (`origin`), local folders
    and files only inside the data folder, and trust_remote_code only with LLMOS_ADMIN=1 (access.py)."""
    catalog = engine.catalog
    if origin == WEB:
        access.check_model_ref(ref, engine.settings)   # before resolve() reads anything there
    spec = catalog.resolve(ref, task=task, trust_remote_code=trust_remote_code, name=name)
    if origin == WEB:
        access.check_model_spec(spec, engine.settings)
    catalog.check_visible(actor, spec.name)          # someone else's model of that name reads as missing
    existing = _registered(catalog, spec.name)
    if existing is not None and (existing.source, existing.location) != (spec.source, spec.location):
        raise InvalidInput(f"a model named {spec.name!r} is already in the catalog ({existing.description})",
                           "choose another name for this one")
    downloads = spec.source == "hub" and not fetch.is_ready(spec, engine.settings)
    started = time.monotonic()
    folder = fetch.model_folder(spec, engine.settings, progress)     # before registering: no entry without files
    if downloads:   # the rate the browser's next download times are predicted at
        browser.calibration.record_download(engine.settings, sum(p.stat().st_size for p in Path(folder).rglob("*")
                                                                 if p.is_file()), time.monotonic() - started)
    registered = existing is None and not spec.is_embedded
    if registered:
        catalog.register(spec, owner=actor.id)
    return PulledModel(spec.name, Path(folder), spec.source, registered)


def _registered(catalog, name: str):
    try:
        return catalog.get(name)
    except ModelNotFound:
        return None


def submit_export(engine, actor: User, name: str, quant: str, origin: str = LOCAL) -> int:
    """Queue the GGUF export of a fine-tuned model as a job (admitted by memory like the others)."""
    return engine.scheduler.for_user(actor).submit("export", {"model": name, "quant": quant}, origin=origin)


def export_in_progress(engine, actor: User, name: str) -> dict | None:
    """The queued or running export job of this model, if there is one (the page shows it, not a second button)."""
    for job in engine.scheduler.for_user(actor).list(states=("queued", "running"), kind="export"):
        if job["params"].get("model") == name:
            return job
    return None


# ---- the model browser: predictions before a download, search of the hub ----

def estimate_model(engine, ref: str, context: int = 4096, quant: str = "") -> browser.Estimate:
    """What a catalog model or a hub id would take and how fast it would answer here, in each form."""
    return browser.estimate(ref, engine.settings, engine.catalog, engine.store, context=context, quant=quant)


@dataclass
class SearchResult:
    models: list[dict]            # hub models, each with its forms' predictions and badge
    offline: str = ""             # why the hub was not searched ("" when it was)
    local: list[dict] = field(default_factory=list)   # the catalog (on disk and embedded) when offline


def search_models(engine, actor: User, query: str, task: str = "", context: int = 4096,
                  limit: int = 10) -> SearchResult:
    """The hub's models for a query, each with its predictions here; offline, one line and the catalog."""
    try:
        found = browser.hub.search(query, engine.settings, task=task, limit=limit)
    except OfflineError as exc:
        local = [{"name": e.name, "source": e.source, "task": e.task, "ready": e.ready, "description": e.description}
                 for e in list_catalog(engine, actor)]
        return SearchResult([], f"{exc.args[0]}: showing the models on disk and embedded", local)
    calibration = browser.learned_calibration(engine.settings, engine.store, engine.catalog)
    budget, rate = browser.memory_budget(engine.settings), browser.calibration.download_rate(engine.settings)
    gpu = browser.this_gpu(engine.settings)
    models = []
    for model in found:
        row = model.to_dict()
        row["predictions"], row["recommended"] = [], None
        if model.shape is not None and model.forms():
            try:
                est = browser.estimate_forms(model.repo_id, model.shape, model.forms(), calibration, context=context,
                                             budget_bytes=budget, gpu=gpu, download_rate=rate, source="hub",
                                             prefix_cache_mb=browser.prefix_cache_mb(engine.settings))
            except LLMOSError:
                est = None
            if est is not None:
                row["predictions"] = [p.to_dict() for p in est.predictions]
                row["recommended"] = est.recommended.to_dict() if est.recommended else None
        models.append(row)
    return SearchResult(models)


def _prefix_room(row: dict) -> int:
    """Bytes of KV cells llama.cpp allocated for the prefix cache beyond the context the prediction is made at
    (LLMOS_PREFIX_CACHE_MB): left out of the measurement set beside the prediction."""
    cells, base = row.get("kv_cells") or 0, browser.load_context(row["backend"])
    if row["backend"] != "llamacpp" or cells <= base or not row.get("kv_bytes"):
        return 0
    return row["kv_bytes"] * (cells - base) // cells


def model_tiers(engine, machine_class: str = "", context: int = 4096) -> browser.Tier:
    """The well-known models this machine's class runs well (or another class's, on a reference GPU), from
    the browser's predictions on this machine's calibration. Offline: no hub call."""
    calibration = browser.learned_calibration(engine.settings, engine.store, engine.catalog)
    return browser.tiers(calibration, browser.memory_budget(engine.settings), browser.this_gpu(engine.settings),
                         context=context, wanted=machine_class,
                         prefix_cache_mb=browser.prefix_cache_mb(engine.settings))


def prediction_beside_measurement(engine, name: str) -> dict | None:
    """For a model's card after its first run: per runner, the prediction and what was measured here (the
    resident model's memory, the last replies' speeds). None when it has not run yet or cannot be estimated."""
    measured: dict[str, dict] = {}
    for row in engine.models.resident():
        if row["name"] == name:
            measured.setdefault(row["backend"], {})["memory_bytes"] = row["measured_bytes"] - _prefix_room(row)
    for reply in browser.calibration.measured_replies(engine.store):
        if reply["model"] == name and reply["backend"] in ("llamacpp", "transformers"):
            entry = measured.setdefault(reply["backend"], {})
            entry.setdefault("decode_tokens_per_s", reply.get("tokens_per_s"))
            entry.setdefault("ttft_s", reply.get("ttft_s"))
            entry.setdefault("prompt_tokens", reply.get("prompt_tokens"))
    rows = {}
    for runner in measured:   # predicted at the context the runner allocates at load, as the manager measured it
        try:
            est = estimate_model(engine, name, context=browser.load_context(runner))
        except LLMOSError:
            return None
        for prediction in est.predictions:
            if prediction.runner == runner:
                rows[runner] = {"predicted": prediction.to_dict(), "measured": measured[runner]}
    return rows or None


def recalibrate(engine) -> dict:
    """Measure this machine's bandwidth, matmul and llama.cpp's probe again (the page's button); a few seconds."""
    cal = browser.learned_calibration(engine.settings, engine.store, engine.catalog, refresh=True)
    return {"bandwidth_bytes_per_s": cal.bandwidth, "flops_per_s": cal.flops, "learned_from_replies": cal.samples,
            "llamacpp_layer_s": cal.layer_s}
