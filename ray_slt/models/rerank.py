"""Noisy-channel re-ranking of a beam's n-best list with a model of the reverse direction and a language model of the
output side (Yee, Ng & Auli 2019; Ng et al. 2019), for the text-side models: a gloss -> text translator re-ranked
with a text -> gloss model and a language model of the sentences, a text -> gloss model re-ranked with a
gloss -> text translator and a language model of the glosses.

Beam search ranks a hypothesis ``y`` of the source ``x`` by the direct model alone, ``log p(y | x)``, which
favours fluent outputs that leave part of the source untranslated. The reverse ("channel") model asks how well
``y`` explains ``x``; the language model how likely ``y`` is as a text of its side at all (the prior that, with the
channel, makes Bayes' ``p(x | y) p(y)``); a length bonus works against the direct model's preference for short
outputs::

    score(y) = log p(y | x) + lambda * log p(x | y) + nu * log p(y) + mu * |y|

Readings chosen here:
- the candidates are the beam's ``num_beams`` finished hypotheses (``num_return_sequences = num_beams``), so the
  beam width and its length penalty still decide which candidates there are;
- ``log p(y | x)`` and ``log p(x | y)`` are summed token log-probabilities (``</s>`` included), each model
  teacher-forced on the text it is given, the direct model re-reading its own output (a BPE string may tokenise
  back slightly differently from the ids beam search produced; the re-read score is the one used);
- ``log p(y)`` is the language model's summed log-probability of ``y`` (``</s>`` included,
  :mod:`ray_slt.models.textlm`), in its own tokenisation; its training data are the same corpus's training
  targets (all this corpus has; the papers' LMs read far more text), so its weight is chosen on dev like the
  others and may well be small or negative;
- ``|y|`` counts the direct model's target tokens (``</s>`` included): BPE pieces for a text model, words for a
  gloss model; ``mu`` is per token;
- the channel and the language model are each optional (without both there is nothing to re-rank with);
  ``lambda``, ``nu`` and ``mu`` are decoding options, chosen on dev like the beam width (``ray-slt eval --grid
  channel_weight=0,0.5,1 --grid lm_weight=0,0.25 --grid length_bonus=0,0.5 --channel RUN --lm RUN``);
  ``lambda = nu = mu = 0`` keeps the candidate the direct model scores highest without beam search's length
  normalisation;
- an empty hypothesis is never chosen over a non-empty one (it has no text for the channel model to read); ties
  go to the earlier candidate (the beam's order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt.errors import ConfigError

#: candidate rows scored per forward pass
SCORE_BATCH = 64


def rerank_index(direct: Sequence[float], channel: Sequence[float], lengths: Sequence[int], channel_weight: float,
                 length_bonus: float, valid: Sequence[bool] | None = None, lm: Sequence[float] | None = None,
                 lm_weight: float = 0.0) -> int:  # fmt: skip
    """The index of ``argmax_i direct[i] + channel_weight * channel[i] + lm_weight * lm[i] + length_bonus *
    lengths[i]`` over the ``valid`` candidates (all by default; the first candidate when none is), ties to the
    earliest. ``lm`` None: no language model term."""
    n = len(direct)
    lm = [0.0] * n if lm is None else list(lm)
    if n == 0 or len(channel) != n or len(lengths) != n or len(lm) != n:
        raise ValueError("re-ranking needs one direct score, channel score, LM score and length per candidate")
    valid = [True] * n if valid is None else list(valid)
    best, best_score = 0, float("-inf")
    for i in range(n):
        if not valid[i]:
            continue
        score = direct[i] + channel_weight * channel[i] + lm_weight * lm[i] + length_bonus * lengths[i]
        if score > best_score:
            best, best_score = i, score
    return best


def pair_row(model, source: str, target: str, sample: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The collator row with which ``model`` reads ``source`` and is scored on writing ``target``: a text -> gloss
    model's training pair (its template, lower-casing and gloss tag; ``target`` is untagged glosses), a gloss ->
    text translator's ``{"gloss": source, "text": target}``. Other models (pose input) cannot score text pairs."""
    from ray_slt.models.config import Text2GlossConfig
    from ray_slt.models.text2gloss import training_pair

    check_text_model(model)
    extra = {k: sample[k] for k in ("sample_id", "spoken_language", "sign_language") if sample and k in sample}
    if isinstance(model.cfg, Text2GlossConfig):
        return training_pair(model.cfg, {**extra, "text": source, "gloss": target})
    return {**extra, "gloss": source, "text": target}


def check_text_model(model) -> None:
    """Refuse a model that cannot score text pairs (a translator that reads poses), with the reason."""
    from ray_slt.models.config import Text2GlossConfig

    if not isinstance(model.cfg, Text2GlossConfig) and model.cfg.encoder.type != "gloss":
        raise ConfigError("re-ranking scores text and gloss pairs: a translator that reads poses has no reverse "
                          "model here (use a gloss -> text translator or a text -> gloss model)")  # fmt: skip


def pair_logprobs(model, rows: Sequence[Mapping[str, Any]], device) -> tuple[list[float], list[int]]:
    """``model.sequence_logprobs`` over ``rows`` (collator rows), in batches of :data:`SCORE_BATCH`."""
    from ray_slt.models.batch import to_device

    collate = model.collator()
    lps: list[float] = []
    lengths: list[int] = []
    for i in range(0, len(rows), SCORE_BATCH):
        lp, n = model.sequence_logprobs(to_device(collate(list(rows[i : i + SCORE_BATCH])), device))
        lps += lp.tolist()
        lengths += n.tolist()
    return lps, lengths


def load_channel(uri: str, device):
    """The reverse-direction model at ``uri`` (a run, checkpoint or model directory): a text -> gloss model or a
    gloss -> text translator, in eval mode on ``device``; ``(model, where it was resolved to)``."""
    from ray_slt.models.checkpoint import load_translator
    from ray_slt.models.registry import resolve

    ref = resolve(uri)
    if ref.kind not in ("text2gloss", "translator"):
        raise ConfigError(f"the channel model must be a text -> gloss model or a gloss -> text translator, not a "
                          f"{ref.kind} model ({uri})")  # fmt: skip
    model = load_translator(ref.model).to(device).eval()
    check_text_model(model)  # before any decoding
    return model, ref.checkpoint


def load_output_lm(uri: str, direct, device):
    """The language model at ``uri`` (a ``textlm`` run, checkpoint or model directory) of ``direct``'s output side
    (a ``text`` LM for a gloss -> text translator, a ``gloss`` LM for a text -> gloss model), in eval mode on
    ``device``; ``(model, where it was resolved to)``."""
    from ray_slt.models.checkpoint import load_textlm
    from ray_slt.models.config import Text2GlossConfig
    from ray_slt.models.registry import resolve

    ref = resolve(uri)
    if ref.kind != "textlm":
        raise ConfigError(f"the language model of re-ranking must be a textlm model (stage textlm), not a "
                          f"{ref.kind} model ({uri})")  # fmt: skip
    lm = load_textlm(ref.model).to(device).eval()
    side = "gloss" if isinstance(direct.cfg, Text2GlossConfig) else "text"
    if lm.cfg.column != side:
        raise ConfigError(f"{uri} is a language model of the {lm.cfg.column} column; the model it would re-rank "
                          f"writes {side} (train one with textlm.column={side})")  # fmt: skip
    return lm, ref.checkpoint


class ChannelReranker:
    """Re-ranks n-best lists of ``direct`` (the model that wrote them) with ``channel`` (the reverse direction)
    and ``lm`` (a language model of the output side); either may be None (its term is left out)."""

    def __init__(self, direct, channel=None, channel_weight: float | None = None, length_bonus: float | None = None,
                 device="cpu", lm=None, lm_weight: float | None = None):  # fmt: skip
        if channel is None and lm is None:
            raise ConfigError("re-ranking needs a channel model, a language model or both")
        self.direct = direct
        self.channel = channel
        self.lm = lm
        self.set_weights(channel_weight, length_bonus, lm_weight)
        self.device = device
        # what does not depend on the weights, kept so that a grid over them decodes and scores once
        self._nbest: dict[Any, list[list[str]]] = {}
        self._scores: dict[tuple[str, str, str], tuple[float, float, int, float]] = {}

    def set_weights(self, channel_weight: float | None = None, length_bonus: float | None = None,
                    lm_weight: float | None = None) -> None:  # fmt: skip
        """``lambda`` (None: 1.0 with a channel), ``mu`` (None: 0.0) and ``nu`` (None: 1.0 with a language model)
        of the score; a weight of a model the reranker does not have is refused."""
        check_weights(self.channel is not None, self.lm is not None, channel_weight, None, lm_weight)
        default_channel, default_lm = float(self.channel is not None), float(self.lm is not None)
        self.channel_weight = default_channel if channel_weight is None else float(channel_weight)
        self.length_bonus = 0.0 if length_bonus is None else float(length_bonus)
        self.lm_weight = default_lm if lm_weight is None else float(lm_weight)

    def nbest(self, key: Any, generate) -> list[list[str]]:
        """``generate()`` (the direct model's n-best lists of a batch), remembered under ``key`` (the batch's
        inputs): the candidates depend on the decoding options, fixed for a reranker, not on the weights."""
        if key not in self._nbest:
            self._nbest[key] = generate()
        return self._nbest[key]

    def choose(self, sources: Sequence[str], nbest: Sequence[Sequence[str]],
               samples: Sequence[Mapping[str, Any]] | None = None) -> list[str]:  # fmt: skip
        """For each source (a gloss string or a sentence) and its candidates (the direct model's outputs in the
        channel's plain form: text, or untagged glosses), the re-ranked choice."""
        samples = samples or [{} for _ in sources]
        if not (len(sources) == len(nbest) == len(samples)):
            raise ValueError("one source, candidate list and sample per input")
        # a candidate's scores depend on its sample too (a text -> gloss model's template is the sample's)
        keys = [(str(s.get("sample_id", "")), src) for s, src in zip(samples, sources)]
        todo = sorted({(k, c.strip()) for k, cands in enumerate(nbest) for c in cands
                       if c.strip() and (*keys[k], c.strip()) not in self._scores})  # fmt: skip
        direct_rows = [pair_row(self.direct, sources[k], c, samples[k]) for k, c in todo]
        d_lp, lengths = pair_logprobs(self.direct, direct_rows, self.device)
        c_lp = [0.0] * len(todo)
        if self.channel is not None:
            channel_rows = [pair_row(self.channel, c, sources[k], samples[k]) for k, c in todo]
            c_lp, _ = pair_logprobs(self.channel, channel_rows, self.device)
        l_lp = [0.0] * len(todo)
        if self.lm is not None and todo:
            l_lp, _ = self.lm.score([c for _, c in todo], self.device)
        for (k, c), d, ch, n, lm in zip(todo, d_lp, c_lp, lengths, l_lp):
            self._scores[(*keys[k], c)] = (d, ch, n, lm)
        out = []
        for key, cands in zip(keys, nbest):
            ok = [bool(c.strip()) for c in cands]
            d, ch, n, lm = zip(*(self._scores[(*key, c.strip())] if valid else (0.0, 0.0, 0, 0.0)
                                 for c, valid in zip(cands, ok)))  # fmt: skip
            best = rerank_index(d, ch, n, self.channel_weight, self.length_bonus, ok, lm=lm, lm_weight=self.lm_weight)
            out.append(cands[best].strip())
        return out


def check_weights(has_channel: bool, has_lm: bool, channel_weight: float | None = None,
                  length_bonus: float | None = None, lm_weight: float | None = None) -> None:  # fmt: skip
    """Refuse a re-ranking weight (not None) whose model is missing, with what to give."""
    if channel_weight is not None and not has_channel:
        raise ConfigError("channel_weight weighs a channel model's score: give channel too")
    if lm_weight is not None and not has_lm:
        raise ConfigError("lm_weight weighs a language model's score: give lm too")
    if length_bonus is not None and not (has_channel or has_lm):
        raise ConfigError("length_bonus re-ranks with a channel model or a language model: give channel or lm too")


def channel_reranker(model, channel: str | None, channel_weight: float | None, length_bonus: float | None,
                     mbr: bool, device, lm: str | None = None, lm_weight: float | None = None):  # fmt: skip
    """The predictors' re-ranking options as a :class:`~ray_slt.models.rerank.ChannelReranker` (None without a
    channel or a language model) and where the channel and the language model were resolved to; refuses a weight
    or bonus without its model, and MBR with either (two ways of choosing among the same candidates)."""
    check_weights(channel is not None, lm is not None, channel_weight, length_bonus, lm_weight)
    if channel is None and lm is None:
        return None, None, None
    if mbr:
        raise ConfigError("choose one of mbr and re-ranking (both choose among the beam's hypotheses)")
    from ray_slt.models.config import Text2GlossConfig

    check_text_model(model)
    reverse = where = lm_model = lm_where = None
    if channel is not None:
        reverse, where = load_channel(channel, device)
        if isinstance(model.cfg, Text2GlossConfig) == isinstance(reverse.cfg, Text2GlossConfig):
            kind = "text -> gloss" if isinstance(model.cfg, Text2GlossConfig) else "gloss -> text"
            raise ConfigError(f"the channel model must translate the other way: {channel} is a {kind} model, like "
                              "the model it would re-rank")  # fmt: skip
    if lm is not None:
        lm_model, lm_where = load_output_lm(lm, model, device)
    reranker = ChannelReranker(model, reverse, channel_weight, length_bonus, device, lm=lm_model, lm_weight=lm_weight)
    return reranker, where, lm_where


class Reranking:
    """Mixin of the text-side predictors (gloss -> text translators, text -> gloss models): their ``channel``,
    ``channel_weight``, ``lm``, ``lm_weight``, ``length_bonus`` options (and ``mbr``, which excludes re-ranking),
    :meth:`rescore` for a decoding grid over the weights, and what :meth:`reranking_settings` reports. Call
    :meth:`_setup_reranking` once the model is loaded."""

    rescoring_options = ("channel_weight", "length_bonus", "lm_weight")
    reranker: ChannelReranker | None = None
    channel: str | None = None
    lm: str | None = None

    def _setup_reranking(self, channel: str | None, channel_weight: float | None, length_bonus: float | None,
                         mbr: bool | None, lm: str | None = None, lm_weight: float | None = None) -> None:  # fmt: skip
        self.mbr = bool(mbr)
        self.reranker, self.channel, self.lm = channel_reranker(self.model, channel, channel_weight, length_bonus,
                                                                self.mbr, self.device, lm, lm_weight)  # fmt: skip

    def rescore(self, channel_weight: float | None = None, length_bonus: float | None = None,
                lm_weight: float | None = None) -> None:  # fmt: skip
        """New re-ranking weights; the candidates and their scores decoded so far are reused."""
        if self.reranker is None:
            check_weights(False, False, channel_weight, length_bonus, lm_weight)
            return
        self.reranker.set_weights(channel_weight, length_bonus, lm_weight)

    def reranking_settings(self) -> dict[str, Any]:
        """``mbr`` and, when re-ranking, the channel model, the language model and their weights."""
        if self.reranker is None:
            return {"mbr": self.mbr}
        r = self.reranker
        return {"mbr": self.mbr, "channel": self.channel, "channel_weight": r.channel_weight, "lm": self.lm,
                "lm_weight": r.lm_weight, "length_bonus": r.length_bonus}  # fmt: skip
