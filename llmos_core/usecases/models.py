"""The catalog as the Models page and `models list` show it, and pulling a model (download a hub id,
convert a GGUF or embedded model, check a local folder) into it: both call `pull_and_register`.

Pulling is idempotent: pulling a model that is already in the catalog under that name, from the same
place, makes sure its files are on disk and changes nothing else. The same name for another model is
refused, with the name it is taken by.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import access
from ..access import LOCAL, WEB
from ..accounts import User
from ..errors import InvalidInput, ModelNotFound
from ..models import fetch

@dataclass
class CatalogEntry:
    name: str
    source: str             # embedded, hub, local or gguf
    task: str
    chat: bool              # has a chat template
    ready: bool             # its files are on disk
    location: str
    description: str


def list_catalog(engine, actor: User) -> list[CatalogEntry]:
    """The models `actor` may use (catalog.visible): shared ones and their own."""
    return [CatalogEntry(s.name, s.source, s.task, s.chat, fetch.is_ready(s, engine.settings), s.location,
                         s.description) for s in engine.catalog.visible(actor)]


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
    folder = fetch.model_folder(spec, engine.settings, progress)     # before registering: no entry without files
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
