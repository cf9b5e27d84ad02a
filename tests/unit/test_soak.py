"""The soak test's short form (bench/soak.py): half a minute of mixed load on the embedded SmolLM2 (API
streams, Ask, a Monitor viewer, translation jobs reading the memory and glossary the page writes, and the
hostile requests of issue 27) must end with no 5xx, every hostile request refused as it should be, nothing
lost, and descriptors and threads back to their start. The 20-minute run's figures: docs/figures/h27.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_soak_short_form_meets_its_targets(tmp_path):
    out = tmp_path / "soak.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.5", "--api-clients", "2",
                           "--ask-clients", "1", "--viewers", "1", "--no-train", "--home", str(tmp_path / "home"),
                           "--json", str(out)], capture_output=True, text=True, timeout=580, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert not figures["hard"]
    assert any(key.startswith("chat 200") for key in figures["by_status"])
    assert any(key.startswith("hostile 413") for key in figures["by_status"])
    assert not any(key.split()[-1].startswith("5") for key in figures["by_status"])
