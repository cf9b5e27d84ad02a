"""doctor: what a user runs when something is wrong, and the first thing a bug report asks for.

Each check gives one line: `ok` with what it found, or `problem` with what to do. The checks read this
machine as it is (Python, the packages against the lock, torch's device, NVML, llama.cpp's build, memory,
disk, the data folder, the ports) and, unless asked not to, load each embedded model and time one short
reply. The CLI (`python -m llmos_core doctor`) and the Home page call `run_checks`.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

from .. import lockcheck
from ..present import format_bytes

if TYPE_CHECKING:
    from ..engine import Engine

OK, PROBLEM, INFO = "ok", "problem", "info"   # info: a fact that is not wrong (no GPU on a CPU machine)
# What the defaults need: the two embedded models resident with room to reply (about 0.7 GB on llama.cpp,
# 1.6 GB on transformers fp32), and disk for their one-time conversion to safetensors (about 1.3 GB).
NEEDED_MEMORY = 2 * 1024**3
NEEDED_DISK = 3 * 1024**3
APP_PORT = 8501


@dataclass
class Check:
    name: str
    status: str           # ok | problem | info
    detail: str           # what was found
    fix: str = ""         # what to do, for a problem
    figures: dict = field(default_factory=dict)

    def line(self) -> str:
        text = f"{self.status:<8} {self.name}: {self.detail}"
        return f"{text}\n         -> {self.fix}" if self.fix else text


def run_checks(engine: "Engine", *, generate: bool = True, ports: bool = True,
               lock_name: str = "requirements.txt") -> list[Check]:
    """Every check, in the order a person reads them. A check that fails unexpectedly is a problem
    naming its error, never an exception: doctor must answer on a broken install. The Home page leaves
    out the ports (the app holds one of them) and, until asked, the models."""
    steps: list[Callable[[], Check | list[Check]]] = [
        check_python, lambda: check_packages(lock_name), lambda: check_torch(engine), lambda: check_nvml(engine),
        lambda: check_llamacpp(engine), lambda: check_memory(engine), lambda: check_disk(engine),
        lambda: check_data_folder(engine)]
    if ports:
        steps.append(check_ports)
    if generate:
        steps.append(lambda: check_embedded_models(engine))
    checks: list[Check] = []
    for step in steps:
        try:
            result = step()
        except Exception as exc:  # noqa: BLE001 - the report must go on
            name = getattr(step, "__name__", "check").replace("check_", "")
            result = Check(name, PROBLEM, f"the check itself failed: {type(exc).__name__}: {exc}",
                           "report this with the rest of doctor's output")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def summary(checks: list[Check]) -> dict:
    problems = [c for c in checks if c.status == PROBLEM]
    return {"ok": not problems, "problems": len(problems), "checks": [asdict(c) for c in checks]}


# ---------------------------------------------------------------- the checks

def check_python() -> Check:
    version = sys.version.split()[0]
    if sys.version_info < (3, 10):
        return Check("python", PROBLEM, f"{version} at {sys.executable}", "LLM OS needs Python 3.10 or newer")
    return Check("python", OK, f"{version} at {sys.executable}")


def check_packages(lock_name: str = "requirements.txt") -> Check:
    lock = lockcheck.find_lock(lock_name)
    if lock is None:
        return Check("packages", INFO, "no lock file beside this checkout: installed some other way, not compared")
    result = lockcheck.compare(lockcheck.read_lock(lock), lockcheck.installed_versions())
    figures = {"lock": lock.name, "differ": result["differ"], "extra": len(result["extra"])}
    if result["differ"]:
        shown = "; ".join(f"{r['name']} {r['installed'] or 'missing'} (locked {r['locked']})"
                          for r in result["differ"][:8])
        more = f" and {len(result['differ']) - 8} more" if len(result["differ"]) > 8 else ""
        return Check("packages", PROBLEM, f"{len(result['differ'])} differ from {lock.name}: {shown}{more}",
                     f"pip install -r {lock.name} (in a fresh venv if pip reports conflicts)", figures)
    pins = len(lockcheck.read_lock(lock))
    return Check("packages", OK, f"all {pins} packages of {lock.name} at their locked versions", figures=figures)


def check_torch(engine: "Engine") -> Check:
    import torch
    device = engine.device
    figures = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "device": device.kind,
               "dtype": device.dtype}
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        figures.update(gpu=props.name, gpu_total_bytes=total, gpu_free_bytes=free)
        detail = (f"torch {torch.__version__}, CUDA {torch.version.cuda}: {props.name}, {format_bytes(free)} free "
                  f"of {format_bytes(total)}; LLM OS uses {device.kind} ({device.dtype})")
        if device.kind != "cuda":
            return Check("torch", PROBLEM, detail, "LLMOS_DEVICE keeps LLM OS off the GPU: unset it or set cuda",
                         figures)
        return Check("torch", OK, detail, figures=figures)
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    detail = f"torch {torch.__version__} ({build}); no CUDA device, LLM OS uses {device.kind} ({device.dtype})"
    if torch.version.cuda and _nvidia_device_present():
        return Check("torch", PROBLEM, detail, "an NVIDIA device is present but torch cannot use it: check the "
                     "driver (nvidia-smi) against the CUDA version of this torch build", figures)
    return Check("torch", INFO if device.kind == "cpu" else OK, detail, figures=figures)


def check_nvml(engine: "Engine") -> Check:
    from ..gpu import GpuReader
    reader = GpuReader()   # its own: the sampler's reader belongs to the sampler's thread
    try:
        gpus = reader.read()
        why = reader.reason or "no NVIDIA driver or device"
    finally:
        reader.close()
    if not gpus:
        import torch
        if torch.cuda.is_available():
            return Check("nvml", PROBLEM, f"torch sees CUDA but NVML cannot be read ({why})",
                         "the Monitor's GPU charts need NVML: install the driver's libnvidia-ml "
                         "(nvidia-ml-py is in the lock)")
        return Check("nvml", INFO, f"no GPU to read ({why}); the Monitor says so")
    parts = [f"{g.get('name')} {format_bytes(g.get('memory_used') or 0)}/{format_bytes(g.get('memory_total') or 0)}"
             for g in gpus]
    return Check("nvml", OK, f"{len(gpus)} GPU(s): " + ", ".join(parts), figures={"gpus": len(gpus)})


def check_llamacpp(engine: "Engine") -> Check:
    if not engine.llamacpp_available:
        return Check("llama.cpp", PROBLEM, f"not available: {engine.llamacpp_reason}",
                     "pip install -r requirements.txt builds llama-cpp-python (about 10 minutes)")
    import llama_cpp
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    info = llama_cpp.llama_print_system_info()
    info = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    kind = "CUDA" if "CUDA" in info else "Metal" if "METAL" in info.upper() else "CPU"
    figures = {"version": llama_cpp.__version__, "gpu_offload": offload, "build": kind}
    detail = f"llama-cpp-python {llama_cpp.__version__}, {kind} build, GPU offload {'yes' if offload else 'no'}"
    if engine.device.kind == "cuda" and not offload:
        return Check("llama.cpp", PROBLEM, detail + "; GGUF models run on the CPU while the GPU idles",
                     "rebuild it for CUDA: README, 'llama.cpp on a GPU'", figures)
    return Check("llama.cpp", OK, detail, figures=figures)


def check_memory(engine: "Engine") -> Check:
    import psutil
    available = psutil.virtual_memory().available
    budget = engine.models.budget
    figures = {"available_bytes": available, "budget_bytes": budget, "needed_bytes": NEEDED_MEMORY}
    detail = f"{format_bytes(available)} available" + (f", model budget {format_bytes(budget)}" if budget else "")
    if available < NEEDED_MEMORY:
        return Check("memory", PROBLEM, detail + f"; the embedded models need about {format_bytes(NEEDED_MEMORY)}",
                     "close other programs, or lower LLMOS_MEMORY_BUDGET and use llama.cpp (the default on a CPU)",
                     figures)
    return Check("memory", OK, detail, figures=figures)


def check_disk(engine: "Engine") -> Check:
    usage = shutil.disk_usage(engine.home)
    figures = {"free_bytes": usage.free, "needed_bytes": NEEDED_DISK}
    detail = f"{format_bytes(usage.free)} free where the data folder is"
    if usage.free < NEEDED_DISK:
        return Check("disk", PROBLEM, detail + f"; first use needs about {format_bytes(NEEDED_DISK)}",
                     "free some space, or point LLMOS_HOME at a larger disk", figures)
    return Check("disk", OK, detail, figures=figures)


def check_data_folder(engine: "Engine") -> Check:
    home, db = engine.home, engine.settings.db_path
    problems = []
    if not os.access(home, os.W_OK | os.X_OK):
        problems.append("not writable by this user")
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        problems.append(f"mode {mode:o} lets other users in (want 700)")
    if db.exists() and stat.S_IMODE(db.stat().st_mode) & 0o077:
        problems.append(f"the database is mode {stat.S_IMODE(db.stat().st_mode):o} (want 600)")
    detail = f"{home} (mode {mode:o})"
    if problems:
        return Check("data folder", PROBLEM, f"{detail}: " + "; ".join(problems),
                     f"chmod 700 {home}; chmod 600 {db}; and make it owned by the user who runs LLM OS")
    return Check("data folder", OK, detail + ", writable, private")


def check_ports() -> list[Check]:
    from ..settings import Settings
    ports = {"web app": APP_PORT}
    api_port = Settings.from_env().api_port
    if api_port:
        ports["API"] = api_port
    checks = []
    for what, port in ports.items():
        user = _port_user(port)
        if user is None:
            checks.append(Check(f"port {port}", OK, f"free for the {what}"))
        else:
            checks.append(Check(f"port {port}", INFO, f"in use ({user}): the {what} is running, or it takes "
                                "another port (Streamlit then says which)"))
    return checks


def check_embedded_models(engine: "Engine") -> list[Check]:
    """Load each embedded model and time one short reply: the end-to-end proof that chat works here."""
    from ..generation.request import SamplingParams
    from ..models.catalog import DEFAULT_BASE_MODEL, DEFAULT_CHAT_MODEL
    checks = []
    prompt = [{"role": "user", "content": "Name one colour."}]
    for name in (DEFAULT_CHAT_MODEL, DEFAULT_BASE_MODEL):
        started = time.perf_counter()
        try:
            params = SamplingParams.for_model(engine.catalog.get(name).sampling, max_new_tokens=16)
            result = engine.chat.generate(name, prompt, params)
        except Exception as exc:  # noqa: BLE001 - reported, with what to do
            hint = getattr(exc, "hint", "") or "run the tests (bash tests/run.sh -m slow) for the full story"
            checks.append(Check(f"model {name}", PROBLEM, f"does not answer: {type(exc).__name__}: {exc}", hint))
            continue
        stats, seconds = result.stats, time.perf_counter() - started
        speed = stats.get("tokens_per_s")
        figures = {"seconds": round(seconds, 2), "tokens": stats.get("tokens"), "tokens_per_s": speed,
                   "ttft_s": stats.get("ttft_s"), "backend": stats.get("backend")}
        if not result.text.strip():
            checks.append(Check(f"model {name}", PROBLEM, "loaded but gave an empty reply",
                                "report this with doctor's output", figures))
            continue
        speed_text = f"{speed:.1f} tokens/s" if speed else f"{stats.get('tokens')} tokens"
        checks.append(Check(f"model {name}", OK, f"answered on {stats.get('backend')} in {seconds:.1f} s "
                            f"(load included), {speed_text}, first token {stats.get('ttft_s')} s", figures=figures))
    return checks


# ---------------------------------------------------------------- helpers

def _nvidia_device_present() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/proc/driver/nvidia/version"))


def _port_user(port: int) -> str | None:
    """None when nothing listens on 127.0.0.1:port, else who does (as far as this user may see)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        if probe.connect_ex(("127.0.0.1", port)) != 0:
            return None
    try:
        import psutil
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid}, {psutil.Process(conn.pid).name()}"
    except Exception:  # noqa: BLE001 - seeing other users' sockets needs privileges
        pass
    return "another program"
