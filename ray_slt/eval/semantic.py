"""Semantic-fidelity metrics of the first paper (RESEARCH.md section 1): TSR and PGER.

**TSR**, translation soft recall (Eqs. 2-3). The soft cardinality of a set of words Z is
``C(Z) = sum_i 1 / sum_j sim(Z_i, Z_j)``; with ``Y`` the reference's words and ``Ŷ`` the hypothesis's,
``TSR = (C(Y) + C(Ŷ) - C(Y ∪ Ŷ)) / C(Ŷ)``, the soft size of the intersection over the soft size of the
hypothesis, exactly as Eq. 3 writes it. Words are the distinct tokens of :func:`semantic_tokens` (Unicode
letter/digit runs, case kept; one token per CJK character). ``sim`` is pluggable: any callable mapping a
list of n words to an n x n similarity matrix. The default is the cosine of word embeddings from a
sentence-transformers model (:data:`DEFAULT_EMBEDDER`, the paper's multilingual MiniLM; a model id or a
local/bundled directory), each word embedded on its own. Similarities are clipped to [0, 1] (a negative
cosine counts as unrelated), so each word's soft count lies in [1/|Z|, 1] and ``1 <= C(Z) <= |Z|``. With
crisp similarities (1 for equal words, 0 otherwise) TSR reduces to ``|Y ∩ Ŷ| / |Ŷ|``. An empty hypothesis
scores 0. Scale 0-1, as in the paper's Table 6. Soft cardinality is not monotone under union (a word similar
to two unrelated words lowers their soft counts), so the raw ratio can leave [0, 1]; it is clipped to [0, 1].

Note what Eq. 3 measures: its denominator is the hypothesis's soft size, so a hypothesis whose words all
occur in the reference scores 1 however much it leaves out (a soft precision), and, because word embeddings
of unrelated words are far from orthogonal, unrelated sentences still score well above 0. The Heading Soft
Recall it adapts (Fränti and Mariescu-Istodor; STORM) divides by the reference's soft size instead:
``denominator="reference"`` computes that variant.

**PGER**, pseudo-gloss entity recall (Eq. 4): ``|Ent(Y) ∩ Ent(Ŷ)| / |Ent(Y)|``, where Ent is the set of
lowercased nouns, proper nouns, verbs and adjectives that a part-of-speech tagger finds. A reference without
any such word has no PGER and is left out of the corpus mean (the count is reported). Scale 0-1 (Table 5).
The tagger is pluggable: any callable ``text -> [(word, upos), ...]`` with Universal-POS-like tags. The
default is **HanTa** (the Hanover Tagger, LGPL, pure Python): its German, English and Dutch models ship
inside its PyPI wheel, so it installs and runs offline, which FLAIR (the paper's tagger) and stanza cannot
(both download their models from a hub at run time) and spaCy cannot for German (no German pipeline is on
PyPI). HanTa's models are gzip-pickled files inside the installed package; ray_slt only ever loads those
bundled files by name, never a model file from a user path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

import numpy as np

from ray_slt.errors import ConfigError, DataError
from ray_slt.eval.metrics import CJK_CHARS, Refs, reference_streams

#: The embedding model of the paper (TSR). A model id (downloaded once, then cached by huggingface_hub) or a
#: local directory of a sentence-transformers model.
DEFAULT_EMBEDDER = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"

#: Universal POS tags that count as pseudo-gloss entities (PGER).
ENTITY_UPOS = frozenset({"NOUN", "PROPN", "VERB", "ADJ"})

Similarity = Callable[[Sequence[str]], np.ndarray]
Tagger = Callable[[str], list[tuple[str, str]]]

_SEMANTIC_TOKEN = re.compile(rf"[{CJK_CHARS}]|[^\W_{CJK_CHARS}]+")


def semantic_tokens(text: str) -> list[str]:
    """Words of a sentence for TSR: Unicode letter/digit runs (case kept), one token per CJK character."""
    return _SEMANTIC_TOKEN.findall(text)


def _unique(tokens: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


# --------------------------------------------------------------------------------------------------- TSR


def soft_cardinality(sim: np.ndarray) -> float:
    """``C(Z) = sum_i 1 / sum_j sim_ij`` of a square similarity matrix (values clipped to [0, 1])."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity matrix must be square, got shape {sim.shape}")
    if sim.shape[0] == 0:
        return 0.0
    row = np.clip(sim, 0.0, 1.0).sum(axis=1)
    if np.any(row <= 0):
        raise ValueError("every word must be similar to itself (a row of the similarity matrix sums to 0)")
    return float(np.sum(1.0 / row))


_DENOMINATORS = ("hypothesis", "reference")


def tsr_tokens(
    ref_tokens: Sequence[str], hyp_tokens: Sequence[str], sim: Similarity, denominator: str = "hypothesis"
) -> float:
    """TSR of two token lists under the similarity ``sim``: Eq. 3 (soft intersection over ``C(Ŷ)``), or over
    ``C(Y)`` with ``denominator="reference"``."""
    if denominator not in _DENOMINATORS:
        raise ValueError(f"denominator must be one of {_DENOMINATORS}, not {denominator!r}")
    y, h = _unique(ref_tokens), _unique(hyp_tokens)
    if not h or not y:
        return 0.0
    union = _unique([*y, *h])
    s = np.asarray(sim(union), dtype=np.float64)
    if s.shape != (len(union), len(union)):
        raise ValueError(f"sim returned shape {s.shape} for {len(union)} words")
    index = {w: i for i, w in enumerate(union)}
    iy = [index[w] for w in y]
    ih = [index[w] for w in h]
    c_y = soft_cardinality(s[np.ix_(iy, iy)])
    c_h = soft_cardinality(s[np.ix_(ih, ih)])
    c_u = soft_cardinality(s)
    value = (c_y + c_h - c_u) / (c_h if denominator == "hypothesis" else c_y)
    return min(1.0, max(0.0, value))


class SentenceTransformerEmbedder:
    """L2-normalised embeddings of single words from a sentence-transformers model (loaded on first use)."""

    def __init__(self, model: str = DEFAULT_EMBEDDER, device: str | None = None, batch_size: int = 256):
        self.model_name = str(model)
        self.device = device
        self.batch_size = batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                # safetensors weights only: never a pickled pytorch_model.bin from a model directory
                self._model = SentenceTransformer(
                    self.model_name, device=self.device, model_kwargs={"use_safetensors": True}
                )
            except OSError as e:
                raise ConfigError(
                    f"cannot load the TSR embedding model {self.model_name!r}: {e}. Give a model id that is "
                    "in the Hugging Face cache or a local sentence-transformers directory"
                ) from e
        return self._model

    def __call__(self, words: Sequence[str]) -> np.ndarray:
        if not words:
            return np.zeros((0, 0), dtype=np.float32)
        model = self._load()
        emb = model.encode(
            list(words),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)


class EmbeddingSimilarity:
    """``sim(words)``: cosine similarities of word embeddings, each word embedded once and cached."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray] | str = DEFAULT_EMBEDDER):
        self.embed = SentenceTransformerEmbedder(embed) if isinstance(embed, str) else embed
        self._cache: dict[str, np.ndarray] = {}

    def prefetch(self, words: Sequence[str]) -> None:
        """Embed all ``words`` not seen yet in one batch."""
        missing = [w for w in _unique(words) if w not in self._cache]
        if missing:
            vectors = np.asarray(self.embed(missing), dtype=np.float64)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
            self._cache.update(zip(missing, vectors))

    def __call__(self, words: Sequence[str]) -> np.ndarray:
        self.prefetch(words)
        m = np.stack([self._cache[w] for w in words]) if words else np.zeros((0, 1))
        return m @ m.T


def tsr(reference: str, hypothesis: str, sim: Similarity | None = None, denominator: str = "hypothesis") -> float:
    """TSR (0-1) of one hypothesis against one reference."""
    sim = sim if sim is not None else EmbeddingSimilarity()
    return tsr_tokens(semantic_tokens(reference), semantic_tokens(hypothesis), sim, denominator)


def corpus_tsr(
    hyps: Sequence[str], refs: Refs, sim: Similarity | None = None, denominator: str = "hypothesis"
) -> float:
    """Mean sentence TSR (0-1); with several reference streams a sentence takes its best reference."""
    streams = reference_streams(hyps, refs)
    sim = sim if sim is not None else EmbeddingSimilarity()
    hyp_tok = [semantic_tokens(h) for h in hyps]
    ref_tok = [[semantic_tokens(s[i]) for s in streams] for i in range(len(hyps))]
    if isinstance(sim, EmbeddingSimilarity):
        sim.prefetch([w for toks in hyp_tok for w in toks] + [w for rs in ref_tok for r in rs for w in r])
    total = sum(max(tsr_tokens(r, h, sim, denominator) for r in rs) for h, rs in zip(hyp_tok, ref_tok))
    return total / len(hyps)


# -------------------------------------------------------------------------------------------------- PGER

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]", re.UNICODE)


def _upos_german(tag: str) -> str:
    if tag.startswith(("NN", "ACR_NN")):
        return "NOUN"
    if tag.startswith(("NE", "ACR_NE")):
        return "PROPN"
    if tag.startswith("VV"):
        return "VERB"
    if tag.startswith(("VA", "VM")):
        return "AUX"
    if tag.startswith("ADJ"):
        return "ADJ"
    if tag in {"PPER", "PRF", "PPOSS", "PDS", "PIS", "PRELS", "PWS"}:
        return "PRON"
    if tag.startswith("$"):
        return "PUNCT"
    return "X"


def _upos_english(tag: str) -> str:
    if tag.startswith("NN"):
        return "NOUN"
    if tag.startswith("NP"):
        return "PROPN"
    if tag.startswith("VV"):
        return "VERB"
    if tag.startswith(("VB", "VD", "VH", "VM")):
        return "AUX"
    if tag.startswith("AJ"):
        return "ADJ"
    if tag.startswith("PN"):
        return "PRON"
    if tag.startswith("PU"):
        return "PUNCT"
    return "X"


class HanTaTagger:
    """Part-of-speech tags from HanTa's bundled models, mapped to Universal POS.

    German STTS: NN -> NOUN, NE -> PROPN, VV* -> VERB, VA*/VM* -> AUX, ADJ* -> ADJ, personal/reflexive/
    demonstrative/indefinite pronouns -> PRON. English (CLAWS5): NN* -> NOUN, NP* -> PROPN, VV* -> VERB,
    forms of be/do/have and modals (VB*/VD*/VH*/VM0) -> AUX, AJ* -> ADJ, PN* -> PRON. Anything else is X
    (or PUNCT). All-lowercase sentences (PHOENIX-2014T's translations) are tagged case-insensitively.
    """

    MODELS = {"de": ("morphmodel_ger.pgz", _upos_german), "en": ("morphmodel_en.pgz", _upos_english)}

    def __init__(self, lang: str):
        primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
        primary = {"deu": "de", "ger": "de", "eng": "en"}.get(primary, primary)
        if primary not in self.MODELS:
            raise ConfigError(
                f"no default part-of-speech tagger for language {lang!r} (HanTa covers de, en); "
                "pass a tagger callable text -> [(word, upos), ...]"
            )
        self.lang = primary
        model_file, self._to_upos = self.MODELS[primary]
        try:
            from HanTa import HanoverTagger
        except ImportError as e:
            raise ConfigError("PGER's default tagger needs the 'HanTa' package (pip install HanTa)") from e
        # Only the model file bundled inside the installed HanTa package, by its full path: given a bare name,
        # HanTa would first unpickle a file of that name in the current directory.
        bundled = os.path.join(os.path.dirname(os.path.abspath(HanoverTagger.__file__)), model_file)
        if not os.path.isfile(bundled):
            raise ConfigError(f"the installed HanTa package has no {model_file} (reinstall HanTa)")
        self._tagger = HanoverTagger.HanoverTagger(bundled)

    def __call__(self, text: str) -> list[tuple[str, str]]:
        words = _WORD.findall(text)
        if not words:
            return []
        tagged = self._tagger.tag_sent(words, taglevel=1, casesensitive=not text.islower())
        return [(word, self._to_upos(tag)) for word, _lemma, tag in tagged]


def entities(text: str, tagger: Tagger, upos: frozenset[str] = ENTITY_UPOS) -> set[str]:
    """Ent(text): the lowercased words whose tag is in ``upos`` (nouns, verbs, adjectives by default)."""
    return {w.lower() for w, tag in tagger(text) if tag in upos}


def pger(reference: str, hypothesis: str, tagger: Tagger) -> float | None:
    """PGER (0-1) of one hypothesis; ``None`` when the reference has no entity."""
    ent_ref = entities(reference, tagger)
    if not ent_ref:
        return None
    return len(ent_ref & entities(hypothesis, tagger)) / len(ent_ref)


def corpus_pger(
    hyps: Sequence[str], refs: Sequence[str], lang: str | None = None, tagger: Tagger | None = None
) -> dict:
    """Mean sentence PGER (0-1) over the references that have entities.

    Returns ``pger``, ``n_scored`` and ``n_skipped`` (references without any noun/verb/adjective).
    """
    streams = reference_streams(hyps, refs)
    if len(streams) != 1:
        raise DataError("PGER takes one reference per hypothesis")
    if tagger is None:
        if not lang:
            raise ConfigError("PGER needs the language of the sentences (lang=...) or a tagger")
        tagger = HanTaTagger(lang)
    scores = [pger(r, h, tagger) for h, r in zip(hyps, streams[0])]
    scored = [s for s in scores if s is not None]
    return {
        "pger": sum(scored) / len(scored) if scored else 0.0,
        "n_scored": len(scored),
        "n_skipped": len(scores) - len(scored),
    }
