"""AppTest of the Chat page's compare mode with two tiny models: both answer in columns with their figures,
the comparison is saved, listed in the sidebar and reopened; too few models and a refusal say why."""
import pytest

from llmos_core.engine import get_engine
from llmos_core.errors import Busy
from llmos_core.settings import Settings
from llmos_core.accounts import LOCAL_ADMIN

COMPARE = "Compare side by side"


@pytest.fixture
def engine(home):
    return get_engine(Settings.from_env())


@pytest.fixture
def compare_app(new_app, engine, tiny_causal, tiny_base):
    names = [engine.catalog.register(engine.catalog.resolve(str(folder))).name for folder in (tiny_causal, tiny_base)]

    def make():
        at = new_app()
        at.switch_page("app_pages/chat.py").run()
        at.radio(key="chat_view").set_value(COMPARE).run()
        at.multiselect(key="chat_compare_models").set_value(names).run()
        at.number_input(key="chat_max_new_tokens").set_value(6).run()
        at.slider(key="chat_temperature").set_value(1.5).run()   # tiny random models: sampling gives text
        assert not at.exception, at.exception
        return at
    return make, names


def column_texts(at):
    """What each answer column shows: (model name, figures caption)."""
    return [(c.markdown[0].value, c.caption[-1].value if c.caption else "") for c in at.columns if c.markdown]


def test_one_prompt_two_models_side_by_side_saved_and_reopened(compare_app, engine):
    make, names = compare_app
    at = make()
    at.chat_input(key="chat_compare_input").set_value("Tell me about the fox.").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    [saved] = engine.comparisons.list(LOCAL_ADMIN)
    assert saved["title"] == "Tell me about the fox." and saved["models"] == names
    answers = engine.comparisons.get(LOCAL_ADMIN, saved["id"])["answers"]
    assert all(a["text"] and 0 < a["stats"]["tokens"] <= 6 for a in answers)
    shown = column_texts(at)
    assert [model for model, _ in shown] == [f"**{n}**" for n in names]
    for (_, figures), answer in zip(shown, answers):
        assert f"{answer['stats']['tokens']} tokens" in figures and "first token" in figures
        assert "(transformers)" in figures
    assert at.chat_message[0].markdown[0].value == "Tell me about the fox."

    # A second prompt makes a second comparison; the first reopens from the sidebar.
    at.chat_input(key="chat_compare_input").set_value("Hello there").run()
    assert [c["title"] for c in engine.comparisons.list(LOCAL_ADMIN)] == ["Hello there", "Tell me about the fox."]
    at.button(key=f"chat_compare_open_{saved['id']}").click().run()
    assert at.chat_message[0].markdown[0].value == "Tell me about the fox."
    assert any(answers[0]["text"].strip()[:10] in c.markdown[1].value for c in at.columns if len(c.markdown) > 1)
    at.button(key="chat_compare_delete").click().run()
    assert [c["title"] for c in engine.comparisons.list(LOCAL_ADMIN)] == ["Hello there"]

    # Back to the plain chat: its model picker returns.
    at.radio(key="chat_view").set_value("Chat").run()
    assert at.selectbox(key="chat_model") is not None and not at.exception


def test_one_model_is_not_a_comparison_and_a_refusal_shows_in_its_column(compare_app, engine, monkeypatch):
    make, names = compare_app
    at = make()
    at.multiselect(key="chat_compare_models").set_value(names[:1]).run()
    at.chat_input(key="chat_compare_input").set_value("Hi").run()
    assert any("2 or 3 models" in e.value for e in at.error) and engine.comparisons.list(LOCAL_ADMIN) == []

    real_stream = engine.chat.stream

    def refuse_the_base(name, *args, **kwargs):
        if name == names[1]:
            raise Busy(f"{name} is busy: 8 ahead of you")
        return real_stream(name, *args, **kwargs)

    monkeypatch.setattr(engine.chat, "stream", refuse_the_base)
    at.multiselect(key="chat_compare_models").set_value(names).run()
    at.chat_input(key="chat_compare_input").set_value("Hi").run()
    assert not at.exception
    assert any("8 ahead of you" in e.value for e in at.error)
    first, second = engine.comparisons.get(LOCAL_ADMIN, engine.comparisons.list(LOCAL_ADMIN)[0]["id"])["answers"]
    assert first["text"] and not first["error"] and "8 ahead of you" in second["error"]
