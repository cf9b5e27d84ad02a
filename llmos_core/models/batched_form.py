"""The form of a GGUF that llama.cpp serves: a file whose weights have no batched CPU kernel is served as a
Q8_0 copy of itself, made once per data folder.

Why: this llama.cpp (0.3.36) multiplies Q4_1 weights one weight row and one token at a time
(ggml_vec_dot_q4_1_q8_1): a prompt of 50 tokens, or 8 chats decoding together, costs 50 or 8 times one
token's arithmetic. Q8_0 has batched kernels (tinyBLAS). The embedded SmolLM2 ships Q4_1; the same weights
as Q8_0 (llama.cpp's own quantizer with allow_requantize: 1.2 s, 94 -> 138 MB) score within 1 % perplexity
(the fixed text 25.31 -> 25.11, the README 32.12 -> 32.33), read prompts twice as fast (time to first token
168 -> 83 ms), decode one stream about 10 % faster, and 8 API clients together reach 2.00x their one-after-
another rate instead of 1.48x (docs/BENCHMARKS.md, OpenAI-compatible API). Q4_0 would be faster still but
scored 27 % worse: requantizing to fewer levels loses what 8 bits keep. Only types measured so are converted;
LLMOS_GGUF_AS_SHIPPED=1 serves every file as it is.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from pathlib import Path

from ..errors import ModelLoadError
from ..settings import Settings

UNBATCHED = {3: "Q4_1"}    # general.file_type -> name: no batched CPU matmul in this llama.cpp
Q8_0 = 7                   # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0
GROWTH = 1.5               # Q8_0 over Q4_1 in bytes (138 / 94 MB on SmolLM2, its embedding already Q8_0)
_digests: dict[tuple, str] = {}   # (path, inode, size, times) -> SHA-256 of the content
_digests_lock = threading.Lock()


def needs_conversion(file_type: int) -> bool:
    return file_type in UNBATCHED and os.environ.get("LLMOS_GGUF_AS_SHIPPED", "") not in ("1", "true", "yes")


def source_digest(source: Path) -> str:
    """The SHA-256 of `source`'s bytes, read once per process for as long as the file stays the same one
    (same inode, size and nanosecond times): about 0.3 s for the embedded SmolLM2."""
    stat = source.stat()
    key = (str(source.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    with _digests_lock:
        _digests[key] = digest.hexdigest()
    return _digests[key]


def target_path(source: Path, settings: Settings) -> Path:
    """Where the Q8_0 copy of `source` lives: named by a hash of the source's content, so another file of
    the same name and size (a new package version, written within the same second) gets its own copy. The
    whole hash is kept beside the copy (<copy>.sha256) and checked before the copy is served."""
    return settings.cache_dir / "gguf" / f"{source.stem}.{source_digest(source)[:16]}.Q8_0.gguf"


def _made_from(target: Path, digest: str) -> bool:
    """Whether `target` exists and was made from the file whose hash is `digest`."""
    try:
        return target.exists() and target.with_name(target.name + ".sha256").read_text().split()[0] == digest
    except (OSError, IndexError):
        return False


def expected_bytes(source: Path, file_type: int, settings: Settings) -> int:
    """The size of the file that will be served, without converting (estimates must not write files)."""
    if not needs_conversion(file_type):
        return source.stat().st_size
    target = target_path(source, settings)
    made = _made_from(target, source_digest(source))
    return target.stat().st_size if made else int(source.stat().st_size * GROWTH)


def served_path(source: Path, file_type: int, settings: Settings, threads: int = 2) -> Path:
    """`source`, or its Q8_0 copy (made now if it is not there: about a second for the embedded model).
    Written beside and renamed into place, under a lock, so two engines never read half a file."""
    if not needs_conversion(file_type):
        return source
    target, digest = target_path(source, settings), source_digest(source)
    if _made_from(target, digest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another engine converting the same file: wait for it, then reuse
        if _made_from(target, digest):
            return target
        partial = target.parent / f".{target.name}.partial-{os.getpid()}"
        try:
            _quantize(source, partial, threads)
            os.replace(partial, target)
            record = target.with_name(target.name + ".sha256")
            written = record.with_name(record.name + ".partial")
            written.write_text(f"{digest}  {source.name}\n")
            os.replace(written, record)   # after the copy: a record means a whole copy
        finally:
            partial.unlink(missing_ok=True)
    return target


def _quantize(source: Path, target: Path, threads: int) -> None:
    from llama_cpp._logger import set_verbose

    from .export_gguf import ExportError, quantize

    set_verbose(False)   # llama.cpp logs every tensor it converts otherwise
    try:
        quantize(source, target, Q8_0, threads, allow_requantize=True)
        made = target.exists()
    except ExportError:
        made = False
    if not made:
        raise ModelLoadError(f"llama.cpp could not make a Q8_0 copy of {source.name} to serve",
                             "set LLMOS_GGUF_AS_SHIPPED=1 to serve the file as it is, or free disk space")
