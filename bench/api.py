"""Benchmark: the OpenAI-compatible API against the in-process services it wraps, in one run.

(1) one streamed chat through the API (openai package, SSE) vs the same request through
    engine.chat.stream in-process: target >= 0.95x tokens/s, time to first token within +20 ms;
(2) 8 concurrent API clients vs the same 8 requests one after another: target >= 1.8x aggregate
    tokens/s (they must join one batch);
(3) /v1/embeddings for N sentences (default 1,000): one request (batched on the server) vs one request
    per sentence: embeddings per second, and the ratio.
Runs of (1) alternate between the two sides and take medians, so machine load hits both alike.
The API is served by the bench's own engine, so both sides use the same loaded model; the API client runs
in a child process, as its users do, warmed by one short request first, as a client in use is (the first
request of a fresh client is timed apart and shown beside): in one process the client's parsing of each
chunk would hold the same GIL as the server's event loop and the decoder's sampler (`--client-here` keeps
it in this process, the first version of this bench). (2) also measures the same n requests in-process, together against one after
another: the engine's own ceiling on this machine, which the API can only approach.
Usage: python bench/api.py [--model smollm2-135m-instruct] [--tokens 64] [--repeats 3] [--sentences 1000]
The data folder defaults to the one the slow tests share (~/.cache/llmos-test-embedded).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from at_once import run_at_once  # noqa: E402  (bench/ is the script's folder)

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
MESSAGES = [{"role": "user", "content": PROMPT}]


def api_stream(client, model: str, tokens: int, seed: int) -> dict:
    """One streamed chat; times are taken as the chunks arrive at the client."""
    started = time.perf_counter()
    first = last = None
    usage = None
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=tokens, seed=seed,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
    n = usage.completion_tokens
    return {"tokens": n, "ttft_s": first - started, "tokens_per_s": (n - 1) / (last - first) if n > 1 else None}


def local_stream(engine, model: str, tokens: int, seed: int) -> dict:
    """The same request through the service, timed the same way (when text arrives)."""
    from llmos_core.generation import SamplingParams

    params = SamplingParams.for_model(engine.catalog.get(model).sampling, max_new_tokens=tokens, seed=seed)
    started = time.perf_counter()
    first = last = None
    event = None
    for event in engine.chat.stream(model, MESSAGES, params):
        if event.text:
            last = time.perf_counter()
            first = first or last
    n = event.tokens
    return {"tokens": n, "ttft_s": first - started, "tokens_per_s": (n - 1) / (last - first) if n > 1 else None}


def api_whole(client, model: str, tokens: int, seed: int) -> int:
    reply = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=tokens, seed=seed)
    return reply.usage.completion_tokens


def local_whole(engine, model: str, tokens: int, seed: int) -> int:
    from llmos_core.generation import SamplingParams

    params = SamplingParams.for_model(engine.catalog.get(model).sampling, max_new_tokens=tokens, seed=seed)
    event = None
    for event in engine.chat.stream(model, MESSAGES, params):
        pass
    return event.tokens


def in_child(url: str, what: str, model: str, tokens: int, n: int) -> dict:
    """Runs `what` (stream | whole | sequential | together) as an API client in a fresh process; its timings
    are taken there, around the requests only (the child's start and imports are not timed)."""
    out = subprocess.run([sys.executable, __file__, "--client", url, what, model, str(tokens), str(n)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"the API client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def client_main(url: str, what: str, model: str, tokens: int, n: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
    if what == "stream":
        # The in-process side is warm (its first request ran before any timing); so is a client in use. A fresh
        # client's first request also pays its own start (connection, the openai package's lazy set-up): about
        # 25 ms here. It is timed apart, with a 2-token reply, and reported beside the warm figure.
        cold = api_stream(client, model, 2, seed=n)
        return {**api_stream(client, model, tokens, seed=n), "cold_ttft_s": cold["ttft_s"]}
    if what == "whole":
        return {"tokens": api_whole(client, model, tokens, seed=n)}
    started = time.perf_counter()
    if what == "sequential":
        counts = [api_whole(client, model, tokens, seed=i) for i in range(n)]
        wall = time.perf_counter() - started
    else:
        counts, wall = run_at_once(lambda i: api_whole(client, model, tokens, seed=i), n)
    return {"tokens": sum(counts), "wall_s": wall}


def sentences(n: int) -> list[str]:
    subjects = ["The keeper", "A small boat", "The old map", "Her brother", "The storm", "A quiet town"]
    verbs = ["found", "lost", "painted", "carried", "watched", "remembered"]
    objects = ["a bottle on the shore", "the northern light", "three red apples", "a letter from home",
               "the last train", "a song about the sea"]
    return [f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 6]} on day {i}." for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--embedding-model", default="all-minilm-l6-v2")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--client-here", action="store_true", help="the API client in this process, not a child")
    parser.add_argument("--client", nargs=5, metavar=("URL", "WHAT", "MODEL", "TOKENS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        url, what, model, tokens, n = args.client
        print(json.dumps(client_main(url, what, model, int(tokens), int(n))))
        return 0
    os.environ.setdefault("LLMOS_HOME", str(Path.home() / ".cache" / "llmos-test-embedded"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import openai

    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        url = engine.start_api("127.0.0.1", 0).url
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
        here = args.client_here

        def api(what: str, n: int = 0) -> dict:
            if not here:
                return in_child(url, what, args.model, args.tokens, n)
            if what == "stream":
                return api_stream(client, args.model, args.tokens, seed=n)
            return client_main(url, what, args.model, args.tokens, n)

        print(f"API at {url}, client {'in this process' if here else 'in a child process'}; model {args.model}, "
              f"{args.tokens} tokens, backend {engine.chat.choose_backend(args.model).backend}")
        api_whole(client, args.model, 8, 0)      # warm-up: load, first batch
        local_stream(engine, args.model, 8, 0)

        # (1) one stream: API vs in-process, alternating
        api_runs, local_runs = [], []
        for r in range(args.repeats):
            local_runs.append(local_stream(engine, args.model, args.tokens, seed=r))
            api_runs.append(api("stream", r))
        med = lambda runs, key: statistics.median(x[key] for x in runs if x[key] is not None)  # noqa: E731
        speed_ratio = med(api_runs, "tokens_per_s") / med(local_runs, "tokens_per_s")
        ttft_delta_ms = 1000 * (med(api_runs, "ttft_s") - med(local_runs, "ttft_s"))
        cold = (f"; a fresh client's first request {1000 * (med(api_runs, 'cold_ttft_s') - med(local_runs, 'ttft_s')):+.0f}"
                " ms" if not here else "")
        print(f"(1) one stream: API {med(api_runs, 'tokens_per_s'):.1f} tok/s, TTFT {1000 * med(api_runs, 'ttft_s'):.0f} ms"
              f" | in-process {med(local_runs, 'tokens_per_s'):.1f} tok/s, TTFT {1000 * med(local_runs, 'ttft_s'):.0f} ms"
              f" -> {speed_ratio:.2f}x tokens/s (target >= 0.95x), TTFT {ttft_delta_ms:+.0f} ms (target <= +20 ms{cold})")

        # (2) n concurrent API clients vs the same n one after another
        one_by_one = api("sequential", args.clients)
        together = api("together", args.clients)
        sequential_tps = one_by_one["tokens"] / one_by_one["wall_s"]
        concurrent_tps = together["tokens"] / together["wall_s"]
        print(f"(2) {args.clients} clients: together {concurrent_tps:.1f} tok/s, one after another "
              f"{sequential_tps:.1f} tok/s -> {concurrent_tps / sequential_tps:.2f}x (target >= 1.8x)")
        started = time.perf_counter()
        local_sequential = sum(local_whole(engine, args.model, args.tokens, seed=i)
                               for i in range(args.clients)) / (time.perf_counter() - started)
        counts, wall = run_at_once(lambda i: local_whole(engine, args.model, args.tokens, seed=i), args.clients)
        local_concurrent = sum(counts) / wall
        print(f"    the same in-process: together {local_concurrent:.1f} tok/s, one after another "
              f"{local_sequential:.1f} tok/s -> {local_concurrent / local_sequential:.2f}x (the engine's own ceiling)")

        # (3) embeddings: one batched request vs one request per sentence
        texts = sentences(args.sentences)
        client.embeddings.create(model=args.embedding_model, input=texts[:8])   # warm-up: load
        started = time.perf_counter()
        client.embeddings.create(model=args.embedding_model, input=texts)
        batched = len(texts) / (time.perf_counter() - started)
        started = time.perf_counter()
        for text in texts:
            client.embeddings.create(model=args.embedding_model, input=text)
        single = len(texts) / (time.perf_counter() - started)
        print(f"(3) embeddings of {len(texts)} sentences: batched {batched:.0f}/s, one at a time {single:.0f}/s "
              f"-> {batched / single:.1f}x")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
