"""`web`: start the web app with what the settings say Streamlit must know at start (it cannot be told later):
the upload limit (LLMOS_MAX_UPLOAD_MB as server.maxUploadSize) and the address, refused beyond loopback
when no one could log in (no account made, no LLMOS_WEB_PASSWORD). `streamlit run app.py` works too; this just keeps the two in step."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .. import access
from ..errors import LLMOSError
from ..settings import Settings

APP = Path(__file__).resolve().parents[2] / "app.py"


def register(subparsers) -> None:
    parser = subparsers.add_parser("web", help="start the web app (streamlit run app.py) with the upload limit set")
    parser.add_argument("--address", default="127.0.0.1",
                        help="where to listen; beyond loopback (0.0.0.0) an account or LLMOS_WEB_PASSWORD must exist")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.set_defaults(func=run)


def command(settings: Settings, address: str, port: int) -> list[str]:
    """The streamlit command line, or LLMOSError when serving there would be open to anyone."""
    reason = access.refusal(address, users_exist(settings))
    if reason:
        raise LLMOSError(reason, "LLMOS_WEB_PASSWORD='a long passphrase' python -m llmos_core web --address 0.0.0.0")
    if not APP.is_file():
        raise LLMOSError(f"the web app is not here ({APP})", "run it from a checkout of LLM OS")
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address,
            "--server.port", str(port), "--server.maxUploadSize", str(settings.max_upload_mb)]


def users_exist(settings: Settings) -> bool:
    """Whether the data folder has accounts (then the app asks for a login wherever it listens)."""
    if not settings.db_path.exists():
        return False
    import sqlite3

    from ..store import Store

    store = Store(settings.db_path)
    try:
        return bool(store.query("SELECT 1 FROM users LIMIT 1"))
    except sqlite3.Error:          # a folder from before accounts: no users table yet
        return False
    finally:
        store.close()


def run(args) -> int:
    argv = command(Settings.from_env(), args.address, args.port)
    if args.dry_run:
        print(" ".join(argv))
        return 0
    return subprocess.call(argv, cwd=APP.parent)   # a list, never a shell
