"""Benchmark: chat through the generation service against raw model.generate, same model, prompt and sampling.

(1) one stream through the service vs model.generate (with a streamer, to time the first token):
    target >= 0.95x its tokens/s, time to first token within 1.2x;
(2) four concurrent chats through the service vs the same four served one after another:
    target >= 1.6x the aggregate tokens/s.
Runs alternate between the two sides and take medians, so machine load hits both alike. The service is
asked for the transformers backend (continuous batching), the one raw generate() is compared with.
Usage: python bench/chat.py [--model smollm2-135m-instruct] [--tokens 64] [--repeats 3] [--markdown]
       python bench/chat.py --cli     # four `python -m llmos_core chat` processes at once vs one after another
The data folder defaults to the one the slow tests share (~/.cache/llmos-test-embedded), converted once.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from at_once import run_at_once  # noqa: E402  (bench/ is the script's folder)

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def raw_generate(resident, input_ids: list[int], params) -> dict:
    """model.generate with the same sampling; a streamer records when the first new token arrives."""
    import torch

    times: list[float] = []

    class Timer:
        first = True

        def put(self, value):
            if self.first:       # the prompt
                self.first = False
                return
            times.append(time.perf_counter())

        def end(self):
            pass

    model = resident.model
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(torch.tensor([input_ids]), do_sample=params.do_sample, temperature=params.temperature,
                             top_p=params.top_p, top_k=params.top_k or None,
                             repetition_penalty=params.repetition_penalty, max_new_tokens=params.max_new_tokens,
                             streamer=Timer(), pad_token_id=resident.tokenizer.eos_token_id)
    tokens = out.shape[1] - len(input_ids)
    ttft = times[0] - started
    return {"tokens": tokens, "ttft_s": ttft, "tokens_per_s": (tokens - 1) / (times[-1] - times[0])}


def service_one(engine, name: str, messages, params) -> dict:
    result = engine.chat.generate(name, messages, params, backend="transformers")
    return {"tokens": result.stats["tokens"], "ttft_s": result.stats["ttft_s"],
            "tokens_per_s": result.stats["tokens_per_s"]}


def concurrent(engine, name: str, messages, params, n: int) -> dict:
    results, wall = run_at_once(lambda i: engine.chat.generate(name, messages, params, backend="transformers"), n)
    tokens = sum(r.stats["tokens"] for r in results)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def sequential(engine, name: str, messages, params, n: int) -> dict:
    started = time.perf_counter()
    tokens = sum(engine.chat.generate(name, messages, params, backend="transformers").stats["tokens"]
                 for _ in range(n))
    wall = time.perf_counter() - started
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def cli_check(model: str, tokens: int, embedded_home: Path) -> None:
    """Four `python -m llmos_core chat` processes at once against four one after another, all served by one
    background engine (`serve`) in a fresh data folder that borrows the converted embedded model."""
    import json
    import shutil
    import subprocess
    import tempfile

    from llmos_core import control

    home = Path(tempfile.mkdtemp(prefix="llmos-bench-chat-"))
    (home / "models").mkdir()
    for folder in (embedded_home / "models").iterdir():
        if folder.is_dir():
            (home / "models" / folder.name).symlink_to(folder)
    env = {**os.environ, "LLMOS_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "llmos_core", "serve"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    command = [sys.executable, "-m", "llmos_core", "chat", "--model", model, "--backend", "transformers",
               "--max-new-tokens", str(tokens), "--seed", "1234", "--json", PROMPT]

    def chats(n: int, at_once: bool) -> dict:
        started = time.perf_counter()
        if at_once:
            procs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                     for _ in range(n)]
            outs = [json.loads(p.communicate()[0]) for p in procs]
        else:
            outs = [json.loads(subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=True).stdout)
                    for _ in range(n)]
        wall = time.perf_counter() - started
        total = sum(o["stats"]["tokens"] for o in outs)
        return {"tokens": total, "wall_s": wall, "tokens_per_s": total / wall}

    try:
        deadline = time.monotonic() + 60
        while not control.is_up(home / "engine.sock") and time.monotonic() < deadline:
            time.sleep(0.3)
        subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=True)   # load + warm-up
        seq = chats(4, at_once=False)
        conc = chats(4, at_once=True)
        gain = conc["tokens_per_s"] / seq["tokens_per_s"]
        print(f"CLI: 4 at once {conc['tokens']} tokens in {conc['wall_s']:.1f} s ({conc['tokens_per_s']:.1f} tok/s) "
              f"vs 4 one after another {seq['tokens']} tokens in {seq['wall_s']:.1f} s ({seq['tokens_per_s']:.1f} "
              f"tok/s) = {gain:.2f}x (target >= 1.6x; wall clock, process start-up included) "
              f"{'PASS' if gain >= 1.6 else 'MISS'}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", default=os.environ.get("LLMOS_TEST_EMBEDDED_HOME",
                                                         str(Path.home() / ".cache" / "llmos-test-embedded")))
    parser.add_argument("--markdown", action="store_true", help="print a table for docs/BENCHMARKS.md")
    parser.add_argument("--cli", action="store_true", help="only the check of four CLI chats at once (see cli_check)")
    args = parser.parse_args()
    if args.cli:
        cli_check(args.model, args.tokens, Path(args.home))
        return 0

    from llmos_core.engine import Engine
    from llmos_core.generation import SamplingParams, build_prompt
    from llmos_core.settings import Settings

    engine = Engine(Settings(home=Path(args.home)), primary=False, start_threads=False)
    spec = engine.catalog.get(args.model)
    # The model's recommended sampling, a fixed seed; the stop strings of the plain format still apply.
    params = SamplingParams.for_model(spec.sampling, max_new_tokens=args.tokens, seed=1234)
    messages = [{"role": "user", "content": PROMPT}]
    resident = engine.models.load(args.model)
    runner = engine.chat.runner(resident)
    input_ids = build_prompt(runner, messages, params.max_new_tokens).input_ids
    print(f"model {args.model}, prompt {len(input_ids)} tokens, {args.tokens} new tokens, "
          f"continuous batching: {getattr(runner, 'batching', False)}, torch threads: "
          f"{__import__('torch').get_num_threads()}", flush=True)

    # Warm-up: the first continuous-batching request and the first generate() are slow.
    raw_generate(resident, input_ids, params)
    service_one(engine, args.model, messages, params)

    raw, served, conc, seq = [], [], [], []
    for i in range(args.repeats):
        raw.append(raw_generate(resident, input_ids, params))
        served.append(service_one(engine, args.model, messages, params))
        conc.append(concurrent(engine, args.model, messages, params, 4))
        seq.append(sequential(engine, args.model, messages, params, 4))
        print(f"run {i + 1}: raw {raw[-1]['tokens_per_s']:.1f} tok/s ttft {raw[-1]['ttft_s']:.3f}s | service "
              f"{served[-1]['tokens_per_s']:.1f} tok/s ttft {served[-1]['ttft_s']:.3f}s | 4 concurrent "
              f"{conc[-1]['tokens_per_s']:.1f} tok/s | 4 sequential {seq[-1]['tokens_per_s']:.1f} tok/s", flush=True)

    med = lambda rows, key: statistics.median(r[key] for r in rows)   # noqa: E731
    figures = {
        "raw_tps": med(raw, "tokens_per_s"), "service_tps": med(served, "tokens_per_s"),
        "raw_ttft": med(raw, "ttft_s"), "service_ttft": med(served, "ttft_s"),
        "conc_tps": med(conc, "tokens_per_s"), "seq_tps": med(seq, "tokens_per_s"),
    }
    speed = figures["service_tps"] / figures["raw_tps"]
    ttft = figures["service_ttft"] / figures["raw_ttft"]
    gain = figures["conc_tps"] / figures["seq_tps"]
    rows = [
        ("single stream tokens/s, service / raw generate", f"{figures['service_tps']:.1f} / {figures['raw_tps']:.1f}",
         f"{speed:.2f}x", ">= 0.95x", speed >= 0.95),
        ("time to first token, service / raw generate",
         f"{figures['service_ttft'] * 1000:.0f} ms / {figures['raw_ttft'] * 1000:.0f} ms", f"{ttft:.2f}x",
         "<= 1.2x", ttft <= 1.2),
        ("4 concurrent / 4 sequential, aggregate tokens/s", f"{figures['conc_tps']:.1f} / {figures['seq_tps']:.1f}",
         f"{gain:.2f}x", ">= 1.6x", gain >= 1.6),
    ]
    for label, values, ratio, target, ok in rows:
        print(f"{label}: {values} = {ratio} (target {target}) {'PASS' if ok else 'MISS'}")
    if args.markdown:
        print("\n| figure | measured | ratio | target | |\n|---|---|---|---|---|")
        for label, values, ratio, target, ok in rows:
            print(f"| {label} | {values} | {ratio} | {target} | {'pass' if ok else 'miss'} |")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
