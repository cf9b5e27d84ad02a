"""Backends on the CPU, one prompt: tokens/s and time to first token of transformers fp32,
transformers int8, llama.cpp through LLM OS and a bare llama-cpp-python loop on the same GGUF; then the
aggregate tokens/s of 4 and 8 concurrent chats through the auto choice (llama.cpp decoding them together),
against 8 chats served one after another. Every figure is printed as a ratio against a baseline measured
in this same run.

    LLMOS_HOME=~/.cache/llmos-test-embedded python bench/backends.py [--model gemma-3-270m] [--tokens 64]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from at_once import run_at_once  # noqa: E402  (bench/ is the script's folder)
from llmos_core.engine import Engine  # noqa: E402
from llmos_core.generation import SamplingParams, build_prompt  # noqa: E402
from llmos_core.models.llamacpp import LlamaCppRunner  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]


class BareLoop:
    """The baseline our llama.cpp path must match: llama-cpp-python's own streaming loop, nothing around it."""

    def __init__(self, path: str, prompt: str, threads: int):
        from llama_cpp import Llama

        self.llama = Llama(path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
        self.ids = self.llama.tokenize(prompt.encode(), add_bos=True, special=True)

    def run(self, tokens: int) -> dict:
        self.llama.reset()
        started, first, count = time.perf_counter(), None, 0
        for _chunk in self.llama.create_completion(self.ids, max_tokens=tokens, temperature=0.0, stream=True):
            count += 1
            if first is None:
                first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        return {"tokens": count - 1, "ttft_s": first, "tokens_per_s": (count - 2) / (elapsed - first)}


def alternate(bare: BareLoop, engine: Engine, name: str, tokens: int, rounds: int) -> tuple[dict, dict, list]:
    """Bare loop and LLM OS in turns, `rounds` times each (this machine's speed drifts by 10-20% within a
    minute): the median run of each, and the ratio of every pair."""
    bare.run(4)   # warm the pages of the bare loop's weights
    pairs = [(bare.run(tokens), one_stream(engine, name, "llamacpp", tokens)) for _ in range(rounds)]
    ratios = sorted(ours["tokens_per_s"] / base["tokens_per_s"] for base, ours in pairs)

    def median(runs):
        return sorted(runs, key=lambda r: r["tokens_per_s"])[len(runs) // 2]
    return median([p[0] for p in pairs]), median([p[1] for p in pairs]), ratios


def one_stream(engine: Engine, name: str, backend: str, tokens: int) -> dict:
    params = SamplingParams(do_sample=False, max_new_tokens=tokens)
    engine.chat.generate(name, PROMPT, SamplingParams(do_sample=False, max_new_tokens=4), backend)   # warm-up
    return engine.chat.generate(name, PROMPT, params, backend).stats


def concurrent(engine: Engine, name: str, backend: str, n: int, tokens: int) -> dict:
    def chat(i):
        try:
            params = SamplingParams(do_sample=True, temperature=0.8, seed=i, max_new_tokens=tokens)
            return engine.chat.generate(name, PROMPT, params, backend).stats
        except Exception as exc:   # a refusal or failure is a figure too: print it
            return f"{type(exc).__name__}: {exc}"

    outcomes, elapsed = run_at_once(chat, n)
    results = [o for o in outcomes if isinstance(o, dict)]
    total = sum(r["tokens"] for r in results)
    used = sorted({r["backend"] for r in results})
    return {"aggregate_tokens_per_s": total / elapsed, "tokens": total, "seconds": elapsed, "backends": used,
            "errors": [o for o in outcomes if isinstance(o, str)]}


def serial(engine: Engine, name: str, backend: str, n: int, tokens: int) -> dict:
    started, total = time.perf_counter(), 0
    for i in range(n):
        params = SamplingParams(do_sample=True, temperature=0.8, seed=i, max_new_tokens=tokens)
        total += engine.chat.generate(name, PROMPT, params, backend).stats["tokens"]
    elapsed = time.perf_counter() - started
    return {"aggregate_tokens_per_s": total / elapsed, "tokens": total, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="single-stream runs of each, in turns")
    args = parser.parse_args()
    settings = Settings.from_env()
    threads = settings.threads or os.cpu_count() or 1
    engine = Engine(settings, primary=False, start_threads=False)
    name, n_tok = args.model, args.tokens
    try:
        print(f"# {name}, {n_tok} new tokens, greedy, {threads} threads, load average {os.getloadavg()[0]:.1f}")
        resident = engine.models.load(name, "llamacpp")
        runner = LlamaCppRunner(resident)
        prompt = build_prompt(runner, PROMPT, n_tok).text
        bare_loop = BareLoop(str(resident.model.path), prompt, threads)
        bare, ours_cpp, ratios = alternate(bare_loop, engine, name, n_tok, args.rounds)
        bare_loop.llama.close()
        rows = {"llama-cpp-python bare loop": bare, "LLM OS llamacpp": ours_cpp}
        for backend in ("transformers", "transformers-int8"):
            rows[f"LLM OS {backend}"] = one_stream(engine, name, backend, n_tok)
            engine.models.unload(name, backend)   # one transformers form at a time: fair memory
        hf = rows["LLM OS transformers"]["tokens_per_s"]
        print(f"{'path':32} {'tokens/s':>9} {'TTFT s':>7} {'vs fp32':>8} {'vs bare':>8}")
        for label, r in rows.items():
            print(f"{label:32} {r['tokens_per_s']:9.1f} {r['ttft_s']:7.2f} {r['tokens_per_s'] / hf:7.2f}x "
                  f"{r['tokens_per_s'] / bare['tokens_per_s']:7.2f}x")
        ours = ratios[len(ratios) // 2]
        print(f"LLM OS llama.cpp / bare loop, {len(ratios)} pairs run in turns: "
              + ", ".join(f"{r:.2f}x" for r in ratios) + " (the table shows each one's median run)")
        print(f"target: LLM OS llama.cpp >= 1.0x of the bare loop (median pair): {ours:.2f}x "
              f"{'MET' if ours >= 1.0 else 'MISSED'}")

        serial8 = serial(engine, name, "llamacpp", 8, n_tok)
        print(f"8 chats one after another through llama.cpp: {serial8['aggregate_tokens_per_s']:.1f} tokens/s")
        for n in (4, 8):
            r = concurrent(engine, name, "auto", n, n_tok)
            one_cpp = rows["LLM OS llamacpp"]["tokens_per_s"]
            print(f"{n} concurrent chats through auto ({', '.join(r['backends'])}): "
                  f"{r['aggregate_tokens_per_s']:.1f} tokens/s = {r['aggregate_tokens_per_s'] / hf:.2f}x one fp32 "
                  f"transformers stream, {r['aggregate_tokens_per_s'] / one_cpp:.2f}x one llama.cpp stream, "
                  f"{r['aggregate_tokens_per_s'] / serial8['aggregate_tokens_per_s']:.2f}x "
                  f"8 serial through llama.cpp" + (f"; errors: {r['errors']}" if r["errors"] else ""))
            if n == 8:
                a, b = r["aggregate_tokens_per_s"] / hf, r["aggregate_tokens_per_s"] / serial8["aggregate_tokens_per_s"]
                print(f"target: 8 concurrent >= 3x one transformers stream: {a:.2f}x {'MET' if a >= 3 else 'MISSED'}; "
                      f">= 1.0x serial llama.cpp: {b:.2f}x {'MET' if b >= 1 else 'MISSED'}")
        print("resident:", [(m["name"], m["backend"], round(m["measured_bytes"] / 2**20)) for m in engine.models.resident()])
    finally:
        engine.close()


if __name__ == "__main__":
    main()
