"""Benchmark: the OpenAI-compatible API against the in-process services it wraps, in one run.

(1) one streamed chat through the API (openai package, SSE) vs the same request through
    engine.chat.stream in-process: target >= 0.95x tokens/s, time to first token within +20 ms;
(2) 8 concurrent API clients vs the same 8 requests one after another: target >= 1.8x aggregate
    tokens/s (they must join one batch);
(3) /v1/embeddings for N sentences (default 1,000): one request (batched on the server) vs one request
    per sentence: embeddings per second, and the ratio.
(1) runs in pairs, one API stream beside one in-process stream, the order swapped each pair (API first,
then in-process first), and reports the median of the pairs' ratios and differences: this machine's speed
drifts by a third within minutes (a shared host), and a pair run back to back sees the same speed, where
two medians taken apart did not. The API is served by the bench's own engine, so both sides use the same
loaded model; the API client runs in a child process, as its users do, started once and kept (a client in
use), warmed by one short request whose time to first token is shown apart (a fresh client's first
request). In one process the client's parsing of each chunk would hold the same GIL as the server's event
loop and the decoder's sampler (`--client-here` keeps it in this process, the first version of this bench).
(2) runs in rounds, each a pair of runs (together, one after another) in swapped order, and reports the median
of the rounds' ratios; it also measures the same n requests in-process, together against one after
another: the engine's own ceiling on this machine, which the API can only approach.
Usage: python bench/api.py [--model smollm2-135m-instruct] [--tokens 64] [--pairs 10] [--rounds 3]
       [--clients 8] [--sentences 1000]
The data folder defaults to the one the slow tests share (~/.cache/llmos-test-embedded). The server's
settings come from the environment as the app's do (LLMOS_API_STREAM_INTERVAL_MS=0: a chunk per token).
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
    """Runs `what` (whole | sequential | together) as an API client in a fresh process; its timings
    are taken there, around the requests only (the child's start and imports are not timed)."""
    out = subprocess.run([sys.executable, __file__, "--client", url, what, model, str(tokens), str(n)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"the API client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class StreamingClient:
    """An API client in a child process kept for the whole of (1): a client in use, as Open WebUI or a script
    that chats more than once is. Each line written to it is a seed; it answers with one stream's timings."""

    def __init__(self, url: str, model: str, tokens: int):
        self.process = subprocess.Popen([sys.executable, __file__, "--client", url, "streams", model, str(tokens), "0"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.cold = self._read()   # its first request, 2 tokens: a fresh client's start

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the API client ended (exit code {self.process.wait()})")
        return json.loads(line)

    def stream(self, seed: int) -> dict:
        self.process.stdin.write(f"{seed}\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def client_main(url: str, what: str, model: str, tokens: int, n: int) -> dict | None:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
    if what == "streams":
        print(json.dumps(api_stream(client, model, 2, seed=0)), flush=True)
        for line in sys.stdin:
            print(json.dumps(api_stream(client, model, tokens, seed=int(line))), flush=True)
        return None
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
    parser.add_argument("--pairs", type=int, default=10, help="(1): API and in-process streams, run in pairs")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="(2): rounds of together and one after another")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--client-here", action="store_true", help="the API client in this process, not a child")
    parser.add_argument("--client", nargs=5, metavar=("URL", "WHAT", "MODEL", "TOKENS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        url, what, model, tokens, n = args.client
        result = client_main(url, what, model, int(tokens), int(n))
        if result is not None:
            print(json.dumps(result))
        return 0
    os.environ.setdefault("LLMOS_HOME", str(Path.home() / ".cache" / "llmos-test-embedded"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import openai

    from llmos_core.api.server import start_api
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        url = start_api(engine, "127.0.0.1", 0).url
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, timeout=600)
        here = args.client_here

        def api(what: str, n: int = 0) -> dict:
            return (client_main if here else in_child)(url, what, args.model, args.tokens, n)

        print(f"API at {url}, client {'in this process' if here else 'in a child process'}; model {args.model}, "
              f"{args.tokens} tokens, backend {engine.chat.choose_backend(args.model).backend}, stream interval "
              f"{engine.settings.api_stream_interval_ms:g} ms")
        api_whole(client, args.model, 8, 0)      # warm-up: load, first batch
        local_stream(engine, args.model, 8, 0)

        # (1) one stream: API vs in-process, in pairs, the order swapped each pair
        streamer = None if here else StreamingClient(url, args.model, args.tokens)
        api_one = (lambda seed: api_stream(client, args.model, args.tokens, seed)) if here else streamer.stream
        pairs = []
        for r in range(args.pairs):
            if r % 2:
                local = local_stream(engine, args.model, args.tokens, seed=r)
                remote = api_one(r)
            else:
                remote = api_one(r)
                local = local_stream(engine, args.model, args.tokens, seed=r)
            pairs.append((remote, local))
        if streamer is not None:
            streamer.close()
        median = statistics.median
        speed_ratio = median(a["tokens_per_s"] / b["tokens_per_s"] for a, b in pairs)
        ttft_delta_ms = 1000 * median(a["ttft_s"] - b["ttft_s"] for a, b in pairs)
        side = lambda i, key: median(pair[i][key] for pair in pairs)  # noqa: E731
        cold = (f"; a fresh client's first request {1000 * (streamer.cold['ttft_s'] - side(1, 'ttft_s')):+.0f} ms"
                if streamer is not None else "")
        ratios = sorted(a["tokens_per_s"] / b["tokens_per_s"] for a, b in pairs)
        print(f"(1) one stream, {len(pairs)} pairs: API {side(0, 'tokens_per_s'):.1f} tok/s, TTFT "
              f"{1000 * side(0, 'ttft_s'):.0f} ms | in-process {side(1, 'tokens_per_s'):.1f} tok/s, TTFT "
              f"{1000 * side(1, 'ttft_s'):.0f} ms -> {speed_ratio:.2f}x tokens/s (median of the pairs' ratios, "
              f"which ran {ratios[0]:.2f}x-{ratios[-1]:.2f}x; target >= 0.95x), TTFT {ttft_delta_ms:+.0f} ms "
              f"(target <= +20 ms{cold})")

        # (2) n concurrent API clients vs the same n one after another, in rounds, the order swapped each round
        def tokens_per_s(run: dict) -> float:
            return run["tokens"] / run["wall_s"]

        def local_run(what: str) -> dict:
            started = time.perf_counter()
            if what == "sequential":
                counts = [local_whole(engine, args.model, args.tokens, seed=i) for i in range(args.clients)]
                return {"tokens": sum(counts), "wall_s": time.perf_counter() - started}
            counts, wall = run_at_once(lambda i: local_whole(engine, args.model, args.tokens, seed=i), args.clients)
            return {"tokens": sum(counts), "wall_s": wall}

        for label, run in (("API", api), ("in-process", local_run)):
            rounds = []
            for r in range(args.rounds):
                order = ("sequential", "together") if r % 2 == 0 else ("together", "sequential")
                got = {what: tokens_per_s(run(what) if run is local_run else run(what, args.clients))
                       for what in order}
                rounds.append((got["together"], got["sequential"]))
            ratios = sorted(t / s for t, s in rounds)
            together_tps = statistics.median(t for t, _ in rounds)
            sequential_tps = statistics.median(s for _, s in rounds)
            print(f"{'(2)' if label == 'API' else '   '} {args.clients} {label} clients, {len(rounds)} rounds: together "
                  f"{together_tps:.1f} tok/s, one after another {sequential_tps:.1f} tok/s -> "
                  f"{statistics.median(ratios):.2f}x (median of the rounds' ratios, which ran {ratios[0]:.2f}x-"
                  f"{ratios[-1]:.2f}x; " + ("target >= 1.8x)" if label == "API" else "the engine's own ceiling)"))

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
