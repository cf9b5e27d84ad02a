"""Held-out prompts: a JSONL file the user gives (`prompt`, and `reference` where a metric needs one), or a
part split off the training data the same way training splits its validation part (so a model is
evaluated on prompts it never trained on).

A file is bounded like a preference file (feedback/pairs.py): size, line length, nesting, UTF-8, rows.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..feedback import pairs as pairlib

MAX_ROWS = 2000           # every row costs two generations (more with a judge): keep an evaluation bounded
HELDOUT_FRACTION = 0.1    # training's own validation fraction (training/params.py's default)
HELDOUT_SEED = 42         # and its seed (training/data.py's tokenize)


@dataclass
class HeldOutRow:
    prompt: list[dict]              # messages ending with the user's turn
    reference: str | None = None

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, **({"reference": self.reference} if self.reference is not None else {})}


def read_heldout(path: Path | str, max_bytes: int = pairlib.MAX_FILE_BYTES) -> list[HeldOutRow]:
    """Rows of a held-out JSONL: {"prompt": text or messages, "reference": text (optional)}."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise InvalidInput(f"{path.name}: the held-out file must be JSONL",
                           'one {"prompt": "...", "reference": "..."} a line')
    rows = []
    for record, where, number in pairlib.jsonl_rows(path.name, pairlib.read_text_bounded(path, max_bytes)):
        if len(rows) >= MAX_ROWS:
            raise InvalidInput(f"{path.name} has more than {MAX_ROWS:,} rows", "evaluate on fewer prompts")
        if "prompt" not in record:
            raise InvalidInput(f"{where}: no 'prompt' field", f"add a prompt to line {number} or delete it")
        prompt = pairlib.parse_prompt(record["prompt"], where)
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise InvalidInput(f"{where}: 'reference' should be text", f"fix line {number}")
        pairlib.check_size(where, prompt, reference or "")
        rows.append(HeldOutRow(prompt, reference))
    if not rows:
        raise InvalidInput(f"{path.name} has no rows", 'add lines like {"prompt": "...", "reference": "..."}')
    return rows


def write_heldout(rows: list[HeldOutRow], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def split_indices(n: int, fraction: float = HELDOUT_FRACTION, seed: int = HELDOUT_SEED) -> tuple[list[int], list[int]]:
    """(train, held out) row indices, in file order: the same split as training/data.py's tokenize (a shuffle
    by Random(seed), the first `validation_count` held out). A preference run that splits its pairs with
    this function holds out exactly the rows the evaluation uses."""
    from ..training.data import validation_count
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:validation_count(n, fraction)])
    return [i for i in range(n) if i not in held], sorted(held)


def heldout_from_data(path: Path | str, fraction: float = HELDOUT_FRACTION, seed: int = HELDOUT_SEED,
                      tokenizer=None, tokenizer_loader=None) -> list[HeldOutRow]:
    """The held-out rows of a training file, split the way its training run split them:
    - prompt/response pairs and chat examples (SFT): by row, as training/data.py's tokenize (`split_indices`);
      the reference is the response;
    - preference files (prompt/chosen/rejected, or prompt/completion/label): by distinct prompt, as the
      preference trainer holds them out (every reply to a held-out prompt stays out of training): the
      distinct prompts as the model reads them (`tokenizer`'s rendering, or `tokenizer_loader()`'s, called
      only for a preference file; without either, the messages as JSON),
      sorted, shuffled by Random(seed), the first `validation_count` held out. One row per prompt; the
      reference is its first chosen (or good) reply, None when it has only bad ones.
    Plain text has no prompts to answer: refused."""
    from ..training import data as datalib
    path = Path(path)
    preference = _preference_rows(path)
    if preference is not None:
        if tokenizer is None and tokenizer_loader is not None:
            tokenizer = tokenizer_loader()
        return _held_prompts(preference, fraction, seed, tokenizer, path.name)
    dataset = datalib.load(path)
    if dataset.shape == datalib.TEXT:
        raise InvalidInput(f"{path.name} is plain text: it has no prompts to evaluate on",
                           "give a held-out JSONL with prompts (and references)")
    examples = []
    for ex in dataset.examples:
        if "messages" in ex:
            last = max(i for i, m in enumerate(ex["messages"]) if m["role"] == "assistant")
            examples.append(HeldOutRow(ex["messages"][:last], ex["messages"][last]["content"]))
        else:
            examples.append(HeldOutRow([{"role": "user", "content": ex["prompt"]}], ex["response"]))
    _, held = split_indices(len(examples), fraction, seed)
    if not held:
        raise InvalidInput(f"{path.name} has {len(examples)} example(s): too few to hold any out",
                           "give a held-out JSONL, or train on more examples")
    return [examples[i] for i in held]


def _preference_rows(path: Path) -> list[tuple[list[dict], str | None]] | None:
    """(prompt, good reply or None) per row of a preference file; None when the file is not one."""
    text = pairlib.read_text_bounded(path)
    if path.suffix.lower() == ".csv":
        import csv
        import io
        keys = {h.strip() for h in next(csv.reader(io.StringIO(text[:65536])), []) if h}
    else:
        first = next((line for line in text.splitlines()[:20] if line.strip()), "")
        try:
            record = json.loads(first)
        except (json.JSONDecodeError, RecursionError):
            return None
        keys = set(record) if isinstance(record, dict) else set()
    if {"chosen", "rejected"} <= keys:
        return [(p.prompt, p.chosen) for p in pairlib.read_pairs(path)]
    if {"completion", "label"} <= keys:
        return [(e.prompt, e.completion if e.label else None) for e in pairlib.read_labelled(path)]
    return None


def _held_prompts(rows, fraction: float, seed: int, tokenizer, name: str) -> list[HeldOutRow]:
    from ..training.data import render_prompt, validation_count

    def key(prompt: list[dict]) -> str:
        return render_prompt(tokenizer, prompt) if tokenizer is not None else json.dumps(prompt, sort_keys=True)

    by_key: dict[str, HeldOutRow] = {}
    for prompt, good in rows:
        row = by_key.setdefault(key(prompt), HeldOutRow(prompt, None))
        if row.reference is None and good is not None:
            row.reference = good
    prompts = sorted(by_key)
    random.Random(seed).shuffle(prompts)
    held = prompts[:validation_count(len(prompts), fraction)]
    if not held:
        raise InvalidInput(f"{name} has {len(prompts)} distinct prompt(s): too few to hold any out",
                           "give a held-out JSONL, or train on more examples")
    return [by_key[k] for k in held]
