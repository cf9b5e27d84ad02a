"""Placeholders put back by alignment: a translation that lost, repeated, reordered or broke its source's
⟦n⟧ placeholders, or that was made without them, gets them again where they can be placed for sure.

    bare, runs = without_marks("Read the ⟦0⟧report⟦1⟧ now.")   # "Read the report now.", ["report"]
    place_marks("Lesen Sie jetzt den Bericht.", "Read the ⟦0⟧report⟦1⟧ now.", {"report": "Bericht"})
    # -> "Lesen Sie jetzt den ⟦0⟧Bericht⟦1⟧."

The Translator (translator.py) sends a sentence whose marks are all formatting pairs without them (a
small model copies or garbles marks it is shown), and repairs a marked answer here before it translates
the sentence run by run between its marks.
"""
from __future__ import annotations

import re

from .segment import STRAY_MARK, PLACEHOLDER, has_words, placeholders_intact, split_at_placeholders


def _mark_roles(parts: list[str]) -> dict[int, str] | None:
    """Each placeholder of split_at_placeholders' parts -> "open"/"close" (a pair around a short run:
    `⟦0⟧report⟦1⟧`, a bold word or a link's text), "first" (no words before it), "last" (none after);
    None when one sits amid the words on its own (a number, a code span: it has no place but its own)."""
    roles: dict[int, str] = {}
    marks = [i for i, part in enumerate(parts) if PLACEHOLDER.fullmatch(part)]
    for i in marks:
        if i in roles:
            continue
        inner = parts[i + 1] if i + 2 < len(parts) and PLACEHOLDER.fullmatch(parts[i + 2]) else None
        if inner is not None and inner.strip() == inner and has_words(inner) and len(inner.split()) <= 5:
            roles[i], roles[i + 2] = "open", "close"
        elif not has_words("".join(p for p in parts[:i] if not PLACEHOLDER.fullmatch(p))):
            roles[i] = "first"
        elif not has_words("".join(p for p in parts[i + 1:] if not PLACEHOLDER.fullmatch(p))):
            roles[i] = "last"
        else:
            return None
    return roles


def without_marks(masked_text: str) -> tuple[str, list[str]] | None:
    """(the sentence without its placeholders, the runs its pairs enclose) when every placeholder is one of
    a pair around a short run (formatting: the words stay whole without it); None otherwise (a number or a
    code span is part of the sentence). Such a sentence translates better without marks (a small model
    copies or garbles them), and place_marks puts them back around the runs' translations."""
    parts = split_at_placeholders(masked_text)
    roles = _mark_roles(parts)
    if not roles or any(role not in ("open", "close") for role in roles.values()):
        return None
    bare = " ".join(PLACEHOLDER.sub(" ", masked_text).split())
    bare = re.sub(r" ([.,;:!?…)])", r"\1", bare)   # "Read the report ." where a mark stood before the stop
    return bare, [parts[i + 1] for i, role in roles.items() if role == "open"]


def place_marks(translated: str, masked_text: str, alone: dict[str, str] | None = None) -> str | None:
    """The source's placeholders put into a translation that lost, repeated, reordered or broke them (or
    that was made without them: without_marks), by alignment; None when a placeholder has no place
    (then the sentence is translated run by run).

    A "first" placeholder goes first, a "last" one last (before the final punctuation both share); a pair
    goes around its run's translation (`alone`: runs translated on their own) or the run itself where the
    translation holds either, else around as many words at the same relative place as in the source."""
    alone = alone or {}
    bare = " ".join(STRAY_MARK.sub(" ", PLACEHOLDER.sub(" ", translated)).split())
    parts = split_at_placeholders(masked_text)
    roles = _mark_roles(parts)
    if not bare or roles is None:
        return None
    inserts: list[tuple[int, str]] = []   # (offset in bare, text to insert), in the source's order
    taken = 0                             # a later placeholder never goes before an earlier one
    for i in sorted(roles):
        role = roles[i]
        if role == "close":
            continue
        if role == "open":
            found = _find_words(bare, [alone.get(parts[i + 1], ""), parts[i + 1]], taken) or \
                _same_place(bare, parts, i, taken)
            if found is None:
                return None
            start, end = found
            run = parts[i + 1]
            trail = run[len(run.rstrip(".,;:!?…")):]   # "⟦0⟧Hello there,⟦1⟧": the comma inside the pair too
            if trail and bare.startswith(trail, end):
                end += len(trail)
            inserts += [(start, parts[i]), (end, parts[i + 2])]
            taken = end
            continue
        if role == "first":
            where = taken
            spaced = parts[i] + (" " if i + 1 < len(parts) and parts[i + 1][:1].isspace() else "")
        else:
            tail = len(bare) - len(bare.rstrip(".!?…:;,)\"'”’»。"))
            after = "".join(p for p in parts[i + 1:] if not PLACEHOLDER.fullmatch(p))
            where = max(len(bare) - (tail if after.strip() else 0), taken)
            spaced = (" " if i and parts[i - 1][-1:].isspace() else "") + parts[i]
        inserts.append((where, spaced))
        taken = where
    out, last = [], 0
    for where, text in inserts:
        out += [bare[last:where], text]
        last = where
    placed = re.sub(r"[ \t]{2,}", " ", "".join(out) + bare[last:]).strip()
    return placed if placeholders_intact(placed, masked_text) else None


def _same_place(bare: str, parts: list[str], i: int, start: int) -> tuple[int, int] | None:
    """(start, end) of as many words of `bare` as the pair at parts[i] encloses, at the same relative place."""
    words = [m.span() for m in re.finditer(r"\w+", bare) if m.start() >= start]
    before = len(re.findall(r"\w+", PLACEHOLDER.sub(" ", "".join(parts[:i]))))
    total = len(re.findall(r"\w+", PLACEHOLDER.sub(" ", "".join(parts))))
    inside = len(re.findall(r"\w+", parts[i + 1]))
    if not words or not total:
        return None
    first = min(int(round(before / total * len(words))), len(words) - 1)
    last = min(first + inside, len(words)) - 1
    return words[first][0], words[last][1]


def _find_words(text: str, candidates: list[str], start: int) -> tuple[int, int] | None:
    """(start, end) in `text`, at or after `start`, of the first candidate's words: the same words in a row,
    any case; a word matches one that starts with the same four letters, or with the whole of it when it has
    three ("unser" finds "unserem", "neu" finds "neue")."""
    spans = [(m.start(), m.end(), m.group(0).casefold()) for m in re.finditer(r"\w+", text) if m.start() >= start]
    for candidate in candidates:
        wanted = [w.casefold() for w in re.findall(r"\w+", PLACEHOLDER.sub(" ", candidate))]
        if not wanted:
            continue
        for k in range(len(spans) - len(wanted) + 1):
            if all(_same_word(a, spans[k + j][2]) for j, a in enumerate(wanted)):
                return spans[k][0], spans[k + len(wanted) - 1][1]
    return None


def _same_word(a: str, b: str) -> bool:
    if a == b:
        return True
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return common >= min(4, len(a), len(b)) and min(len(a), len(b)) >= 3
