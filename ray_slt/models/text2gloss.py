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
- **one shared multilingual model** (``tag: auto``): each sample's glosses carry its own sign language's tag
  (:func:`ray_slt.models.langgloss.tag_of`), and the input starts with the target token of that language
  (``<2GSL>``), so one model writes the glosses of every language it was trained on, as asked; with
  ``templates: auto`` each sentence is wrapped in a template of its own spoken language. The languages a model
  writes are recorded in its config (``languages``, from the training rows); a request names one of them
  (``sign_language``), or none when there is only one.

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
from ray_slt.models.langgloss import add_tag, sample_language, strip_tag, tag_of, target_token
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import ModelRef
from ray_slt.models.rerank import Reranking

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


def templates_of(cfg: Text2GlossConfig, spoken: str | None = None) -> tuple[str, ...]:
    """The config's templates (none: the sentence alone); with ``templates: auto`` those of the spoken
    language ``spoken`` (its primary subtag: ``en-US`` -> ``en``), the sentence alone for a language without
    built-in templates."""
    if cfg.templates == "none":
        return ("{text}",)
    if cfg.templates == "auto":
        primary = (spoken or "").split("-")[0].lower()
        return TEMPLATES.get(primary, ("{text}",))
    if isinstance(cfg.templates, str):
        return TEMPLATES[cfg.templates]
    return tuple(cfg.templates)


def template_for(cfg: Text2GlossConfig, key: str, spoken: str | None = None) -> str:
    """The template paired with ``key`` (a sample id, or the sentence when there is none)."""
    options = templates_of(cfg, spoken)
    return options[zlib.crc32(key.encode("utf-8")) % len(options)]


def row_tag(cfg: Text2GlossConfig, sample: Mapping[str, Any]) -> str | None:
    """The tag of a sample's glosses: the config's fixed ``tag``, or with ``tag: auto`` its sign language's
    (:func:`~ray_slt.models.langgloss.sample_language`: DataError when the model does not write it)."""
    if cfg.tag != "auto":
        return cfg.tag
    return tag_of(sample_language(sample, cfg.languages), cfg.tags)


def source_text(cfg: Text2GlossConfig, text: str, key: str | None = None, spoken: str | None = None,
                tag: str | None = None) -> str:  # fmt: skip
    """What the model reads for ``text``: wrapped in its template (of the spoken language ``spoken`` with
    ``templates: auto``), split into words (lower-cased); with ``tag: auto``, after the target token of the
    language ``tag`` (``<2GSL> wie gebärdet man ...``)."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("text2gloss needs a non-empty input sentence", key)
    out = words(template_for(cfg, key or text, spoken).format(text=text.strip()), cfg.lowercase)
    if cfg.tag == "auto":
        if not tag:
            raise DataError("a multilingual text2gloss model needs the tag of the language to write", key)
        out = f"{target_token(tag)} {out}"
    return out


def training_pair(cfg: Text2GlossConfig, row: Mapping[str, Any]) -> dict[str, Any]:
    """A corpus row (``text``, ``gloss``) as the translator's collator takes it: the wrapped sentence as its
    token input (``gloss``, the encoder's field) and the tagged glosses as the target (``text``)."""
    sid = str(row.get("sample_id", ""))
    gloss = row.get("gloss")
    if not isinstance(gloss, str) or not gloss.strip():
        raise DataError("text2gloss needs the sample's glosses (this one has none)", sid or None)
    tag = row_tag(cfg, row)
    return {"sample_id": sid, "gloss": source_text(cfg, row.get("text"), sid or None, row.get("spoken_language"), tag),
            "text": add_tag(gloss, tag)}  # fmt: skip


def vocabulary_texts(cfg: Text2GlossConfig, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(targets, inputs) to build the two vocabularies from: the training rows' tagged glosses (the LM tokenizer)
    and their wrapped sentences plus every template's own words (the token encoder's, so that a template a
    training sentence was not paired with is still known when served)."""
    pairs = [training_pair(cfg, r) for r in rows]
    if not pairs:
        raise DataError("no training sentences with glosses")
    spoken = sorted({str(r.get("spoken_language") or "") for r in rows})
    templates = sorted({t for s in spoken for t in templates_of(cfg, s)})
    extra = [words(t.replace("{text}", " "), cfg.lowercase) for t in templates]
    return [p["text"] for p in pairs], [p["gloss"] for p in pairs] + [e for e in extra if e]


class Text2GlossPredictor(Reranking, Predictor):
    """A text -> gloss model (:func:`ray_slt.models.checkpoint.load_translator`; its checkpoint carries a
    :class:`~ray_slt.models.config.Text2GlossConfig`): a sentence in (``text``), ``{"gloss": ...}`` out, tags
    stripped; a multilingual model (``tag: auto``) reads the sample's ``sign_language`` (and
    ``spoken_language`` for ``templates: auto``) and also returns ``langgloss`` (what it wrote, tags and all)
    and the ``sign_language``. Options: ``num_beams``, ``max_new_tokens`` (None: the model's),
    ``length_penalty`` (beam search; None: 1.0), ``mbr`` (true: the minimum-Bayes-risk choice among the beam's
    hypotheses by sentence BLEU over gloss tokens, :mod:`ray_slt.models.mbr`; None/false: the beam's best);
    ``channel`` (a gloss -> text translator: the beam's hypotheses re-ranked by ``log p(glosses | text) +
    channel_weight * log p(text | glosses) + length_bonus * glosses``, :mod:`ray_slt.models.rerank`) with
    ``channel_weight`` (None: 1.0) and ``length_bonus`` (None: 0.0); ``lm`` (a ``textlm`` model of the glosses:
    adds ``lm_weight * log p(glosses)``, None: 1.0; with or without a channel); ``peer`` (one or more text ->
    gloss models: their beams add candidates and ``peer_weight * sum log p_peer(glosses | text)`` joins the score,
    None: 1.0; an n-best ensemble)."""

    kind = "text2gloss"
    predicts = "gloss"
    route = "text2gloss"
    protocol = "gloss"
    inputs = "text"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None,
                 num_beams: int | None = None, max_new_tokens: int | None = None,
                 length_penalty: float | None = None, mbr: bool | None = None, channel: str | None = None,
                 channel_weight: float | None = None, length_bonus: float | None = None, lm: str | None = None,
                 lm_weight: float | None = None, peer: str | list[str] | None = None,
                 peer_weight: float | None = None):  # fmt: skip
        from ray_slt.models.checkpoint import load_translator

        super().__init__(ref, device, model_id)
        self.model = load_translator(ref.model).to(self.device).eval()
        if not isinstance(self.model.cfg, Text2GlossConfig):
            raise DataError("not a text -> gloss checkpoint (its config is a sign -> text translator's)", ref.model)
        self.collate = self.model.collator()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.length_penalty = length_penalty
        decoding = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "length_penalty": length_penalty}
        self._setup_reranking(channel, channel_weight, length_bonus, mbr, lm, lm_weight, peer, peer_weight, decoding)

    def info(self) -> dict[str, Any]:
        """With a multilingual model, the languages it writes (so that a server refuses another with a 400)."""
        cfg = self.model.cfg
        extra = {"languages": {c: {"spoken": []} for c in cfg.languages}} if cfg.tag == "auto" else {}
        return {**super().info(), **extra}

    def settings(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "num_beams": self.num_beams or cfg.num_beams,
            "max_new_tokens": self.max_new_tokens or cfg.max_new_tokens,
            "length_penalty": 1.0 if self.length_penalty is None else self.length_penalty,
            **self.reranking_settings(),
            "templates": cfg.templates if isinstance(cfg.templates, str) else len(cfg.templates),
            "tag": cfg.tag,
            "languages": list(cfg.languages),
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
        langs = [sample_language(s, cfg.languages) if cfg.tag == "auto" else None for s in samples]
        tags = [tag_of(lang, cfg.tags) if lang else cfg.tag for lang in langs]
        rows = [{"gloss": source_text(cfg, s["text"], s.get("sample_id"), s.get("spoken_language"), tag)}
                for s, tag in zip(samples, tags)]  # fmt: skip
        batch = to_device(self.collate(rows), self.device)
        with torch.no_grad():
            if self.reranker is None:
                out = self.model.generate(batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                          length_penalty=self.length_penalty, mbr=self.mbr,
                                          mbr_tokenize="none")  # fmt: skip
            else:  # candidates untagged for the channel (a gloss translator reads plain glosses), tagged again
                key = tuple((str(s.get("sample_id", "")), r["gloss"]) for s, r in zip(samples, rows))
                nbest = self.reranker.nbest(key, lambda: self.model.generate_nbest(
                    batch, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                    length_penalty=self.length_penalty))  # fmt: skip
                plain = [[strip_tag(c, tag) for c in cands] for cands, tag in zip(nbest, tags)]
                chosen = self.reranker.choose([s["text"] for s in samples], plain, samples)
                out = [add_tag(c, tag) for c, tag in zip(chosen, tags)]
        if cfg.tag != "auto":
            return [{"gloss": strip_tag(g, cfg.tag)} for g in out]
        return [{"gloss": strip_tag(g, tag), "langgloss": " ".join(g.split()), "sign_language": lang}
                for g, tag, lang in zip(out, tags, langs)]  # fmt: skip
