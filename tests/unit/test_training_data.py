"""Training data: reading each format, the bad inputs, packing, prompt masking, the split, uploads."""
from __future__ import annotations

import json

import pytest

import tiny_models
from llmos_core.errors import InvalidInput
from llmos_core.settings import Settings
from llmos_core.training import data


@pytest.fixture(scope="module")
def tok_plain():
    tok = tiny_models.make_tokenizer(chat_template=False)
    return tok


@pytest.fixture(scope="module")
def tok_chat():
    return tiny_models.make_tokenizer(chat_template=True)


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_text_file_splits_into_paragraphs_or_lines(tmp_path):
    ds = data.load(write(tmp_path, "a.txt", "First para.\nstill first.\n\nSecond para.\n"))
    assert ds.shape == data.TEXT and [e["text"] for e in ds.examples] == ["First para.\nstill first.", "Second para."]
    ds = data.load(write(tmp_path, "b.md", "line one\nline two\nline three"))
    assert ds.rows == 3


def test_jsonl_shapes(tmp_path):
    pairs = write(tmp_path, "p.jsonl", '{"prompt": "hi", "response": "hello"}\n\n{"instruction": "a", "output": "b"}\n')
    ds = data.load(pairs)
    assert ds.shape == data.PAIRS and ds.examples[1] == {"prompt": "a", "response": "b"}
    chat = write(tmp_path, "c.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "yo"}]}) + "\n")
    assert data.load(chat).shape == data.CHAT
    text = write(tmp_path, "t.jsonl", '{"text": "one"}\n{"text": "two"}\n')
    assert data.load(text).shape == data.TEXT


def test_jsonl_bad_line_names_its_number(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(InvalidInput, match="line 3"):
        data.load(path)
    with pytest.raises(InvalidInput, match="line 2: a JSON object"):
        data.load(write(tmp_path, "list.jsonl", '{"text": "ok"}\n[1, 2]\n'))
    with pytest.raises(InvalidInput, match="line 2: a text example among prompt_response"):
        data.load(write(tmp_path, "mixed.jsonl", '{"prompt": "a", "response": "b"}\n{"text": "c"}\n'))
    with pytest.raises(InvalidInput, match="no assistant message"):
        data.load(write(tmp_path, "noasst.jsonl", '{"messages": [{"role": "user", "content": "x"}]}\n'))


def test_csv_with_mapping_and_missing_column(tmp_path):
    path = write(tmp_path, "d.csv", "question,answer,extra\nWhat is 2+2?,4,x\nCapital of France?,Paris,y\n")
    ds = data.load(path, {"prompt": "question", "response": "answer"})
    assert ds.shape == data.PAIRS and ds.examples[1] == {"prompt": "Capital of France?", "response": "Paris"}
    assert ds.columns == ["question", "answer", "extra"]
    with pytest.raises(InvalidInput, match="no column 'body'") as info:
        data.load(path, {"text": "body"})
    assert "question, answer, extra" in info.value.hint
    assert data.load(path, {"text": "question"}).shape == data.TEXT
    # Without a mapping, known names are found ("question"/"answer").
    assert data.load(path).shape == data.PAIRS
    with pytest.raises(InvalidInput, match="line 2: no field"):
        data.load(write(tmp_path, "e.csv", "a,b\n1,2\n"))


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", b"", "is empty"),
    ("blank.txt", b"  \n\n ", "is empty"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary"),
    ("latin1.txt", "caf\xe9 cr\xe8me\nline two".encode("latin-1"), "not UTF-8 text .*line 1"),
    ("data.pdf", b"%PDF-1.4", "not a training data format"),
])
def test_bad_files_are_refused_clearly(tmp_path, name, content, message):
    with pytest.raises(InvalidInput, match=message):
        data.load(write(tmp_path, name, content))


def test_packing_makes_full_blocks_with_bos_eos(tmp_path, tok_plain):
    ds = data.load(write(tmp_path, "a.txt", "\n\n".join(["The quick brown fox jumps over the lazy dog."] * 20)))
    out = data.tokenize(ds, tok_plain, block_size=16, validation_fraction=0.2, seed=1)
    blocks = out.train + out.validation
    assert all(len(b["input_ids"]) == 16 and b["labels"] == b["input_ids"] for b in blocks)
    assert len(blocks) == out.tokens // 16   # the tail shorter than a block is dropped
    stream = sum((b["input_ids"] for b in blocks), [])
    assert stream.count(tok_plain.bos_token_id) >= 5 and tok_plain.eos_token_id in stream
    assert len(out.validation) == round(len(blocks) * 0.2)
    assert out.prompts and all(p.startswith("The") for p in out.prompts)   # samples start at a document
    again = data.tokenize(ds, tok_plain, block_size=16, validation_fraction=0.2, seed=1)
    assert again.validation == out.validation   # same seed, same split


def test_text_shorter_than_one_block(tmp_path, tok_plain):
    ds = data.load(write(tmp_path, "short.txt", "Hello there."))
    with pytest.raises(InvalidInput, match="shorter than one block of 128") as info:
        data.tokenize(ds, tok_plain, block_size=128)
    assert "lower the block length" in info.value.hint


def test_prompt_is_masked_and_response_ends_with_eos(tok_plain):
    block = data.mask_prompt(tok_plain, "User: hi\nAssistant: ", "hello there", block_size=64)
    n_prompt = len(tok_plain("User: hi\nAssistant: ")["input_ids"])
    assert block["labels"][:n_prompt] == [data.IGNORE] * n_prompt
    trained = block["labels"][n_prompt:]
    assert trained == block["input_ids"][n_prompt:] and trained[-1] == tok_plain.eos_token_id
    assert tok_plain.decode(trained, skip_special_tokens=True) == "hello there"
    cut = data.mask_prompt(tok_plain, "User: hi\nAssistant: ", "hello there " * 20, block_size=12)
    assert len(cut["input_ids"]) == 12 and cut["length"] > 12


def test_pairs_use_the_chat_template_or_the_plain_format(tok_plain, tok_chat):
    prompt, response, templated = data.to_prompt_response(tok_chat, {"prompt": "hi", "response": "yo"})
    assert templated and prompt == "<|user|>hi<|end|>\n<|assistant|>" and response == "yo<|end|>\n"
    prompt, response, templated = data.to_prompt_response(tok_plain, {"prompt": "hi", "response": "yo"})
    assert not templated and prompt == "User: hi\nAssistant:" and response == " yo"   # as Chat renders it
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d"}]
    prompt, response, _ = data.to_prompt_response(tok_plain, {"messages": messages})
    assert prompt == "Be brief.\n\nUser: a\nAssistant: b\nUser: c\nAssistant:" and response == " d"


def test_pair_tokenization_split_and_dropped(tmp_path, tok_chat):
    lines = [json.dumps({"prompt": f"question {i}", "response": f"answer {i}"}) for i in range(10)]
    lines.append(json.dumps({"prompt": "long " * 200, "response": "x"}))
    ds = data.load(write(tmp_path, "p.jsonl", "\n".join(lines)))
    out = data.tokenize(ds, tok_chat, block_size=32, validation_fraction=0.2, seed=3)
    assert out.dropped == 1 and len(out.train) + len(out.validation) == 10 and len(out.validation) == 2
    assert all(data.IGNORE in b["labels"] and b["labels"][-1] != data.IGNORE for b in out.train)
    assert out.prompts[0].startswith("<|user|>question") and out.references[0].startswith("answer")
    with pytest.raises(InvalidInput, match="no example .* fits"):
        data.tokenize(ds, tok_chat, block_size=8)


def test_collator_pads_with_ignored_labels():
    batch = data.Collator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                                    {"input_ids": [5], "labels": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_save_upload_keeps_one_copy_under_the_data_folder(tmp_path):
    settings = Settings(home=tmp_path / "home", max_upload_mb=1)
    first = data.save_upload(settings, "my data.txt", b"hello world")
    second = data.save_upload(settings, "my data.txt", b"hello world")
    assert first == second and first.parent == settings.home / "datasets" and first.read_bytes() == b"hello world"
    assert first.name.startswith("my-data-") and first.suffix == ".txt"
    assert data.save_upload(settings, "my data.txt", b"other") != first
    with pytest.raises(InvalidInput, match="over the 1 MB limit"):
        data.save_upload(settings, "big.txt", b"x" * (2 * 1024**2))
    with pytest.raises(InvalidInput, match="not a training data format"):
        data.save_upload(settings, "x.exe", b"MZ")
