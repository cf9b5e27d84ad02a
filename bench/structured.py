"""Benchmark: constrained decoding (generation/constraints.py) against free decoding, in one run.

(1) tokens/s of a 64-token JSON reply under a schema vs the same request without one, per runner
    (llama.cpp and transformers): target >= 0.9x. Runs in pairs, constrained and free back to back, the
    order swapped each pair; the median of the pairs' ratios (this shared machine drifts within minutes).
    The mask's own cost per token is timed inside the run (RowGrammar.mask).
(2) 8 requests with 8 different schemas together vs one after another, on llama.cpp: target >= 1.6x
    aggregate tokens/s (each row carries its own grammar, so they must still share each decode step).
(3) grammar compile time for a 20-field schema, first and cached; and the vocabulary's trie (once per model).
(4) the issue's acceptance figure: client.chat.completions.parse() with a Pydantic model through the API
    (the openai package on 127.0.0.1), N requests per embedded model, every one must parse and validate.
Usage: python bench/structured.py [--model smollm2-135m-instruct] [--tokens 64] [--pairs 4] [--parse 20] [--parts 1,2,3,4]
       [--backends llamacpp,transformers] [--parse-models smollm2-135m-instruct,gemma-3-270m]
The data folder defaults to the one the slow tests share (~/.cache/llmos-test-embedded).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "user", "content": "List as many animals as you can, with a short note on each."}]
# Long enough that a 64-token reply ends at its length, not at the end of the object.
LONG = {"type": "object", "properties": {"animals": {"type": "array", "minItems": 40, "items": {
    "type": "object", "properties": {"name": {"type": "string"}, "note": {"type": "string"}},
    "required": ["name", "note"]}}}, "required": ["animals"]}


def twenty_fields(tag: str) -> dict:
    kinds = ["string", "integer", "boolean", "number"]
    return {"type": "object", "properties": {f"{tag}_{i}": {"type": kinds[i % 4]} for i in range(20)},
            "required": [f"{tag}_{i}" for i in range(20)], "additionalProperties": False}


def timed_mask():
    """Wraps RowGrammar.mask to sum its time: -> (samples list)."""
    from llmos_core.generation import constraints

    samples: list[float] = []
    original = constraints.RowGrammar.mask

    def mask(self, scores):
        started = time.perf_counter()
        out = original(self, scores)
        samples.append(time.perf_counter() - started)
        return out

    constraints.RowGrammar.mask = mask
    return samples


def one(engine, model, backend, tokens, grammar, seed):
    from llmos_core.generation import SamplingParams

    params = SamplingParams.for_model(engine.catalog.get(model).sampling, max_new_tokens=tokens, seed=seed,
                                      grammar=grammar)
    return engine.chat.generate(model, MESSAGES, params, backend).stats


def speed(engine, model, backend, tokens, pairs, masks) -> None:
    from llmos_core.generation import constraints

    grammar = constraints.json_schema_grammar(LONG)
    one(engine, model, backend, 8, None, 0)            # load and warm
    one(engine, model, backend, 8, grammar, 0)         # the vocabulary's trie, the grammar
    ratios, free_speeds, bound_speeds = [], [], []
    masks.clear()
    for i in range(pairs):
        order = [None, grammar] if i % 2 else [grammar, None]
        got = {g is None: one(engine, model, backend, tokens, g, seed=i) for g in order}
        free, bound = got[True]["tokens_per_s"], got[False]["tokens_per_s"]
        free_speeds.append(free)
        bound_speeds.append(bound)
        ratios.append(bound / free)
    print(f"(1) {backend}: constrained {statistics.median(bound_speeds):.1f} tok/s, free "
          f"{statistics.median(free_speeds):.1f} tok/s; median ratio {statistics.median(ratios):.2f}x "
          f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)}); mask {statistics.median(masks) * 1e6:.0f} us a token "
          f"(p90 {sorted(masks)[int(len(masks) * 0.9)] * 1e6:.0f} us, {len(masks)} masks)")


def together(engine, model, tokens, clients) -> None:
    from llmos_core.generation import constraints

    grammars = [constraints.json_schema_grammar(twenty_fields(f"c{i}")) for i in range(clients)]
    for g in grammars:                                   # compiled once, as a client that comes back finds them
        one(engine, model, "llamacpp", 2, g, 0)
    plain = batching(engine, model, tokens, [None] * clients)
    shaped = batching(engine, model, tokens, grammars)
    print(f"(2) {clients} schemas on llama.cpp: together {shaped[0]:.1f} tok/s, one after another {shaped[1]:.1f} "
          f"tok/s: {shaped[0] / shaped[1]:.2f}x; the same {clients} requests without a schema (how plain chats "
          f"batch, this run): {plain[0]:.1f} against {plain[1]:.1f} tok/s, {plain[0] / plain[1]:.2f}x")


def batching(engine, model, tokens, grammars) -> tuple[float, float]:
    """(tok/s with the requests together, tok/s one after another)."""
    clients = len(grammars)
    started = time.perf_counter()
    alone = sum(one(engine, model, "llamacpp", tokens, g, seed=i)["tokens"] for i, g in enumerate(grammars))
    serial = alone / (time.perf_counter() - started)
    counts = [0] * clients

    def run(i):
        counts[i] = one(engine, model, "llamacpp", tokens, grammars[i], seed=i)["tokens"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started), serial


def compile_times(engine, model) -> None:
    from llmos_core.generation import constraints

    with engine.models.use(model, "llamacpp") as resident:
        runner = engine.chat.runner(resident)
        grammars = constraints.grammars_for(runner)
        grammar = constraints.json_schema_grammar(twenty_fields(f"fresh{time.time_ns()}"))
        started = time.perf_counter()
        grammars.compile(grammar)
        first = time.perf_counter() - started
        started = time.perf_counter()
        grammars.start(grammar)
        cached = time.perf_counter() - started
    print(f"(3) 20-field schema on {model}: first compile {first * 1000:.2f} ms, cached (copy for a request) "
          f"{cached * 1e6:.0f} us")
    for name in ("smollm2-135m-instruct", "gemma-3-270m"):
        with engine.models.use(name, "llamacpp") as resident:
            runner = engine.chat.runner(resident)
            started = time.perf_counter()
            constraints._build(runner, resident.model)
            print(f"    vocabulary trie of {name}: {time.perf_counter() - started:.2f} s (once per loaded model)")


def parse_runs(engine, models, n) -> None:
    import openai
    from pydantic import BaseModel

    class Animal(BaseModel):
        name: str
        legs: int
        can_fly: bool

    api = start_api(engine, "127.0.0.1", 0)
    client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="x", max_retries=0, timeout=600)
    for model in models:
        good, started = 0, time.perf_counter()
        for i in range(n):
            reply = client.chat.completions.parse(model=model, response_format=Animal, seed=i, max_tokens=80,
                                                  messages=[{"role": "user", "content": "Describe a cat as JSON."}])
            good += isinstance(reply.choices[0].message.parsed, Animal)
        print(f"(4) parse() with a Pydantic model on {model}: {good}/{n} parse and validate "
              f"({time.perf_counter() - started:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--parse", type=int, default=20)
    parser.add_argument("--backends", default="llamacpp,transformers")
    parser.add_argument("--parse-models", default="smollm2-135m-instruct,gemma-3-270m")
    parser.add_argument("--parts", default="1,2,3,4", help="which of the four to run")
    args = parser.parse_args()
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    home = Path(os.environ.get("LLMOS_TEST_EMBEDDED_HOME", Path.home() / ".cache" / "llmos-test-embedded"))
    engine = Engine(Settings(home=home, threads=2), primary=False, start_threads=False)
    masks = timed_mask()
    try:
        print(f"bench/structured.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, model {args.model}")
        parts = set(args.parts.split(","))
        for backend in [b for b in args.backends.split(",") if b and "1" in parts]:
            speed(engine, args.model, backend, args.tokens, args.pairs, masks)
        if "2" in parts:
            together(engine, args.model, args.tokens, args.clients)
        if "3" in parts:
            compile_times(engine, args.model)
        if args.parse and "4" in parts:
            parse_runs(engine, [m for m in args.parse_models.split(",") if m], args.parse)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
