"""Text tokenisation for corpus statistics and curation (not for models, which use their own tokenizers).

The convention of the papers' vocabulary statistics is whitespace tokens after lower-casing ("whitespace");
scripts written without spaces (Chinese, Japanese) are counted per character ("char").
"""

from __future__ import annotations

from collections.abc import Callable

CHAR_LANGUAGES = {"zh", "ja", "yue", "wuu", "lzh"}


def whitespace_tokens(text: str) -> list[str]:
    return text.lower().split()


def char_tokens(text: str) -> list[str]:
    return [c for c in text.lower() if not c.isspace()]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"whitespace": whitespace_tokens, "char": char_tokens}


def tokenizer_name_for(spoken_language: str | None) -> str:
    base = (spoken_language or "").split("-")[0].lower()
    return "char" if base in CHAR_LANGUAGES else "whitespace"


def get_tokenizer(name: str) -> Callable[[str], list[str]]:
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]
