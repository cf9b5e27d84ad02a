"""Training data: read a file the user uploaded, check it, and turn it into token blocks.

Three shapes of example, decided per file:
    text              plain text (.txt/.md, or JSONL/CSV with a text field): packed into blocks of
                      `block_size` tokens; every token is trained on.
    prompt_response   pairs (JSONL or CSV): the prompt is rendered the way Chat will render it and
                      masked out of the loss (labels -100), so the model learns only to answer.
    chat              JSONL {"messages": [{"role", "content"}, ...]}: everything before the last
                      assistant turn is the prompt (masked), the last assistant turn is the response.

Every problem is an InvalidInput that names the line or column, raised before a job is queued.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from ..generation import render_plain   # Chat's format for models without a template: train on what Chat sends
from ..settings import Settings
from .dataset import CHAT, LABELLED, PAIRS, PREFERENCE, TEXT, Dataset  # noqa: F401 (data.Dataset, data.TEXT, ...)
from .preference_files import load_preference

TEXT_SUFFIXES = (".txt", ".md", ".text")
SUFFIXES = TEXT_SUFFIXES + (".jsonl", ".csv")
# Field names accepted without a mapping, first match wins.
PROMPT_FIELDS = ("prompt", "instruction", "question", "input")
RESPONSE_FIELDS = ("response", "completion", "output", "answer")
IGNORE = -100   # labels with this value do not count in the loss (PyTorch cross-entropy's ignore_index)


# ---------------------------------------------------------------- uploads

def datasets_dir(settings: Settings, owner_home: Path | None = None) -> Path:
    """The data files of the person whose files live in `owner_home` (accounts.user_home; default: the data
    folder itself, the local admin's)."""
    return Path(owner_home or settings.home) / "datasets"


def is_kept_dataset(settings: Settings, path: Path) -> bool:
    """Whether `path` is a data file kept by LLM OS: in a `datasets` folder of the data folder or of a user's
    home under it (then a job reads it where it is; anything else is copied in first)."""
    path, home = Path(path).resolve(), settings.home.resolve()
    return path.parent.name == "datasets" and (path.parent.parent == home or
                                                (path.parent.parent.parent == home / "users"))


def save_upload(settings: Settings, filename: str, data: bytes, owner_home: Path | None = None) -> Path:
    """Keep an uploaded file under the data folder (the owner's own folder), so a queued job survives a page
    refresh. Named by content hash: uploading the same file twice keeps one copy; a file is never overwritten."""
    if len(data) > settings.max_upload_mb * 1024**2:
        raise InvalidInput(f"{filename} is {len(data) / 1024**2:.0f} MB, over the {settings.max_upload_mb} MB limit",
                           "raise LLMOS_MAX_UPLOAD_MB or upload a smaller file")
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"{filename}: {suffix or 'no extension'} is not a training data format",
                           "upload .txt, .md, .jsonl or .csv")
    stem = re.sub(r"[^\w.-]+", "-", Path(filename).stem)[:60] or "data"
    folder = datasets_dir(settings, owner_home)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{hashlib.sha256(data).hexdigest()[:10]}{suffix}"
    if not target.exists():
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)   # atomic: a reader never sees half a file
    return target


# ---------------------------------------------------------------- reading

def read_text(path: Path) -> str:
    """The file as text, or a clear error for empty, binary and non-UTF-8 files."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInput(f"the data file {path} does not exist", "upload it again") from exc
    if not raw.strip():
        raise InvalidInput(f"{Path(path).name} is empty", "upload a file with some text in it")
    if b"\x00" in raw[:65536]:
        raise InvalidInput(f"{Path(path).name} looks like a binary file, not text",
                           "upload plain text, JSONL or CSV saved as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidInput(f"{Path(path).name} is not UTF-8 text (byte {exc.start}, line {line})",
                           "save the file as UTF-8 and upload it again") from exc


def load(path: Path | str, mapping: dict | None = None) -> Dataset:
    """Read and check a data file. `mapping` names the fields: {"text": col} or {"prompt": col, "response": col}."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"{path.name}: {suffix or 'no extension'} is not a training data format",
                           "use .txt, .md, .jsonl or .csv")
    text = read_text(path)
    mapping = {k: v for k, v in (mapping or {}).items() if v}
    if suffix in TEXT_SUFFIXES:
        return Dataset(path, TEXT, [{"text": t} for t in split_documents(text)])
    # a preference file: chosen/rejected or completion/label columns (preference_files.py)
    if not mapping and (preference := load_preference(path, text)) is not None:
        return preference
    if suffix == ".jsonl":
        return _load_jsonl(path, text, mapping)
    return _load_csv(path, text, mapping)


def load_columns(path: Path | str) -> list[str]:
    """The column names of a CSV, or the keys of a JSONL's first objects, for the mapping widgets."""
    path = Path(path)
    text = read_text(path)
    if path.suffix.lower() == ".csv":
        return [h for h in next(csv.reader(io.StringIO(text)), []) if h]
    keys: list[str] = []
    for line in text.splitlines()[:50]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            keys += [k for k in record if k not in keys]
    return keys


def split_documents(text: str) -> list[str]:
    """Paragraphs (blank-line separated) as documents; one long paragraph is split into lines instead,
    so that even a single block of text can give a validation part."""
    docs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(docs) == 1:
        lines = [line.strip() for line in docs[0].splitlines() if line.strip()]
        if len(lines) > 1:
            docs = lines
    return docs


def _load_jsonl(path: Path, text: str, mapping: dict) -> Dataset:
    examples, columns, shape = [], set(), None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path.name}, line {number}: not valid JSON ({exc.msg})",
                               "each line must be one JSON object; fix or delete that line") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{path.name}, line {number}: a JSON object was expected, got {type(record).__name__}",
                               'write each line like {"text": "..."} or {"prompt": "...", "response": "..."}')
        columns.update(record)
        line_shape, example = _example(record, mapping, f"{path.name}, line {number}")
        if shape is None:
            shape = line_shape
        elif line_shape != shape:
            raise InvalidInput(f"{path.name}, line {number}: a {line_shape} example among {shape} examples",
                               "use one kind of example per file")
        examples.append(example)
    return Dataset(path, shape or TEXT, examples, sorted(columns))


def _load_csv(path: Path, text: str, mapping: dict) -> Dataset:
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h for h in (reader.fieldnames or []) if h is not None]
        rows = list(reader)
    except csv.Error as exc:
        raise InvalidInput(f"{path.name}: not readable as CSV ({exc})", "save it as comma-separated UTF-8") from exc
    if not header:
        raise InvalidInput(f"{path.name} has no header row", "the first line must name the columns")
    for role, column in mapping.items():
        if column not in header:
            raise InvalidInput(f"{path.name} has no column {column!r} (mapped to {role})",
                               f"its columns are: {', '.join(header)}")
    examples, shape = [], None
    for number, row in enumerate(rows, start=2):   # line 1 is the header
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        shape, example = _example(row, mapping, f"{path.name}, line {number}")
        examples.append(example)
    if not examples:
        raise InvalidInput(f"{path.name} has a header but no rows", "add some data rows")
    return Dataset(path, shape, examples, header)


def _example(record: dict, mapping: dict, where: str) -> tuple[str, dict]:
    """One record -> (shape, normalized example). Mapping first, then the usual field names."""
    def pick(role: str, names: tuple[str, ...]) -> str | None:
        if role in mapping:
            return mapping[role] if mapping[role] in record else None
        return next((n for n in names if n in record), None)

    if "messages" in record and not mapping:
        return CHAT, {"messages": _check_messages(record["messages"], where)}
    prompt_key, response_key = pick("prompt", PROMPT_FIELDS), pick("response", RESPONSE_FIELDS)
    if "text" not in mapping and prompt_key and response_key:
        prompt, response = _string(record[prompt_key], where, prompt_key), _string(record[response_key], where, response_key)
        # Alpaca's instruction/input/output: the input (when there is one) follows the instruction.
        input_key = pick("input", ("input",) if prompt_key != "input" else ())
        if input_key and input_key != prompt_key and _string(record[input_key], where, input_key).strip():
            prompt = prompt.rstrip() + "\n\n" + _string(record[input_key], where, input_key).strip()
        if not response.strip():
            raise InvalidInput(f"{where}: the {response_key!r} field is empty", "every example needs a response")
        return PAIRS, {"prompt": prompt, "response": response}
    text_key = pick("text", ("text", "content", "body"))
    if text_key:
        text = _string(record[text_key], where, text_key)
        if not text.strip():
            raise InvalidInput(f"{where}: the {text_key!r} field is empty", "remove the row or fill it")
        return TEXT, {"text": text}
    wanted = ", ".join(f"{k} -> {v!r}" for k, v in mapping.items()) if mapping else \
        '"text", "prompt"+"response" or "messages"'
    raise InvalidInput(f"{where}: no field for {wanted} (fields: {', '.join(map(str, record))})",
                       "map the columns to text, or to prompt and response")


def _string(value, where: str, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {key!r} should be text, got {type(value).__name__}")
    return value


def _check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput(f"{where}: 'messages' must be a non-empty list", '[{"role": "user", "content": "..."}, ...]')
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InvalidInput(f"{where}: each message needs a 'role' and a 'content' string")
    if not any(m["role"] == "assistant" for m in messages):
        raise InvalidInput(f"{where}: the conversation has no assistant message to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


# ---------------------------------------------------------------- prompts

def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text the model sees before it answers: its chat template, or Chat's plain User:/Assistant: format."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return render_plain(messages)


def to_prompt_response(tokenizer, example: dict) -> tuple[str, str, bool]:
    """(prompt text, response text, templated): the response carries the end-of-turn marker when the
    template has one, so the trained model learns to stop where Chat stops it."""
    if "messages" in example:
        messages = example["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        context, answer = messages[:last], messages[last]["content"]
    else:
        context, answer = [{"role": "user", "content": example["prompt"]}], example["response"]
    prompt = render_prompt(tokenizer, context)
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(context + [{"role": "assistant", "content": answer}], tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):], True
        return prompt, answer, True
    return prompt, " " + answer.strip(), False   # the plain prompt ends "Assistant:"; the answer starts with a space


# ---------------------------------------------------------------- tokens

@dataclass
class Tokenized:
    """Token blocks ready for the Trainer, with the figures shown before launch."""
    train: list[dict]            # {"input_ids": [...], "labels": [...]}
    validation: list[dict]
    tokens: int                  # tokens in all examples (before dropping what does not fit a block)
    trained_tokens: int          # tokens that count in the loss, train split
    input_tokens: int = 0        # tokens fed in, train split (prompts too: they cost compute)
    dropped: int = 0             # pair examples whose prompt alone fills the block
    prompts: list[str] = field(default_factory=list)   # validation prompts for sample generations
    references: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"train_blocks": len(self.train), "validation_blocks": len(self.validation), "tokens": self.tokens,
                "trained_tokens": self.trained_tokens, "input_tokens": self.input_tokens, "dropped": self.dropped}


def tokenize(dataset: Dataset, tokenizer, block_size: int, validation_fraction: float = 0.1,
             seed: int = 42) -> Tokenized:
    """Blocks for training and validation. Text is packed then split; pairs are split then masked."""
    if block_size < 8:
        raise InvalidInput(f"block length {block_size} is too short", "use 64 tokens or more")
    rng = random.Random(seed)
    if dataset.shape == LABELLED:   # supervised training on thumbs up/down: the good replies only
        dataset = Dataset(dataset.path, CHAT, [e for e in dataset.examples if e["label"]])
    if dataset.shape == TEXT:
        blocks, total = pack_text([e["text"] for e in dataset.examples], tokenizer, block_size)
        if not blocks:
            raise InvalidInput(f"{dataset.path.name} has {total} tokens, shorter than one block of {block_size}",
                               f"add more text or lower the block length below {total}")
        order = list(range(len(blocks)))
        rng.shuffle(order)
        n_val = validation_count(len(blocks), validation_fraction)
        validation = [blocks[i] for i in sorted(order[:n_val])]
        train = [blocks[i] for i in sorted(order[n_val:])]
        # Prompts for samples: the start of each validation block; the rest is what it should say.
        prompts, references = [], []
        for block in validation[:3]:
            ids = block["input_ids"]
            # Start at a document's beginning when the block holds one: a prompt cut mid-word reads badly.
            start = ids.index(tokenizer.bos_token_id) + 1 if tokenizer.bos_token_id in ids[:-8] else 0
            cut = start + max(4, min(16, block_size // 4))
            prompts.append(tokenizer.decode(ids[start:cut], skip_special_tokens=True))
            references.append(tokenizer.decode(ids[cut:cut + 48], skip_special_tokens=True))
        fed = sum(len(b["input_ids"]) for b in train)
        return Tokenized(train, validation, total, fed, fed, prompts=prompts, references=references)

    order = list(range(dataset.rows))
    rng.shuffle(order)
    n_val = validation_count(dataset.rows, validation_fraction)
    val_ids, train_ids = set(order[:n_val]), order[n_val:]
    train, validation, prompts, references = [], [], [], []
    total = dropped = 0
    for i, example in enumerate(dataset.examples):
        prompt, response, _ = to_prompt_response(tokenizer, example)
        block = mask_prompt(tokenizer, prompt, response, block_size)
        total += block.pop("length")
        if block["labels"].count(IGNORE) == len(block["labels"]):
            dropped += 1
            continue
        if i in val_ids:
            validation.append(block)
            if len(prompts) < 3:
                prompts.append(prompt)
                references.append(response)
        else:
            train.append(block)
    if not train:
        raise InvalidInput(f"no example of {dataset.path.name} fits a block of {block_size} tokens with room for "
                           "its response", "raise the block length or shorten the prompts")
    trained = sum(sum(1 for label in b["labels"] if label != IGNORE) for b in train)
    return Tokenized(train, validation, total, trained, sum(len(b["input_ids"]) for b in train), dropped, prompts,
                     references)


def validation_count(n: int, fraction: float) -> int:
    """At least one validation item when there are two or more, never all of them."""
    if n < 2 or fraction <= 0:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def pack_text(documents: list[str], tokenizer, block_size: int) -> tuple[list[dict], int]:
    """Documents joined with BOS/EOS into one stream, cut into full blocks (the tail shorter than a block
    is dropped). Returns (blocks, tokens in the stream)."""
    stream: list[int] = []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        stream += ([bos] if bos is not None else []) + ids + ([eos] if eos is not None else [])
    blocks = [{"input_ids": stream[i:i + block_size], "labels": stream[i:i + block_size]}
              for i in range(0, len(stream) - block_size + 1, block_size)]
    return blocks, len(stream)


def mask_prompt(tokenizer, prompt: str, response: str, block_size: int) -> dict:
    """Prompt + response + EOS in one block; the prompt's labels are IGNORE so only the answer is learned.
    Too long: the response is cut at the block's end (the prompt stays whole)."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    # A rendered template already holds its BOS; the plain format needs the tokenizer to add it.
    prompt_ids = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not response_ids or response_ids[-1] != eos):
        response_ids = response_ids + [eos]
    length = len(prompt_ids) + len(response_ids)
    ids = (prompt_ids + response_ids)[:block_size]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:block_size]
    return {"input_ids": ids, "labels": labels, "length": length}


class Collator:
    """Pads a batch to its longest row: input with the pad token, labels with IGNORE, and a mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [self.pad_id] * (width - len(r["input_ids"])) for r in rows]
        labels = [r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows]
        mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}
