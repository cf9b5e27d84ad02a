"""Fair sharing: the second user's time to first token while a first user runs eight streams, against the
same request alone (target: within 1.5x), in-process through the engine's generation service on the
embedded SmolLM2 served by llama.cpp. The same is measured with both requests from the local admin of a
single-user start (no accounts: the first user's streams may take every slot) to show what the fair
admission changes. Rounds alternate alone / beside eight streams; medians and every ratio are printed, and
the first user's tokens/s in the second after the second user's request (what sharing costs them).
--compare also runs every round with the decoder's step stopping off (llamacpp_batch.py, fair_steps.py:
a second user's newcomer stops the step in flight), alternating, to show what that changes on both sides.

    python bench/fairness.py [--rounds 5] [--tokens 16] [--unfair-rounds 1] [--compare]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmos_core.engine import Engine  # noqa: E402
from llmos_core.generation import SamplingParams  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
STORY = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}]
STREAMS = 8
# Each background reply may write this many tokens: eight of them and the second request fit the KV cache the
# decoder's slots share (it reserves prompt + max_new_tokens per row), so every row is admitted at once.
BACKGROUND_TOKENS = 400
# The first user's tokens/s are counted over this long from the second user's request.
WINDOW_S = 1.0


def first_token_s(engine: Engine, user, tokens: int) -> float:
    """Seconds from the request to its first generated token (queueing included)."""
    started = time.perf_counter()
    stream = engine.chat.stream(MODEL, QUESTION, SamplingParams(max_new_tokens=tokens, do_sample=False),
                                "llamacpp", user=user)
    try:
        for event in stream:
            if event.tokens >= 1:
                return time.perf_counter() - started
        return time.perf_counter() - started
    finally:
        stream.close()


class Background:
    """`n` long streams of one user, running until stopped; `ready` once each has written a token."""

    def __init__(self, engine: Engine, user, n: int):
        self.cancel = threading.Event()
        self.started = threading.Barrier(n + 1, timeout=120)
        self.written = [0] * n   # tokens each stream has written so far
        self.threads = [threading.Thread(target=self._run, args=(engine, user, i), daemon=True) for i in range(n)]
        for thread in self.threads:
            thread.start()

    def _run(self, engine: Engine, user, index: int) -> None:
        stream = engine.chat.stream(MODEL, STORY, SamplingParams(max_new_tokens=BACKGROUND_TOKENS, do_sample=False),
                                    "llamacpp", cancel=self.cancel, user=user)
        told = False
        try:
            for event in stream:
                self.written[index] = event.tokens
                if not told and (event.tokens >= 1 or event.queued is not None):   # writing, or waiting its turn
                    told = True
                    self.started.wait()
        except Exception as exc:   # say why, then let the barrier fail
            print(f"a background stream failed: {exc!r}", file=sys.stderr)
        finally:
            stream.close()
            if not told:
                self.started.abort()

    def wait_running(self) -> None:
        self.started.wait()
        time.sleep(0.3)           # a few decoding steps: the eight are mid-reply

    def tokens_per_s(self, seconds: float) -> float:
        """The streams' tokens per second over the next `seconds`."""
        before, started = sum(self.written), time.perf_counter()
        time.sleep(seconds)
        return (sum(self.written) - before) / (time.perf_counter() - started)

    def stop(self) -> None:
        self.cancel.set()
        for thread in self.threads:
            thread.join(timeout=30)


def beside_streams(engine: Engine, first, second, tokens: int) -> tuple[float, float]:
    """The second user's time to first token beside the first's eight streams, and those streams' tokens/s
    in the WINDOW_S from that request on."""
    background = Background(engine, first, STREAMS)
    try:
        background.wait_running()
        rate: list[float] = []
        counter = threading.Thread(target=lambda: rate.append(background.tokens_per_s(WINDOW_S)))
        counter.start()
        ttft = first_token_s(engine, second, tokens)
        counter.join()
        return ttft, rate[0]
    finally:
        background.stop()


def settle(decoder) -> None:
    """Wait until the decoder has let go of the stopped streams' rows (they leave at its next step), so the
    next request alone is alone."""
    deadline = time.perf_counter() + 10
    while decoder.stats()["running"] and time.perf_counter() < deadline:
        time.sleep(0.01)


def measure(engine: Engine, first, second, rounds: int, tokens: int, decoder, decoders: dict) -> dict:
    """Per mode (the decoder's step stopping on / off, alternating within each round): the medians of alone,
    beside and the first user's tokens/s, and every round's ratio."""
    interrupt = decoder.interrupt
    runs, was = {mode: {"alone": [], "beside": [], "rate": []} for mode in decoders}, interrupt.enabled
    for _ in range(rounds):
        for mode, enabled in decoders.items():
            interrupt.enabled = enabled and was
            run = runs[mode]
            run["alone"].append(first_token_s(engine, second, tokens))
            stops, lost = interrupt.stops, interrupt.lost_s
            ttft, rate = beside_streams(engine, first, second, tokens)
            settle(decoder)
            run["beside"].append(ttft)
            run["rate"].append(rate)
            run["stops"] = run.get("stops", 0) + interrupt.stops - stops
            run["lost"] = run.get("lost", 0.0) + interrupt.lost_s - lost
    interrupt.enabled = was
    return {mode: {"alone": statistics.median(run["alone"]), "beside": statistics.median(run["beside"]),
                   "rate": statistics.median(run["rate"]), "stops": run["stops"], "lost": run["lost"],
                   "ratios": sorted(b / a for a, b in zip(run["alone"], run["beside"]))}
            for mode, run in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=16, help="new tokens of the second user's request")
    parser.add_argument("--unfair-rounds", type=int, default=1,
                        help="rounds without accounts (each waits for a background reply to end: minutes)")
    parser.add_argument("--compare", action="store_true",
                        help="also measure each round with the decoder's step stopping off (alternating)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="llmos-fairness-"))
    engine = Engine(Settings.from_env(home=str(home)), primary=False, start_threads=False)
    try:
        decoder = engine.models.load(MODEL, "llamacpp").model.decoder
        decoders = {"stopping on": True, "stopping off": False} if args.compare else {"stopping on": True}
        a = engine.accounts.add_user("first", "bench password")
        b = engine.accounts.add_user("second", "bench password")
        engine.accounts.set_limits("first", concurrent_generations=STREAMS)
        first_token_s(engine, b, args.tokens)          # warm up
        print(f"# {MODEL} on llama.cpp, {STREAMS} streams of a first user, {args.rounds} rounds, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'who sends':42} {'decoder':13} {'alone s':>8} {'beside 8 s':>10} {'ratio':>6} "
              f"{'8 streams tok/s':>15}  every round")
        results = {}
        for label, first, second, rounds in (("two users (fair admission)", a, b, args.rounds),
                                             ("one local admin (no accounts: no headroom)", None, None,
                                              args.unfair_rounds)):
            if rounds < 1:
                continue
            for mode, m in measure(engine, first, second, rounds, args.tokens, decoder, decoders).items():
                results.setdefault(label, m["beside"] / m["alone"])
                print(f"{label:42} {mode:13} {m['alone']:8.3f} {m['beside']:10.3f} {m['beside'] / m['alone']:5.2f}x "
                      f"{m['rate']:15.1f}  " + ", ".join(f"{r:.2f}x" for r in m["ratios"]))
                if m["stops"]:   # what stopping cost the eight streams: the stopped steps' time, done again
                    print(f"{'':56} steps stopped: {m['stops']} in {rounds} rounds, "
                          f"{1000 * m['lost'] / m['stops']:.0f} ms of decoding lost per stop")
        fair = results["two users (fair admission)"]
        print(f"target: the second user's first token beside 8 streams within 1.5x of alone: {fair:.2f}x "
              f"{'MET' if fair <= 1.5 else 'MISSED'}")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
