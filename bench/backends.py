"""Backends on the CPU, one run, one prompt: tokens/s and time to first token of transformers fp32,
transformers int8, llama.cpp through LLM OS and a bare llama-cpp-python loop on the same GGUF; then the
aggregate tokens/s of 4 and 8 concurrent chats through the auto choice. Every figure is printed as a ratio
against a baseline measured in this same run.

    LLMOS_HOME=~/.cache/llmos-test-embedded python bench/backends.py [--model gemma-3-270m] [--tokens 64]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmos_core.engine import Engine  # noqa: E402
from llmos_core.generation import SamplingParams, build_prompt  # noqa: E402
from llmos_core.models.llamacpp import LlamaCppRunner  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]


def bare_llamacpp(path: str, prompt: str, tokens: int, threads: int) -> dict:
    """The baseline our llama.cpp path must match: llama-cpp-python's own streaming loop, nothing around it."""
    from llama_cpp import Llama

    llama = Llama(path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llama.tokenize(prompt.encode(), add_bos=True, special=True)
    figures = {}
    for _ in range(2):   # the first run warms the weights' pages; the second is measured
        llama.reset()
        started, first, count = time.perf_counter(), None, 0
        for _chunk in llama.create_completion(ids, max_tokens=tokens, temperature=0.0, stream=True):
            count += 1
            if first is None:
                first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        figures = {"tokens": count - 1, "ttft_s": first, "tokens_per_s": (count - 2) / (elapsed - first)}
    llama.close()
    return figures


def one_stream(engine: Engine, name: str, backend: str, tokens: int) -> dict:
    params = SamplingParams(do_sample=False, max_new_tokens=tokens)
    engine.chat.generate(name, PROMPT, SamplingParams(do_sample=False, max_new_tokens=4), backend)   # warm-up
    return engine.chat.generate(name, PROMPT, params, backend).stats


def concurrent(engine: Engine, name: str, backend: str, n: int, tokens: int) -> dict:
    results, errors = [], []

    def chat(i):
        try:
            params = SamplingParams(do_sample=True, temperature=0.8, seed=i, max_new_tokens=tokens)
            results.append(engine.chat.generate(name, PROMPT, params, backend).stats)
        except Exception as exc:   # a refusal or failure is a figure too: print it
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=chat, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    total = sum(r["tokens"] for r in results)
    used = sorted({r["backend"] for r in results})
    return {"aggregate_tokens_per_s": total / elapsed, "tokens": total, "seconds": elapsed, "backends": used,
            "errors": errors}


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
        bare = bare_llamacpp(str(resident.model.path), prompt, n_tok, threads)
        rows = {"llama-cpp-python bare loop": bare}
        for backend in ("llamacpp", "transformers", "transformers-int8"):
            rows[f"LLM OS {backend}"] = one_stream(engine, name, backend, n_tok)
            if backend != "llamacpp":
                engine.models.unload(name, backend)   # one transformers form at a time: fair memory
        hf = rows["LLM OS transformers"]["tokens_per_s"]
        print(f"{'path':32} {'tokens/s':>9} {'TTFT s':>7} {'vs fp32':>8} {'vs bare':>8}")
        for label, r in rows.items():
            print(f"{label:32} {r['tokens_per_s']:9.1f} {r['ttft_s']:7.2f} {r['tokens_per_s'] / hf:7.2f}x "
                  f"{r['tokens_per_s'] / bare['tokens_per_s']:7.2f}x")
        ours = rows["LLM OS llamacpp"]["tokens_per_s"] / bare["tokens_per_s"]
        print(f"target: LLM OS llama.cpp >= 1.0x of the bare loop: {ours:.2f}x {'MET' if ours >= 1.0 else 'MISSED'}")

        serial8 = serial(engine, name, "llamacpp", 8, n_tok)
        print(f"8 chats one after another through llama.cpp: {serial8['aggregate_tokens_per_s']:.1f} tokens/s")
        for n in (4, 8):
            r = concurrent(engine, name, "auto", n, n_tok)
            print(f"{n} concurrent chats through auto ({', '.join(r['backends'])}): "
                  f"{r['aggregate_tokens_per_s']:.1f} tokens/s = {r['aggregate_tokens_per_s'] / hf:.2f}x one fp32 "
                  f"transformers stream, {r['aggregate_tokens_per_s'] / serial8['aggregate_tokens_per_s']:.2f}x "
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
