"""The one gate between names people type and paths on disk, and between the data folder and the rest.

A model, dataset, job or upload name becomes a folder or file name only through `check_name`; a path the
engine is about to delete or rename, or that a web visitor hands to a job, goes through `inside`, which
resolves it (symlinks and `..` included) and refuses anything that lands outside its base folder.
The data folder and its database are private to the user who runs LLM OS (`secure_folder`, `secure_file`).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from .errors import InvalidInput

# Letters, digits, '.', '-', '_'; starts with a letter or digit, so never '.', '..' or a hidden file.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
NAME_HINT = "use 1 to 80 letters, digits, '.', '-' and '_', starting with a letter or digit"


def check_name(name: str, what: str = "name") -> str:
    """`name` if it is safe as one file or folder name, else InvalidInput saying what is allowed."""
    text = str(name).strip() if name is not None else ""
    if not _NAME.fullmatch(text) or ".." in text:
        raise InvalidInput(f"{what} {name!r} cannot be used: it must not be a path", NAME_HINT)
    return text


def slug(text: str, fallback: str = "model") -> str:
    """Any text -> a name that passes check_name ('My Model v2' -> 'my-model-v2')."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).replace("..", "-").lower()
    cleaned = cleaned.lstrip("-._")[:80].rstrip("-.")
    return cleaned or fallback


def inside(base: Path | str, path: Path | str, what: str = "that path") -> Path:
    """`path` resolved, if it lies inside `base` (itself excluded); else InvalidInput. A relative path counts
    from the working directory, as open() would read it. Resolving follows symlinks, so a link in the data
    folder that points out is refused too."""
    root = Path(base).expanduser().resolve()
    resolved = Path(path).expanduser().resolve()
    if resolved == root or root not in resolved.parents:
        raise InvalidInput(f"{what} ({path}) is outside {root}",
                           "use a file uploaded through the app or kept in the LLM OS data folder")
    return resolved


def remove_tree(path: Path, base: Path) -> None:
    """rmtree, only ever inside `base` (a name that slipped through elsewhere cannot delete the user's files)."""
    target = inside(base, path, "a folder to delete")
    if target.is_symlink() or target.is_file():
        target.unlink(missing_ok=True)
    else:
        shutil.rmtree(target, ignore_errors=True)


def move(source: Path, target: Path, base: Path) -> None:
    """rename `source` to `target`, both inside `base`."""
    inside(base, source, "a folder to move").rename(inside(base, target, "where to move it"))


def secure_folder(folder: Path) -> Path:
    """Create `folder` readable by its owner only (0700), and tighten it if it exists: it holds conversations,
    uploads and trained models."""
    folder = Path(folder).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        try:
            folder.chmod(0o700)
        except PermissionError:   # not ours (a shared mount): nothing we may change
            pass
    return folder


def secure_database(path: Path) -> Path:
    """Create the SQLite file `path` (empty) as 0600 if it is missing, and tighten it and its WAL, shared-memory
    and journal files if they exist (SQLite gives those the database file's mode when it creates them)."""
    path = Path(path)
    # Never open an existing database here: closing any descriptor of a file drops every POSIX lock this
    # process holds on it, SQLite's included (other connections then fail with "disk I/O error").
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if stat.S_IMODE(candidate.stat().st_mode) & 0o077:
                candidate.chmod(0o600)
        except (FileNotFoundError, PermissionError):
            pass
    return path
