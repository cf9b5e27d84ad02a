"""Messages -> prompt token ids: checks, the model's chat template or a plain dialogue, truncation to fit.

Two things here guard against hostile input:
  - A cap on the characters of all messages (MAX_PROMPT_CHARS): rendering and tokenizing cost grows with
    the text, so a request of megabytes is refused before any of that work, with a hint.
  - Typed text never becomes a control token. A template writes `<|im_start|>user\\n` around the user's
    text; tokenizing the rendered string with special tokens parsed would also turn a `<|im_end|>` the
    user typed into the real control token, and let them forge a turn (a system prompt of their own).
    So the prompt is tokenized as pieces: control tokens found in the template's own text are control
    pieces, everything else (message contents included) is ordinary text (see `template_pieces`).
"""
from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

from ..errors import InvalidInput
from ..models.runner import CONTEXT_CAP, Piece

# Characters of all messages together. A token is rarely under 2 characters, so this is many times what
# any context here holds (llama.cpp's is 4096 tokens): a long conversation is still truncated to fit,
# while megabytes are refused before they are rendered and tokenized.
MAX_PROMPT_CHARS = 64 * CONTEXT_CAP
PLAIN_STOP = ["\nUser:", "\nuser:", "\nUSER:"]
PLAIN_NOTE = ("{name} is a base model (no chat template): it is prompted as a plain 'User:/Assistant:' "
              "dialogue and stopped before it writes the user's next turn. Replies may wander.")
ROLES = ("system", "user", "assistant")


@dataclass
class PromptPlan:
    input_ids: list[int]
    text: str
    dropped: int            # messages dropped from the start of the history
    template: bool          # the model's chat template was used
    stop: list[str]         # stop strings the format itself needs


def check_messages(messages: list[dict], continue_final: bool = False) -> list[dict]:
    """Roles known, contents strings, not too long in all; the last message is a non-empty user turn (or
    the reply to continue)."""
    if not isinstance(messages, list):
        raise InvalidInput("the messages must be a list", "send a list of {role, content} messages")
    clean, chars = [], 0
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(f"bad message {m!r}"[:200], "each message needs a role (system/user/assistant) and text")
        clean.append({"role": m["role"], "content": m["content"]})
        chars += len(m["content"])
    if chars > MAX_PROMPT_CHARS:
        raise InvalidInput(f"the messages hold {chars:,} characters; at most {MAX_PROMPT_CHARS:,} are accepted",
                           "start a new conversation, or send a shorter text")
    turns = [m for m in clean if m["role"] != "system"]
    if not turns:
        raise InvalidInput("the prompt is empty", "type a message first")
    want = "assistant" if continue_final else "user"
    if turns[-1]["role"] != want:
        raise InvalidInput(f"the last message must be the {want}'s to " + ("continue" if continue_final else "reply to"))
    if not continue_final and not turns[-1]["content"].strip():
        raise InvalidInput("the prompt is empty", "type a message first")
    return clean


def render_plain(messages: list[dict], continue_final: bool = False) -> str:
    """A plain dialogue for base models: the system prompt as a preamble, then 'User:' / 'Assistant:' turns."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            if m["content"].strip():
                parts.append(m["content"].strip() + "\n\n")
        elif m["role"] == "user":
            parts.append(f"User: {m['content'].strip()}\n")
        else:
            parts.append(f"Assistant: {m['content'].strip()}\n")
    text = "".join(parts)
    if continue_final:
        return text.rstrip("\n")           # the model carries on from the end of its last reply
    return text + "Assistant:"


def build_prompt(runner, messages: list[dict], max_new_tokens: int, continue_final: bool = False) -> PromptPlan:
    """Render and tokenize; when prompt + reply exceed the context, drop the fewest oldest exchanges that
    makes it fit (never the system prompt).

    Dropping is a search, not a loop: the places the history may start (0, then each later user turn) are
    in order, and the prompt only gets shorter the later it starts, so a binary search finds the first
    that fits with O(log n) renders and tokenizations instead of one per dropped turn (each is linear in
    the text, so a long history costs O(n log n), where it cost O(n^2)). The result is the one the loop
    gave: the first start that fits."""
    messages = check_messages(messages, continue_final)
    system = [m for m in messages if m["role"] == "system"][:1]
    turns = [m for m in messages if m["role"] != "system"]
    budget = runner.context_tokens - max_new_tokens
    if budget < 8:
        raise InvalidInput(f"max new tokens ({max_new_tokens}) leaves no room for the prompt in a "
                           f"{runner.context_tokens}-token context", "lower max new tokens")
    template = runner.chat_template is not None
    # Whole exchanges go: the history must still start with a user turn, and a reply being continued stays.
    last = len(turns) - 1 if continue_final else len(turns)
    starts = [0] + [i for i in range(1, last) if turns[i]["role"] == "user"]

    @functools.lru_cache(maxsize=None)
    def plan_from(index: int) -> PromptPlan:
        chosen = system + turns[starts[index]:]
        if template:
            text, pieces = template_pieces(runner, chosen, continue_final)
        else:
            text = render_plain(chosen, continue_final)
            pieces = [(text, False)]
        return PromptPlan(runner.encode(pieces), text, starts[index], template, [] if template else list(PLAIN_STOP))

    if len(plan_from(0).input_ids) <= budget:      # the common case: everything fits, one tokenization
        return plan_from(0)
    low, high = 1, len(starts) - 1                 # the answer, if any, is in starts[low..high]
    if low > high or len(plan_from(high).input_ids) > budget:
        shortest = plan_from(high if low <= high else 0)
        raise InvalidInput(f"the message is too long: {len(shortest.input_ids)} prompt tokens, but only {budget} "
                           f"fit ({runner.context_tokens} context minus {max_new_tokens} for the reply; "
                           f"{len(shortest.input_ids) - budget} too many)",
                           "shorten the message or the system prompt, or lower max new tokens")
    while low < high:
        middle = (low + high) // 2
        if len(plan_from(middle).input_ids) <= budget:
            high = middle
        else:
            low = middle + 1
    return plan_from(low)


def build_raw_prompt(runner, prompt: str, max_new_tokens: int) -> PromptPlan:
    """A prompt completed as it is (the API's /v1/completions, for base models): no template, nothing
    dropped, and all of it text (a control token typed in it stays text, as in messages)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("the prompt is empty", "send some text to complete")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are read",
                           "shorten the prompt")
    ids = runner.encode([(prompt, False)])
    budget = runner.context_tokens - max_new_tokens
    if len(ids) > budget:
        raise InvalidInput(f"the prompt is too long: {len(ids)} tokens, but only {budget} fit "
                           f"({runner.context_tokens} context minus {max_new_tokens} for the reply; "
                           f"{len(ids) - budget} too many)", "shorten the prompt, or lower max_tokens")
    return PromptPlan(ids, prompt, 0, False, [])


# ---------------------------------------------------------------- typed text stays text


def template_pieces(runner, messages: list[dict], continue_final: bool) -> tuple[str, list[Piece]]:
    """The rendered template, and the same text as pieces for runner.encode: each control token the
    template wrote is a control piece, the rest (the messages' contents included) text.

    Where the contents sit in the rendered text is found by rendering a second time with a marker in
    place of each content (markers hold a random nonce, so no message can imitate one); the template's
    own text is what lies between the markers. Text pieces next to each other are joined, so an ordinary
    prompt tokenizes exactly as the whole string did: tokenizers cut at control tokens first anyway."""
    text = runner.render_chat(messages, continue_final)
    controls = runner.control_tokens
    if not controls:
        return text, [(text, False)]
    nonce = secrets.token_hex(6)
    marks = [f"\ue000{nonce}.{i}\ue001" for i in range(len(messages))]
    marked = runner.render_chat([{"role": m["role"], "content": mark} for m, mark in zip(messages, marks)],
                                continue_final)
    spans = _content_spans(text, marked, nonce, messages)
    if spans is None:
        # The template changed the contents beyond trimming them: refuse what could be forged instead.
        for m in messages:
            found = _control_pattern(controls).search(m["content"])
            if found:
                raise InvalidInput(f"the message contains {found.group()!r}, a control token of this model's "
                                   "prompt format", "remove it from the message")
        return text, _merge(_split_controls(text, controls))
    pieces: list[Piece] = []
    cursor = 0
    for start, end in spans:
        pieces += _split_controls(text[cursor:start], controls)
        pieces.append((text[start:end], False))
        cursor = end
    pieces += _split_controls(text[cursor:], controls)
    return text, _merge(pieces)


def _content_spans(text: str, marked: str, nonce: str, messages: list[dict]) -> list[tuple[int, int]] | None:
    """(start, end) of each content in `text`, in order, from the marked rendering; None when `text` is not
    the marked rendering with each marker replaced by its content (possibly trimmed, as templates do)."""
    parts = re.split(f"\ue000{nonce}\\.(\\d+)\ue001", marked)   # template, index, template, index, ..., template
    indices = [int(i) for i in parts[1::2]]
    if len(set(indices)) != len(indices) or not text.startswith(parts[0]):
        return None                                  # a template that writes a content twice: not ours to guess
    spans, at = [], len(parts[0])
    for n, index in enumerate(indices):
        after = parts[2 * n + 2]
        content = messages[index]["content"]
        for candidate in (content, content.strip(), content.lstrip(), content.rstrip()):
            if text.startswith(candidate, at) and text.startswith(after, at + len(candidate)):
                spans.append((at, at + len(candidate)))
                at += len(candidate) + len(after)
                break
        else:
            return None
    return spans if at == len(text) else None


@functools.lru_cache(maxsize=8)
def _control_pattern(controls: frozenset[str]) -> re.Pattern:
    # Longest first, so `<|im_start|>` is not read as a shorter control token that begins it.
    return re.compile("|".join(re.escape(c) for c in sorted(controls, key=len, reverse=True)))


def _split_controls(text: str, controls: frozenset[str]) -> list[Piece]:
    pieces: list[Piece] = []
    cursor = 0
    for found in _control_pattern(controls).finditer(text):
        if found.start() > cursor:
            pieces.append((text[cursor:found.start()], False))
        pieces.append((found.group(), True))
        cursor = found.end()
    if cursor < len(text):
        pieces.append((text[cursor:], False))
    return pieces


def _merge(pieces: list[Piece]) -> list[Piece]:
    merged: list[Piece] = []
    for text, control in pieces:
        if not text:
            continue
        if merged and not control and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + text, False)
        else:
            merged.append((text, control))
    return merged
