"""CausalLMEngine: a causal LM translating by prompting, with few-shot examples for base models (the
embedded gemma-3-270m) and a chat turn for chat models. A dedicated translation model translates much
better; this is what works offline. The shared prompt's KV cache is computed once per language pair and
prompt kind.

Two prompt kinds: a sentence holding ⟦n⟧ placeholders is shown examples with markers and told to copy
them; a sentence without any is shown the same examples with none. Shown markers, Gemma 3 270M wrote
markers into plain sentences (3 of 12 plain English sentences were then kept in English, issue 28).
`attempt` 1 is the retry of a sentence whose first answer was still in the source language (or broke
its marks): another wording and order of the prompt, since greedy decoding of the same prompt gives the
same answer.
"""
from __future__ import annotations

import re
import threading

from .languages import language_name
from .segment import PLACEHOLDER

# The same three sentences in each language: a few-shot prompt needs both sides. ⟦n⟧ shows the copy rule.
EXAMPLES: dict[str, tuple[str, str, str]] = {
    "en": ("The meeting starts at ⟦0⟧.", "Thank you for your help.", "Please read the ⟦0⟧report⟦1⟧ before Monday."),
    "de": ("Das Treffen beginnt um ⟦0⟧.", "Vielen Dank für Ihre Hilfe.",
           "Bitte lesen Sie den ⟦0⟧Bericht⟦1⟧ vor Montag."),
    "fr": ("La réunion commence à ⟦0⟧.", "Merci pour votre aide.", "Veuillez lire le ⟦0⟧rapport⟦1⟧ avant lundi."),
    "es": ("La reunión empieza a las ⟦0⟧.", "Gracias por su ayuda.",
           "Por favor, lea el ⟦0⟧informe⟦1⟧ antes del lunes."),
    "it": ("La riunione inizia alle ⟦0⟧.", "Grazie per il vostro aiuto.",
           "Si prega di leggere il ⟦0⟧rapporto⟦1⟧ prima di lunedì."),
    "pt": ("A reunião começa às ⟦0⟧.", "Obrigado pela sua ajuda.",
           "Por favor, leia o ⟦0⟧relatório⟦1⟧ antes de segunda-feira."),
    "nl": ("De vergadering begint om ⟦0⟧.", "Bedankt voor uw hulp.", "Lees het ⟦0⟧rapport⟦1⟧ vóór maandag."),
    "pl": ("Spotkanie zaczyna się o ⟦0⟧.", "Dziękuję za pomoc.",
           "Proszę przeczytać ⟦0⟧raport⟦1⟧ przed poniedziałkiem."),
    "ru": ("Встреча начинается в ⟦0⟧.", "Спасибо за вашу помощь.",
           "Пожалуйста, прочитайте ⟦0⟧отчёт⟦1⟧ до понедельника."),
    "zh": ("会议在⟦0⟧开始。", "谢谢你的帮助。", "请在星期一之前阅读⟦0⟧报告⟦1⟧。"),
    "ja": ("会議は⟦0⟧に始まります。", "ご協力ありがとうございます。", "月曜日までに⟦0⟧報告書⟦1⟧を読んでください。"),
}


# The time in the first example, written out, for the examples without markers.
_TEN = {"en": "ten o'clock", "de": "zehn Uhr", "fr": "dix heures", "es": "diez", "it": "dieci", "pt": "dez",
        "nl": "tien uur", "pl": "dziesiątej", "ru": "десять часов", "zh": "十点", "ja": "十時"}
# A question, which the marked examples lack (measured: docs/figures/h28b.md).
_QUESTION = {"en": "Where is the train station?", "de": "Wo ist der Bahnhof?", "fr": "Où est la gare ?",
             "es": "¿Dónde está la estación de tren?", "it": "Dov'è la stazione?", "pt": "Onde fica a estação de trem?",
             "nl": "Waar is het station?", "pl": "Gdzie jest dworzec?", "ru": "Где находится вокзал?",
             "zh": "火车站在哪里？", "ja": "駅はどこですか？"}
PLAIN_EXAMPLES: dict[str, tuple[str, ...]] = {
    lang: (first.replace("⟦0⟧", _TEN[lang]), second, _QUESTION[lang], re.sub(r"⟦\d⟧", "", third))
    for lang, (first, second, third) in EXAMPLES.items()}


def has_marks(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


def _shots(source: str, target: str, marked: bool = True, attempt: int = 0) -> list[tuple[str, str]]:
    table = EXAMPLES if marked else PLAIN_EXAMPLES
    shots = list(zip(table[source], table[target])) if source in table and target in table else []
    return shots[::-1] if attempt else shots   # the retry: another order (and wording, below)


def _instruction(source: str, target: str, marked: bool, attempt: int) -> str:
    src, tgt = language_name(source), language_name(target)
    say = f"Translate {src} to {tgt}." if not attempt else f"Translate each {src} sentence into {tgt}; never answer in {src}."
    return say + (" Copy the ⟦n⟧ markers unchanged." if marked else "")


def chat_messages(text: str, source: str, target: str, attempt: int = 0) -> list[dict]:
    """The prompt for a chat model: the examples as earlier turns, then the sentence."""
    marked = has_marks(text)
    ask = _instruction(source, target, marked, attempt) + " Reply with the translation only.\n\n"
    messages = []
    for a, b in _shots(source, target, marked, attempt):
        messages += [{"role": "user", "content": ask + a}, {"role": "assistant", "content": b}]
    return messages + [{"role": "user", "content": ask + text}]


def plain_prompt(text: str, source: str, target: str, attempt: int = 0) -> str:
    """The prompt for a base model: instructions, examples as lines, then the sentence; the answer is a line.
    Examples with markers only for a sentence that has some."""
    src, tgt = language_name(source), language_name(target)
    marked = has_marks(text)
    lines = [_instruction(source, target, marked, attempt), ""]
    for a, b in _shots(source, target, marked, attempt):
        lines += [f"{src}: {a}", f"{tgt}: {b}", ""]
    lines += [f"{src}: {text}", f"{tgt}:"]
    return "\n".join(lines)


def prefix_probes(marked: bool) -> tuple[str, str]:
    """Two sentences of the kind whose prompts' common start is the shared prefix."""
    return ("A ⟦0⟧", "Zq 7 ⟦0⟧") if marked else ("A", "Zq 7")


def budget(sentence_tokens: int) -> int:
    """New tokens a row may write: 2.5x its sentence's tokens + 8 (a row that never writes a newline stops there)."""
    return int(sentence_tokens * 2.5) + 8


class CausalLMEngine:
    backend, reason = "transformers", ""   # open_engine sets what auto chose and why
    check_output_language = True   # the Translator retries an answer still in the source language
    attempts = 2                   # prompt variants: attempt 1 is the retry's

    def __init__(self, model, tokenizer, name: str = "causal-lm", chat: bool = False, max_batch: int = 8):
        self.model, self.tokenizer, self.name, self.chat = model, tokenizer, name, chat
        self.max_chars = 300
        self.max_batch = max_batch
        self.prefix_cache = True   # reuse the KV cache of the shared few-shot prompt (False: prefill it every time)
        self._prefixes: dict[tuple[str, str], tuple[list[int], object]] = {}
        self._lock = threading.Lock()
        self.notes = [f"{name} is a general language model prompted to translate; a dedicated translation "
                      "model (opus-mt, NLLB, M2M100) translates better"]
        vocab = tokenizer.get_vocab()
        # Each translation is one line: any token holding a newline ends it (Ċ is a newline in byte-level BPE).
        self.stop_ids = sorted({i for t, i in vocab.items() if "\n" in t or "Ċ" in t}
                               | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))

    def check(self, source: str, target: str) -> None:
        pass

    def prompt(self, text: str, source: str, target: str, attempt: int = 0) -> str:
        if self.chat and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(chat_messages(text, source, target, attempt), tokenize=False,
                                                      add_generation_prompt=True)
        return plain_prompt(text, source, target, attempt)

    def _encode(self, text: str, source: str, target: str, attempt: int = 0) -> list[int]:
        return self.tokenizer(self.prompt(text, source, target, attempt), add_special_tokens=not self.chat)["input_ids"]

    def _prefix(self, source: str, target: str, marked: bool = False, attempt: int = 0):
        """(token ids, KV cache) of the prompt part every sentence of a kind shares (instructions and
        few-shot examples), computed once per language pair and kind: on a CPU, prefilling those ~100
        tokens (Gemma) for every row is what made batching gain nothing. ([], None) when the prompts share
        too little."""
        import torch

        key = (source, target, marked, attempt)
        with self._lock:
            if key in self._prefixes:
                return self._prefixes[key]
        a, b = (self._encode(probe, source, target, attempt) for probe in prefix_probes(marked))
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        n -= 1   # one token back: the token before the sentence could merge with its first characters
        ids, cache = [], None
        if n >= 8:
            ids = a[:n]
            with torch.inference_mode():
                cache = self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=True,
                                   logits_to_keep=1).cache
        with self._lock:
            return self._prefixes.setdefault(key, (ids, cache))

    def _greedy(self, rows: list[list[int]], budgets: list[int], prefix: list[int], prefix_cache) -> list[list[int]]:
        """Greedy decoding of `rows` (whole prompts) that all start with `prefix`, whose KV cache is
        `prefix_cache` (None: no prefix). The rest of each row is left-padded after the prefix, so the
        padding sits between prefix and sentence; position ids come from the attention mask, so every row
        sees the positions it would see alone. Each row stops at a newline/eos or after its own budget of
        new tokens, so a batched row gets the tokens it would get alone (up to float rounding)."""
        import copy

        import torch

        device = self.model.device
        width = len(prefix)
        tails = [r[width:] for r in rows]
        longest = max(len(t) for t in tails)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        ids = torch.tensor([[pad] * (longest - len(t)) + t for t in tails], device=device)
        mask = torch.tensor([[1] * width + [0] * (longest - len(t)) + [1] * len(t) for t in tails], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, width:]
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)   # decoding appends to it: the shared one must stay as it is
            if len(rows) > 1:
                cache.batch_repeat_interleave(len(rows))
        stops = torch.tensor(self.stop_ids, device=device)
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        out: list[list[int]] = [[] for _ in rows]
        with torch.inference_mode():
            for step in range(max(budgets)):
                logits, cache = self._next_logits(input_ids=ids, attention_mask=mask, position_ids=positions,
                                                  cache=cache, use_cache=True)
                chosen = logits.argmax(-1)
                for i, token in enumerate(chosen.tolist()):
                    if not done[i]:
                        out[i].append(token)
                done |= torch.isin(chosen, stops)
                done |= torch.tensor([step + 1 >= b for b in budgets], device=device)
                if bool(done.all()):
                    break
                ids = chosen[:, None]
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
                positions = positions[:, -1:] + 1
        return out

    def _next_logits(self, **inputs):
        """(logits of the last position, cache). The LM head only for the last position, and, for a plain
        float nn.Linear head, as W @ h.T: on a CPU, F.linear (h @ W.T) against Gemma's 262k-word head runs
        2-4x slower for a few rows than W @ h.T, and it is most of a batched decoding step."""
        import torch

        head = self.model.get_output_embeddings()
        base = getattr(self.model, getattr(self.model, "base_model_prefix", ""), None)
        if type(head) is not torch.nn.Linear or not head.weight.dtype.is_floating_point or base is None:
            result = self.model(**inputs, logits_to_keep=1)
            return result.logits[:, -1, :], result.cache
        result = base(**inputs)
        logits = (head.weight @ result.last_hidden_state[:, -1, :].T).T
        if head.bias is not None:
            logits = logits + head.bias
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits, result.cache

    def translate_batch(self, texts: list[str], source: str, target: str, attempt: int = 0) -> list[str]:
        out: list[str] = [""] * len(texts)
        for marked in (False, True):   # each prompt kind with its own shared prefix
            group = [i for i, t in enumerate(texts) if has_marks(t) == marked]
            if group:
                for i, text in zip(group, self._translate_kind([texts[i] for i in group], source, target,
                                                               marked, attempt)):
                    out[i] = text
        return out

    def _translate_kind(self, texts: list[str], source: str, target: str, marked: bool, attempt: int) -> list[str]:
        prefix, prefix_cache = self._prefix(source, target, marked, attempt) if self.prefix_cache else ([], None)
        encoded = [self._encode(t, source, target, attempt) for t in texts]
        budgets = [budget(len(self.tokenizer(t, add_special_tokens=False)["input_ids"])) for t in texts]
        shared = [i for i, ids in enumerate(encoded) if prefix and ids[:len(prefix)] == prefix]
        other = sorted(set(range(len(texts))) - set(shared))
        out: list[str] = [""] * len(texts)
        for group, (p, c) in ((shared, (prefix, prefix_cache)), (other, ([], None))):
            # Similar lengths together: a batch decodes until its longest row stops.
            group = sorted(group, key=lambda i: len(encoded[i]))
            for start in range(0, len(group), self.max_batch):
                chunk = group[start:start + self.max_batch]
                rows = self._greedy([encoded[i] for i in chunk], [budgets[i] for i in chunk], p, c)
                for i, tokens in zip(chunk, rows):
                    text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                    out[i] = text.split("\n")[0].strip()
        return out
