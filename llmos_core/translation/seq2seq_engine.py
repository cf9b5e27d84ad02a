"""Seq2SeqEngine: encoder-decoder translation models (Marian/opus-mt, NLLB, M2M100, mBART-50, T5), each
family with its way of naming languages.
"""
from __future__ import annotations

import re
import threading

from ..errors import InvalidInput
from .languages import LANGUAGES, language_name

_TOKENIZER_LOCK = threading.Lock()   # src_lang lives on the shared tokenizer: set and encode together


class Seq2SeqEngine:
    backend, reason = "transformers", "transformers: a translation (encoder-decoder) model; llama.cpp runs GGUF LMs"
    check_output_language = True   # the Translator retries an answer still in the source language
    attempts = 2                   # the retry searches with beams

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

    def translate_batch(self, texts: list[str], source: str, target: str, attempt: int = 0) -> list[str]:
        """attempt 1 (the retry of an answer still in the source language): beam search, 4 beams."""
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
            out = self.model.generate(**batch, num_beams=max(self.num_beams, 4) if attempt else self.num_beams, do_sample=False,
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
