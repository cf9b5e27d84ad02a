"""What a training data file becomes: a Dataset of examples, all of one shape (data.py reads the files;
preference_files.py reads preference files into the same form)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TEXT, PAIRS, CHAT = "text", "prompt_response", "chat"
PREFERENCE, LABELLED = "preference", "labelled"   # prompt/chosen/rejected and prompt/completion/label (preference.py)


@dataclass
class Dataset:
    """Examples read from one file, all of one shape."""
    path: Path
    shape: str                                       # TEXT | PAIRS | CHAT | PREFERENCE | LABELLED
    examples: list[dict]                             # {"text"} | {"prompt", "response"} | {"messages"} (+"rejected"/"label")
    columns: list[str] = field(default_factory=list) # CSV/JSONL keys seen, for the mapping widgets

    @property
    def rows(self) -> int:
        return len(self.examples)

    def preview(self, n: int = 5) -> list[dict]:
        """The first rows, shortened, for a table."""
        out = []
        for ex in self.examples[:n]:
            if "messages" in ex:
                ex = {**ex, "messages": " | ".join(f"{m['role']}: {m['content']}" for m in ex["messages"])}
            ex = {k: v if isinstance(v, str) else str(v) for k, v in ex.items()}   # a label: True/False
            out.append({k: (v if len(v) <= 200 else v[:200] + "...") for k, v in ex.items()})
        return out
