"""Evaluation: metrics and the paired bootstrap on known numbers, the verdict rule, held-out files and the
split, evaluate_models with scripted replies, and the CLI on two tiny models."""
from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest

from llmos_core.__main__ import main
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.errors import InvalidInput
from llmos_core.evaluation import (BETTER, SAME, WORSE, HeldOutRow, Interval, Rule, evaluate_models,
                                   heldout_from_data, paired_bootstrap, read_heldout, split_indices, verdict)
from llmos_core.evaluation import metrics as M
from llmos_core.generation import ChatResult
from llmos_core.training import data as datalib


# ---------------------------------------------------------------- metrics

def test_exact_and_f1_follow_squad():
    assert M.normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert M.exact_match("the Paris.", "Paris") == 1.0 and M.exact_match("Paris, France", "Paris") == 0.0
    # reply "paris france" vs reference "paris": precision 1/2, recall 1 -> F1 2/3
    assert M.token_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert M.token_f1("w x y z", "y z q") == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
    assert M.token_f1("", "") == 1.0 and M.token_f1("x", "y") == 0.0


def test_chrf_and_rules():
    assert M.chrf("Der Hund schläft.", "Der Hund schläft.") == pytest.approx(100.0)
    assert 0 < M.chrf("Der Hund schlaeft", "Der Hund schläft.") < 100
    assert Rule(phrase="cheers").holds("OK. CHEERS!") == 1.0
    assert Rule(regex=r"^\S[^.!?]*[.!?] Cheers!$").holds("It is blue. Cheers!") == 1.0
    assert Rule(regex=r"Cheers!$").holds("Cheers! It is blue.") == 0.0
    for bad in (dict(), dict(regex="a", phrase="b"), dict(regex="("), dict(phrase="x" * 600)):
        with pytest.raises(InvalidInput):
            Rule(**bad)
    with pytest.raises(InvalidInput, match="ran over"):     # catastrophic backtracking is cut off
        Rule(regex=r"(a|aa)+b").holds("a" * 40)


def test_metric_checks_name_what_is_missing():
    assert M.check_metrics(["RULE", "rule", "f1"], Rule(phrase="x"), None, True) == ["rule", "f1"]
    for metrics, rule, judge, refs, needle in ((["bleu"], None, None, True, "unknown metric"),
                                               (["rule"], None, None, True, "needs a rule"),
                                               (["judge"], None, None, True, "--judge"),
                                               (["exact"], None, None, False, "reference"), ([], None, None, True, "no metric")):
        with pytest.raises(InvalidInput, match=needle):
            M.check_metrics(metrics, rule, judge, refs)


# ---------------------------------------------------------------- bootstrap and verdict

def test_paired_bootstrap_known_numbers():
    tuned, base = [1, 1, 1, 1, 0, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
    result = paired_bootstrap(tuned, base, resamples=1000, seed=0)
    assert result.tuned.mean == pytest.approx(0.9) and result.base.mean == pytest.approx(0.2)
    assert result.difference.mean == pytest.approx(0.7)
    assert 0 < result.difference.low < 0.7 < result.difference.high <= 1.0
    # the same seed gives the same interval; the resampling is by the same rows for both
    again = paired_bootstrap(tuned, base, resamples=1000, seed=0)
    assert (again.difference.low, again.difference.high) == (result.difference.low, result.difference.high)
    # hand-checked against numpy: the interval is the percentiles of resampled mean differences
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 10, size=(1000, 10))
    diffs = (np.array(tuned) - np.array(base))[idx].mean(axis=1)
    assert result.difference.low == pytest.approx(np.percentile(diffs, 2.5))
    constant = paired_bootstrap([0.5] * 4, [0.5] * 4)
    assert (constant.difference.low, constant.difference.high) == (0.0, 0.0)
    with pytest.raises(InvalidInput):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(InvalidInput, match="too many draws"):      # memory bounded before numpy allocates
        paired_bootstrap([1.0] * 2000, [0.0] * 2000, resamples=100_000)


def test_verdict_rule():
    assert verdict(Interval(0.3, 0.1, 0.5)) == BETTER
    assert verdict(Interval(0.1, -0.1, 0.3)) == SAME
    assert verdict(Interval(0.0, 0.0, 0.0)) == SAME
    assert verdict(Interval(-0.3, -0.5, -0.1)) == WORSE
    assert verdict(Interval(-2.0, -3.0, -1.0), lower_is_better=True) == BETTER   # perplexity fell
    assert verdict(Interval(2.0, 1.0, 3.0), lower_is_better=True) == WORSE


# ---------------------------------------------------------------- held-out data

def test_heldout_file_and_the_split_training_uses(tmp_path):
    path = tmp_path / "held.jsonl"
    path.write_text('{"prompt": "2+2?", "reference": "4"}\n\n{"prompt": [{"role": "user", "content": "hi"}]}\n')
    rows = read_heldout(path)
    assert rows == [HeldOutRow([{"role": "user", "content": "2+2?"}], "4"), HeldOutRow([{"role": "user", "content": "hi"}])]
    path.write_text('{"reference": "4"}\n')
    with pytest.raises(InvalidInput, match="line 1"):
        read_heldout(path)
    with pytest.raises(InvalidInput, match="JSONL"):
        read_heldout(tmp_path / "held.csv")
    # the held-out part is exactly training's validation part (tokenize: shuffle by Random(seed), first n)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(30)))
    dataset = datalib.load(pairs)
    order = list(range(30))
    random.Random(7).shuffle(order)
    validation = sorted(order[:datalib.validation_count(30, 0.2)])
    assert split_indices(30, 0.2, 7)[1] == validation
    held = heldout_from_data(pairs, 0.2, 7)
    assert [r.reference for r in held] == [dataset.examples[i]["response"] for i in validation]
    # preference files: held out by distinct prompt (two pairs of one prompt stay together), as the
    # preference trainer splits them: sorted rendered prompts, shuffled by Random(seed), the first n
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"q{i % 10}", "chosen": f"good{i}", "rejected": "bad"}) + "\n"
                             for i in range(20)))
    render = SimpleNamespace(chat_template=None)           # Chat's plain format: "User: q3\nAssistant:"
    keys = sorted(f"User: q{i}\nAssistant:" for i in range(10))
    random.Random(3).shuffle(keys)
    held = heldout_from_data(prefs, 0.2, 3, tokenizer=render)
    assert [f"User: {r.prompt[-1]['content']}\nAssistant:" for r in held] == keys[:2]
    assert all(r.reference == "good" + r.prompt[-1]["content"][1:] for r in held)   # the first chosen reply
    kto = tmp_path / "kto.csv"
    kto.write_text("prompt,completion,label\nq1,bad,false\nq2,good,true\n")
    assert {r.prompt[-1]["content"]: r.reference for r in heldout_from_data(kto, 0.5)} in ({"q1": None}, {"q2": "good"})
    text = tmp_path / "plain.txt"
    text.write_text("just text\n\nmore text\n")
    with pytest.raises(InvalidInput, match="no prompts"):
        heldout_from_data(text)


# ---------------------------------------------------------------- evaluate_models with scripted replies

def _scripted_engine(replies: dict):
    """An engine whose generation service answers each (model, last user message) from `replies`."""
    def generate(model, messages, params, user=None):
        assert params.do_sample is False and user is LOCAL_ADMIN   # greedy, as the acting user
        return ChatResult(replies[model](messages[-1]["content"]), {})
    catalog = SimpleNamespace(check_visible=lambda actor, name: None, get=lambda name: None)
    return SimpleNamespace(chat=SimpleNamespace(generate=generate), catalog=catalog)


def test_evaluate_models_verdicts_and_report():
    rows = [HeldOutRow([{"role": "user", "content": f"question {i}"}], f"answer {i}") for i in range(20)]
    engine = _scripted_engine({"tuned": lambda q: f"answer {q.split()[-1]}. Cheers!",
                               "base": lambda q: "I do not know.",
                               "judge": lambda text: "A" if text.index("Cheers") < text.index("do not know") else "B"})
    report = evaluate_models(engine, LOCAL_ADMIN, "tuned", "base", rows, ["rule", "f1", "judge"],
                             rule=Rule(phrase="cheers"), judge="judge")
    assert report.verdict == BETTER and report.primary == "rule"
    rule = report.metric("rule")
    assert (rule.tuned.mean, rule.base.mean, rule.difference.low) == (1.0, 0.0, 1.0)
    assert report.metric("judge").tuned.mean == 1.0 and report.metric("f1").verdict == BETTER
    out = report.to_dict()
    assert out["verdict"] == "better" and out["metrics"]["rule"]["difference"]["low"] == 1.0
    assert out["samples"][0]["tuned"].endswith("Cheers!") and "rule: " in "rule: " + report.summary()
    swapped = evaluate_models(engine, LOCAL_ADMIN, "base", "tuned", rows, ["rule"], rule=Rule(phrase="cheers"))
    assert swapped.verdict == WORSE
    same = _scripted_engine({"a": lambda q: "x", "b": lambda q: "x"})
    assert evaluate_models(same, LOCAL_ADMIN, "a", "b", rows, ["exact"]).verdict == SAME
    with pytest.raises(InvalidInput, match="same"):
        evaluate_models(same, LOCAL_ADMIN, "a", "a", rows, ["exact"])


# ---------------------------------------------------------------- the CLI on tiny models

def test_cli_evaluate_on_tiny_models(home, tiny_causal, tiny_base, tmp_path, capsys):
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    names = [engine.catalog.register(engine.catalog.resolve(str(folder))).name for folder in (tiny_causal, tiny_base)]
    engine.close()
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": p, "reference": r}) + "\n" for p, r in
                            (("Hello, how are you?", "I am fine."), ("Who jumps?", "The fox."),
                             ("Say hi", "hello"))))
    args = ["evaluate", "--model", names[0], "--against", names[1], "--data", str(held), "--max-new-tokens", "4"]
    assert main(args + ["--metric", "f1", "--metric", "perplexity", "--metric", "rule", "--rule-regex", ".",
                        "--resamples", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 3 and out["primary"] == "f1" and out["verdict"] in (BETTER, SAME, WORSE)
    for name in ("f1", "perplexity", "rule"):
        m = out["metrics"][name]
        assert m["difference"]["low"] <= m["difference"]["mean"] <= m["difference"]["high"]
    assert out["metrics"]["perplexity"]["lower_is_better"] and out["metrics"]["perplexity"]["tuned"]["mean"] > 1
    assert main(args + ["--rule-phrase", "zzz-never"]) == 0
    text = capsys.readouterr().out
    assert "rule" in text and "verdict (rule, 95% paired bootstrap): same" in text
    assert main(args + ["--metric", "judge"]) == 1     # no judge named: a clear error, no traceback
    assert "--judge" in capsys.readouterr().err
    prefs = tmp_path / "prefs.jsonl"                    # held out as the preference run holds them out
    prefs.write_text("".join(json.dumps({"prompt": f"Say {w}", "chosen": f"{w}. Cheers!", "rejected": w}) + "\n"
                             for w in ("hi", "yes", "no", "fox", "dog", "cat", "sun", "sea", "tea", "red")))
    assert main(["evaluate", "--model", names[0], "--against", names[1], "--split-from", str(prefs),
                 "--rule-phrase", "Cheers", "--max-new-tokens", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1
