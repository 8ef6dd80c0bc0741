"""Text -> gloss: the first stage of sign language production (SignLLM's Prompt2LangGloss channel, paper Sec. 3.3).

The model is the stage-2 translator (:class:`~ray_slt.models.sft.SignTranslator`) read the other way round: its
token encoder embeds the words of the input sentence, the projected sequence prefixes a causal LM, and the LM
writes the gloss sequence. What makes it Prompt2LangGloss is what surrounds the model (:class:`Text2GlossConfig`):

- **prompt templates** wrap the input sentence (``Wie gebärdet man „{text}“?``), so that the model learns to
  find the sentence inside a request as a user would type it. Each sample is paired with one template by a CRC-32
  of its key (the sample id in training and evaluation, the sentence itself when served): a fixed random
  pairing, the same in every process and every epoch. The paper shows six German and six English templates of
  its 210 in its supplement; the sets here (:data:`TEMPLATES`) are this project's own, twelve per language;
- **language-tagged glosses**: every target gloss is written with its language's tag (``GSL_WETTER``); the
  tags are stripped from what the model writes before it is scored or served (:func:`strip_tag`).

Input sentences are split into words and punctuation marks (:func:`words`) and lower-cased unless
``lowercase: false``; the reference glosses are never changed.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.errors import DataError
from ray_slt.models.config import Text2GlossConfig
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef

#: The built-in prompt templates per language (``{text}``: the sentence).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "de": (
        "Wie gebärdet man „{text}“?",
        "Zeig mir bitte „{text}“ in Gebärdensprache.",
        "Wie lautet „{text}“ in Deutscher Gebärdensprache?",
        "Übersetze in Gebärdensprache: {text}",
        "Was sind die Gebärden für den Satz „{text}“?",
        "Ich möchte „{text}“ gebärden. Wie geht das?",
        "Gebärde bitte folgenden Satz: {text}",
        "Kannst du „{text}“ in DGS übersetzen?",
        "„{text}“ – wie drückt man das mit Gebärden aus?",
        "Wie würde eine gehörlose Person „{text}“ gebärden?",
        "Bitte in Glossen: {text}",
        "Wie sieht „{text}“ in Gebärdensprache aus?",
    ),
    "en": (
        'How do you sign "{text}"?',
        'Please show me "{text}" in sign language.',
        'What is "{text}" in American Sign Language?',
        "Translate into sign language: {text}",
        'What are the signs for the sentence "{text}"?',
        'I want to sign "{text}". How does it go?',
        "Sign the following sentence, please: {text}",
        'Can you put "{text}" into ASL?',
        '"{text}" - how would that be expressed with signs?',
        'How would a Deaf signer say "{text}"?',
        "Glosses, please: {text}",
        'What does "{text}" look like in sign language?',
    ),
}

_WORD = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")


def words(text: str, lowercase: bool = True) -> str:
    """The sentence as space-separated words and punctuation marks (``"Morgen, Regen!"`` -> ``"morgen , regen !"``),
    the token encoder's input."""
    return " ".join(_WORD.findall(text.lower() if lowercase else text))


def templates_of(cfg: Text2GlossConfig) -> tuple[str, ...]:
    """The config's templates (none: the sentence alone)."""
    if cfg.templates == "none":
        return ("{text}",)
    if isinstance(cfg.templates, str):
        return TEMPLATES[cfg.templates]
    return tuple(cfg.templates)


def template_for(cfg: Text2GlossConfig, key: str) -> str:
    """The template paired with ``key`` (a sample id, or the sentence when there is none)."""
    options = templates_of(cfg)
    return options[zlib.crc32(key.encode("utf-8")) % len(options)]


def source_text(cfg: Text2GlossConfig, text: str, key: str | None = None) -> str:
    """What the model reads for ``text``: wrapped in its template, split into words (lower-cased)."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("text2gloss needs a non-empty input sentence", key)
    return words(template_for(cfg, key or text).format(text=text.strip()), cfg.lowercase)


def add_tag(glosses: str, tag: str | None) -> str:
    """``"WETTER MORGEN"`` -> ``"GSL_WETTER GSL_MORGEN"`` (unchanged without a tag); whitespace normalised."""
    return " ".join(f"{tag}_{g}" if tag else g for g in glosses.split())


def strip_tag(glosses: str, tag: str | None) -> str:
    """The inverse of :func:`add_tag` on a model's output: the tag is removed where a gloss carries it, a gloss
    written without it is kept as it is (and so scored, as a model's own mistake)."""
    if not tag:
        return " ".join(glosses.split())
    prefix = f"{tag}_"
    return " ".join(g[len(prefix) :] if g.startswith(prefix) and len(g) > len(prefix) else g for g in glosses.split())


def training_pair(cfg: Text2GlossConfig, row: Mapping[str, Any]) -> dict[str, Any]:
    """A corpus row (``text``, ``gloss``) as the translator's collator takes it: the wrapped sentence as its
    token input (``gloss``, the encoder's field) and the tagged glosses as the target (``text``)."""
    sid = str(row.get("sample_id", ""))
    gloss = row.get("gloss")
    if not isinstance(gloss, str) or not gloss.strip():
        raise DataError("text2gloss needs the sample's glosses (this one has none)", sid or None)
    return {"sample_id": sid, "gloss": source_text(cfg, row.get("text"), sid or None),
            "text": add_tag(gloss, cfg.tag)}  # fmt: skip


def vocabulary_texts(cfg: Text2GlossConfig, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(targets, inputs) to build the two vocabularies from: the training rows' tagged glosses (the LM tokenizer)
    and their wrapped sentences plus every template's own words (the token encoder's, so that a template a
    training sentence was not paired with is still known when served)."""
    pairs = [training_pair(cfg, r) for r in rows]
    if not pairs:
        raise DataError("no training sentences with glosses")
    extra = [words(t.replace("{text}", " "), cfg.lowercase) for t in templates_of(cfg)]
    return [p["text"] for p in pairs], [p["gloss"] for p in pairs] + [e for e in extra if e]


class Text2GlossPredictor(Predictor):
    """A text -> gloss model (:func:`ray_slt.models.checkpoint.load_translator`; its checkpoint carries a
    :class:`~ray_slt.models.config.Text2GlossConfig`): a sentence in (``text``), ``{"gloss": ...}`` out, tags
    stripped. Options: ``num_beams``, ``max_new_tokens`` (None: the model's), ``length_penalty`` (beam search;
    None: 1.0)."""

    kind = "text2gloss"
    predicts = "gloss"
    route = "text2gloss"
    protocol = "gloss"
    inputs = "text"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None,
                 num_beams: int | None = None, max_new_tokens: int | None = None,
                 length_penalty: float | None = None):  # fmt: skip
        from ray_slt.models.checkpoint import load_translator

        super().__init__(ref, device, model_id)
        self.model = load_translator(ref.model).to(self.device).eval()
        if not isinstance(self.model.cfg, Text2GlossConfig):
            raise DataError("not a text -> gloss checkpoint (its config is a sign -> text translator's)", ref.model)
        self.collate = self.model.collator()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.length_penalty = length_penalty

    def settings(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "num_beams": self.num_beams or cfg.num_beams,
            "max_new_tokens": self.max_new_tokens or cfg.max_new_tokens,
            "length_penalty": 1.0 if self.length_penalty is None else self.length_penalty,
            "templates": cfg.templates if isinstance(cfg.templates, str) else len(cfg.templates),
            "tag": cfg.tag,
            "do_sample": False,
        }

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        import torch

        from ray_slt.models.batch import to_device

        if not samples:
            return []
        cfg = self.model.cfg
        missing = [str(s.get("sample_id", i)) for i, s in enumerate(samples) if not isinstance(s.get("text"), str)]
        if missing:
            raise DataError(f"this model reads text; samples without it: {', '.join(missing[:5])}")
        rows = [{"gloss": source_text(cfg, s["text"], s.get("sample_id"))} for s in samples]
        batch = to_device(self.collate(rows), self.device)
        with torch.no_grad():
            out = self.model.generate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                      length_penalty=self.length_penalty)  # fmt: skip
        return [{"gloss": strip_tag(g, cfg.tag)} for g in out]
