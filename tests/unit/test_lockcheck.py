"""The lock: every pin is ==, the two lock files agree, and the check finds what differs from them."""
from pathlib import Path

from llmos_core import lockcheck

ROOT = Path(__file__).resolve().parents[2]


def test_every_line_of_both_locks_is_an_exact_pin():
    for name in ("requirements.txt", "requirements-dev.txt"):
        lines = [line.strip() for line in (ROOT / name).read_text().splitlines()]
        reqs = [line for line in lines if line and not line.startswith("#") and not line.startswith("-")]
        assert reqs, name
        loose = [line for line in reqs if "==" not in line]
        assert not loose, f"{name} holds unpinned lines: {loose[:5]}"


def test_the_dev_lock_holds_the_runtime_lock_at_the_same_versions():
    runtime = lockcheck.read_lock(ROOT / "requirements.txt")
    dev = lockcheck.read_lock(ROOT / "requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime
    assert "pytest" in dev and "pytest" not in runtime


def test_the_lock_names_one_torch_for_cpu_and_cuda_and_no_cuda_libraries():
    pins = lockcheck.read_lock(ROOT / "requirements.txt")
    assert "+" not in pins["torch"]              # a CPU (+cpu) or CUDA (+cu12x) build both satisfy it
    assert not [name for name in pins if name.startswith("nvidia-") and name != "nvidia-ml-py"]


def test_compare_names_each_package_that_differs(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("# comment\nalpha==1.0\n    # via x\nbeta==2.0 ; python_version >= '3'\ntorch==2.13.0\n")
    pins = lockcheck.read_lock(lock)
    assert pins == {"alpha": "1.0", "beta": "2.0", "torch": "2.13.0"}
    result = lockcheck.compare(pins, {"alpha": "1.1", "torch": "2.13.0+cpu", "gamma": "3", "pip": "24"})
    assert result["differ"] == [{"name": "alpha", "locked": "1.0", "installed": "1.1"},
                                {"name": "beta", "locked": "2.0", "installed": None}]
    assert result["extra"] == [{"name": "gamma", "installed": "3"}]     # pip is the venv's, not the project's


def test_the_tests_run_in_an_environment_that_is_the_lock():
    """tests/run.sh builds the venv from the lock and checks it before pytest starts; this says so again
    from inside, so a run on some other environment (plain `pytest` on a dirty machine) is not silent."""
    result = lockcheck.compare(lockcheck.read_lock(ROOT / "requirements-dev.txt"), lockcheck.installed_versions())
    assert not result["differ"], result["differ"][:10]


def test_the_cli_exits_1_and_names_the_difference(tmp_path, capsys):
    lock = tmp_path / "lock.txt"
    lock.write_text("surely-not-installed-package==1.0\n")
    assert lockcheck.main([str(lock)]) == 1
    assert "surely-not-installed-package: installed nothing, locked 1.0" in capsys.readouterr().out
