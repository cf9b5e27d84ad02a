"""Translation throughput: batched against one segment at a time on the same model in the same run, and
the cache's effect on a document with repeated lines. Prints ratios; writes nothing.

    python bench/translate.py                 # tiny random BART (fast, measures the pipeline)
    python bench/translate.py --gemma         # also the embedded gemma-3-270m (slow: minutes)
    python bench/translate.py --backends      # gemma-3-270m: llama.cpp engine against transformers, one run:
                                              # seg/s on a 50-segment document, chrF on the fixed set
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llmos_core.engine import Engine  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.translation import documents, open_engine  # noqa: E402
from llmos_core.translation.translator import Translator  # noqa: E402

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Translate the document and keep its structure.",
             "Hello, how are you today? I am fine, thank you.", "LLM OS runs language models on this machine.",
             "The report is due on Monday morning.", "Please check the settings before you start.",
             "Our team shipped two releases this quarter.", "The outlook for next year is good."]


def timed(model, texts: list[str], batch_size: int) -> tuple[float, Translator]:
    translator = Translator(model, "de", "en", batch_size=batch_size)
    started = time.perf_counter()
    translator.translate(texts)
    return time.perf_counter() - started, translator


def bench(engine: Engine, name: str, n_unique: int, batch: int) -> None:
    with open_engine(engine, name) as model:
        texts = [f"{SENTENCES[i % len(SENTENCES)]} Item {chr(65 + i // len(SENTENCES))}." for i in range(n_unique)]
        timed(model, texts[:2], 2)   # warm-up: first calls allocate
        one, _ = timed(model, texts, 1)
        many, _ = timed(model, texts, batch)
        print(f"{name}: {n_unique} segments; one at a time {n_unique / one:.2f} seg/s, batch {batch} "
              f"{n_unique / many:.2f} seg/s -> batching x{one / many:.2f}")
        repeated = "\n".join(texts[i % (n_unique // 4)] for i in range(n_unique)) + "\n"
        doc = documents.parse(repeated.encode(), "repeated.txt")
        cached, translator = timed(model, doc.texts(), batch)
        print(f"{name}: {len(doc.segments)} lines, {translator.stats.unique} distinct: {cached:.2f} s with the cache "
              f"vs {many:.2f} s for as many distinct lines -> cache x{many / cached:.2f} "
              f"({translator.stats.cached} sentences from the cache)")


def compare_backends(engine: Engine, name: str, n_segments: int) -> None:
    """The same model, document and set on both backends, in this run: speed ratio and chrF of each."""
    import translation_eval

    texts = [f"{SENTENCES[i % len(SENTENCES)]} Item {i + 1}." for i in range(n_segments)]
    figures = {}
    for backend in ("llamacpp", "transformers"):
        with open_engine(engine, name, backend=backend) as model:
            timed(model, texts[:2], 2)   # warm-up
            seconds, translator = timed(model, texts, 8)
            scores = {t: translation_eval.score(model, t)[0] for t in translation_eval.TARGETS}
        engine.models.unload(name)
        figures[backend] = (n_segments / seconds, scores)
        print(f"{name} on {backend}: {n_segments} segments in {seconds:.1f} s = {n_segments / seconds:.2f} seg/s "
              f"({translator.stats.kept_source} kept in the source); chrF "
              + ", ".join(f"{t} {v:.1f}" for t, v in scores.items()))
    fast, slow = figures["llamacpp"], figures["transformers"]
    print(f"llama.cpp / transformers: x{fast[0] / slow[0]:.2f} seg/s (target >= 3); chrF difference "
          + ", ".join(f"{t} {fast[1][t] - slow[1][t]:+.1f}" for t in fast[1]) + " (target within 1 point)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gemma", action="store_true")
    parser.add_argument("--backends", action="store_true")
    parser.add_argument("--segments", type=int, default=32)
    args = parser.parse_args()
    if args.backends:
        engine = Engine(Settings(home=Path.home() / ".cache" / "llmos-test-embedded"), primary=False,
                        start_threads=False)
        compare_backends(engine, "gemma-3-270m", 50)
        engine.close()
        return
    import tiny_models

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Settings(home=Path(tmp) / "home"), primary=False, start_threads=False)
        spec = engine.catalog.resolve(str(tiny_models.make_seq2seq(Path(tmp) / "tiny-mt")))
        spec.name = "tiny-mt"
        engine.catalog.register(spec)
        bench(engine, "tiny-mt", args.segments, 16)
        engine.close()
    if args.gemma:
        home = Path.home() / ".cache" / "llmos-test-embedded"
        engine = Engine(Settings(home=home), primary=False, start_threads=False)
        bench(engine, "gemma-3-270m", 16, 8)
        engine.close()


if __name__ == "__main__":
    main()
