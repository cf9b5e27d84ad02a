"""AppTest of the Chat page's "reply as JSON" with a tiny random model: the reply is valid JSON only because the
grammar masks every token, and it is shown formatted; a schema that is not JSON is a clear error."""
import json

import pytest

from llmos_core.engine import get_engine
from llmos_core.settings import Settings

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


@pytest.fixture
def json_app(new_app, home, tiny_causal):
    engine = get_engine(Settings.from_env())
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    at = new_app()
    at.switch_page("app_pages/chat.py").run()
    at.selectbox(key="chat_model").set_value(name).run()
    at.number_input(key="chat_max_new_tokens").set_value(30).run()
    at.toggle(key="chat_json").set_value(True).run()
    assert not at.exception, at.exception
    return at


def test_reply_as_json_is_valid_and_shown_formatted(json_app):
    at = json_app
    at.selectbox(key="chat_schema_example").set_value("Sentiment").run()
    assert "sentiment" in at.text_area(key="chat_schema").value          # the example fills the box
    at.text_area(key="chat_schema").set_value(json.dumps(SCHEMA)).run()
    at.chat_input(key="chat_input").set_value("Is this fine?").run()
    assert not at.exception, at.exception
    [code] = at.chat_message[1].code
    assert code.language == "json" and isinstance(json.loads(code.value)["ok"], bool)


def test_a_schema_that_is_not_json_is_a_clear_error(json_app):
    at = json_app
    at.text_area(key="chat_schema").set_value("{not json").run()
    at.chat_input(key="chat_input").set_value("Hello").run()
    assert any("schema is not JSON" in e.value for e in at.error)
