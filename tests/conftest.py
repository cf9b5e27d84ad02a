"""Shared fixtures: an isolated data folder per test, and tiny models built once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

# Tests never reach the hub, and stay quiet about telemetry.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tiny_models  # noqa: E402

# What a preference run's offline() switches on for its own process (training/preference.py): a test that
# trains in-process must not leave the whole session offline (the model browser's hub tests then fail).
_OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture(autouse=True)
def _hub_switches_restored():
    before = {key: os.environ.get(key) for key in _OFFLINE_SWITCHES}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and before["HF_HUB_OFFLINE"] is None:
        hub.HF_HUB_OFFLINE = False


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh LLMOS_HOME for the test; the embedded models' converted folders are shared (see below)."""
    folder = tmp_path / "home"
    monkeypatch.setenv("LLMOS_HOME", str(folder))
    return folder


@pytest.fixture
def matmul_benchmarks(monkeypatch) -> list[str]:
    """The devices the training estimate's matmul benchmark really measured, in order (it still runs)."""
    from llmos_core.training import estimate

    measured: list[str] = []
    measure = estimate._measure_matmul

    def counted(device: str) -> float:
        measured.append(device)
        return measure(device)

    monkeypatch.setattr(estimate, "_measure_matmul", counted)
    return measured


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory) -> Path:
    return tiny_models.make_causal_lm(tmp_path_factory.mktemp("tiny-causal"), chat_template=True)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return tiny_models.make_causal_lm(tmp_path_factory.mktemp("tiny-base"), chat_template=False, seed=1)


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory) -> Path:
    return tiny_models.make_seq2seq(tmp_path_factory.mktemp("tiny-seq2seq"))


@pytest.fixture(scope="session")
def embedded_home() -> Path:
    """A data folder kept across test runs, so the embedded models are converted once per machine."""
    folder = Path(os.environ.get("LLMOS_TEST_EMBEDDED_HOME", Path.home() / ".cache" / "llmos-test-embedded"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
