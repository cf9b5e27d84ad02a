"""Preference files: JSONL and CSV read into pairs and labelled examples; hostile files refused by line."""
import json

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.feedback import pairs as P
from llmos_core.feedback import LabelledExample, PreferencePair, read_labelled, read_pairs, write_pairs_jsonl


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_jsonl_string_and_messages_prompts_round_trip(tmp_path):
    rows = [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."},
            {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
             "chosen": [{"role": "assistant", "content": "4"}], "rejected": "five", "model": "m",
             "settings": {"temperature": 0.2}}]
    path = _write(tmp_path, "p.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = read_pairs(path)
    assert got[0] == PreferencePair([{"role": "user", "content": "Hi?"}], "Hello.", "Go away.")
    assert got[1].prompt[0]["role"] == "system" and got[1].chosen == "4" and got[1].model == "m"
    assert got[1].settings == {"temperature": 0.2}
    assert got[1].as_trl()["chosen"] == [{"role": "assistant", "content": "4"}]
    out = write_pairs_jsonl(got, tmp_path / "out" / "again.jsonl")
    assert read_pairs(out) == got


def test_csv_with_a_json_messages_prompt(tmp_path):
    messages = json.dumps([{"role": "user", "content": "Say hi"}])
    text = 'prompt,chosen,rejected\n"Q, with comma",yes,no\n' + '"' + messages.replace('"', '""') + '",hi,bye\n,,\n'
    got = read_pairs(_write(tmp_path, "p.csv", text))
    assert [g.prompt[-1]["content"] for g in got] == ["Q, with comma", "Say hi"]
    assert got[1].chosen == "hi"


def test_labelled_examples(tmp_path):
    path = _write(tmp_path, "k.jsonl", '{"prompt": "a", "completion": "b", "label": true}\n'
                                       '{"prompt": "a", "completion": "c", "label": "down"}\n')
    assert read_labelled(path) == [LabelledExample([{"role": "user", "content": "a"}], "b", True),
                                   LabelledExample([{"role": "user", "content": "a"}], "c", False)]


@pytest.mark.parametrize("name,text,needle", [
    ("p.jsonl", '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{bad json\n', "line 2"),
    ("p.jsonl", '["a", "b"]\n', "line 1"),
    ("p.jsonl", '{"prompt": "a", "chosen": "b"}\n', "'rejected'"),
    ("p.jsonl", '{"prompt": "a", "chosen": "b", "rejected": "b"}\n', "the same text"),
    ("p.jsonl", '{"prompt": "", "chosen": "b", "rejected": "c"}\n', "prompt is empty"),
    ("p.jsonl", '{"prompt": [{"role": "assistant", "content": "x"}], "chosen": "b", "rejected": "c"}\n', "end with"),
    ("p.jsonl", '{"prompt": [{"role": "hacker", "content": "x"}], "chosen": "b", "rejected": "c"}\n', "role"),
    ("p.jsonl", '{"prompt": "a", "chosen": 3, "rejected": "c"}\n', "should be text"),
    ("p.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", "line 1"),
    ("p.csv", "prompt,chosen\na,b\n", "'rejected'"),
    ("p.csv", "\n\n", "empty"),
    ("p.txt", "x", "not a preference data format"),
    ("p.jsonl", b"\xff\xfe{}", "not UTF-8"),
    ("p.jsonl", b"\x00\x01", "binary"),
])
def test_hostile_files_are_refused_with_the_line(tmp_path, name, text, needle):
    with pytest.raises(InvalidInput) as err:
        read_pairs(_write(tmp_path, name, text))
    assert needle in str(err.value)
    assert err.value.hint


def test_bounds_on_size_lines_rows_and_messages(tmp_path, monkeypatch):
    path = _write(tmp_path, "p.jsonl", '{"prompt": "a", "chosen": "b", "rejected": "c"}\n' * 5)
    with pytest.raises(InvalidInput, match="over the"):
        read_pairs(path, max_bytes=100)
    monkeypatch.setattr(P, "MAX_ROWS", 3)
    with pytest.raises(InvalidInput, match="more than 3 rows"):
        read_pairs(path)
    monkeypatch.setattr(P, "MAX_LINE_CHARS", 20)
    with pytest.raises(InvalidInput, match="line 1 is"):
        read_pairs(path)
    many = json.dumps({"prompt": [{"role": "user", "content": "x"}] * (P.MAX_MESSAGES + 1), "chosen": "b",
                       "rejected": "c"})
    monkeypatch.setattr(P, "MAX_LINE_CHARS", 10**6)
    with pytest.raises(InvalidInput, match="messages, over"):
        read_pairs(_write(tmp_path, "m.jsonl", many))
    long_csv = "prompt,chosen,rejected\n" + '"' + "x" * 200_000 + '",b,c\n'
    with pytest.raises(InvalidInput, match="line 2"):
        read_pairs(_write(tmp_path, "l.csv", long_csv))
