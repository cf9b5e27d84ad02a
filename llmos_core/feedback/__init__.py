"""Feedback: what users prefer, as preference pairs and labelled examples (pairs.py: files; store.py: the
per-user records collected in Chat and Compare)."""
from .pairs import (LabelledExample, PreferencePair, dumps_jsonl, parse_prompt, read_labelled, read_pairs,
                    write_pairs_jsonl)

__all__ = ["LabelledExample", "PreferencePair", "dumps_jsonl", "parse_prompt", "read_labelled", "read_pairs",
           "write_pairs_jsonl"]
