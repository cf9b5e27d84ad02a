import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos_core import control
from llmos_core.engine import Engine
from llmos_core.errors import LLMOSError
from llmos_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "llmos_core", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_one_primary_engine_per_data_folder(home):
    first = Engine(Settings.from_env(), start_threads=False)
    second = Engine(Settings.from_env(), start_threads=False)
    try:
        assert first.is_primary and not second.is_primary
        assert second.primary_pid() == os.getpid()
        assert control.call(first.socket_path, "ping")["pid"] == os.getpid()
    finally:
        second.close()
        first.close()
    assert not control.is_up(home / "engine.sock")


def test_control_socket_loads_and_reports(home, tiny_causal):
    engine = Engine(Settings.from_env(), start_threads=False)
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
        seen = []
        status = control.call(engine.socket_path, "load", progress=lambda f, m: seen.append(m), name=name)
        assert status["name"] == name and status["measured_bytes"] > 0
        assert [m["name"] for m in control.call(engine.socket_path, "ps")] == [name]
        with pytest.raises(LLMOSError, match="not loaded"):
            control.call(engine.socket_path, "unload", name="nope")
        with pytest.raises(LLMOSError, match="no model named"):
            control.call(engine.socket_path, "load", name="nope")
    finally:
        engine.close()


def test_cli_list_and_errors(home):
    result = cli("models", "list", "--json")
    assert result.returncode == 0, result.stderr
    names = [m["name"] for m in json.loads(result.stdout)]
    assert names[:2] == ["smollm2-135m-instruct", "gemma-3-270m"]
    result = cli("models", "pull", "/definitely/not/here")
    assert result.returncode == 1 and "error:" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("models", "ps", "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == []
    result = cli("models", "export", "gemma-3-270m")   # embedded: a GGUF already, nothing to export
    assert result.returncode == 1 and "not a fine-tuned model" in result.stderr and "Traceback" not in result.stderr
    result = cli("models", "publish", "gemma-3-270m")  # embedded: shared with everyone already
    assert result.returncode == 1 and "embedded models are shared already" in result.stderr


def test_cli_publish_is_for_admins(home, tiny_causal):
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    engine.accounts.add_user("bob", "bob password")
    engine.close()
    refused = cli("--as", "bob", "models", "publish", name)
    assert refused.returncode == 1 and "only an admin" in refused.stderr and "Traceback" not in refused.stderr
    assert cli("models", "publish", name).returncode == 0     # the data folder's owner: the local admin
    listed = json.loads(cli("--as", "bob", "models", "list", "--json").stdout)
    assert [m["sharing"] for m in listed if m["name"] == name] == ["published"]


def test_cli_load_starts_a_background_engine_that_ps_sees(home, tiny_causal):
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    engine.close()
    # Idle models unload, and the idle background engine exits, after the keep-alive: long enough that the
    # `ps` below (a new Python process) sees the model on a loaded machine, short enough to watch the exit.
    env = {"LLMOS_KEEP_ALIVE_S": "12"}
    try:
        result = cli("models", "load", name, "--json", env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["measured_bytes"] > 0
        ps = json.loads(cli("models", "ps", "--json", env=env).stdout)
        assert [m["name"] for m in ps] == [name] and ps[0]["measured_bytes"] > 0
        assert cli("models", "unload", name, env=env).returncode == 0
        deadline = time.monotonic() + 60
        while control.is_up(home / "engine.sock") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not control.is_up(home / "engine.sock"), "the idle background engine should have exited"
    finally:
        cli("serve", "--stop", env=env)


def test_serve_stop_ends_a_background_engine(home, tiny_causal):
    assert "no LLM OS engine" in cli("serve", "--stop").stderr
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
    engine.close()
    assert cli("models", "load", name).returncode == 0
    assert control.is_up(home / "engine.sock")
    result = cli("serve", "--stop")
    assert result.returncode == 0 and "stopped the engine" in result.stderr
    assert not control.is_up(home / "engine.sock")
