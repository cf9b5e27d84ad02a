"""Issue 27's findings outside the API, each reproduced: a long question in Ask, two processes writing the
translation memory, two GGUF exports at once, and two same-name same-size GGUFs in the Q8_0 cache."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.rag.index import keywords
from llmos_core.rag.retrieve import MAX_QUESTION_CHARS, keyword_hits, retrieve

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- Ask: a long question

def _quadratic_hits(words, text):   # the matching as it was: every word against every word of the text
    present = set(keywords(text))
    return sum(1 for word in words if word in present or (len(word) > 4 and any(
        p.startswith(word[:max(4, len(word) - 2)]) for p in present)))


def test_keyword_matching_is_linear_and_agrees_with_the_plain_definition():
    rng = random.Random(7)
    alphabet = "abcdefgh"
    for _ in range(300):
        text = " ".join("".join(rng.choices(alphabet, k=rng.randint(1, 9))) for _ in range(rng.randint(0, 30)))
        words = keywords(" ".join("".join(rng.choices(alphabet, k=rng.randint(1, 9))) for _ in range(8)))
        assert keyword_hits(words, text) == _quadratic_hits(words, text), (words, text)
    # 20,000 words against a passage of 2,000: the product was 40 million comparisons (seconds, holding the
    # GIL); the sum is a few milliseconds. The bound is generous: it only separates the two.
    question = keywords(" ".join(f"questionword{i}" for i in range(20_000)))
    passage = " ".join(f"passageword{i}" for i in range(2_000)) + " questionword17"
    # only the passage's questionword17 can match: no passage word shares a stem with the question's
    expected = sum(1 for w in question if "questionword17".startswith(w[:max(4, len(w) - 2)]))
    started = time.perf_counter()
    hits = keyword_hits(question, passage)
    assert time.perf_counter() - started < 2.0
    assert hits == expected > 1


def test_a_question_over_the_limit_is_refused_before_any_search():
    with pytest.raises(InvalidInput, match="question is .* characters long") as refused:
        retrieve(None, "docs", "word " * 20_000, embed=None)
    assert refused.value.hint
    assert MAX_QUESTION_CHARS >= 1000


# ---------------------------------------------------------------- translation memory and glossary: two writers

HAMMER = """
import sys
from pathlib import Path
from llmos_core.translation.glossary import Glossary
from llmos_core.translation.memory import TranslationMemory
home, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
memory, glossary = TranslationMemory.for_home(home), Glossary.for_home(home)
for i in range(count):
    memory.add("en", "de", {f"{tag} segment {i}.": f"{tag} Segment {i}."})
    if i % 10 == 0:
        glossary.put("en", "de", f"{tag}term{i}", f"{tag}Begriff{i}")
"""


def test_two_processes_hammering_the_memory_lose_nothing(tmp_path):
    from llmos_core.translation.glossary import Glossary
    from llmos_core.translation.memory import TranslationMemory

    count = 100
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", HAMMER, str(tmp_path), tag, str(count)], env=env,
                                stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()[-2000:]
    memory = TranslationMemory.for_home(tmp_path)
    data = json.loads(memory.path.read_text(encoding="utf-8"))   # the file is valid JSON
    entries = memory.entries("en", "de")
    assert len(entries) == 2 * count == len(data["en>de"])
    assert all(entries[f"{tag} segment {i}."] == f"{tag} Segment {i}." for tag in "ab" for i in range(count))
    assert len(Glossary.for_home(tmp_path).entries("en", "de")) == 2 * len(range(0, count, 10))
    assert not list(memory.path.parent.glob("*.tmp"))


def test_a_corrupt_memory_is_kept_aside_and_reported_never_emptied(tmp_path):
    from llmos_core.translation.memory import TranslationMemory

    memory = TranslationMemory.for_home(tmp_path)
    memory.add("en", "de", {"Hello.": "Hallo."})
    memory.path.write_text('{"en>de": {"Hello.": "Hal', encoding="utf-8")   # a half-written file
    with pytest.raises(InvalidInput, match="cannot be read.*kept as memory.json.corrupt-") as found:
        memory.add("en", "de", {"Bye.": "Tschüss."})
    assert "repair" in found.value.hint
    kept = list(memory.path.parent.glob("memory.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8") == '{"en>de": {"Hello.": "Hal'
    memory.add("en", "de", {"Bye.": "Tschüss."})     # then it starts anew, beside the kept copy
    assert memory.entries("en", "de") == {"Bye.": "Tschüss."}


# ---------------------------------------------------------------- two GGUF exports at once

def test_two_exports_at_once_keep_to_their_own_files(tmp_path, monkeypatch):
    """Export A writes its f16 file and waits; export B of the same target runs whole meanwhile (it used to
    sweep `.<target>.*`, A's file among them, and used the same names in one process); then A goes on."""
    from llmos_core.models import export_gguf as export

    a_wrote, b_done = threading.Event(), threading.Event()

    def fake_f16(state, config, source, f16):
        f16.write_bytes(state["tag"] * 1000)
        if state["tag"] == b"A":
            a_wrote.set()
            assert b_done.wait(30)
        return 7

    def fake_quantize(source, target, ftype, threads, allow_requantize=False):
        target.write_bytes(source.read_bytes()[:10])   # fails if another export removed `source`

    monkeypatch.setattr(export, "write_f16_gguf", fake_f16)
    monkeypatch.setattr(export, "quantize", fake_quantize)

    class Model:
        def __init__(self, tag):
            self.tag = tag
            self.config = type("Config", (), {"to_dict": lambda _: {}})()

        def state_dict(self):
            return {"tag": self.tag}

    target = tmp_path / "out" / "model.Q8_0.gguf"
    errors = []

    def run_a():
        try:
            export.export_gguf(Model(b"A"), tmp_path / "base.gguf", target)
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    a = threading.Thread(target=run_a)
    a.start()
    assert a_wrote.wait(30)
    other = tmp_path / "out" / "other.Q8_0.gguf"
    export.export_gguf(Model(b"B"), tmp_path / "base.gguf", other)
    export.export_gguf(Model(b"B"), tmp_path / "base.gguf", target)
    b_done.set()
    a.join(30)
    assert not errors, errors
    assert target.read_bytes() == b"A" * 10 and other.read_bytes() == b"B" * 10
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.Q8_0.gguf", "other.Q8_0.gguf"]
    # a folder left by a killed export (its lock free, and old) is swept by the next export; a live one is not
    dead = target.parent / f".{target.name}.export-dead"
    dead.mkdir()
    (dead / ".lock").touch()
    (dead / "f16.gguf").write_bytes(b"x")
    os.utime(dead, (time.time() - 3600, time.time() - 3600))
    export.export_gguf(Model(b"C"), tmp_path / "base.gguf", target)
    assert not dead.exists()


# ---------------------------------------------------------------- the Q8_0 cache: keyed by content

def test_two_same_name_same_size_files_within_a_second_get_their_own_copies(tmp_path, monkeypatch):
    from llmos_core.models import batched_form
    from llmos_core.settings import Settings

    made = []

    def fake_quantize(source, target, threads):   # a "copy" that says which file it came from
        made.append(source)
        target.write_bytes(b"Q8_0 of " + source.read_bytes())

    monkeypatch.setattr(batched_form, "_quantize", fake_quantize)
    monkeypatch.delenv("LLMOS_GGUF_AS_SHIPPED", raising=False)
    settings = Settings(home=tmp_path / "home")
    first, second = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for path, content in ((first, b"weights one"), (second, b"weights two")):
        path.parent.mkdir()
        path.write_bytes(content)
        os.utime(path, ns=(1_700_000_000_100_000_000, 1_700_000_000_100_000_000 + len(made)))
    os.utime(second, ns=(1_700_000_000_900_000_000,) * 2)   # the same whole second as the first
    served_first = batched_form.served_path(first, 3, settings)
    served_second = batched_form.served_path(second, 3, settings)
    assert served_first != served_second
    assert served_first.read_bytes() == b"Q8_0 of weights one"
    assert served_second.read_bytes() == b"Q8_0 of weights two"
    assert batched_form.served_path(first, 3, settings) == served_first and len(made) == 2   # reused, not remade
    record = served_first.with_name(served_first.name + ".sha256").read_text().split()[0]
    assert record == batched_form.source_digest(first) and len(record) == 64
    assert batched_form.expected_bytes(second, 3, settings) == served_second.stat().st_size
