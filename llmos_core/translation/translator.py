"""Translation engines and the Translator that drives them over a document's segments.

Engines turn a batch of masked sentences into translations:
  Seq2SeqEngine    encoder-decoder translation models (Marian/opus-mt, NLLB, M2M100, mBART-50, T5),
                   with each family's way of naming languages;
  CausalLMEngine   a causal LM by prompting: few-shot examples for base models (the embedded
                   gemma-3-270m), a chat turn for chat models. A dedicated translation model
                   translates much better; this is what works offline.
The Translator cuts segments into sentences that fit the model, masks what must survive, looks in
its cache (identical sentences are translated once), sends the rest in batches, and puts it back.
"""
from __future__ import annotations

import re
import threading
import time
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol

from ..errors import InvalidInput
from . import segment as seg

# ISO 639-1 -> (English name, ISO 639-3 as NLLB and Marian multi-target models write it, NLLB script)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "en": ("English", "eng", "Latn"), "de": ("German", "deu", "Latn"), "fr": ("French", "fra", "Latn"),
    "es": ("Spanish", "spa", "Latn"), "it": ("Italian", "ita", "Latn"), "pt": ("Portuguese", "por", "Latn"),
    "nl": ("Dutch", "nld", "Latn"), "pl": ("Polish", "pol", "Latn"), "ru": ("Russian", "rus", "Cyrl"),
    "uk": ("Ukrainian", "ukr", "Cyrl"), "cs": ("Czech", "ces", "Latn"), "sv": ("Swedish", "swe", "Latn"),
    "da": ("Danish", "dan", "Latn"), "fi": ("Finnish", "fin", "Latn"), "no": ("Norwegian", "nob", "Latn"),
    "el": ("Greek", "ell", "Grek"), "tr": ("Turkish", "tur", "Latn"), "ro": ("Romanian", "ron", "Latn"),
    "hu": ("Hungarian", "hun", "Latn"), "bg": ("Bulgarian", "bul", "Cyrl"), "ar": ("Arabic", "arb", "Arab"),
    "he": ("Hebrew", "heb", "Hebr"), "hi": ("Hindi", "hin", "Deva"), "zh": ("Chinese", "zho", "Hans"),
    "ja": ("Japanese", "jpn", "Jpan"), "ko": ("Korean", "kor", "Hang"), "vi": ("Vietnamese", "vie", "Latn"),
    "id": ("Indonesian", "ind", "Latn"), "th": ("Thai", "tha", "Thai"), "fa": ("Persian", "pes", "Arab"),
}


def language_name(code: str) -> str:
    return LANGUAGES.get(code, (code,))[0]


def check_language(code: str, what: str = "language") -> str:
    code = (code or "").strip().lower()
    if code not in LANGUAGES:
        raise InvalidInput(f"unknown {what} {code!r}", "use a two-letter code: " + ", ".join(sorted(LANGUAGES)))
    return code


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) by langdetect (Google's n-gram profiles, offline, seeded)."""
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0   # langdetect is random without a seed: the same text must give the same answer
    sample = seg.TAG_TOKEN.sub(" ", text)[:5000]
    try:
        best = detect_langs(sample)[0]
    except LangDetectException as exc:
        raise InvalidInput("could not tell the document's language (too little text)",
                           "choose the source language yourself") from exc
    code = best.lang.split("-")[0]
    if code not in LANGUAGES:
        raise InvalidInput(f"the document looks like {best.lang!r}, which is not in the language list",
                           "choose the source language yourself")
    return code, float(best.prob)


class TranslationEngine(Protocol):
    name: str
    max_chars: int          # longest sentence to send at once; longer ones are cut
    notes: list[str]        # what the user should know about this engine's output

    def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]: ...


# ---- seq2seq ----
_TOKENIZER_LOCK = threading.Lock()   # src_lang lives on the shared tokenizer: set and encode together


class Seq2SeqEngine:
    def __init__(self, model, tokenizer, name: str = "seq2seq", location: str = "", num_beams: int = 1):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.num_beams = num_beams
        self.max_chars = 400
        self.family = _seq2seq_family(model, tokenizer)
        self.notes: list[str] = []
        pair = re.search(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})\b", location or name)
        self.fixed_pair = pair.groups() if pair and pair.group(2) != "mul" else None

    def check(self, source: str, target: str) -> None:
        if self.fixed_pair and self.fixed_pair[1] != target:
            raise InvalidInput(f"{self.name} translates {self.fixed_pair[0]} to {self.fixed_pair[1]}, "
                               f"not to {target}", f"pick an opus-mt-{source}-{target} model, or a multilingual one")
        if self.fixed_pair and self.fixed_pair[0] != source:
            self.notes.append(f"{self.name} was trained on {self.fixed_pair[0]} input; the source is {source}")
        if self.family in ("nllb", "m2m100", "mbart50"):
            self._lang_token(source)
            self._lang_token(target)

    def _lang_token(self, code: str) -> str:
        """The token that names a language in this family: deu_Latn (NLLB), __de__ (M2M100), de_DE (mBART-50)."""
        _, iso3, script = LANGUAGES[code]
        if self.family == "nllb":
            wanted = [f"{iso3}_{script}"]
        elif self.family == "m2m100":
            wanted = [f"__{code}__"]
        else:
            wanted = sorted(t for t in self.tokenizer.get_vocab() if re.fullmatch(rf"{code}_[A-Z]{{2}}", t))
        for token in wanted:
            if self.tokenizer.convert_tokens_to_ids(token) not in (None, self.tokenizer.unk_token_id):
                return token
        raise InvalidInput(f"{self.name} does not know the language {language_name(code)} ({code})",
                           "pick another language or model")

    def _prefix(self, source: str, target: str) -> str:
        if self.family == "marian":
            vocab = self.tokenizer.get_vocab()
            for code in (target, LANGUAGES[target][1]):   # multi-target opus-mt models: >>deu<< or >>de<<
                if f">>{code}<<" in vocab:
                    return f">>{code}<< "
        if self.family == "t5":
            return f"translate {language_name(source)} to {language_name(target)}: "
        return ""

    def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        import torch

        prefix = self._prefix(source, target)
        kwargs: dict = {}
        with _TOKENIZER_LOCK:
            if self.family in ("nllb", "m2m100", "mbart50"):
                self.tokenizer.src_lang = self._lang_token(source) if self.family != "m2m100" else source
                kwargs["forced_bos_token_id"] = self.tokenizer.convert_tokens_to_ids(self._lang_token(target))
            batch = self.tokenizer([prefix + t for t in texts], return_tensors="pt", padding=True, truncation=True,
                                   max_length=512)
        batch = {k: v.to(self.model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        longest = int(batch["attention_mask"].sum(dim=1).max())
        with torch.inference_mode():
            out = self.model.generate(**batch, num_beams=self.num_beams, do_sample=False,
                                      max_new_tokens=min(512, 2 * longest + 16), **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def _seq2seq_family(model, tokenizer) -> str:
    kind = getattr(model.config, "model_type", "")
    tokenizer_class = type(tokenizer).__name__.lower()
    if kind == "marian":
        return "marian"
    if "nllb" in tokenizer_class or kind == "nllb-moe":
        return "nllb"
    if kind == "m2m_100":
        return "m2m100"
    if kind == "mbart" and "50" in tokenizer_class:
        return "mbart50"
    if kind in ("t5", "mt5"):
        return "t5"
    return "generic"


# ---- causal LM by prompting ----
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


class CausalLMEngine:
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

    def prompt(self, text: str, source: str, target: str) -> str:
        src, tgt = language_name(source), language_name(target)
        shots = list(zip(EXAMPLES[source], EXAMPLES[target])) if source in EXAMPLES and target in EXAMPLES else []
        if self.chat and getattr(self.tokenizer, "chat_template", None):
            ask = (f"Translate from {src} to {tgt}. Keep every ⟦n⟧ marker as it is. "
                   "Reply with the translation only.\n\n")
            messages = []
            for a, b in shots:
                messages += [{"role": "user", "content": ask + a}, {"role": "assistant", "content": b}]
            messages.append({"role": "user", "content": ask + text})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"Translate {src} to {tgt}. Copy the ⟦n⟧ markers unchanged.", ""]
        for a, b in shots:
            lines += [f"{src}: {a}", f"{tgt}: {b}", ""]
        lines += [f"{src}: {text}", f"{tgt}:"]
        return "\n".join(lines)

    def _encode(self, text: str, source: str, target: str) -> list[int]:
        return self.tokenizer(self.prompt(text, source, target), add_special_tokens=not self.chat)["input_ids"]

    def _prefix(self, source: str, target: str):
        """(token ids, KV cache) of the prompt part every sentence shares (instructions and few-shot
        examples), computed once per language pair: on a CPU, prefilling those ~100 tokens (Gemma) for every
        row is what made batching gain nothing. ([], None) when the prompts share too little."""
        import torch

        key = (source, target)
        with self._lock:
            if key in self._prefixes:
                return self._prefixes[key]
        a, b = self._encode("A", source, target), self._encode("Zq 7", source, target)
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

    def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]:
        prefix, prefix_cache = self._prefix(source, target) if self.prefix_cache else ([], None)
        encoded = [self._encode(t, source, target) for t in texts]
        # New tokens allowed per row: 2.5x its sentence's tokens + 8 (a row that never writes a newline stops there).
        budgets = [int(len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) * 2.5) + 8 for t in texts]
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


@contextmanager
def open_engine(engine, model_name: str, progress=None) -> Iterator[TranslationEngine]:
    """Pin `model_name` in the engine's memory manager and wrap it as a translation engine."""
    from ..models.catalog import SEQ2SEQ

    spec = engine.catalog.get(model_name)
    with engine.models.use(model_name, progress=progress) as resident:
        if spec.task == SEQ2SEQ:
            yield Seq2SeqEngine(resident.model, resident.tokenizer, name=model_name, location=spec.location)
        else:
            yield CausalLMEngine(resident.model, resident.tokenizer, name=model_name, chat=spec.chat)


# ---- the translator ----
@dataclass
class TranslationStats:
    source: str = ""
    detected: bool = False
    segments: int = 0
    sentences: int = 0          # sentence pieces in the document
    unique: int = 0             # distinct pieces that needed the model
    cached: int = 0             # pieces answered from the cache
    batches: int = 0
    repaired: int = 0           # placeholders the model lost or repeated, put right
    empty: int = 0              # sentences the model answered with nothing: kept in the source language
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[int, int, float | None], None]   # (segments done, total, seconds left or None)


@dataclass
class _Piece:
    masked: seg.Masked | None   # None: nothing to translate (spaces, numbers, tags only)
    text: str
    space: str


class Translator:
    def __init__(self, engine: TranslationEngine, target: str, source: str = "auto",
                 glossary: dict[str, str] | None = None, batch_size: int = 8, cache: dict | None = None):
        self.engine = engine
        self.target = check_language(target, "target language")
        self.source = "auto" if (source or "auto") == "auto" else check_language(source, "source language")
        self.glossary = dict(glossary or {})
        self._glossary_re = seg.compile_glossary(self.glossary)
        self.batch_size = max(1, int(batch_size))
        self.cache: dict[str, str] = {} if cache is None else cache
        self.stats = TranslationStats()

    def resolve_source(self, texts: list[str]) -> str:
        if self.source == "auto":
            self.source, _ = detect_language(" ".join(texts))
            self.stats.detected = True
        if self.source == self.target:
            raise InvalidInput(f"the source and the target are both {language_name(self.target)}",
                               "choose another target language")
        self.stats.source = self.source
        return self.source

    def _pieces(self, text: str) -> list[_Piece]:
        """A segment -> sentences that fit the model, each masked; leading/trailing space kept apart."""
        core = text.strip()
        lead = text[:len(text) - len(text.lstrip())]
        trail = text[len(text.rstrip()):]
        pieces = [_Piece(None, lead, "")] if lead else []
        for sentence, space in seg.split_sentences(core):
            parts = seg.split_long(sentence, self.engine.max_chars)
            for n, (part, part_space) in enumerate(parts):
                masked = seg.mask(part, self.glossary, self._glossary_re)
                pieces.append(_Piece(masked, part, part_space + (space if n == len(parts) - 1 else "")))
        if trail:
            pieces.append(_Piece(None, trail, ""))
        return pieces

    def translate(self, texts: list[str], progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None) -> list[str] | None:
        """Translate every segment text; None when cancelled (nothing half-done is returned)."""
        started = time.perf_counter()
        self.resolve_source(texts)
        self.engine.check(self.source, self.target)
        self.stats.notes = list(self.engine.notes)
        per_segment = [self._pieces(t) for t in texts]
        self.stats.segments = len(texts)
        # Distinct masked sentences not in the cache, in document order; and, for progress, the
        # position of each segment's last new sentence in that order.
        todo: list[str] = []
        position: dict[str, int] = {}
        last_needed: list[int] = []
        for pieces in per_segment:
            last = -1
            for piece in pieces:
                if piece.masked is None or not _needs_model(piece.masked.text):
                    continue
                self.stats.sentences += 1
                key = piece.masked.text
                if key in self.cache:
                    self.stats.cached += 1
                    continue
                if key not in position:
                    position[key] = len(todo)
                    todo.append(key)
                else:
                    self.stats.cached += 1
                last = max(last, position[key])
            last_needed.append(last)
        self.stats.unique = len(todo)
        finish_order = sorted(last_needed)
        total = len(texts)
        if progress:
            progress(bisect_right(finish_order, -1), total, None)
        done = 0
        translate_started = time.perf_counter()
        while done < len(todo):
            if cancelled and cancelled():
                return None
            batch = todo[done:done + self.batch_size]
            for key, out in zip(batch, self.engine.translate_batch(batch, self.source, self.target)):
                self.cache[key] = out
            self.stats.batches += 1
            done += len(batch)
            if progress:
                elapsed = time.perf_counter() - translate_started
                progress(bisect_right(finish_order, done - 1), total, elapsed / done * (len(todo) - done))
        results = [self._assemble(pieces) for pieces in per_segment]
        self.stats.seconds = round(time.perf_counter() - started, 3)
        return results

    def _assemble(self, pieces: list[_Piece]) -> str:
        out = []
        for piece in pieces:
            if piece.masked is None:
                out.append(piece.text + piece.space)
                continue
            translated = self.cache.get(piece.masked.text, piece.masked.text) \
                if _needs_model(piece.masked.text) else piece.masked.text
            if not translated.strip():   # the model gave nothing: the source text beats a hole in the document
                self.stats.empty += 1
                translated = piece.masked.text
            text, repaired = seg.unmask(translated, piece.masked)
            self.stats.repaired += repaired
            out.append(text + piece.space)
        return "".join(out)


def _needs_model(masked_text: str) -> bool:
    """A letter outside placeholders: otherwise (numbers, URLs, tags only) the text is kept as it is."""
    return re.search(r"[^\W\d_]", seg.PLACEHOLDER.sub("", masked_text)) is not None
