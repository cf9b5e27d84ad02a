"""Parse an untrusted upload in a child process that has a CPU-time and a memory limit.

    doc = parse_in_child(data, "upload.docx", max_bytes)    # a ParsedDocument, or InvalidInput

The parsers are linear and capped, but they stand on libraries (lxml through python-docx, pypdf, the
stdlib HTML parser) whose worst cases are not ours to bound. In the server a parse holds the GIL: a
hostile file would freeze every page, the scheduler and the monitor. In a child it costs one process:
the child sets RLIMIT_CPU and RLIMIT_AS on itself before it reads a byte of the file, and the parent
waits with a wall-clock timeout as well. The child answers in JSON lines, the document then one
segment a line (never pickle: nothing the child writes can run code in the parent); the parent rebuilds
the ParsedDocument around the bytes it holds.

Run as `python -m llmos_core.translation.isolation`: a JSON header line on stdin, then the file's bytes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import InvalidInput, LLMOSError, format_bytes
from .parsed import ParsedDocument, ParseLimits
from .segment import Segment

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# What the child may use: a base for the interpreter and the parsing libraries, plus a share per byte
# of the file (python-docx's XML tree is ~10-20x the zipped size; pypdf's objects less).
BASE_MEMORY = 768 * 1024**2
MEMORY_PER_BYTE = 24
BASE_CPU_S = 10
CPU_S_PER_MB = 10   # a 14 MB .docx of 384,000 paragraphs took 60-360 s of wall time on a loaded machine


def limits_for(size: int) -> tuple[int, int]:
    """(CPU seconds, bytes of address space) the child parsing a file of `size` bytes may use."""
    return BASE_CPU_S + int(CPU_S_PER_MB * size / 1024**2), BASE_MEMORY + MEMORY_PER_BYTE * size


def parse_in_child(data: bytes, filename: str, max_bytes: int, pdf_output: str = "docx",
                   limits: ParseLimits | None = None, cpu_s: int | None = None,
                   memory_bytes: int | None = None) -> ParsedDocument:
    """documents.parse, run in a child process under CPU and memory limits. Raises InvalidInput."""
    limits = limits or ParseLimits()
    default_cpu, default_memory = limits_for(len(data))
    cpu_s, memory_bytes = cpu_s or default_cpu, memory_bytes or default_memory
    header = {"filename": filename, "max_bytes": max_bytes, "pdf_output": pdf_output, "limits": asdict(limits),
              "cpu_s": cpu_s, "memory_bytes": memory_bytes}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-m", "llmos_core.translation.isolation"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # Wall time: the CPU limit, twice over for a machine shared with other work, and the start-up.
        out, err = child.communicate(json.dumps(header).encode() + b"\n" + data, timeout=2 * cpu_s + 30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise InvalidInput(f"reading {filename} took too long (over {2 * cpu_s + 30} s) and was stopped",
                           "the file is unusually complex; save it again from the program that made it, "
                           "or split it") from None
    lines = out.split(b"\n")
    answer = _read_answer(lines[0])
    if child.returncode == 0 and answer and "format" in answer:
        # One short json.loads per segment: a single call over a document's worth of JSON would hold the
        # GIL for a second or more, and every page of the app would wait on it.
        segments = [Segment.from_dict(json.loads(line)) for line in lines[1:] if line]
        return ParsedDocument(answer["format"], filename, segments, data, output_format=answer["output_format"],
                              notes=answer["notes"], limits=limits)
    if answer and "error" in answer:
        raise InvalidInput(answer["error"], answer.get("hint") or None)
    raise InvalidInput(_crash_message(filename, child.returncode, err, cpu_s, memory_bytes),
                       "the file may be damaged or built to exhaust a reader; save it again from the program "
                       "that made it, or split it")


def _read_answer(out: bytes) -> dict | None:
    try:
        answer = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def _crash_message(filename: str, code: int, err: bytes, cpu_s: int, memory_bytes: int) -> str:
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"reading {filename} used more than its {cpu_s} s of CPU time and was stopped"
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    if "MemoryError" in last[0]:
        return f"reading {filename} needed more than its {format_bytes(memory_bytes)} of memory and was stopped"
    return f"reading {filename} failed in the parsing process (exit {code}: {last[0][:200]})"


def _limit_self(cpu_s: int, memory_bytes: int) -> None:
    import resource

    # Soft limit: SIGXCPU (kills the child); hard limit one second later: SIGKILL, whatever it catches.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _child() -> int:
    header = json.loads(sys.stdin.buffer.readline())
    _limit_self(int(header["cpu_s"]), int(header["memory_bytes"]))   # before the untrusted bytes are read
    data = sys.stdin.buffer.read()
    from . import documents

    try:
        doc = documents.parse(data, header["filename"], int(header["max_bytes"]), header["pdf_output"],
                              ParseLimits(**header["limits"]))
        answer = {"format": doc.format, "output_format": doc.output_format, "notes": doc.notes}
    except LLMOSError as exc:
        answer = {"error": exc.message, "hint": exc.hint}
    except MemoryError:
        answer = {"error": f"reading {header['filename']} needed more than its "
                           f"{format_bytes(int(header['memory_bytes']))} of memory and was stopped",
                  "hint": "the file may be built to exhaust a reader; save it again, or split it"}
    out = sys.stdout.buffer   # ASCII JSON, a line each: a lone surrogate survives the trip, and no line breaks
    out.write(json.dumps(answer).encode("ascii") + b"\n")
    if "format" in answer:
        for segment in doc.segments:
            out.write(json.dumps(segment.to_dict()).encode("ascii") + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child())
