"""Compares the installed packages with a lock file (requirements*.txt compiled by tools/lock.sh).

    python -m llmos_core.lockcheck requirements-dev.txt [--json]

Prints one line per package whose installed version is not the locked one (or that is missing), and
exits 1 when there is any; 0 when the environment is the lock. Packages installed beyond the lock are
listed as a note (a CUDA build of torch brings its nvidia-* libraries, which the CPU lock does not
name). A local build label is a build of the same version: torch 2.13.0+cpu satisfies torch==2.13.0.
Standard library only (tests/run.sh runs it before it knows what is installed); `doctor` uses it too.
"""
from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")
# pip, setuptools and wheel belong to the venv, not to the project.
_TOOLING = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """The lock's pins: {canonical name: version}."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonical(name)] = dist.version
    return found


def same_version(installed: str, locked: str) -> bool:
    return installed == locked or installed.split("+", 1)[0] == locked


def compare(pins: dict[str, str], installed: dict[str, str]) -> dict:
    """{'differ': [{name, locked, installed}], 'extra': [{name, installed}]}; installed None = missing."""
    differ = [
        {"name": name, "locked": version, "installed": installed.get(name)}
        for name, version in sorted(pins.items())
        if installed.get(name) is None or not same_version(installed[name], version)
    ]
    extra = [
        {"name": name, "installed": version}
        for name, version in sorted(installed.items())
        if name not in pins and name not in _TOOLING
    ]
    return {"differ": differ, "extra": extra}


def find_lock(name: str = "requirements.txt") -> Path | None:
    """The lock beside this package's checkout (None when LLM OS was installed some other way)."""
    path = Path(__file__).resolve().parent.parent / name
    return path if path.is_file() else None


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    lock = Path(args[0] if args else "requirements.txt")
    result = compare(read_lock(lock), installed_versions())
    result["lock"] = str(lock)
    if "--json" in argv:
        print(json.dumps(result, indent=2))
    else:
        for row in result["differ"]:
            print(f"{row['name']}: installed {row['installed'] or 'nothing'}, locked {row['locked']}")
        if result["extra"]:
            names = ", ".join(f"{r['name']} {r['installed']}" for r in result["extra"])
            print(f"note: installed beyond {lock}: {names}")
        if not result["differ"]:
            print(f"the environment is the lock ({lock})")
    return 1 if result["differ"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
