"""Noisy-channel re-ranking of a beam's n-best list with a model of the reverse direction and a language model of the
output side (Yee, Ng & Auli 2019; Ng et al. 2019), for the text-side models: a gloss -> text translator re-ranked
with a text -> gloss model and a language model of the sentences, a text -> gloss model re-ranked with a
gloss -> text translator and a language model of the glosses.

Beam search ranks a hypothesis ``y`` of the source ``x`` by the direct model alone, ``log p(y | x)``, which
favours fluent outputs that leave part of the source untranslated. The reverse ("channel") model asks how well
``y`` explains ``x``; the language model how likely ``y`` is as a text of its side at all (the prior that, with the
channel, makes Bayes' ``p(x | y) p(y)``); a length bonus works against the direct model's preference for short
outputs::

    score(y) = log p(y | x) + eta * sum_j log p_j(y | x) + lambda * log p(x | y) + nu * log p(y) + mu * |y|

where the ``p_j`` are **peers**: other models of the same direction (another seed, prompt or size), whose beams
add their candidates to the pool and whose scores join the direct model's: an n-best ensemble, which gets most of
what ensembling the models inside beam search gets, without a joint search.

Readings chosen here:
- the candidates are the beam's ``num_beams`` finished hypotheses (``num_return_sequences = num_beams``), so the
  beam width and its length penalty still decide which candidates there are; with peers, each peer's beam (the
  same decoding options) adds its hypotheses, the direct model's first, a duplicate kept once;
- ``log p(y | x)`` and ``log p(x | y)`` are summed token log-probabilities (``</s>`` included), each model
  teacher-forced on the text it is given, the direct model re-reading its own output (a BPE string may tokenise
  back slightly differently from the ids beam search produced; the re-read score is the one used), each peer
  reading every candidate in its own tokenisation;
- ``log p(y)`` is the language model's summed log-probability of ``y`` (``</s>`` included,
  :mod:`ray_slt.models.textlm`), in its own tokenisation; its training data are the same corpus's training
  targets (all this corpus has; the papers' LMs read far more text), so its weight is chosen on dev like the
  others and may well be small or negative;
- ``|y|`` counts the direct model's target tokens (``</s>`` included): BPE pieces for a text model, words for a
  gloss model; ``mu`` is per token;
- the channel, the language model and the peers are each optional (without any there is nothing to re-rank
  with); ``eta`` weighs the peers' summed scores; ``eta``, ``lambda``, ``nu`` and ``mu`` are decoding options,
  chosen on dev like the beam width (``ray-slt eval --grid channel_weight=0,0.5,1 --grid lm_weight=0,0.25 --grid
  length_bonus=0,0.5 --channel RUN --lm RUN``); ``eta = lambda = nu = mu = 0`` keeps the candidate the direct
  model scores highest without beam search's length normalisation;
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
                 lm_weight: float = 0.0, peer: Sequence[float] | None = None,
                 peer_weight: float = 0.0) -> int:  # fmt: skip
    """The index of ``argmax_i direct[i] + peer_weight * peer[i] + channel_weight * channel[i] + lm_weight * lm[i]
    + length_bonus * lengths[i]`` over the ``valid`` candidates (all by default; the first candidate when none
    is), ties to the earliest. ``lm`` None: no language model term; ``peer`` (the peers' summed scores) None: no
    peer term."""
    n = len(direct)
    lm = [0.0] * n if lm is None else list(lm)
    peer = [0.0] * n if peer is None else list(peer)
    if n == 0 or len(channel) != n or len(lengths) != n or len(lm) != n or len(peer) != n:
        raise ValueError("re-ranking needs one direct score, peer score, channel score, LM score and length per "
                         "candidate")  # fmt: skip
    valid = [True] * n if valid is None else list(valid)
    best, best_score = 0, float("-inf")
    for i in range(n):
        if not valid[i]:
            continue
        score = (
            direct[i]
            + peer_weight * peer[i]
            + channel_weight * channel[i]
            + lm_weight * lm[i]
            + length_bonus * lengths[i]
        )
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


def load_peer(uri: str, direct, device):
    """A peer of ``direct`` at ``uri`` (a run, checkpoint or model directory): a text-side model of the same
    direction, in eval mode on ``device``; ``(model, where it was resolved to)``."""
    from ray_slt.models.config import Text2GlossConfig

    model, where = load_channel(uri, device)  # a text -> gloss model or a gloss -> text translator
    if isinstance(model.cfg, Text2GlossConfig) != isinstance(direct.cfg, Text2GlossConfig):
        kind = "text -> gloss" if isinstance(direct.cfg, Text2GlossConfig) else "gloss -> text"
        raise ConfigError(f"a peer must translate the same way as the model it joins ({kind}): {uri} translates "
                          "the other way (give it as the channel instead)")  # fmt: skip
    return model, where


def peer_nbest(peer, sources: Sequence[str], samples: Sequence[Mapping[str, Any]], decoding: Mapping[str, Any],
               device) -> list[list[str]]:  # fmt: skip
    """``peer``'s beam hypotheses for each source (``decoding``: ``num_beams``, ``max_new_tokens``,
    ``length_penalty``), in the plain form the reranker compares (text, or glosses without their tag)."""
    from ray_slt.models.batch import to_device
    from ray_slt.models.config import Text2GlossConfig
    from ray_slt.models.langgloss import strip_tag
    from ray_slt.models.text2gloss import row_tag, source_text

    if isinstance(peer.cfg, Text2GlossConfig):
        tags = [row_tag(peer.cfg, s) for s in samples]
        rows = [{"gloss": source_text(peer.cfg, src, s.get("sample_id"), s.get("spoken_language"), tag)}
                for src, s, tag in zip(sources, samples, tags)]  # fmt: skip
    else:
        tags = [None] * len(sources)
        rows = [{"sample_id": str(s.get("sample_id", "")), "gloss": src} for src, s in zip(sources, samples)]
    out: list[list[str]] = []
    collate = peer.collator()
    for i in range(0, len(rows), SCORE_BATCH):
        batch = to_device(collate(rows[i : i + SCORE_BATCH]), device)
        out += peer.generate_nbest(batch, **decoding)
    return [[strip_tag(c, tag) for c in cands] for cands, tag in zip(out, tags)]


class ChannelReranker:
    """Re-ranks n-best lists of ``direct`` (the model that wrote them) with ``channel`` (the reverse direction),
    ``lm`` (a language model of the output side) and ``peers`` (models of the same direction, whose beams add
    candidates with ``decoding``, the direct model's decoding options); each may be missing (its term is left
    out)."""

    def __init__(self, direct, channel=None, channel_weight: float | None = None, length_bonus: float | None = None,
                 device="cpu", lm=None, lm_weight: float | None = None, peers: Sequence[Any] = (),
                 peer_weight: float | None = None, decoding: Mapping[str, Any] | None = None):  # fmt: skip
        if channel is None and lm is None and not peers:
            raise ConfigError("re-ranking needs a channel model, a language model or a peer")
        self.direct = direct
        self.channel = channel
        self.lm = lm
        self.peers = list(peers)
        self.decoding = {k: v for k, v in (decoding or {}).items()
                         if k in ("num_beams", "max_new_tokens", "length_penalty")}  # fmt: skip
        self.set_weights(channel_weight, length_bonus, lm_weight, peer_weight)
        self.device = device
        # what does not depend on the weights, kept so that a grid over them decodes and scores once
        self._nbest: dict[Any, list[list[str]]] = {}
        self._peer_nbest: dict[tuple[str, str], list[str]] = {}
        self._scores: dict[tuple[str, str, str], tuple[float, float, int, float, float]] = {}

    def set_weights(self, channel_weight: float | None = None, length_bonus: float | None = None,
                    lm_weight: float | None = None, peer_weight: float | None = None) -> None:  # fmt: skip
        """``lambda`` (None: 1.0 with a channel), ``mu`` (None: 0.0), ``nu`` (None: 1.0 with a language model) and
        ``eta`` (None: 1.0 with peers) of the score; a weight of a model the reranker does not have is refused."""
        check_weights(self.channel is not None, self.lm is not None, channel_weight, None, lm_weight,
                      bool(self.peers), peer_weight)  # fmt: skip
        default_channel, default_lm = float(self.channel is not None), float(self.lm is not None)
        self.channel_weight = default_channel if channel_weight is None else float(channel_weight)
        self.length_bonus = 0.0 if length_bonus is None else float(length_bonus)
        self.lm_weight = default_lm if lm_weight is None else float(lm_weight)
        self.peer_weight = float(bool(self.peers)) if peer_weight is None else float(peer_weight)

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
        if self.peers:  # the pool: the direct model's candidates, then each peer's new ones
            missing = [k for k, key in enumerate(keys) if key not in self._peer_nbest]
            if missing:
                found = [peer_nbest(p, [sources[k] for k in missing], [samples[k] for k in missing], self.decoding,
                                    self.device) for p in self.peers]  # fmt: skip
                for j, k in enumerate(missing):
                    self._peer_nbest[keys[k]] = [c for lists in found for c in lists[j]]
            nbest = [list(dict.fromkeys([c.strip() for c in cands] + self._peer_nbest[key]))
                     for cands, key in zip(nbest, keys)]  # fmt: skip
        todo = sorted({(k, c.strip()) for k, cands in enumerate(nbest) for c in cands
                       if c.strip() and (*keys[k], c.strip()) not in self._scores})  # fmt: skip
        direct_rows = [pair_row(self.direct, sources[k], c, samples[k]) for k, c in todo]
        d_lp, lengths = pair_logprobs(self.direct, direct_rows, self.device)
        p_lp = [0.0] * len(todo)
        for peer in self.peers:
            lp, _ = pair_logprobs(peer, [pair_row(peer, sources[k], c, samples[k]) for k, c in todo], self.device)
            p_lp = [a + b for a, b in zip(p_lp, lp)]
        c_lp = [0.0] * len(todo)
        if self.channel is not None:
            channel_rows = [pair_row(self.channel, c, sources[k], samples[k]) for k, c in todo]
            c_lp, _ = pair_logprobs(self.channel, channel_rows, self.device)
        l_lp = [0.0] * len(todo)
        if self.lm is not None and todo:
            l_lp, _ = self.lm.score([c for _, c in todo], self.device)
        for (k, c), d, ch, n, lm, pe in zip(todo, d_lp, c_lp, lengths, l_lp, p_lp):
            self._scores[(*keys[k], c)] = (d, ch, n, lm, pe)
        out = []
        for key, cands in zip(keys, nbest):
            ok = [bool(c.strip()) for c in cands]
            d, ch, n, lm, pe = zip(*(self._scores[(*key, c.strip())] if valid else (0.0, 0.0, 0, 0.0, 0.0)
                                     for c, valid in zip(cands, ok)))  # fmt: skip
            best = rerank_index(d, ch, n, self.channel_weight, self.length_bonus, ok, lm=lm, lm_weight=self.lm_weight,
                                peer=pe, peer_weight=self.peer_weight)  # fmt: skip
            out.append(cands[best].strip())
        return out


def check_weights(has_channel: bool, has_lm: bool, channel_weight: float | None = None,
                  length_bonus: float | None = None, lm_weight: float | None = None, has_peers: bool = False,
                  peer_weight: float | None = None) -> None:  # fmt: skip
    """Refuse a re-ranking weight (not None) whose model is missing, with what to give."""
    if channel_weight is not None and not has_channel:
        raise ConfigError("channel_weight weighs a channel model's score: give channel too")
    if lm_weight is not None and not has_lm:
        raise ConfigError("lm_weight weighs a language model's score: give lm too")
    if peer_weight is not None and not has_peers:
        raise ConfigError("peer_weight weighs the peers' scores: give peer too")
    if length_bonus is not None and not (has_channel or has_lm or has_peers):
        raise ConfigError("length_bonus re-ranks with a channel model, a language model or a peer: give channel, "
                          "lm or peer too")  # fmt: skip


def channel_reranker(model, channel: str | None, channel_weight: float | None, length_bonus: float | None,
                     mbr: bool, device, lm: str | None = None, lm_weight: float | None = None,
                     peer: str | Sequence[str] | None = None, peer_weight: float | None = None,
                     decoding: Mapping[str, Any] | None = None
                     ) -> tuple[ChannelReranker | None, dict[str, Any]]:  # fmt: skip
    """The predictors' re-ranking options as a :class:`~ray_slt.models.rerank.ChannelReranker` (None without a
    channel, a language model or a peer) and where the channel, the language model and the peers were resolved to
    (``{"channel", "lm", "peer"}``); refuses a weight or bonus without its model, and MBR with any (two ways of
    choosing among the same candidates). ``decoding``: the direct model's, which the peers' beams use too."""
    peers = [peer] if isinstance(peer, str) else list(peer or [])
    check_weights(channel is not None, lm is not None, channel_weight, length_bonus, lm_weight, bool(peers),
                  peer_weight)  # fmt: skip
    resolved: dict[str, Any] = {"channel": None, "lm": None, "peer": None}
    if channel is None and lm is None and not peers:
        return None, resolved
    if mbr:
        raise ConfigError("choose one of mbr and re-ranking (both choose among the beam's hypotheses)")
    from ray_slt.models.config import Text2GlossConfig

    check_text_model(model)
    reverse = lm_model = None
    if channel is not None:
        reverse, resolved["channel"] = load_channel(channel, device)
        if isinstance(model.cfg, Text2GlossConfig) == isinstance(reverse.cfg, Text2GlossConfig):
            kind = "text -> gloss" if isinstance(model.cfg, Text2GlossConfig) else "gloss -> text"
            raise ConfigError(f"the channel model must translate the other way: {channel} is a {kind} model, like "
                              "the model it would re-rank")  # fmt: skip
    if lm is not None:
        lm_model, resolved["lm"] = load_output_lm(lm, model, device)
    loaded = [load_peer(uri, model, device) for uri in peers]
    if loaded:
        resolved["peer"] = [where for _, where in loaded]
    reranker = ChannelReranker(model, reverse, channel_weight, length_bonus, device, lm=lm_model, lm_weight=lm_weight,
                               peers=[m for m, _ in loaded], peer_weight=peer_weight, decoding=decoding)  # fmt: skip
    return reranker, resolved


class Reranking:
    """Mixin of the text-side predictors (gloss -> text translators, text -> gloss models): their ``channel``,
    ``channel_weight``, ``lm``, ``lm_weight``, ``peer``, ``peer_weight``, ``length_bonus`` options (and ``mbr``,
    which excludes re-ranking), :meth:`rescore` for a decoding grid over the weights, and what
    :meth:`reranking_settings` reports. Call :meth:`_setup_reranking` once the model is loaded."""

    rescoring_options = ("channel_weight", "length_bonus", "lm_weight", "peer_weight")
    reranker: ChannelReranker | None = None
    channel: str | None = None
    lm: str | None = None
    peer: list[str] | None = None

    def _setup_reranking(self, channel: str | None, channel_weight: float | None, length_bonus: float | None,
                         mbr: bool | None, lm: str | None = None, lm_weight: float | None = None,
                         peer: str | Sequence[str] | None = None, peer_weight: float | None = None,
                         decoding: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        self.mbr = bool(mbr)
        self.reranker, resolved = channel_reranker(self.model, channel, channel_weight, length_bonus, self.mbr,
                                                   self.device, lm, lm_weight, peer, peer_weight, decoding)  # fmt: skip
        self.channel, self.lm, self.peer = resolved["channel"], resolved["lm"], resolved["peer"]

    def rescore(self, channel_weight: float | None = None, length_bonus: float | None = None,
                lm_weight: float | None = None, peer_weight: float | None = None) -> None:  # fmt: skip
        """New re-ranking weights; the candidates and their scores decoded so far are reused."""
        if self.reranker is None:
            check_weights(False, False, channel_weight, length_bonus, lm_weight, False, peer_weight)
            return
        self.reranker.set_weights(channel_weight, length_bonus, lm_weight, peer_weight)

    def reranking_settings(self) -> dict[str, Any]:
        """``mbr`` and, when re-ranking, the channel model, the language model, the peers and their weights."""
        if self.reranker is None:
            return {"mbr": self.mbr}
        r = self.reranker
        return {"mbr": self.mbr, "channel": self.channel, "channel_weight": r.channel_weight, "lm": self.lm,
                "lm_weight": r.lm_weight, "peer": self.peer, "peer_weight": r.peer_weight,
                "length_bonus": r.length_bonus}  # fmt: skip
