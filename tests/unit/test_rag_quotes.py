"""Ask's extractive answer: sentences split and ranked (rag/sentences.py), the grounding check of the
model's wording (rag/grounding.py), the retry and the quotes-only fallback, and the reply's JSON
(usecases/ask.py's answer), with a fake chat service: no model is loaded here."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmos_core.generation import SamplingParams
from llmos_core.generation.request import ChatResult
from llmos_core.rag import sentences
from llmos_core.rag.answer import Context, ContextMeter
from llmos_core.rag.grounding import check_claims
from llmos_core.rag.index import StoredChunk
from llmos_core.rag.model_choice import default_ask_model
from llmos_core.rag.quotes import DECLINED, UNCHECKED, make_quotes
from llmos_core.rag.retrieve import Passage, Retrieval
from llmos_core.usecases import ask
from rag_samples import bag_of_words

MACHINE = ("Rinse the water tank. The tank holds 1.8 litres. It heats up in about 45 seconds.\n"
           "Descale the machine every 200 cups or every three months, whichever comes first.")
WARRANTY = ("The warranty lasts 2 years from the date of purchase. For repairs, call Dr. Anna Berg on 0800 555 0199.\n"
            "Error code | Meaning\nE1 | Water tank empty\nE7 | Descaling needed")


def passage(text: str, document: str = "coffee-machine.md", heading: str = "", number: int = 1) -> Passage:
    return Passage(StoredChunk(number, document, heading, None, text, number), 1.0 / number, 0.5, 1.0, 1.0, 2)


PASSAGES = [passage(MACHINE, heading="Using the machine"), passage(WARRANTY, heading="Warranty and service", number=2)]


def test_sentences_are_split_at_their_ends_but_not_after_titles_and_table_rows_keep_their_header():
    found = sentences.split_sentences(WARRANTY)
    assert "For repairs, call Dr. Anna Berg on 0800 555 0199." in found
    assert "Error code | Meaning\nE7 | Descaling needed" in found
    assert sentences.split_sentences("# Title\n- one item here. Two items there.") == ["Title", "one item here.",
                                                                                      "Two items there."]


@pytest.mark.parametrize("question, expected", [
    ("How much water does the tank hold?", "The tank holds 1.8 litres."),
    ("How often should I descale the machine?", "Descale the machine every 200 cups"),
    ("How long is the warranty?", "The warranty lasts 2 years"),
    ("What does error code E7 mean?", "E7 | Descaling needed"),
    ("Who do I call for repairs?", "Dr. Anna Berg"),
])
def test_the_sentence_that_answers_ranks_first(question, expected):
    ranked = sentences.rank_sentences(question, PASSAGES, bag_of_words)
    quotes, verdict = sentences.choose_quotes(question, ranked)
    assert quotes and expected in quotes[0].text, (verdict, [(r.score, r.text) for r in ranked[:3]])
    assert set(quotes[0].signals) == {"similarity", "coverage", "cue", "passage"}


def test_question_cues_and_a_count_must_count_the_thing_asked_for():
    assert sentences.question_cue("What time does it open?") == "time"
    assert sentences.question_cue("How much does a ticket cost?") == "money"
    assert sentences.question_cue("When are the bins emptied?") == "date"
    assert sentences.question_cue("What gloves should I wear when handling solvents?") is None
    assert sentences.question_cue("Who chairs the club?") == "name"
    assert sentences.satisfies("number", "You may borrow up to 15 items.", "How many items can I borrow?") == 1.0
    assert sentences.satisfies("number", "Each member rents one plot of 12 square metres.",
                               "How many plots does the garden have?") == 0.0


def test_no_sentence_is_quoted_when_none_holds_what_the_question_asks_for():
    question = "How much does the machine cost to buy?"
    quotes, verdict = sentences.choose_quotes(question, sentences.rank_sentences(question, PASSAGES, bag_of_words))
    assert quotes == [] and "money" in verdict


def test_a_wrong_number_beside_a_right_citation_is_caught():
    report = check_claims("The tank holds 2 litres [1].", ["The tank holds 1.8 litres."])
    assert not report.supported and [c.text for c in report.unsupported] == ["2 litres"]
    assert check_claims("It heats up in 45 minutes.", ["It heats up in about 45 seconds."]).unsupported[0].kind == "quantity"
    assert not check_claims("Call Dr. Smith.", ["Call Dr. Anna Berg."]).supported
    assert not check_claims("Open until 19:00.", ["It closes at 7:00."]).supported
    chair = ["The club is chaired by Maria Lopez; the treasurer is Tom Becker."]    # a right name, said of the wrong thing
    wrong = check_claims("Tom Becker is the chair of the club.", chair)
    assert not wrong.supported and "something else" in wrong.unsupported[0].how
    assert check_claims("The club's chairperson is Maria Lopez.", chair).supported


def test_the_wording_is_cut_to_its_first_line_and_sentence_run():
    from llmos_core.rag.quotes import clean_wording
    assert clean_wording("[1] Answer: It is Dr. Olsen. [2] It is Dr. Olsen. [3] It") == "It is Dr. Olsen."
    assert clean_wording("The tank holds 1.8 litres [1].\nQuestion: next") == "The tank holds 1.8 litres [1]."
    assert clean_wording("The tank holds 1.8 litres. [1]") == "The tank holds 1.8 litres. [1]"


def test_a_wording_that_drops_or_adds_a_negation_is_caught():
    from llmos_core.rag.grounding import same_polarity
    quote = ["The brewing unit can be rinsed under the tap, but it must never go in the dishwasher."]
    assert not same_polarity("Yes, you can put the brewing unit in the dishwasher.", quote)
    assert same_polarity("No, the brewing unit must never go in the dishwasher.", quote)
    assert not same_polarity("The tank does not hold 1.8 litres.", ["The tank holds 1.8 litres."])


def test_a_paraphrase_with_the_right_number_passes():
    sources = ["Descale the machine every 200 cups or every three months, whichever comes first.",
               "Bicycles may be taken on board except between 7:00 and 9:00. The fee is 0.50 EUR."]
    for text in ["You should descale it every 3 months, or after 200 cups [1].",
                 "Not from 7 am to 9 am; it costs €0.5.", "Yes, you can."]:
        report = check_claims(text, sources)
        assert report.supported, report.to_dict()
    own = check_claims(sources[0], sources).to_dict()
    assert own["supported"] and {c["kind"] for c in own["claims"]} == {"quantity", "name"}   # "Descale": a first word


class FakeChat:
    """engine.chat with canned replies, one per call."""

    def __init__(self, replies: list[str]):
        self.replies, self.calls = list(replies), []

    def generate(self, model, messages, params, **_):
        self.calls.append(messages)
        return ChatResult(self.replies.pop(0), {"prompt_tokens": 40, "tokens": 9, "elapsed_s": 0.1})


def plan_for(question: str) -> ask.AskPlan:
    ranked = sentences.rank_sentences(question, PASSAGES, bag_of_words)
    chosen, verdict = sentences.choose_quotes(question, ranked)
    context = Context(PASSAGES, None, "", [], ContextMeter(2048, 64))
    return ask.AskPlan("qa", question, "m", Retrieval(question, PASSAGES, PASSAGES), context, [],
                       make_quotes(chosen, PASSAGES), verdict)


@pytest.mark.parametrize("replies, shown, tries", [
    (["The tank holds 1.8 litres [1]."], "The tank holds 1.8 litres [1].", 1),
    (["The tank holds 2 litres [1].", "The tank holds 1.8 litres."], "The tank holds 1.8 litres.", 2),
    (["The tank holds 2 litres.", "It holds 3 litres."], None, 2),
    (["The sentence saying 1.8 litres is incorrect because it does not specify the amount.", "It holds 1.8 litres."],
     "It holds 1.8 litres.", 2),                   # every number right, but it argues with the quote
])
def test_answer_quotes_first_and_shows_the_wording_only_when_checked(replies, shown, tries):
    chat = FakeChat(replies)
    result = ask.answer(SimpleNamespace(chat=chat), plan_for("How much water does the tank hold?"),
                        SamplingParams(max_new_tokens=256))
    assert result.text.startswith("> The tank holds 1.8 litres.\n> — [1] coffee-machine.md")
    assert result.wording.text == shown and len(chat.calls) == tries
    assert "The tank holds 1.8 litres." in chat.calls[0][-1]["content"] and "Descale" not in chat.calls[0][-1]["content"]
    if tries == 2:
        assert chat.calls[1][0]["content"] != chat.calls[0][0]["content"]     # the second try is constrained
    if shown:
        assert "The model's wording" in result.text and shown in result.text
    else:
        assert UNCHECKED in result.text and "2 litres" not in result.text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["answered"] and data["quotes"][0]["text"] == "The tank holds 1.8 litres." and data["quotes"][0]["number"] == 1
    assert data["model_wording"]["shown"] == bool(shown) and len(data["model_wording"]["tries"]) == tries
    check = data["model_wording"]["tries"][0]["grounding"]
    assert check["method"] and check["claims"][0]["claim"] in ("1.8 litres", "2 litres")
    assert data["citations"][0]["cited"] and data["citations"][0]["number"] == 1


def test_a_question_no_sentence_answers_is_declined_without_asking_the_model():
    chat = FakeChat([])
    result = ask.answer(SimpleNamespace(chat=chat), plan_for("How much does the machine cost to buy?"), SamplingParams())
    assert result.text == DECLINED and not result.answered and result.found and chat.calls == []
    assert result.to_dict()["quotes"] == [] and result.to_dict()["model_wording"] is None


def test_the_default_ask_model_is_the_measured_best_in_the_catalog():
    catalog = SimpleNamespace(names=lambda task: ["my-model", "gemma-3-270m", "smollm2-135m-instruct"])
    assert default_ask_model(catalog) in ("gemma-3-270m", "smollm2-135m-instruct")
    assert default_ask_model(SimpleNamespace(names=lambda task: ["my-model"])) == "my-model"
