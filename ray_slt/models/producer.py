"""Text/gloss -> pose producers (SignLLM, paper 5; Progressive Transformers, its backbone): an encoder over the
input tokens and an autoregressive decoder over continuous pose frames.

    f_{1:U} = E(x_{1:U})                          token encoder (embeddings * sqrt(H) + sinusoidal positions)
    y_{w+1} = D(y_w | y_{1:w-1}, f_{1:U})         causal decoder, frames in through a linear layer, cross-attention

A frame is the 150 Prompt2Sign coordinates (:mod:`ray_slt.features.prompt2sign`) plus the counter (0 at the first
frame, 1 at the last); the decoder predicts the next frame *and* its counter, and generation stops at the first
frame whose predicted counter reaches ``stop_at`` (Progressive Transformers' counter decoding), or at
``max_frames``. Training is teacher-forced: the decoder reads [start frame, y_1 .. y_{T-1}] and predicts y_1 .. y_T;
the start frame is all zeros. Two of Progressive Transformers' augmentations, ablated in SignLLM's Table 7:

- **Gaussian noise** (``noise``): during training the decoder reads its input frames with N(0, noise^2 * var)
  added, var the per-coordinate variance of the training frames, so it learns to recover from its own drift;
- **future prediction** (``future``): each step also predicts the ``future - 1`` frames after the next one (an
  extra output head per frame ahead); only the next frame is used when decoding.

Sizes (SignLLM: Base 2+2 layers, 4 heads, 512 wide, FFN 2048; Large and Super 2x and 4x as wide) come from the
config. :class:`MultiLanguageProducer` is MLSF: one independent producer per sign language in one module, a
language added or removed without touching the others' weights.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ray_slt.errors import DataError, StorageError
from ray_slt.models.layers import SequenceEncoder, sinusoidal_positions
from ray_slt.models.predictor import Predictor

FRAME = 151  # 150 coordinates + the counter


class PoseProducer(nn.Module):
    """Token ids -> pose frames. ``forward(batch)`` gives the training losses; ``generate`` the frames."""

    def __init__(self, vocab_size: int, pad_id: int = 0, hidden: int = 512, layers: int = 2, heads: int = 4,
                 ffn: int = 2048, dropout: float = 0.0, future: int = 1, noise: float = 0.0,
                 frame_dim: int = FRAME):  # fmt: skip
        super().__init__()
        if future < 1:
            raise ValueError("future counts the frames predicted per step: at least 1 (the next frame)")
        self.hidden, self.future, self.noise, self.frame_dim, self.pad_id = hidden, future, noise, frame_dim, pad_id
        self.embed = nn.Embedding(vocab_size, hidden, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=hidden**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.encoder = SequenceEncoder(hidden, layers, heads, ffn, dropout)
        self.frame_in = nn.Linear(frame_dim, hidden)
        layer = nn.TransformerDecoderLayer(hidden, heads, ffn, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(hidden))
        self.frame_out = nn.Linear(hidden, frame_dim * future)
        # per-coordinate variance of the training frames (set by fit_noise_scale), for the Gaussian-noise augmentation
        self.register_buffer("frame_var", torch.ones(frame_dim))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids) * math.sqrt(self.hidden), mask)

    def decode(self, memory: torch.Tensor, memory_mask: torch.Tensor, frames_in: torch.Tensor) -> torch.Tensor:
        """``[B, W, future, frame_dim]`` predictions after each of the ``W`` input frames."""
        w = frames_in.shape[1]
        x = self.frame_in(frames_in) + sinusoidal_positions(w, self.hidden, frames_in.device).to(frames_in.dtype)
        causal = torch.triu(torch.ones(w, w, dtype=torch.bool, device=frames_in.device), diagonal=1)
        h = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=~memory_mask)
        return self.frame_out(h).view(*h.shape[:2], self.future, self.frame_dim)

    def fit_noise_scale(self, frames: torch.Tensor, mask: torch.Tensor) -> None:
        """Record the per-coordinate variance of real training frames ``[B, T, D]`` (``mask [B, T]``)."""
        real = frames[mask.bool()]
        if len(real) > 1:
            self.frame_var.copy_(real.var(0, unbiased=False).clamp_min(1e-8))

    def teacher_inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """[start, y_1 .. y_{T-1}] (+ Gaussian noise while training)."""
        start = frames.new_zeros(frames.shape[0], 1, frames.shape[2])
        inputs = torch.cat([start, frames[:, :-1]], dim=1)
        if self.training and self.noise > 0:
            inputs = inputs + torch.randn_like(inputs) * self.noise * self.frame_var.sqrt()
        return inputs

    def predictions(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pred [B, T, future, D], target [B, T, future, D], valid [B, T, future])`` of a teacher-forced batch:
        target k of step t is frame t + k (valid while inside the sequence)."""
        frames, fmask = batch["frames"], batch["frame_mask"].bool()
        memory = self.encode(batch["ids"], batch["id_mask"].bool())
        pred = self.decode(memory, batch["id_mask"].bool(), self.teacher_inputs(frames))
        t = frames.shape[1]
        targets, valid = [], []
        for k in range(self.future):
            shifted = torch.cat([frames[:, k:], frames.new_zeros(frames.shape[0], k, frames.shape[2])], dim=1)
            ok = torch.cat([fmask[:, k:], fmask.new_zeros(fmask.shape[0], k)], dim=1)
            targets.append(shifted[:, :t])
            valid.append(ok[:, :t])
        return pred, torch.stack(targets, 2), torch.stack(valid, 2)

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, id_mask: torch.Tensor, max_frames: int = 300,
                 stop_at: float = 1.0) -> list[torch.Tensor]:  # fmt: skip
        """Frames ``[T_b, D]`` per input, each up to and including the first frame whose counter (the last value)
        reaches ``stop_at``, else ``max_frames`` frames. Call ``eval()`` first."""
        memory = self.encode(ids, id_mask.bool())
        b = ids.shape[0]
        frames = memory.new_zeros(b, 1, self.frame_dim)
        done = torch.zeros(b, dtype=torch.bool, device=ids.device)
        lengths = torch.full((b,), max_frames, dtype=torch.long, device=ids.device)
        for step in range(max_frames):
            nxt = self.decode(memory, id_mask.bool(), frames)[:, -1, 0]
            frames = torch.cat([frames, nxt[:, None]], dim=1)
            stop = (nxt[:, -1] >= stop_at) & ~done
            lengths[stop] = step + 1
            done |= stop
            if done.all():
                break
        return [frames[i, 1 : 1 + int(lengths[i])] for i in range(b)]


def _weights(pred: torch.Tensor, valid: torch.Tensor, channels: torch.Tensor | None) -> torch.Tensor:
    weight = valid[..., None].to(pred.dtype).expand_as(pred)
    return weight if channels is None else weight * channels.to(pred.dtype)


def mse_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    channels: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over every valid predicted value (frames x future x coordinates); ``channels`` [D]:
    optional per-value weights (a weighted mean); ``samples`` [B]: optional per-sample weights (importance
    sampling's), multiplying each sample's squared errors while the normaliser stays the unweighted count (so
    weights below 1 shrink the loss, as prioritised replay's corrected updates do)."""
    weight = _weights(pred, valid, channels)
    scaled = weight if samples is None else weight * samples.to(pred.dtype)[:, None, None, None]
    return ((pred - target) ** 2 * scaled).sum() / weight.sum().clamp_min(1e-12)


def rl_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    channels: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
) -> torch.Tensor:
    """SignLLM's "RL loss" as read (SPEC C.5 item 2): its Eq. 3 makes the return of the reward r = -MSE the sum
    of per-step MSEs, so the loss is each sequence's MSE *summed over its time steps* (the per-frame MSE over
    coordinates and future offsets), averaged over the batch. It differs from :func:`mse_loss` only in weighting
    long sequences by their length. ``samples`` [B]: optional per-sample weights on each sequence's sum."""
    weight = _weights(pred, valid, channels)
    per_frame = ((pred - target) ** 2 * weight).sum((-1, -2)) / weight.sum((-1, -2)).clamp_min(1e-12)  # [B, T]
    per_seq = per_frame.sum(1)
    return (per_seq if samples is None else per_seq * samples.to(pred.dtype)).mean()


def per_sample_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Each sequence's MSE ``[B]`` (what the priority channel ranks samples by)."""
    weight = valid[..., None].to(pred.dtype).expand_as(pred)
    return ((pred - target) ** 2 * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1)


class MultiLanguageProducer(nn.Module):
    """MLSF: one independent :class:`PoseProducer` per sign language (no shared parameter), chosen at input."""

    def __init__(self, producers: Mapping[str, PoseProducer] | None = None):
        super().__init__()
        self.producers = nn.ModuleDict(dict(producers or {}))

    @property
    def languages(self) -> list[str]:
        return sorted(self.producers)

    def add(self, language: str, producer: PoseProducer) -> None:
        if language in self.producers:
            raise ValueError(f"{language!r} already has a producer (remove it first)")
        self.producers[language] = producer

    def remove(self, language: str) -> None:
        del self.producers[self._known(language)]

    def producer(self, language: str) -> PoseProducer:
        return self.producers[self._known(language)]

    def _known(self, language: str) -> str:
        if language not in self.producers:
            raise KeyError(f"no producer for sign language {language!r}; known: {', '.join(self.languages) or 'none'}")
        return language


# -- a producer with its vocabulary: what the produce stage trains, saves and serves ----------------------------
FORMAT, VERSION, META = "ray_slt.producer", 1, "producer.json"


def input_text(sample: Mapping[str, Any], which: str) -> str:
    """The words a producer reads of a sample: its gloss sequence, or its sentence's lower-cased words."""
    value = sample.get(which)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"sample {sample.get('sample_id')!r} has no {which} for the producer to read")
    return " ".join(value.split()) if which == "gloss" else " ".join(value.lower().split())


def producer_words(sample: Mapping[str, Any], cfg) -> str:
    """What a producer with config ``cfg`` reads of a sample: :func:`input_text`, and for the shared
    multilingual producer (``tag: auto``) in the sample's sign language: its glosses tagged (``GSL_WETTER``),
    its sentence after the target token (``<2GSL> ...``)."""
    from ray_slt.models.langgloss import add_tag, sample_language, tag_of, target_token

    words = input_text(sample, cfg.input)
    if cfg.tag != "auto":
        return words
    tag = tag_of(sample_language(sample, cfg.languages), cfg.tags)
    return add_tag(words, tag) if cfg.input == "gloss" else f"{target_token(tag)} {words}"


def reference_frames(sample: Mapping[str, Any], percentile: float = 90.0) -> np.ndarray:
    """The Prompt2Sign frames ``[T, 151]`` of a feature-store sample: its 77-point keypoints (normalised) -> the
    50 joints -> lifted to 3D (Algorithm 1) -> 150 values + the counter."""
    from ray_slt.features import prompt2sign as p2s

    xy, valid = p2s.from_layout77(sample["keypoints"], sample["keypoints_valid"])
    try:
        joints = p2s.lift(xy, valid, percentile=percentile)
    except DataError as e:
        raise DataError(f"sample {sample.get('sample_id')!r}: {e}") from None
    return np.concatenate([joints.reshape(len(joints), -1), p2s.counter(len(joints))[:, None]], axis=1)


def model_frames(frames: np.ndarray, step: int = 1, limit: int | None = None) -> np.ndarray:
    """The frames a producer learns and is scored against: every ``step``-th frame (the first kept), then at most
    ``limit`` of them taken evenly (first and last kept); the counter recomputed over what is kept (0 .. 1)."""
    out = np.array(frames[::step], dtype=np.float64)
    if limit is not None and len(out) > limit:
        out = out[np.round(np.linspace(0, len(out) - 1, limit)).astype(int)]
    out[:, -1] = np.linspace(0.0, 1.0, len(out)) if len(out) > 1 else 1.0
    return out


class Producer(nn.Module):
    """A :class:`PoseProducer` with its config and word tokenizer: ``collator()``, ``forward(batch)`` (the
    configured loss, and the per-sample losses in ``.per_sample``), ``produce(batch)`` (frames per sample)."""

    def __init__(self, cfg, tokenizer, net: PoseProducer):
        super().__init__()
        self.cfg, self.tokenizer, self.net = cfg, tokenizer, net

    def collator(self):
        return ProducerCollator(self.cfg, self.tokenizer)

    def forward(self, batch: Mapping[str, Any]):
        pred, target, valid = self.net.predictions(batch)
        channels = torch.ones(pred.shape[-1], device=pred.device)
        channels[-1] = self.cfg.counter_weight
        fn = rl_loss if self.cfg.loss == "rl" else mse_loss
        loss = fn(pred, target, valid, channels, batch.get("sample_weights"))
        return LossOutput(loss, per_sample_loss(pred, target, valid).detach())

    @torch.no_grad()
    def produce(self, batch: Mapping[str, Any]) -> list[np.ndarray]:
        frames = self.net.generate(batch["ids"], batch["id_mask"], self.cfg.max_frames, self.cfg.stop_at)
        return [f.float().cpu().numpy() for f in frames]


@dataclass
class LossOutput:
    loss: torch.Tensor
    per_sample: torch.Tensor


class ProducerCollator:
    """Samples -> ``ids``/``id_mask`` (the input words) and, when they carry keypoints, ``frames``/``frame_mask``
    (their lifted reference frames, at most ``max_frames``), plus ``sample_ids``."""

    def __init__(self, cfg, tokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise DataError("an empty batch")
        tok = self.tokenizer
        ids = [tok(producer_words(s, self.cfg), add_special_tokens=False)["input_ids"][: self.cfg.max_tokens]
               for s in samples]  # fmt: skip
        ids = [i or [tok.unk_token_id] for i in ids]
        width = max(len(i) for i in ids)
        out: dict[str, Any] = {
            "ids": torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids]),
            "id_mask": torch.tensor([[True] * len(i) + [False] * (width - len(i)) for i in ids]),
            "sample_ids": [str(s.get("sample_id", k)) for k, s in enumerate(samples)],
        }
        if all(isinstance(s.get("text"), str) for s in samples):  # what back-translation is scored against
            out["texts"] = [s["text"] for s in samples]
        if all(s.get("keypoints") is not None for s in samples):
            c = self.cfg
            frames = [model_frames(reference_frames(s, c.percentile), c.frame_step, c.max_frames) for s in samples]
            t = max(len(f) for f in frames)
            padded = np.zeros((len(frames), t, FRAME), np.float32)
            mask = np.zeros((len(frames), t), bool)
            for k, f in enumerate(frames):
                padded[k, : len(f)], mask[k, : len(f)] = f, True
            out["frames"], out["frame_mask"] = torch.from_numpy(padded), torch.from_numpy(mask)
        return out


def build_producer(cfg, texts: Sequence[str], seed: int = 0) -> Producer:
    """A fresh producer: a word-level vocabulary of the training inputs ``texts`` and a random network."""
    from ray_slt.models.tiny import train_word_tokenizer

    tokenizer = train_word_tokenizer(texts, cfg.vocab_min_count)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PoseProducer(len(tokenizer), tokenizer.pad_token_id, dropout=cfg.dropout, future=cfg.future,
                           noise=cfg.noise, **cfg.dims())  # fmt: skip
    return Producer(cfg, tokenizer, net)


def producer_input(uri: str) -> str:
    """What the saved producer at ``uri`` reads (``gloss`` or ``text``), from its JSON only."""
    from ray_slt import storage

    return str(json.loads(storage.read_text(storage.join(uri, META)))["config"].get("input", "gloss"))


def save_producer(model: Producer, uri: str) -> None:
    """``producer.json`` (format, config), ``modules.safetensors``, ``tokenizer/``, then the manifest (kind
    ``producer``)."""
    from safetensors.torch import save_file

    from ray_slt.models.checkpoint import publish

    with tempfile.TemporaryDirectory(prefix="ray_slt_producer_") as d:
        state = {k: v.detach().contiguous().cpu() for k, v in model.net.state_dict().items()}
        save_file(state, os.path.join(d, "modules.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(os.path.join(d, "tokenizer"))
        with open(os.path.join(d, META), "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "version": VERSION, "config": model.cfg.model_dump(mode="json")}, f, indent=1)
        publish(d, uri, kind="producer")


def load_producer(uri: str, trainable: bool = False) -> Producer:
    """A producer saved by :func:`save_producer` (safetensors and JSON only; eval mode unless ``trainable``)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from ray_slt.models.checkpoint import fetched
    from ray_slt.models.producer_config import ProducerConfig

    with fetched(uri) as d:
        with open(os.path.join(d, META), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StorageError(f"{uri}: not a {FORMAT} v{VERSION} checkpoint")
        cfg = ProducerConfig.model_validate(meta["config"])
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(d, "tokenizer"), trust_remote_code=False)
        net = PoseProducer(len(tokenizer), tokenizer.pad_token_id, dropout=cfg.dropout, future=cfg.future,
                           noise=cfg.noise, **cfg.dims())  # fmt: skip
        state = load_file(os.path.join(d, "modules.safetensors"))
    if set(state) != set(net.state_dict()):
        raise StorageError(f"{uri}: modules.safetensors does not match the config")
    net.load_state_dict(state)
    model = Producer(cfg, tokenizer, net)
    return model.train() if trainable else model.eval()


class ProducerPredictor(Predictor):
    """A saved producer (model kind ``producer``): samples with a gloss (or text) in, ``{"frames": [[151]...]}``
    out (Prompt2Sign's 50 joints in 3D + the counter per frame, shoulder-width units)."""

    kind = "producer"
    predicts = "pose"
    route = "produce"
    protocol = "production"

    def __init__(self, ref, device: str = "cpu", model_id: str | None = None):
        super().__init__(ref, device, model_id)
        self.model = load_producer(ref.model).to(self.device).eval()
        self.inputs = self.model.cfg.input
        self.collate = self.model.collator()

    @classmethod
    def requirements(cls, ref) -> dict[str, Any]:
        return {"inputs": producer_input(ref.model), "needs_visual": False}

    def info(self) -> dict[str, Any]:
        """With the shared multilingual producer, the languages it produces (a server refuses another with a
        400, and the web tab offers them)."""
        c = self.model.cfg
        extra = {"languages": {code: {"spoken": []} for code in c.languages}} if c.tag == "auto" else {}
        return {**super().info(), **extra}

    def settings(self) -> dict[str, Any]:
        c = self.model.cfg
        return {"max_frames": c.max_frames, "frame_step": c.frame_step, "stop_at": c.stop_at, "input": c.input,
                "languages": list(c.languages)}  # fmt: skip

    def protocol_defaults(self) -> dict[str, Any]:
        """References are lifted and sampled in time as the model's training frames were."""
        c = self.model.cfg
        return {"percentile": c.percentile, "frame_step": c.frame_step, "max_frames": c.max_frames}

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Per sample: ``frames`` (``[T, 151]``), ``num_frames``, ``fps`` (``pose_fps / frame_step``),
        ``pose_b64`` (the production as a base64 ``.pose`` file, :func:`ray_slt.features.prompt2sign.to_pose`) and
        ``pose`` (what the web page draws: 2D points on the ``.pose`` canvas, its limbs and part colours)."""
        from ray_slt.models.batch import to_device

        if not samples:
            return []
        words = [{"sample_id": s.get("sample_id"), self.inputs: s.get(self.inputs),
                  "sign_language": s.get("sign_language")} for s in samples]  # fmt: skip
        batch = to_device(self.collate(words), self.device)
        return [self._output(f) for f in self.model.produce(batch)]

    def _output(self, frames: np.ndarray) -> dict[str, Any]:
        return production_output(frames, self.model.cfg.pose_fps / self.model.cfg.frame_step)


def production_output(frames: np.ndarray, fps: float) -> dict[str, Any]:
    """What a producer answers for frames ``[T, 151]`` at ``fps``: ``frames``, ``num_frames``, ``fps``,
    ``pose_b64`` (the production as a base64 ``.pose`` file, :func:`ray_slt.features.prompt2sign.to_pose`) and
    ``pose`` (what the web page draws: 2D points on the ``.pose`` canvas, its limbs and part colours)."""
    import base64

    from ray_slt.data.poses import pose_bytes
    from ray_slt.features import prompt2sign as p2s

    joints = frames[:, :150].reshape(len(frames), p2s.NUM_JOINTS, 3)
    pose = p2s.to_pose(joints, fps=fps)
    canvas = np.asarray(pose.body.data)[:, 0, :, :2]
    drawable = {"width": 512, "height": 512, "fps": fps, "frames": list(range(len(frames))),
                "points": canvas.round(1).reshape(len(frames), -1).tolist(), "edges": [list(b) for b in p2s.BONES],
                "parts": [[0, p2s.LEFT_HAND0, "#f2c14e"], [p2s.LEFT_HAND0, p2s.RIGHT_HAND0, "#4ea8de"],
                          [p2s.RIGHT_HAND0, p2s.NUM_JOINTS, "#f25f5c"]], "produced": True}  # fmt: skip
    return {"frames": frames.round(5).tolist(), "num_frames": len(frames), "fps": fps,
            "pose_b64": base64.b64encode(pose_bytes(pose)).decode("ascii"), "pose": drawable}  # fmt: skip
