"""The retrieval core with a stand-in embedder (hashed bag of words, unit length): chunking per format,
FTS5 and vector search, reciprocal-rank fusion, the not-found verdict, the context meter, citations."""
from __future__ import annotations

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.rag import answer, chunking, retrieve
from llmos_core.rag.index import DocumentIndex, check_collection_name, fts_query, fts_table
from llmos_core.store import Store
from llmos_core.translation import documents
import tiny_models
from rag_samples import bag_of_words
from translation_samples import make_docx, make_pdf

MD = b"""# Leave

Employees get 27 days of paid leave per year.

## Expenses

Hotels cost at most 180 EUR a night.

| Item | Limit |
|---|---|
| Taxi | 60 EUR |
| Phone | 25 EUR |
"""


def test_markdown_chunks_follow_headings_and_keep_table_rows_whole():
    chunks = chunking.chunk_document(documents.parse(MD, "policy.md"))
    assert [c.heading for c in chunks] == ["Leave", "Expenses"]
    assert "27 days" in chunks[0].text and "180 EUR" not in chunks[0].text
    assert "Taxi | 60 EUR" in chunks[1].text and "Phone | 25 EUR" in chunks[1].text


def test_long_sections_are_cut_near_the_target_with_overlap():
    sentences = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(200))
    chunks = chunking.chunk_document(documents.parse(f"# Long\n\n{sentences}\n".encode(), "long.md"))
    assert len(chunks) > 5
    assert all(len(c.text) <= chunking.TARGET_CHARS + chunking.OVERLAP_CHARS + 2 for c in chunks)
    for before, after in zip(chunks, chunks[1:]):   # each passage starts with the tail of the one before
        assert after.text.split("\n")[0] in before.text
    assert "topic 199." in chunks[-1].text


def test_plain_text_short_lines_become_headings_and_html_headings_are_kept():
    txt = b"Password rules\n\nPasswords have 14 characters.\n\nLost devices\n\nCall extension 4444.\n"
    assert [c.heading for c in chunking.chunk_document(documents.parse(txt, "it.txt"))] == ["Password rules", "Lost devices"]
    html = b"<html><body><h2>Parking</h2><p>There are 40 spaces.</p><h2>Kitchen</h2><p>Coffee is free.</p></body></html>"
    chunks = chunking.chunk_document(documents.parse(html, "office.html"))
    assert [(c.heading, "40" in c.text) for c in chunks] == [("Parking", True), ("Kitchen", False)]


def test_docx_and_srt_chunks():
    chunks = chunking.chunk_document(documents.parse(make_docx(), "report.docx"))
    assert [c.heading for c in chunks] == ["Annual report", "Summary"]
    assert "Name | Value | Alpha | Beta gamma" in chunks[0].text and "went well" in chunks[1].text
    pdf = make_pdf([["The first page talks about apples."], ["The second page talks about pears."]])
    chunks = chunking.chunk_document(documents.parse(pdf, "fruit.pdf", pdf_output="txt"))
    assert [(c.page, "pears" in c.text) for c in chunks] == [(1, False), (2, True)]
    srt = b"1\n00:00:01,000 --> 00:00:02,000\nCollect your badge at reception.\n\n2\n00:00:03,000 --> 00:00:04,000\nMeet your buddy.\n"
    chunks = chunking.chunk_document(documents.parse(srt, "intro.srt"))
    assert "badge" in chunks[0].text and "buddy" in chunks[0].text


@pytest.fixture
def index(tmp_path):
    idx = DocumentIndex(Store(tmp_path / "llmos.db"))
    idx.create_collection("docs", "bag", 0)
    for name, data in [("policy.md", MD), ("it.txt", b"Password rules\n\nPasswords have 14 characters.\n")]:
        doc = documents.parse(data, name)
        chunks = chunking.chunk_document(doc)
        document_id = idx.add_document("docs", name, doc.format, len(data), "whole text", chunks)
        rows = idx.unembedded(document_id)
        idx.store_vectors(document_id, [r["id"] for r in rows], bag_of_words([r["text"] for r in rows]))
    return idx


def test_full_text_and_vector_search_find_the_passage(index):
    text_hits = index.search_text("docs", "taxi limit")
    assert "Taxi" in index.chunks([text_hits[0][0]])[text_hits[0][0]].text
    vector_hits = index.search_vectors("docs", bag_of_words(["passwords have how many characters"])[0])
    assert index.chunks([vector_hits[0][0]])[vector_hits[0][0]].document == "it.txt"
    assert index.search_text("docs", "the of what") == []          # stopwords only: no query at all
    assert [d["status"] for d in index.documents("docs")] == ["embedded", "embedded"]


def test_fts_query_quotes_every_word_so_user_syntax_never_reaches_fts5(index):
    assert fts_query('taxi" OR NEAR(x2) *') == '"taxi" OR "near" OR "x2"'
    assert index.search_text("docs", 'taxi" AND -- ) (') != []


def test_reciprocal_rank_fusion_rewards_agreement():
    scores = retrieve.fuse([[1, 2, 3], [3, 1, 4]])
    assert max(scores, key=scores.get) == 1
    assert scores[3] > scores[2] and scores[4] < scores[2]


def test_retrieve_and_the_not_found_verdict(index):
    found = retrieve.retrieve(index, "docs", "What is the taxi limit in EUR?", bag_of_words)
    assert found.found and "Taxi" in found.passages[0].chunk.text
    missing = retrieve.retrieve(index, "docs", "What is the capital of Australia?", bag_of_words)
    assert not missing.found and missing.candidates      # candidates exist, none is evidence


def test_removing_deletes_passages_vectors_and_the_text_index(index):
    assert index.remove_document("docs", "policy.md")
    assert index.search_text("docs", "taxi") == []
    assert all(index.chunks([i])[i].document == "it.txt" for i, _ in index.search_vectors("docs", bag_of_words(["taxi"])[0]))
    assert index.remove_collection("docs", LOCAL_ADMIN) and index.collections(LOCAL_ADMIN) == []


def _add(idx, collection, name, text):
    idx.create_collection(collection, "bag", 0)
    doc = documents.parse(text.encode(), name)
    document_id = idx.add_document(collection, name, doc.format, len(text), text, chunking.chunk_document(doc))
    rows = idx.unembedded(document_id)
    idx.store_vectors(document_id, [r["id"] for r in rows], bag_of_words([r["text"] for r in rows]))


def test_each_collection_searches_only_its_own_passages(index):
    _add(index, "docs_data", "other.txt", "Taxi rides in the other collection.\n")   # 'docs' + FTS5's '_data' suffix
    assert {index.chunks([i])[i].document for i, _ in index.search_text("docs", "taxi")} == {"policy.md"}
    assert {index.chunks([i])[i].document for i, _ in index.search_text("docs_data", "taxi")} == {"other.txt"}
    _add(index, "docs", "policy.md", "Bicycles only.\n")                 # a file replaced: its old text is gone
    assert index.search_text("docs", "taxi") == [] and index.search_text("docs", "bicycles")
    assert index.remove_collection("docs_data", LOCAL_ADMIN) and index.search_text("docs_data", "taxi") == []


def test_a_database_with_the_old_shared_text_index_is_split_per_collection(tmp_path, index):
    conn = index.store.connection()      # make it look as the first release left it
    conn.execute(f"DROP TABLE {fts_table('docs')}")
    conn.execute("CREATE VIRTUAL TABLE rag_fts USING fts5(text, heading, content='rag_chunks', content_rowid='id')")
    conn.execute("CREATE TRIGGER rag_chunks_ad AFTER DELETE ON rag_chunks BEGIN "
                 "INSERT INTO rag_fts(rag_fts, rowid, text, heading) VALUES ('delete', old.id, old.text, old.heading); END")
    conn.execute("INSERT INTO rag_fts(rag_fts) VALUES ('rebuild')")
    reopened = DocumentIndex(Store(tmp_path / "llmos.db"))
    names = {row[0] for row in reopened.store.execute("SELECT name FROM sqlite_master").fetchall()}
    assert "rag_fts" not in names and "rag_chunks_ad" not in names
    assert "Taxi" in reopened.chunks([reopened.search_text("docs", "taxi")[0][0]]).popitem()[1].text
    assert reopened.remove_document("docs", "policy.md") and reopened.search_text("docs", "taxi") == []


@pytest.mark.parametrize("name", ["", "A", "../x", "a/b", "x" * 65, "-x", "a b", "é"])
def test_collection_names_are_strict_slugs(name):
    with pytest.raises(InvalidInput):
        check_collection_name(name)
    assert check_collection_name("hr-2024_v2") == "hr-2024_v2"


def _passages(index, question):
    return retrieve.retrieve(index, "docs", question, bag_of_words).passages


def test_context_meter_sends_a_small_document_whole_and_names_passages_left_out(index):
    count = lambda text: len(text.split())           # noqa: E731
    passages = _passages(index, "What is the taxi limit in EUR?")
    assert len({p.chunk.document for p in passages}) == 1
    whole = answer.choose_context(passages, {"policy.md": "the whole policy"}, count, 512, 64, "How much?", [])
    assert whole.whole_document == "policy.md" and whole.meter.passages > 0
    assert whole.meter.used == sum(v for k, v in whole.meter.parts().items() if k != "free")
    assert whole.meter.used + whole.meter.free == 512

    many = passages * 3
    tight = answer.choose_context(many, {}, count, count(answer.SYSTEM_PROMPT) + 64 + 60, 64, "How much?", [])
    assert tight.whole_document is None and tight.sources and tight.left_out
    assert tight.meter.passages <= 60


def test_citations_follow_the_numbers_in_the_answer(index):
    passages = _passages(index, "taxi hotel leave days")
    context = answer.Context(passages[:2], None, "", [], answer.ContextMeter(512, 64))
    cited = answer.citations("A taxi costs 60 EUR [2]. See also [9].", context)
    assert [c["number"] for c in cited if c["cited"]] == [2]
    assert cited[0]["number"] == 2 and cited[0]["passage"] == passages[1].chunk.text and cited[0]["file"]
    messages = answer.build_messages("How much?", context, [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "hello"}])
    assert messages[0]["role"] == "system" and "[1] (" in messages[-1]["content"]
    assert messages[-1]["content"].endswith("Question: How much?")


def test_a_follow_up_over_the_same_passages_repeats_the_first_prompt(index):
    """Issue 30: the follow-up's prompt starts with the first question's whole prompt (passages included),
    so the prefix cache reads only the new turns; other passages get the usual layout."""
    count = lambda text: len(text.split())           # noqa: E731
    passages = _passages(index, "taxi hotel leave days")
    first = answer.choose_context(passages, {}, count, 4096, 64, "What is the taxi limit?", [])
    assert len(first.sources) >= 2
    prompt_1 = answer.build_messages("What is the taxi limit?", first, [])
    reply = {"role": "assistant", "content": "60 EUR [1].", "stats": {"citations": answer.citations("60 EUR [1].", first)}}
    history = [{"role": "user", "content": "What is the taxi limit?"}, reply]
    second = answer.choose_context(first.sources[1:], {}, count, 4096, 64, "And the hotel?", history)
    reused, turn = answer.follow_up(second, history, {}, count)
    assert turn == 0 and [p.chunk.text for p in reused.sources] == [p.chunk.text for p in first.sources]
    prompt_2 = answer.build_messages("And the hotel?", reused, history, turn)
    assert prompt_2[:len(prompt_1)] == prompt_1 and prompt_2[-1] == {"role": "user", "content": "Question: And the hotel?"}
    assert [c["number"] for c in answer.citations("[2]", reused) if c["cited"]] == [2]   # the first turn's numbers
    tokenizer = tiny_models.make_tokenizer(chat_template=True)          # the model reads the same tokens first
    first_ids = tokenizer.apply_chat_template(prompt_1, add_generation_prompt=True, tokenize=True)
    second_ids = tokenizer.apply_chat_template(prompt_2, add_generation_prompt=True, tokenize=True)
    first_ids, second_ids = (getattr(ids, "input_ids", ids) for ids in (first_ids, second_ids))
    assert len(second_ids) > len(first_ids) > 50 and second_ids[:len(first_ids)] == first_ids
    # a third question over them again repeats the second prompt (the passages stay in turn 0)
    history_3 = history + [{"role": "user", "content": "And the hotel?"},
                           {"role": "assistant", "content": "180 EUR [2].",
                            "stats": {"citations": answer.citations("[2]", reused), "passages_turn": turn}}]
    reused_3, turn_3 = answer.follow_up(second, history_3, {}, count)
    assert turn_3 == 0
    prompt_3 = answer.build_messages("And the phone?", reused_3, history_3, turn_3)
    assert prompt_3[:len(prompt_2)] == prompt_2
    # a passage the first turn did not have: the usual layout (passages in the last turn)
    other = answer.Context(_passages(index, "password characters"), None, "", [], second.meter)
    assert answer.follow_up(other, history, {}, count) is None
    assert "Passages:" in answer.build_messages("Passwords?", other, history)[-1]["content"]
    # the earlier passages no longer fit beside the grown history: the usual layout
    tight = answer.choose_context(first.sources[1:], {}, count, second.meter.used + 20, 64, "And the hotel?", history)
    assert answer.follow_up(tight, history, {}, count) is None
