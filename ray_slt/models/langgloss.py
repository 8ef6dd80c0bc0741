"""LangGloss: glosses written with their sign language's tag (SignLLM's Prompt2LangGloss, paper 5 Sec. 3.3).

Every gloss of a sequence is prefixed with its language's tag, ``WETTER`` -> ``GSL_WETTER``, so that one shared
model can write, and one shared producer can read, the glosses of several sign languages without mixing them
up (``ASL_RAIN`` and ``GSL_RAIN`` are different signs). A language's tag is the conventional abbreviation of
its name where :data:`TAGS` knows one (the paper's ``ASL`` and ``GSL``), else its ISO 639-3 code upper-cased;
a config's own ``tags`` mapping overrides both.

Which language a multilingual text -> gloss model is to write is said in its input by a **target token**,
``<2GSL>``, before the prompt (:func:`target_token`; the convention of multilingual translation models): the
paper leaves open how the language is chosen at input, and the same spoken sentence may be asked for in two
sign languages, so the template alone cannot say it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray_slt.errors import DataError

#: Conventional tags of some sign languages (ISO 639-3 -> tag); the paper writes ASL_ and GSL_.
TAGS: dict[str, str] = {
    "ase": "ASL",
    "gsg": "GSL",
    "bfi": "BSL",
    "csl": "CSL",
    "fsl": "LSF",
    "ssp": "LSE",
    "tsm": "TID",
    "ise": "LIS",
    "ins": "ISL",
    "kvk": "KSL",
    "sgg": "DSGS",
}


def tag_of(code: str | None, tags: Mapping[str, str] | None = None) -> str:
    """The tag of sign language ``code`` (ISO 639-3): ``tags``' entry, else :data:`TAGS`', else the code
    upper-cased. DataError for a sample without a sign language."""
    if not isinstance(code, str) or not code.strip():
        raise DataError("language-tagged glosses need the sample's sign_language (it has none)")
    code = code.strip()
    return (tags or {}).get(code) or TAGS.get(code) or code.upper()


def check_multilingual(tag: str | None, tags: Mapping[str, str], languages: Sequence[str]) -> None:
    """The config rules of a multilingual model's ``tag`` / ``tags`` / ``languages`` (ValueError, for the
    configs' validators): ``tags`` and ``languages`` only with ``tag: auto``; each tag one word without ``_``;
    no two languages sharing a tag."""
    if (tags or languages) and tag != "auto":
        raise ValueError("tags and languages are for the multilingual model (tag: auto)")
    for code, t in tags.items():
        if not t or any(c.isspace() for c in t) or "_" in t or t == "auto":
            raise ValueError(f"tags.{code}: {t!r} must be one word without '_' (e.g. GSL, ASL)")
    if len(set(tags.values())) != len(tags):
        raise ValueError("tags: two languages share a tag (their glosses could not be told apart)")


def target_token(tag: str) -> str:
    """The input word that asks a multilingual model for language ``tag``'s glosses: ``<2GSL>``."""
    return f"<2{tag}>"


def add_tag(glosses: str, tag: str | None) -> str:
    """``"WETTER MORGEN"`` -> ``"GSL_WETTER GSL_MORGEN"`` (unchanged without a tag); whitespace normalised."""
    return " ".join(f"{tag}_{g}" if tag else g for g in glosses.split())


def strip_tag(glosses: str, tag: str | None) -> str:
    """The inverse of :func:`add_tag` on a model's output: the tag is removed where a gloss carries it, a gloss
    written without it (or with another language's) is kept as it is, and so scored, as the model's own
    mistake."""
    if not tag:
        return " ".join(glosses.split())
    prefix = f"{tag}_"
    return " ".join(g[len(prefix) :] if g.startswith(prefix) and len(g) > len(prefix) else g for g in glosses.split())


def sample_language(sample: Mapping[str, Any], languages: Sequence[str]) -> str:
    """The sign language a multilingual model is to write for ``sample``: its ``sign_language`` (one of
    ``languages`` when those are known), or the only one of ``languages`` when it names none. DataError naming
    the languages otherwise."""
    asked = sample.get("sign_language")
    if isinstance(asked, str) and asked.strip():
        asked = asked.strip()
        if languages and asked not in languages:
            raise DataError(f"this model knows the sign languages {', '.join(languages)}, not {asked!r}")
        return asked
    if len(languages) == 1:
        return languages[0]
    if not languages:
        raise DataError("language-tagged glosses need the sample's sign_language (it has none)")
    raise DataError(f"say which sign language (sign_language: one of {', '.join(languages)})")


def languages_of(rows: Iterable[Mapping[str, Any]], languages: Sequence[str] = ()) -> list[str]:
    """The sign languages a multilingual model trained on ``rows`` knows: ``languages`` when given (every row
    must be one of them), else those of the rows (every row must name one)."""
    found = sorted({str(r.get("sign_language") or "") for r in rows})
    if "" in found:
        raise DataError("a multilingual model (tag: auto) needs every training sample's sign_language (some have "
                        "none)")  # fmt: skip
    if languages:
        other = sorted(set(found) - set(languages))
        if other:
            raise DataError(f"training samples of {', '.join(other)}, not in languages ({', '.join(languages)})")
        return list(languages)
    return found
