"""Who may do what: the web login, the admin and developer switches, and what a web visitor may hand a job.

The web app is for whoever can reach its port. On loopback with no user made, that is the user; beyond
it, anyone on the network, so the app asks for a login (an account, or LLMOS_WEB_PASSWORD as the account
`admin`) and refuses to serve at all when no one could log in; the login itself is llmos_core/weblogin/. A visitor may
have jobs read only files uploaded through the app or kept in the data folder; local paths anywhere,
model code run with trust_remote_code and the raw job forms wait for LLMOS_ADMIN=1. The CLI is the
user's own shell: its jobs keep local paths (origin "local").
Switches are read from the environment when asked, like LLMOS_JOB_LIMITS: nothing to restart in tests.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from .errors import InvalidInput, LLMOSError
from .paths import inside
from .settings import Settings

WEB, LOCAL = "web", "local"   # who submits: the Streamlit pages, or the CLI and the engine's own code
ADMIN_HINT = "ask whoever runs LLM OS to start it with LLMOS_ADMIN=1 (only for people you trust with this computer)"


class AccessDenied(LLMOSError):
    hint = ADMIN_HINT


def _switch(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def admin_enabled() -> bool:
    """LLMOS_ADMIN=1: web visitors may use local paths, trust_remote_code and the raw job forms."""
    return _switch("LLMOS_ADMIN")


def dev_enabled() -> bool:
    """LLMOS_DEV=1: the benchmark job kind's test hooks (declared sizes, crashes, ignored cancels)."""
    return _switch("LLMOS_DEV")


# ---------------------------------------------------------------- the web login

def is_loopback(address: str | None) -> bool:
    """True when a server bound to `address` is reachable from this machine only. No address means every
    interface (Streamlit's default), so False."""
    text = (address or "").strip().strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:   # '', '0.0.0.0' is an address; a host name may resolve anywhere
        return False


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The name of a Host header, lowercased, without its port: 'LocalHost:8000' -> 'localhost',
    '[::1]:8000' -> '::1'. '' when it is not a well-formed host."""
    text = header.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        return name if bracket and (not rest or rest[:1] == ":" and rest[1:].isdigit()) else ""
    name, colon, port = text.partition(":")
    if colon and not port.isdigit():
        return ""
    return name.rstrip(".")


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The names a request may carry in its Host header: loopback's, and LLMOS_PUBLIC_HOST's."""
    public = {host_name(part) for part in (settings.public_host or "").split(",") if part.strip()}
    return LOOPBACK_NAMES | {name for name in public if name}


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's Host header names this server (a DNS-rebinding page sends its own name)."""
    return bool(header) and host_name(header) in allowed


def web_password() -> str:
    return os.environ.get("LLMOS_WEB_PASSWORD", "")


def login_needed(address: str | None, users_exist: bool = False) -> bool:
    """A login is asked once any user exists, when LLMOS_WEB_PASSWORD is set, or when the server listens
    beyond loopback. On loopback with neither, the app opens as the one local admin, with no login."""
    return users_exist or bool(web_password()) or not is_loopback(address)


def refusal(address: str | None, users_exist: bool = False) -> str | None:
    """Why the web app must not serve at all (beyond loopback with no one able to log in), or None."""
    if is_loopback(address) or web_password() or users_exist:
        return None
    return (f"LLM OS listens on {address or 'every network interface'} but no user exists and no LLMOS_WEB_PASSWORD "
            "is set, so anyone who can reach this port could use your models and files. Make an admin "
            "(python -m llmos_core users add NAME --role admin) or set LLMOS_WEB_PASSWORD, and restart; or run it "
            "on 127.0.0.1 (the default in .streamlit/config.toml).")


def password_matches(given: str) -> bool:
    """Constant time, whatever the lengths: both sides are hashed to 32 bytes first."""
    expected = web_password()
    if not expected:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


# ---------------------------------------------------------------- what a web visitor may hand the engine

def check_job_params(kind_module, params: dict, settings: Settings, origin: str) -> None:
    """Before a job is validated (validation reads its files): from the web, without LLMOS_ADMIN, every
    parameter the kind names in PATH_PARAMS must lie inside the data folder, and no trust_remote_code."""
    if origin == LOCAL or admin_enabled():
        return
    if origin != WEB:
        raise InvalidInput(f"unknown job origin {origin!r}", "web or local")
    if params.get("trust_remote_code"):
        raise AccessDenied("running a model's own code (trust_remote_code) is not allowed from the web app")
    for name in getattr(kind_module, "PATH_PARAMS", ()):
        if params.get(name):
            inside(settings.home, str(params[name]), f"the job's {name}")


def check_model_ref(ref: str, settings: Settings) -> None:
    """Before the Models page resolves what a visitor typed: a path outside the data folder is refused
    unread, so its error messages cannot tell whether a file exists there."""
    if admin_enabled():
        return
    text = ref.strip()
    if text.startswith(("/", "~", ".")) or ("/" in text and Path(text).expanduser().exists()):
        inside(settings.home, text, "the model's folder or file")


def check_model_spec(spec, settings: Settings) -> None:
    """The Models page's pull, once the reference is resolved: hub ids and catalog names are fine; a local
    folder or GGUF file only inside the data folder, and trust_remote_code only for an admin."""
    if admin_enabled():
        return
    if spec.trust_remote_code:
        raise AccessDenied("running a model's own code (trust_remote_code) is not allowed from the web app")
    if spec.source in ("local", "gguf"):
        inside(settings.home, spec.location, "the model's folder or file")
