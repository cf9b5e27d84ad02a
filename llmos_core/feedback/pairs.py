"""Preference data in files: pairs (prompt, chosen, rejected) and labelled examples (prompt, completion, label).

A pair says "for this conversation, this reply is better than that one" (DPO, ORPO); a labelled example
says "this reply is good" or "bad" on its own (KTO). The prompt is always the conversation so far, a list
of {role, content} messages ending with the user's turn; a file may give it as a plain string (one user
turn).

Files come from users, so every read is bounded: the file's size, a line's length, the number of rows, the
messages of one prompt and the characters of one row are capped before the work they would cost, JSON nested
too deep is refused, and the text must be UTF-8. Every problem is an InvalidInput naming the line.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInput
from ..generation import MAX_PROMPT_CHARS, ROLES

MAX_FILE_BYTES = 64 * 1024**2      # a preference file of 64 MB holds far more pairs than a run here can use
MAX_LINE_CHARS = 1024**2           # one JSONL line / one CSV record
MAX_ROWS = 100_000
MAX_MESSAGES = 200                 # messages in one prompt
MAX_ROW_CHARS = MAX_PROMPT_CHARS   # prompt + replies of one row: what Chat would accept as a prompt
SUFFIXES = (".jsonl", ".csv")


@dataclass
class PreferencePair:
    """One preference: for `prompt` (messages ending with the user's turn), `chosen` beats `rejected`."""
    prompt: list[dict]
    chosen: str
    rejected: str
    model: str | None = None                       # the model that wrote the replies, when known
    settings: dict = field(default_factory=dict)   # its sampling settings (temperature, top_p, ...)

    def to_dict(self) -> dict:
        return _with_meta({"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}, self)

    def as_trl(self) -> dict:
        """TRL's conversational preference row (DPOTrainer, ORPOTrainer)."""
        return {"prompt": self.prompt, "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}


@dataclass
class LabelledExample:
    """One reply judged on its own: `label` True (good, thumbs up) or False (bad, thumbs down)."""
    prompt: list[dict]
    completion: str
    label: bool
    model: str | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _with_meta({"prompt": self.prompt, "completion": self.completion, "label": self.label}, self)

    def as_trl(self) -> dict:
        """TRL's conversational unpaired row (KTOTrainer)."""
        return {"prompt": self.prompt, "completion": [{"role": "assistant", "content": self.completion}],
                "label": self.label}


def _with_meta(out: dict, record) -> dict:
    """The row's dict plus the model and settings, when known."""
    if record.model:
        out["model"] = record.model
    if record.settings:
        out["settings"] = record.settings
    return out


# ---------------------------------------------------------------- reading

def read_pairs(path: Path | str, max_bytes: int = MAX_FILE_BYTES) -> list[PreferencePair]:
    """Preference pairs from JSONL or CSV with `prompt`, `chosen`, `rejected` (prompt: text or messages)."""
    return [_pair(record, where) for record, where in _records(Path(path), max_bytes, ("prompt", "chosen", "rejected"))]


def read_labelled(path: Path | str, max_bytes: int = MAX_FILE_BYTES) -> list[LabelledExample]:
    """Labelled examples from JSONL or CSV with `prompt`, `completion`, `label` (true/false, 1/0, up/down)."""
    return [_labelled(record, where)
            for record, where in _records(Path(path), max_bytes, ("prompt", "completion", "label"))]


def read_text_bounded(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The file as UTF-8 text, refusing missing, oversized, empty and binary files before reading much."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} does not exist", "upload the file again") from exc
    if size > max_bytes:
        raise InvalidInput(f"{path.name} is {size / 1024**2:.1f} MB, over the {max_bytes / 1024**2:.0f} MB limit",
                           "split the file into smaller ones")
    raw = path.read_bytes()[:max_bytes + 1]
    if not raw.strip():
        raise InvalidInput(f"{path.name} is empty", "upload a file with some rows in it")
    if b"\x00" in raw[:65536]:
        raise InvalidInput(f"{path.name} looks like a binary file", "upload JSONL or CSV saved as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InvalidInput(f"{path.name} is not UTF-8 text (byte {exc.start}, line {line})",
                           f"save the file as UTF-8 (line {line} holds the first bad byte)") from exc


def _records(path: Path, max_bytes: int, fields: tuple[str, ...]):
    """(record dict, 'file, line N') for each non-empty row of a JSONL or CSV file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"{path.name}: {suffix or 'no extension'} is not a preference data format",
                           "use .jsonl or .csv with the columns " + ", ".join(fields))
    text = read_text_bounded(path, max_bytes)
    rows = jsonl_rows(path.name, text) if suffix == ".jsonl" else _csv_rows(path.name, text, fields)
    out = []
    for record, where, number in rows:
        if len(out) >= MAX_ROWS:
            raise InvalidInput(f"{path.name} has more than {MAX_ROWS:,} rows", "split it into smaller files")
        missing = [f for f in fields if f not in record]
        if missing:
            raise InvalidInput(f"{where}: no {', '.join(repr(m) for m in missing)} field "
                               f"(fields: {', '.join(map(str, record))[:200]})",
                               f"every row needs {', '.join(fields)}; fix or delete line {number}")
        out.append((record, where))
    if not out:
        raise InvalidInput(f"{path.name} has no rows", "add rows with " + ", ".join(fields))
    return out


def jsonl_rows(name: str, text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}, line {number}"
        if len(line) > MAX_LINE_CHARS:
            raise InvalidInput(f"{where} is {len(line):,} characters long, over {MAX_LINE_CHARS:,}",
                               f"shorten or delete line {number}")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not valid JSON ({exc.msg})",
                               f"each line must be one JSON object; fix or delete line {number}") from exc
        except RecursionError as exc:
            raise InvalidInput(f"{where}: JSON nested too deep", f"fix or delete line {number}") from exc
        if not isinstance(record, dict):
            raise InvalidInput(f"{where}: a JSON object was expected, got {type(record).__name__}",
                               f'write line {number} like {{"prompt": "...", "chosen": "...", "rejected": "..."}}')
        yield record, where, number


def _csv_rows(name: str, text: str, fields: tuple[str, ...]):
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise InvalidInput(f"{name}, line 1: not readable as CSV ({exc})", "save it as comma-separated UTF-8") from exc
    header = [h.strip() for h in header]
    if not any(header):
        raise InvalidInput(f"{name} has no header row", "the first line must name the columns: " + ", ".join(fields))
    while True:
        number = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:   # a field over csv's own limit (128 KiB), a stray quote
            raise InvalidInput(f"{name}, line {number}: not readable as CSV ({exc})",
                               f"fix or delete line {number}") from exc
        if not any(cell.strip() for cell in row):
            continue
        yield {h: v for h, v in zip(header, row) if h}, f"{name}, line {number}", number


# ---------------------------------------------------------------- checking one row

def _pair(record: dict, where: str) -> PreferencePair:
    prompt = parse_prompt(record["prompt"], where)
    chosen, rejected = _reply(record["chosen"], where, "chosen"), _reply(record["rejected"], where, "rejected")
    if chosen == rejected:
        raise InvalidInput(f"{where}: 'chosen' and 'rejected' are the same text",
                           "a pair needs two different replies; fix or delete the row")
    check_size(where, prompt, chosen, rejected)
    return PreferencePair(prompt, chosen, rejected, *_meta(record, where))


def _labelled(record: dict, where: str) -> LabelledExample:
    prompt = parse_prompt(record["prompt"], where)
    completion = _reply(record["completion"], where, "completion")
    check_size(where, prompt, completion)
    return LabelledExample(prompt, completion, parse_label(record["label"], where), *_meta(record, where))


def parse_prompt(value, where: str) -> list[dict]:
    """A prompt as messages ending with a user turn: from a string, a messages list, or (in CSV) a JSON list."""
    if isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]"):
        try:
            decoded = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            decoded = None
        if isinstance(decoded, list) and decoded and all(isinstance(m, dict) for m in decoded):
            value = decoded
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInput(f"{where}: the prompt is empty", "every row needs a prompt")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where}: 'prompt' must be text or a non-empty list of messages",
                           '[{"role": "user", "content": "..."}]')
    if len(value) > MAX_MESSAGES:
        raise InvalidInput(f"{where}: the prompt has {len(value)} messages, over {MAX_MESSAGES}",
                           "keep the last turns of the conversation only")
    messages = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(f"{where}: each prompt message needs a role (system/user/assistant) and a content "
                               "string", f"got {str(m)[:80]}")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise InvalidInput(f"{where}: the prompt must end with a non-empty user message",
                           "the replies answer the user's last turn")
    return messages


def parse_label(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int, float)) else ""
    if text in ("true", "1", "1.0", "up", "good", "yes"):
        return True
    if text in ("false", "0", "0.0", "down", "bad", "no"):
        return False
    raise InvalidInput(f"{where}: label {str(value)[:40]!r} is neither true nor false", "write true or false")


def _reply(value, where: str, key: str) -> str:
    # TRL's conversational form: a list of messages whose last one is the assistant's reply.
    if isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        value = value[-1].get("content")
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {key!r} should be text, got {type(value).__name__}", f"write the {key} reply as text")
    if not value.strip():
        raise InvalidInput(f"{where}: the {key!r} reply is empty", "fill it or delete the row")
    return value


def _meta(record: dict, where: str) -> tuple[str | None, dict]:
    model, settings = record.get("model"), record.get("settings") or {}
    if model is not None and not isinstance(model, str):
        raise InvalidInput(f"{where}: 'model' should be a name", "write the model's name as text or leave it out")
    if isinstance(settings, str):   # CSV: a JSON object in a cell
        try:
            settings = json.loads(settings) if settings.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            settings = None
    if not isinstance(settings, dict) or len(json.dumps(settings)) > 4096:
        raise InvalidInput(f"{where}: 'settings' should be a small JSON object", "leave it out or fix it")
    return (model or None), settings


def check_size(where: str, prompt: list[dict], *replies: str) -> None:
    chars = sum(len(m["content"]) for m in prompt) + sum(map(len, replies))
    if chars > MAX_ROW_CHARS:
        raise InvalidInput(f"{where} holds {chars:,} characters, over {MAX_ROW_CHARS:,}",
                           "shorten the conversation or delete the row")


# ---------------------------------------------------------------- writing

def write_pairs_jsonl(pairs, path: Path | str) -> Path:
    """Pairs (or labelled examples) as JSONL, written atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(dumps_jsonl(pairs), encoding="utf-8")
    tmp.replace(path)
    return path


def dumps_jsonl(records) -> str:
    """Pairs or labelled examples (or plain dicts) as JSONL text, one object a line."""
    return "".join(json.dumps(r if isinstance(r, dict) else r.to_dict(), ensure_ascii=False) + "\n" for r in records)
