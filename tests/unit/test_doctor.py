"""doctor: one line a check, ok or a problem with what to do; JSON; exit status 1 on a problem."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmos_core import lockcheck
from llmos_core.engine import Engine
from llmos_core.settings import Settings
from llmos_core.usecases import doctor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(home):
    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    yield engine
    engine.close()


def by_name(checks):
    return {check.name: check for check in checks}


def test_the_quick_checks_on_this_machine(engine):
    checks = by_name(doctor.run_checks(engine, generate=False))
    assert checks["python"].status == "ok"
    assert checks["packages"].status == "ok" and "at their locked versions" in checks["packages"].detail
    assert checks["torch"].status in ("ok", "info") and "torch" in checks["torch"].detail
    assert checks["nvml"].status == "info" and "no GPU" in checks["nvml"].detail   # no GPU in CI
    assert checks["llama.cpp"].status == "ok" and "GPU offload" in checks["llama.cpp"].detail
    assert checks["data folder"].status == "ok"
    assert any(name.startswith("port ") for name in checks)
    assert not [c for c in checks.values() if c.status == "problem"]


def test_a_package_off_the_lock_is_a_problem_naming_it_and_the_fix(engine, monkeypatch, tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("psutil==0.0.1\n")
    monkeypatch.setattr(lockcheck, "find_lock", lambda name="requirements.txt": lock)
    check = by_name(doctor.run_checks(engine, generate=False, ports=False))["packages"]
    assert check.status == "problem"
    assert "psutil" in check.detail and "locked 0.0.1" in check.detail
    assert check.fix.startswith("pip install -r requirements.txt")


def test_a_data_folder_open_to_others_is_a_problem(engine):
    engine.home.chmod(0o755)
    check = by_name(doctor.run_checks(engine, generate=False, ports=False))["data folder"]
    assert check.status == "problem" and "755" in check.detail and "chmod 700" in check.fix


def test_a_check_that_crashes_is_reported_not_raised(engine, monkeypatch):
    def broken(_engine):
        raise RuntimeError("boom")
    monkeypatch.setattr(doctor, "check_memory", broken)
    checks = doctor.run_checks(engine, generate=False, ports=False)
    crashed = [c for c in checks if "boom" in c.detail]
    assert crashed and crashed[0].status == "problem"
    assert doctor.summary(checks)["ok"] is False


def test_a_model_that_fails_to_answer_is_a_problem(engine, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no weights")
    monkeypatch.setattr(engine.chat, "generate", refuse)
    checks = doctor.check_embedded_models(engine)
    assert [c.status for c in checks] == ["problem", "problem"]
    assert "no weights" in checks[0].detail


@pytest.mark.slow
def test_the_cli_loads_both_embedded_models_and_answers_json(home):
    run = subprocess.run([sys.executable, "-m", "llmos_core", "doctor", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    report = json.loads(run.stdout)
    models = {c["name"]: c for c in report["checks"] if c["name"].startswith("model ")}
    assert set(models) == {"model smollm2-135m-instruct", "model gemma-3-270m"}, run.stderr[-2000:]
    for check in models.values():
        assert check["status"] == "ok", check
        assert check["figures"]["tokens"] > 0 and check["figures"]["backend"]
    assert run.returncode == (0 if report["ok"] else 1)
