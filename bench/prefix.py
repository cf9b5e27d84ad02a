"""The prefix cache and prompt lookup (issue 30), in-process through the engine's chat service on the embedded
Gemma 3 270M served by llama.cpp, greedy. One run measures, with the cache on and off:
  - conversations taking turns, each over its own ~2,000-token document: time to first token of turns 2..T
    against turn 1 (target: at most 10%);
  - free chat: tokens/s with prompt lookup on against off (target: at least 0.95x), and on a reply that
    copies its prompt (a list to repeat), with the output compared token for token (one model, the two
    settings in alternation);
  - a document of --segments distinct segments translated (English to German) with the prefix cache and
    prompt lookup against neither: total time and identical output;
  - the prefix cache's memory at each point.
  - with --ask: Chat with documents (Ask's passages) in --conversations conversations taking turns, each over
    its own collection (one ~2,000-token document, sent whole): time to first token of the follow-ups against
    the first question (target: at most 25%), the follow-ups repeating the first prompt (rag/answer.py,
    follow_up) with the cache on and off, and with the cache on but the old layout (passages in the last turn);
  - with --transformers: the conversations on SmolLM2 served by the transformers runner (its prefix cache:
    models/transformers_prefix.py), the cache on and off, and the decode speed with the pages of each.

    python bench/prefix.py [--conversations 4] [--turns 4] [--off-turns 2] [--segments 40] [--threads 2]
    python bench/prefix.py --ask [--conversations 2] [--turns 3]
    python bench/prefix.py --transformers [--conversations 2] [--turns 3] [--old-pages] [--tokens 32] [--rounds 3]
        # the conversations and the decode speed, SmolLM2 on transformers
    python bench/prefix.py --decode-pages [--tokens 40] [--rounds 4]   # decode speed, small pages against 256
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmos_core.accounts import LOCAL_ADMIN  # noqa: E402
from llmos_core.engine import Engine  # noqa: E402
from llmos_core.usecases import ask as asking, chat  # noqa: E402
from llmos_core.generation import SamplingParams  # noqa: E402
from llmos_core.models import transformers_prefix, transformers_runner  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.translation import open_engine  # noqa: E402
from llmos_core.translation.translator import Translator  # noqa: E402

MODEL = "gemma-3-270m"
SMOL = "smollm2-135m-instruct"       # a Llama: transformers shares its blocks (Gemma 3's sliding layers: not)
WORDS = "river stone lantern harbour copper meadow signal orchard falcon ledger winter canal tower ember".split()
QUESTIONS = ["Which section mentions the falcon?", "How many times was the lantern counted?",
             "Summarise it in one line."]
FREE = "Write a short story about a lighthouse keeper who finds a letter in a bottle."
COPY = ("Repeat this inventory line by line: crate 17 of copper wire, crate 42 of lantern glass, crate 99 of "
        "harbour rope, crate 3 of orchard seed, crate 55 of tower bolts, crate 61 of canal paint.")


def document(k: int, sections: int = 98) -> str:
    return " ".join(f"Section {k}.{i}: the {WORDS[(i * 7 + k) % len(WORDS)]} near the {WORDS[(i * 3 + k) % len(WORDS)]}"
                    f" was counted {i * 13 + k} times." for i in range(sections))


def run(engine: Engine, messages: list[dict], tokens: int, model: str = MODEL,
        backend: str = "llamacpp") -> tuple[float, float, int, str]:
    """(seconds to first token, seconds in all, tokens written, text) of one greedy reply."""
    started, first, text, count = time.perf_counter(), None, "", 0
    for event in engine.chat.stream(model, messages, SamplingParams(max_new_tokens=tokens, do_sample=False),
                                    backend):
        if first is None and event.tokens >= 1:
            first = time.perf_counter() - started
        text += event.text or ""
        count = max(count, event.tokens)
    return first or 0.0, time.perf_counter() - started, count, text


def segments(n: int) -> list[str]:
    """Distinct sentences with the names and numbers a translation copies."""
    return [f"Order {1000 + 37 * i} for {WORDS[i % len(WORDS)].title()} Ltd. ships {i + 2} crates of "
            f"{WORDS[(i * 5) % len(WORDS)]} parts on 2024-0{1 + i % 9}-1{i % 10}." for i in range(n)]


def translate(engine: Engine, n: int) -> tuple[float, list[str]]:
    with open_engine(engine, MODEL, backend="llamacpp") as model:
        translator = Translator(model, "de", "en", batch_size=8)
        started = time.perf_counter()
        out = translator.translate(segments(n))
        return time.perf_counter() - started, out


def lookup_speeds(engine: Engine, decoder, tokens: int, rounds: int) -> None:
    """Decode tokens/s of a free reply and of one that copies its prompt, prompt lookup off and on in
    alternation on one loaded model (the machine's load drifts within minutes); medians, same text checked."""
    for name, prompt in (("free chat", FREE), ("copying reply", COPY)):
        speeds, texts = {False: [], True: []}, {}
        for _ in range(rounds):
            for lookup in (False, True):
                decoder.lookup = lookup
                decoder.drop_cached()
                first, total, count, texts[lookup] = run(engine, [{"role": "user", "content": prompt}], tokens)
                speeds[lookup].append((count - 1) / (total - first))
        off, on = statistics.median(speeds[False]), statistics.median(speeds[True])
        print(f"  {name}: {off:.1f} tokens/s without prompt lookup, {on:.1f} with: {on / off:.2f}x "
              f"(target >= 0.95x); same text: {texts[False] == texts[True]}; cache {cache_mb(engine)}", flush=True)
    print(f"  {next(m['prefix_cache'] for m in engine.models.resident() if m['name'] == MODEL)}")


def cache_mb(engine: Engine, model: str = MODEL) -> str:
    stats = next(m["prefix_cache"] for m in engine.models.resident() if m["name"] == model)
    return f"{stats['bytes'] / 1024**2:.0f} MB in {stats['entries']} entries"


def conversations(engine: Engine, n: int, turns: int, label: str, model: str = MODEL,
                  backend: str = "llamacpp", sections: int = 98, replies: list | None = None) -> list[list[float]]:
    chats = [[{"role": "user", "content": document(k, sections) + "\n\nWhat is this document about?"}] for k in range(n)]
    ttft = [[] for _ in range(turns)]
    for turn in range(turns):
        for k in range(n):
            first, _, _, text = run(engine, chats[k], 16, model, backend)
            ttft[turn].append(first)
            chats[k] += [{"role": "assistant", "content": text}, {"role": "user", "content": QUESTIONS[turn % 3]}]
            if replies is not None:
                replies.append(text)
        times = ", ".join(f"{t:.2f}" for t in ttft[turn])
        print(f"  {label} turn {turn + 1}: TTFT {times} s; cache {cache_mb(engine, model)}",
              flush=True)
    return ttft


ASK = ["Which section mentions the falcon near the orchard?", "How many times was it counted?",
       "Which sections mention the copper ledger?", "Is the winter canal in it?"]


def ask_turns(engine: Engine, n: int, turns: int, label: str) -> list[list[float]]:
    """Chat with documents: n conversations taking turns, each over its own collection; per turn the seconds
    from sending the message (retrieval included) to the first token."""
    params = SamplingParams(max_new_tokens=16, do_sample=False)
    chats, ttft = [None] * n, [[] for _ in range(turns)]
    for turn in range(turns):
        layouts = []
        for k in range(n):
            started = time.perf_counter()
            step = chat.start_turn(engine, LOCAL_ADMIN, chats[k], chat.SEND, model=MODEL, params=params,
                                   prompt=ASK[turn % len(ASK)], collection=f"bench-prefix-{k}")
            chats[k] = step.conversation_id
            if step.needs_loading:
                step.load_model()
            with step.replying() as reply:
                for event in reply.events():
                    if event.tokens >= 1 and len(ttft[turn]) == k:
                        ttft[turn].append(time.perf_counter() - started)
            layouts.append("repeats the first prompt" if step.plan.passages_turn is not None else
                           ("whole document" if step.plan.context.whole_document else "passages") + " in the last turn")
        print(f"  {label} turn {turn + 1}: TTFT {', '.join(f'{t:.2f}' for t in ttft[turn])} s "
              f"({'; '.join(sorted(set(layouts)))}); cache {cache_mb(engine)}", flush=True)
    return ttft


def ask_part(home: Path, args) -> None:
    engine = Engine(Settings(home=home, threads=args.threads), primary=False, start_threads=False)
    try:
        for k in range(args.conversations):
            asking.add_files(engine, LOCAL_ADMIN, f"bench-prefix-{k}", [(f"ledger-{k}.md", document(k).encode())])
    finally:
        engine.close()
    results, follow_up = {}, asking.follow_up
    try:
        for label, on, repeat in (("cache on ", True, True), ("cache off", False, True), ("old order", True, False)):
            asking.follow_up = follow_up if repeat else (lambda *a: None)
            engine = Engine(Settings(home=home, threads=args.threads, prefix_cache=on, prompt_lookup=on),
                            primary=False, start_threads=False)
            try:
                results[label] = ask_turns(engine, args.conversations, args.turns, label)
            finally:
                engine.close()
    finally:
        asking.follow_up = follow_up
        engine = Engine(Settings(home=home), primary=False, start_threads=False)
        for k in range(args.conversations):
            asking.remove_collection(engine, LOCAL_ADMIN, f"bench-prefix-{k}")
        engine.close()
    print()
    for label, ttft in results.items():
        first, later = statistics.mean(ttft[0]), statistics.mean(t for turn in ttft[1:] for t in turn)
        print(f"ask follow-ups, {label}: turns 2-{args.turns} TTFT {later:.2f} s = {later / first:.1%} of the first "
              f"question's ({first:.2f} s) (target <= 25% with the cache on)")


def transformers_part(home: Path, args) -> None:
    """The conversations on SmolLM2 served by transformers (continuous batching's kept blocks: transformers_prefix.py),
    over ~1,000-token documents: the transformers runner's window is 2,048 tokens (runner.CONTEXT_CAP), and a
    ~2,000-token document would be dropped from turn 2 on (the oldest turns go first). Each part also measures the
    decode speed of a free reply (--tokens, median of --rounds), whose pages differ: PREFIX_PAGE tokens with the
    cache on, CACHE_PAGE off; --old-pages adds a part with the cache on and CACHE_PAGE-token pages (before h30c)."""
    parts = [("on ", True, transformers_prefix.PREFIX_PAGE), ("off", False, None)]
    if args.old_pages:
        parts.append(("on, old pages", True, transformers_runner.CACHE_PAGE))
    results, speeds, replies, new_page = {}, {}, {}, transformers_prefix.PREFIX_PAGE
    for label, on, page in parts:
        transformers_prefix.PREFIX_PAGE = page or new_page
        engine = Engine(Settings(home=home, threads=args.threads, prefix_cache=on), primary=False, start_threads=False)
        try:
            resident = engine.models.load(SMOL, "transformers")
            print(f"cache {label.strip()}: model {resident.measured_bytes / 1024**2:.0f} MB, pages of "
                  f"{engine.chat.runner(resident).page} tokens", flush=True)
            run(engine, [{"role": "user", "content": FREE}], 4, SMOL, "transformers")   # the batching's first use
            results[label] = conversations(engine, args.conversations, args.turns if on else args.off_turns,
                                           label, SMOL, "transformers", 45, replies.setdefault(label, []))
            if args.tokens:
                speeds[label] = statistics.median(decode_speed(engine, args.tokens) for _ in range(args.rounds))
                print(f"  decode {speeds[label]:.1f} tokens/s (free reply of {args.tokens} tokens, median of "
                      f"{args.rounds})", flush=True)
            print(f"  batching cache {resident.working_bytes / 1024**2:.0f} MB (the prefix cache's room included); "
                  f"{resident.prefix_cache()}")
        finally:
            engine.close()
            transformers_prefix.PREFIX_PAGE = new_page
    report({True: results["on "], False: results["off"]}, args)
    if args.old_pages:
        old = results["on, old pages"]
        later = statistics.mean(t for turn in old[1:] for t in turn)
        print(f"with the cache on and {transformers_runner.CACHE_PAGE}-token pages: turns 2-{args.turns} "
              f"{later:.2f} s = {later / statistics.mean(old[0]):.1%} of turn 1")
    same = [replies["on "][:len(other)] == other[:len(replies["on "])] for other in replies.values()]
    print(f"greedy replies the same with the cache on as off{' and with the old pages' if args.old_pages else ''}: "
          f"{all(same)}")
    if len(speeds) > 1:
        print("decode speed: " + ", ".join(f"{label.strip()} {speed:.1f} tokens/s" for label, speed in speeds.items())
              + f"; on/off {speeds['on '] / speeds['off']:.2f}x")


def transformers_decode(home: Path, args) -> None:
    """Decode speed with the cache on and PREFIX_PAGE-token pages against CACHE_PAGE-token ones: both models loaded,
    replies in alternation (the machine's load drifts within minutes), a free reply and one over a ~1,000-token
    document (its attention reads more pages); medians of --rounds."""
    engines, new_page = {}, transformers_prefix.PREFIX_PAGE
    try:
        for page in (new_page, transformers_runner.CACHE_PAGE):
            transformers_prefix.PREFIX_PAGE = page
            engines[page] = Engine(Settings(home=home, threads=args.threads), primary=False, start_threads=False)
            engines[page].models.load(SMOL, "transformers")
            run(engines[page], [{"role": "user", "content": FREE}], 4, SMOL, "transformers")
        transformers_prefix.PREFIX_PAGE = new_page
        prompts = {"free reply": FREE, "reply over a document": document(0, 45) + "\n\nWhat is this document about?"}
        speeds = {(page, name): [] for page in engines for name in prompts}
        for _ in range(args.rounds):
            for page, engine in engines.items():
                for name, prompt in prompts.items():
                    first, total, count, _ = run(engine, [{"role": "user", "content": prompt}], args.tokens, SMOL,
                                                 "transformers")
                    speeds[page, name].append((count - 1) / (total - first))
        for name in prompts:
            new, old = (statistics.median(speeds[page, name]) for page in engines)
            print(f"decode, {name}: {new:.1f} tokens/s with {new_page}-token pages, {old:.1f} with "
                  f"{transformers_runner.CACHE_PAGE}: {new / old:.2f}x")
    finally:
        transformers_prefix.PREFIX_PAGE = new_page
        for engine in engines.values():
            engine.close()


def decode_speed(engine: Engine, tokens: int) -> float:
    """Tokens/s of a free reply after its first token, on SmolLM2 through transformers."""
    first, total, count, _ = run(engine, [{"role": "user", "content": FREE}], tokens, SMOL, "transformers")
    return (count - 1) / (total - first)


def report(results: dict, args) -> None:
    on, off = results[True], results[False]
    first_on = statistics.mean(on[0])
    later_on = statistics.mean(t for turn in on[1:] for t in turn)
    later_off = statistics.mean(t for turn in off[1:] for t in turn)
    print(f"\nconversations: turns 2-{args.turns} TTFT {later_on:.2f} s = {later_on / first_on:.1%} of turn 1 "
          f"({first_on:.2f} s) with the cache (target <= 10%); without it turns 2-{args.off_turns} "
          f"{later_off:.2f} s = {later_off / statistics.mean(off[0]):.0%} of turn 1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--off-turns", type=int, default=2, help="turns measured with the cache off")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--segments", type=int, default=40, help="segments translated (0: skip)")
    parser.add_argument("--tokens", type=int, default=96, help="tokens of each free-chat reply (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="free-chat replies per setting")
    parser.add_argument("--ask", action="store_true", help="measure Ask follow-ups only (Chat with documents)")
    parser.add_argument("--transformers", action="store_true",
                        help="measure the conversations only, on SmolLM2 through the transformers runner")
    parser.add_argument("--decode-pages", action="store_true",
                        help="decode speed on transformers with the cache's small pages against 256-token ones")
    parser.add_argument("--old-pages", action="store_true",
                        help="with --transformers: also the cache on with transformers' 256-token pages")
    args = parser.parse_args()
    home = Path(os.environ.get("LLMOS_BENCH_HOME") or tempfile.mkdtemp(prefix="llmos-prefix-"))
    if args.ask:
        ask_part(home, args)
        return
    if args.decode_pages:
        transformers_decode(home, args)
        return
    if args.transformers:
        transformers_part(home, args)
        return
    results = {}
    for on in (True, False):
        engine = Engine(Settings(home=home, threads=args.threads, prefix_cache=on, prompt_lookup=on),
                        primary=False, start_threads=False)
        try:
            resident = engine.models.load(MODEL, "llamacpp")
            print(f"cache {'on' if on else 'off'}: model measured {resident.measured_bytes / 1024**2:.0f} MB "
                  f"(prefix cache room included: {resident.prefix_cache()['capacity_bytes'] / 1024**2:.0f} MB of KV)")
            if args.segments:
                results[on, "translate"] = translate(engine, args.segments)
                print(f"  translation of {args.segments} segments: {results[on, 'translate'][0]:.1f} s; "
                      f"cache {cache_mb(engine)}; {resident.prefix_cache()}", flush=True)
                resident.model.decoder.drop_cached()
            results[on] = conversations(engine, args.conversations, args.turns if on else args.off_turns,
                                        "on " if on else "off") if args.turns else []
            resident.model.decoder.drop_cached()
            if on and args.tokens:
                lookup_speeds(engine, resident.model.decoder, args.tokens, args.rounds)
        finally:
            engine.close()
    if args.segments:
        (fast, text_on), (slow, text_off) = results[True, "translate"], results[False, "translate"]
        print(f"translation, cache and lookup on/off: {slow / fast:.2f}x faster (target >= 1.5x); "
              f"identical output: {text_on == text_off}")
    if not args.turns:
        return
    report(results, args)


if __name__ == "__main__":
    main()
