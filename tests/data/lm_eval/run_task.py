"""Runs lm-eval's tasks from a local folder against LLM OS's OpenAI-compatible API and writes the results
(scores, and each row's prompt, reply and score) as JSON. README, "Standard benchmarks with lm-eval";
tests/unit/test_lm_eval.py runs it. Run it from the repository's root (capitals.yaml names its data file
from there), with lm-eval installed (`pip install "lm-eval[api]"`; the test tools' lock has it):

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python tests/data/lm_eval/run_task.py --model my-tune \
        --base-url http://127.0.0.1:8000/v1 --output lm-eval.json

It is lm-eval's own Python API (simple_evaluate) with one difference from its CLI: only the folder given
is indexed, not lm-eval's ~14,000 built-in task files as well (about 30 s on 2 cores). Only generate_until
tasks work: log-likelihood tasks ask the API for logprobs and echo, which it refuses."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model's name in LLM OS's catalog")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the API, up to /v1")
    parser.add_argument("--chat", action="store_true",
                        help="ask /v1/chat/completions with the model's chat template (default: /v1/completions)")
    parser.add_argument("--tasks", default="llmos_capitals", help="task names, comma-separated")
    parser.add_argument("--include-path", default=str(Path(__file__).parent), help="the folder of task YAMLs")
    parser.add_argument("--num-concurrent", type=int, default=1, help="requests in flight (the API batches them)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of each task")
    parser.add_argument("--output", required=True, help="the JSON file to write")
    args = parser.parse_args(argv)

    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    endpoint = "chat/completions" if args.chat else "completions"
    model_args = (f"model={args.model},base_url={args.base_url.rstrip('/')}/{endpoint},"
                  f"num_concurrent={args.num_concurrent},max_retries=1,tokenized_requests=False,"
                  "tokenizer_backend=None")
    out = lm_eval.simple_evaluate(
        model="local-chat-completions" if args.chat else "local-completions", model_args=model_args,
        tasks=args.tasks.split(","), task_manager=TaskManager(include_path=args.include_path, include_defaults=False),
        apply_chat_template=args.chat, limit=args.limit, log_samples=True)
    keep = {key: out[key] for key in ("results", "n-samples", "configs", "samples")}
    Path(args.output).write_text(json.dumps(keep, indent=1, default=handle_non_serializable))
    for task, scores in out["results"].items():
        print(task, json.dumps({name: value for name, value in scores.items() if "," in name},
                               default=handle_non_serializable))


if __name__ == "__main__":
    main()
