"""Peak RSS of a GGUF export (the `export` job's work) of an embedded model's weights taken as a fine-tune,
against the memory the job declares to admission (training/export_job.estimate). Run in two processes so the
conversion of the embedded GGUF does not count:
    F=$(python bench/export_memory.py gemma-3-270m convert | tail -1); python bench/export_memory.py gemma-3-270m $F
"""
import os, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.models.catalog import Catalog, ModelSpec
from llmos_core.models import fetch
name, step = sys.argv[1], sys.argv[2]
shared = Settings(home=Path(os.path.expanduser("~/.cache/llmos-test-embedded")), threads=2)
if step == "convert":
    store = Store(Path(tempfile.mkdtemp()) / "x.db")
    print(fetch.model_folder(Catalog(store).get(name), shared)); sys.exit()
from llmos_core.training.export import export_model
from llmos_core.training import export_job
tmp = Path(tempfile.mkdtemp()); settings = Settings(home=tmp, threads=2)
store = Store(settings.db_path); catalog = Catalog(store)
folder = Path(step)
w = tmp / "ft"; w.mkdir()
for item in folder.iterdir(): (w / item.name).symlink_to(item)
catalog.register(ModelSpec(name="ft", source="trained", location=str(w), data={"base_model": name}))
est = export_job.estimate({"model": "ft", "quant": "q8_0"}, settings)["memory_bytes"]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
done = export_model("ft", catalog, shared, "q8_0")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"{name}: estimate {est/1e6:.0f} MB, peak RSS {peak/1e6:.0f} MB (before export {base/1e6:.0f} MB), "
      f"estimate/peak {est/peak:.2f}, {done['seconds']:.0f} s")
