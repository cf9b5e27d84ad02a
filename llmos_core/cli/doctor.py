"""`doctor`: checks this install and machine and says what to do about each problem (exit status 1 if any).

    python -m llmos_core doctor [--quick] [--json]

It opens the data folder as a second engine (no scheduler, no threads), so it runs beside a running app.
"""
from __future__ import annotations

from ..engine import Engine
from ..settings import Settings
from ..usecases.doctor import run_checks, summary
from . import print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="check the install, the packages against the lock, the GPU, "
                                                  "llama.cpp, memory, disk, and that the embedded models answer")
    parser.add_argument("--quick", action="store_true", help="skip loading the embedded models")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        checks = run_checks(engine, generate=not args.quick)
    finally:
        engine.close()
    report = summary(checks)
    if args.json:
        print_json(report)
    else:
        for check in checks:
            print(check.line())
        print("no problem found" if report["ok"] else f"{report['problems']} problem(s): see the lines above")
    return 0 if report["ok"] else 1
