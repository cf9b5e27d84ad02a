"""Pulling a model is idempotent: a second pull of the same model changes nothing; the same name for
another model is refused before anything is downloaded or converted."""
from types import SimpleNamespace

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.models.catalog import Catalog
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.usecases.models import pull_and_register


@pytest.fixture
def engine(home):
    settings = Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(catalog=Catalog(Store(settings.db_path)), settings=settings)


def test_pulling_twice_registers_once(engine, tiny_causal):
    first = pull_and_register(engine, LOCAL_ADMIN, str(tiny_causal), name="tiny")
    assert first.registered and first.name == "tiny" and first.folder.is_dir()
    again = pull_and_register(engine, LOCAL_ADMIN, str(tiny_causal), name="tiny")     # the page used to fail here
    assert not again.registered and again.folder == first.folder
    assert engine.catalog.names().count("tiny") == 1
    by_name = pull_and_register(engine, LOCAL_ADMIN, "tiny")                         # a catalog name pulls its model
    assert by_name.name == "tiny" and not by_name.registered


def test_a_taken_name_is_refused(engine, tiny_causal, tiny_seq2seq):
    pull_and_register(engine, LOCAL_ADMIN, str(tiny_causal), name="tiny")
    with pytest.raises(InvalidInput, match="already in the catalog"):
        pull_and_register(engine, LOCAL_ADMIN, str(tiny_seq2seq), name="tiny")
    assert engine.catalog.get("tiny").task == "causal-lm"
