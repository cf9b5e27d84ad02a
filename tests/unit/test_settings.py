from pathlib import Path

import pytest

from llmos_core.errors import SettingsError
from llmos_core.settings import Settings, parse_size


def test_env_overrides_every_field(tmp_path):
    s = Settings.from_env({"LLMOS_HOME": str(tmp_path), "LLMOS_MEMORY_BUDGET": "1.5GB", "LLMOS_KEEP_ALIVE_S": "30",
                           "LLMOS_DEVICE": "cpu", "LLMOS_OFFLINE": "1", "LLMOS_THREADS": "2"})
    assert s.home == tmp_path
    assert s.memory_budget == int(1.5 * 1024**3)
    assert s.keep_alive_s == 30.0 and s.device == "cpu" and s.offline and s.threads == 2
    assert s.db_path == tmp_path / "llmos.db"


def test_hf_hub_offline_means_offline():
    assert Settings.from_env({"HF_HUB_OFFLINE": "1"}).offline


@pytest.mark.parametrize("text, expected", [("512MB", 512 * 1024**2), ("4g", 4 * 1024**3), ("1000", 1000),
                                            ("1.5 GiB", int(1.5 * 1024**3))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("env", [{"LLMOS_MEMORY_BUDGET": "lots"}, {"LLMOS_DEVICE": "tpu"},
                                 {"LLMOS_KEEP_ALIVE_S": "-1"}, {"LLMOS_DTYPE": "int3"},
                                 {"LLMOS_THREADS": "two"}, {"LLMOS_API_STREAM_INTERVAL_MS": "-5"},
                                 {"LLMOS_API_STREAM_INTERVAL_MS": "soon"}])
def test_bad_values_are_refused_with_a_message(env):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert str(info.value)


def test_default_home_is_in_the_user_folder():
    assert Settings.from_env({}).home == Path.home() / ".llmos"
