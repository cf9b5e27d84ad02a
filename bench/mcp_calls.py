"""Benchmark: what MCP adds to a call, against the same operation called in-process, in one run.

(1) round trip of a trivial tool (`list_jobs`, limit 1) over stdio (`python -m llmos_core mcp`, a child
    process, as a desktop client starts it) and over streamable HTTP (the API's /mcp, this process's
    engine), against llmos_core.mcp.operations.list_jobs called directly: medians, in ms;
(2) `chat` of N greedy tokens over HTTP MCP against engine.chat.generate in this process (the same engine and
    loaded model), in pairs with the order swapped each pair: the median of the pairs' time ratios and
    differences (this machine's speed drifts; a pair run back to back sees the same speed).
Usage: python bench/mcp_calls.py [--tiny | --model NAME] [--tokens 32] [--pairs 8] [--calls 30]
--tiny builds a random two-layer model in a temporary data folder (the overhead is what is measured, not
the model); else the data folder is LLMOS_HOME's, or the one the slow tests share.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def atimed(coroutine) -> float:
    start = time.perf_counter()
    await coroutine
    return time.perf_counter() - start


async def stdio_round_trips(home: Path, calls: int) -> list[float]:
    from mcp import Client, StdioServerParameters

    env = {**os.environ, "LLMOS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "llmos_core", "mcp"], env=env, cwd=str(ROOT))
    async with Client(params, read_timeout_seconds=300) as client:
        await client.call_tool("list_jobs", {"limit": 1})   # warm: the first call imports what the tool needs
        return [await atimed(client.call_tool("list_jobs", {"limit": 1})) for _ in range(calls)]


async def http_measures(engine, model: str, tokens: int, pairs: int, calls: int) -> dict:
    from mcp import Client

    from llmos_core.generation import SamplingParams

    params = SamplingParams.for_model(engine.catalog.get(model).sampling, do_sample=False, max_new_tokens=tokens)
    messages = [{"role": "user", "content": "Name three colours."}]
    arguments = {"model": model, "prompt": "Name three colours.", "max_tokens": tokens, "temperature": 0}
    async with Client(f"{engine.api.url}/mcp", read_timeout_seconds=300) as client:
        await client.call_tool("list_jobs", {"limit": 1})
        trips = [await atimed(client.call_tool("list_jobs", {"limit": 1})) for _ in range(calls)]
        await client.call_tool("chat", arguments)            # loads the model
        ratios, diffs = [], []
        for pair in range(pairs):
            here = lambda: engine.chat.generate(model, messages, params)   # noqa: E731
            if pair % 2:
                over = await atimed(client.call_tool("chat", arguments))
                direct = await asyncio.to_thread(timed, here)
            else:
                direct = await asyncio.to_thread(timed, here)
                over = await atimed(client.call_tool("chat", arguments))
            ratios.append(over / direct)
            diffs.append(over - direct)
    return {"trips": trips, "ratios": ratios, "diffs": diffs}


def tiny_home() -> tuple[Path, str]:
    import tiny_models

    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    folder = tiny_models.make_causal_lm(home / "tiny-source", chat_template=True)
    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    name = engine.catalog.register(engine.catalog.resolve(str(folder), name="tiny-chat")).name
    engine.close()
    return home, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    from llmos_core.accounts import LOCAL_ADMIN
    from llmos_core.api.server import start_api
    from llmos_core.engine import Engine
    from llmos_core.mcp import operations
    from llmos_core.settings import Settings

    if args.tiny:
        home, model = tiny_home()
    else:
        home = Path(os.environ.get("LLMOS_HOME", Path.home() / ".cache" / "llmos-test-embedded"))
        model = args.model
    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        start_api(engine, "127.0.0.1", 0)
        direct = [timed(lambda: operations.list_jobs(engine, LOCAL_ADMIN, limit=1)) for _ in range(args.calls)]
        http = asyncio.run(http_measures(engine, model, args.tokens, args.pairs, args.calls))
    finally:
        engine.close()
    stdio = asyncio.run(stdio_round_trips(home, args.calls))
    ms = lambda values: f"{statistics.median(values) * 1000:.2f} ms"   # noqa: E731
    print(f"model {model}, {args.tokens} greedy tokens, {args.pairs} pairs, {args.calls} calls")
    print(f"list_jobs: direct {ms(direct)}, stdio {ms(stdio)}, HTTP {ms(http['trips'])} (medians)")
    print(f"chat over HTTP MCP / in-process: {statistics.median(http['ratios']):.3f}x time, "
          f"+{ms(http['diffs'])} (median of pairs)")


if __name__ == "__main__":
    main()
