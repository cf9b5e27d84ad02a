"""lm-eval (EleutherAI's benchmark harness, from the package index) against LLM OS's OpenAI-compatible API on
127.0.0.1, as README's "Standard benchmarks with lm-eval" runs it: its `local-completions` model on the
local task tests/data/lm_eval/capitals.yaml (a generate_until task on a JSONL file beside it), with the hub
switched off. A tiny model, so the replies are nonsense and exact match is about 0: what is checked is that
lm-eval scored the model's own replies, one request per row. Log-likelihood tasks cannot run: the request
lm-eval makes for them asks for `logprobs` and `echo`, which the API refuses by name (checked here too)."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from llmos_core.api.server import start_api
from llmos_core.engine import Engine
from llmos_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TASK_DIR = "tests/data/lm_eval"   # relative to ROOT: the task's data_files are, as lm-eval runs there
ROWS = [json.loads(line) for line in (ROOT / TASK_DIR / "capitals.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_base):
    engine = Engine(Settings(home=tmp_path_factory.mktemp("lm-eval-home")), primary=False, start_threads=False)
    spec = engine.catalog.register(engine.catalog.resolve(str(tiny_base)))
    start_api(engine, "127.0.0.1", 0)
    yield engine, spec.name
    engine.close()


def completions_served(engine, model: str, status: int = 200) -> float:
    value = engine.api.metrics.registry.get_sample_value(
        "llmos_requests_total", {"model": model, "endpoint": "completions", "status": str(status)})
    return value or 0.0


def test_lm_eval_scores_the_models_replies_on_a_local_task_without_the_hub(served, tmp_path):
    """README's command (tests/data/lm_eval/run_task.py: lm-eval's simple_evaluate on local-completions)."""
    engine, model = served
    before = completions_served(engine, model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, f"{TASK_DIR}/run_task.py", "--model", model, "--base-url", f"{engine.api.url}/v1",
               "--output", str(tmp_path / "lm-eval.json")]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert completions_served(engine, model) - before == len(ROWS)   # one request per row, all answered
    assert completions_served(engine, model, 400) == 0

    results = json.loads((tmp_path / "lm-eval.json").read_text())
    assert 0.0 <= results["results"]["llmos_capitals"]["exact_match,strip"] <= 1.0
    assert results["n-samples"]["llmos_capitals"] == {"original": len(ROWS), "effective": len(ROWS)}
    samples = results["samples"]["llmos_capitals"]
    assert sorted(s["doc"]["question"] for s in samples) == sorted(r["question"] for r in ROWS)
    client = openai.OpenAI(base_url=f"{engine.api.url}/v1", api_key="unused", max_retries=0, timeout=60)
    for sample in samples:   # what lm-eval scored is what the model answers to the same request (greedy)
        prompt = f"Question: {sample['doc']['question']}\nAnswer:"
        assert sample["arguments"][0][0] == prompt
        reply = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, stop=["\n"],
                                          seed=1234).choices[0].text
        assert sample["resps"] == [[reply]] and sample["filtered_resps"] == [reply.strip()]
        assert sample["exact_match"] == float(reply.strip().lower() == sample["target"].lower())


def test_the_request_lm_eval_makes_for_log_likelihood_is_refused_by_name(served):
    """What does not work: multiple-choice and perplexity tasks (hellaswag, mmlu, arc) score log-likelihoods,
    for which lm-eval asks /v1/completions to echo the prompt with its logprobs."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    engine, model = served
    lm = LocalCompletionsAPI(model=model, base_url=f"{engine.api.url}/v1/completions", tokenizer_backend=None,
                             tokenized_requests=False)
    body = lm._create_payload(["Question: What is the capital of France?\nAnswer: Paris"], generate=False)
    assert body["echo"] is True and body["logprobs"] == 1
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    message = json.loads(response.read())["error"]["message"]
    assert response.status == 400 and "logprobs" in message, message
