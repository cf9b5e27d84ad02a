"""Translation quality on the sets written for issue 28, the default model and engine, beside the code
before issue 28 (today's behaviour) measured in the same run.

Per direction (en->de, en->fr, en->es): chrF against the human references (sacrebleu) on the plain
sentences, on the one-paragraph Markdown/HTML documents (scored on the rendered document, markup and
all) and on both; kept_source (segments left in the source language) on each; seconds per sentence
(the whole set through one Translator, after a warm-up that reads the few-shot prompts). Also chrF on
the fixed 12-sentence set (tests/data/translation_eval.json) that the slow test keeps from falling.

    python bench/quality_translate.py                    # default model and engine, and the baseline
    python bench/quality_translate.py --no-baseline      # the current code only
    python bench/quality_translate.py --models gemma-3-270m,smollm2-135m-instruct   # models side by side
    python bench/quality_translate.py --json

The baseline is the code at BASELINE_REV (the branch point before issue 28), unpacked with `git archive`
into a temporary folder and run in a child process with the same sets, model and engine. bench/quality.py
imports run_translate(args): args needs none of these attributes (missing ones take the defaults).
Targets (issue 28): kept_source 0 on plain sentences, at most 1 in 40 with markup; chrF >= 52 (de) and
>= 64 (fr); seconds per sentence no more than the baseline's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "tests" / "data" / "translation" / "en_sentences.json"
FIXED = ROOT / "tests" / "data" / "translation_eval.json"
BASELINE_REV = "c5111a0"   # main before issue 28: the marker prompt for every sentence
# Measured before this work (issue 28): the CLI's defaults on 12 plain sentences to German, and the
# transformers engine before llama.cpp on the fixed set (docs/BENCHMARKS.md).
TODAY = {"chrf_de_issue_12": 47.4, "kept_de_issue_12": "3/12", "chrf_fixed_de_transformers": 52.6,
         "chrf_fixed_fr_transformers": 64.7}


def _chrf(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 1)


def _kept(stats) -> int:
    """The count of segments kept in the source: an int now, a list of indices before issue 28."""
    kept = stats.kept_source
    return len(kept) if isinstance(kept, list) else int(kept)


def evaluate(model, target: str, data: dict, fixed: dict) -> dict:
    """One direction through one Translator per part: translations, chrF, kept_source, seconds."""
    from llmos_core.translation import documents
    from llmos_core.translation.translator import Translator

    Translator(model, target, "en").translate(["Good morning.", "Press 5 now."])   # warm-up: both prompts read
    plain_src = [item["en"] for item in data["plain"]]
    started = time.perf_counter()
    plain = Translator(model, target, "en")
    plain_out = plain.translate(plain_src)
    docs = [documents.parse(item["en"].encode(), f"s.{item['format']}") for item in data["markup"]]
    texts = [t for doc in docs for t in doc.texts()]
    markup = Translator(model, target, "en")
    out = markup.translate(texts)
    seconds = time.perf_counter() - started
    rendered, at = [], 0
    for doc in docs:
        rendered.append(doc.render(out[at:at + len(doc.segments)]).decode("utf-8").strip())
        at += len(doc.segments)
    refs_plain = [item[target] for item in data["plain"]]
    refs_markup = [item[target] for item in data["markup"]]
    result = {"sentences": len(plain_src) + len(docs),
              "chrf": _chrf(plain_out + rendered, refs_plain + refs_markup),
              "chrf_plain": _chrf(plain_out, refs_plain), "chrf_markup": _chrf(rendered, refs_markup),
              "kept_source_plain": _kept(plain.stats), "kept_source_markup": _kept(markup.stats),
              "seconds_per_sentence": round(seconds / (len(plain_src) + len(docs)), 3),
              "translations": plain_out + rendered}
    if target in fixed:
        fixed_out = Translator(model, target, "en").translate(fixed["en"])
        result["chrf_fixed12"] = _chrf(fixed_out, fixed[target])
    return result


def measure_here(model_name: str | None, targets: list[str], backend: str = "auto", home: Path | None = None) -> dict:
    """The current code (whatever is first on sys.path): the model (default: the page's and the CLI's
    default) on every target."""
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings
    from llmos_core.translation import open_engine
    from llmos_core.translation.model_choice import default_translation_model

    data = json.loads(SETS.read_text(encoding="utf-8"))
    fixed = json.loads(FIXED.read_text(encoding="utf-8"))
    home = home or Path.home() / ".cache" / "llmos-test-embedded"
    engine = Engine(Settings(home=home, threads=2), primary=False, start_threads=False)
    try:
        name = model_name or default_translation_model(engine.catalog)
        with open_engine(engine, name, backend=backend) as model:
            directions = {t: evaluate(model, t, data, fixed) for t in targets}
            return {"model": name, "backend": getattr(model, "backend", ""), "directions": directions}
    finally:
        engine.close()


def measure_baseline(model_name: str, targets: list[str], backend: str, rev: str = BASELINE_REV) -> dict:
    """The same measurement on the code at `rev`, in a child process (its modules, not ours)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "llmos_core"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        child = subprocess.run([sys.executable, __file__, "--code", tmp, "--no-baseline", "--json", "--model",
                                model_name, "--targets", ",".join(targets), "--backend", backend],
                               capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"the baseline run failed: {child.stderr[-2000:]}")
    return json.loads(child.stdout)["current"][0]


def run_translate(args=None) -> dict:
    """The measurement bench/quality.py reports: {"current": [per model], "baseline": {...} or None,
    "today": figures from before, "targets": ...}. args: an argparse namespace (or None); read with
    defaults: model(s), targets, backend, baseline (bool)."""
    models = [m for m in (getattr(args, "models", None) or getattr(args, "model", None) or "").split(",") if m] or [None]
    targets = (getattr(args, "targets", None) or "de,fr,es").split(",")
    backend = getattr(args, "backend", None) or "auto"
    current = [measure_here(name, targets, backend) for name in models]
    baseline = None
    if getattr(args, "baseline", True):
        baseline = measure_baseline(current[0]["model"], targets, backend)
    return {"current": current, "baseline": baseline, "today": TODAY,
            "targets": {"kept_source_plain": 0, "kept_source_markup_per_40": 1, "chrf_de": 52, "chrf_fr": 64,
                        "seconds_per_sentence": "<= baseline"}}


def report(result: dict) -> None:
    def line(label: str, run: dict) -> None:
        for target, d in run["directions"].items():
            print(f"{label:<28} en->{target}: chrF {d['chrf']:5.1f} (plain {d['chrf_plain']:5.1f}, markup "
                  f"{d['chrf_markup']:5.1f}; fixed-12 {d.get('chrf_fixed12', float('nan')):5.1f})  kept_source plain "
                  f"{d['kept_source_plain']}, markup {d['kept_source_markup']} of {d['sentences']}  "
                  f"{d['seconds_per_sentence']:.2f} s/sentence")

    for run in result["current"]:
        line(f"{run['model']} ({run['backend']})", run)
    base = result["baseline"]
    if base:
        line(f"baseline {BASELINE_REV} ({base['backend']})", base)
        now = result["current"][0]["directions"]
        for target, d in base["directions"].items():
            print(f"en->{target}: chrF {now[target]['chrf'] - d['chrf']:+.1f}; seconds per sentence x"
                  f"{now[target]['seconds_per_sentence'] / d['seconds_per_sentence']:.2f} of the baseline's")
    print("before issue 28: " + ", ".join(f"{k} {v}" for k, v in result["today"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="catalog name (default: the page's and the CLI's default)")
    parser.add_argument("--models", help="several catalog names, comma separated, measured one after another")
    parser.add_argument("--targets", default="de,fr,es")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--code", help=argparse.SUPPRESS)   # the baseline's child: import llmos_core from here
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, args.code or str(ROOT))
    result = run_translate(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        report(result)


if __name__ == "__main__":
    main()
