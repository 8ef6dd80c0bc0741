"""Helpers of the VLM tests (importable: ``from vlm_helpers import ...``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

FAMILIES = ("smolvlm", "qwen2_5_vl", "internvl")

TEXTS = [
    "und nun die wettervorhersage für morgen freitag den fünfzehnten oktober",
    "am freitag ist es in der nähe der küsten und ganz im süden teilweise stark bewölkt",
    "Hi!",
    "I'm having fun.",
    "Let me show you what good pike position is.",
    "house",
    "different",
]


def tiny_cfg(family: str, path: str | Path, **extra):
    """A VLMConfig of a tiny model materialised at ``path`` (few frames, small decode size)."""
    from ray_slt.models.vlm.config import VLMConfig

    data = {"model": f"tiny:{family}", "tiny": {"path": str(path)}, "frames": {"t_max": 4}, "decode": {"max_side": 256}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return VLMConfig.model_validate(data)


def random_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def sample(
    model, n_frames: int, text: str | None, seed: int = 0, sign_language: str = "gsg", cached: bool = False
) -> dict:
    """A collate-ready sample from random frames (pixels, or the tower's output when ``cached``)."""
    from ray_slt.models.vlm.model import prepare_video

    pixels, layout = prepare_video(
        model.family, model.frame_spec, random_frames(n_frames, seed=seed), np.arange(n_frames) * 2, 25.0, 2 * n_frames
    )
    s = {
        "sample_id": f"s{seed}",
        "text": text,
        "sign_language": sign_language,
        "layout": layout,
        "pixels": pixels,
        "vision": None,
    }
    if cached:
        s["vision"], s["pixels"] = model.vision_features(pixels), None
    return s


def native_inputs(model, samples: list[dict], batch: dict) -> dict:
    """The same batch in transformers' own input form (pixel values through the model's own vision path)."""
    fam = model.family.name
    out = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
    if fam == "smolvlm":  # [B, max frames, 3, S, S]; SmolVLM drops all-zero padding frames
        px = [s["pixels"]["pixel_values"] for s in samples]
        n = max(len(p) for p in px)
        out["pixel_values"] = torch.stack([torch.cat([p, p.new_zeros(n - len(p), *p.shape[1:])]) for p in px])
    elif fam == "internvl":
        out["pixel_values"] = torch.cat([s["pixels"]["pixel_values"] for s in samples])
    else:
        out["pixel_values_videos"] = torch.cat([s["pixels"]["pixel_values_videos"] for s in samples])
        out["video_grid_thw"] = torch.cat([s["pixels"]["video_grid_thw"] for s in samples])
        out["second_per_grid_ts"] = torch.tensor([s["layout"].second_per_grid for s in samples])
        video_id = model.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        out["mm_token_type_ids"] = (batch["input_ids"] == video_id).to(torch.int32) * 2
    return out


def real_rows(shared: Path) -> list[dict]:
    """Manifest rows of real clips from ../shared/data: How2Sign (ASL -> English), PHOENIX-2014T excerpts
    (DGS -> German), the SLP site's ASL signs and an AUTSL clip, in train/dev/test splits."""
    from ray_slt.data.manifest import make_row

    rows = []
    with (shared / "how2sign" / "clips.csv").open(encoding="utf-8", newline="") as f:
        clips = list(csv.DictReader(f))
    for i, r in enumerate(clips):
        split = "train" if i < 3 else ("dev" if i == 3 else "test")
        rows.append(
            make_row(
                sample_id=f"how2sign.{r['SENTENCE_NAME']}",
                dataset="how2sign",
                split=split,
                sign_language="ase",
                spoken_language="en",
                video_uri=str(shared / "how2sign" / r["file"]),
                text=r["SENTENCE"],
            )
        )
    phoenix = shared / "phoenix14t" / "video_excerpts"
    rows.append(
        make_row(
            sample_id="phoenix14t.excerpt_a",
            dataset="phoenix14t",
            split="train",
            sign_language="gsg",
            spoken_language="de",
            video_uri=str(phoenix / "excerpt_a.mp4"),
            fps=25.0,
            text="und nun die wettervorhersage für morgen",
        )
    )
    rows.append(
        make_row(
            sample_id="phoenix14t.excerpt_b",
            dataset="phoenix14t",
            split="dev",
            sign_language="gsg",
            spoken_language="de",
            video_uri=str(phoenix / "excerpt_b.mp4"),
            fps=25.0,
            text="am freitag regnet es im norden",
        )
    )
    for name, split in (("house", "train"), ("different", "test")):
        rows.append(
            make_row(
                sample_id=f"slp_site.{name}",
                dataset="slp_site",
                split=split,
                sign_language="ase",
                spoken_language="en",
                video_uri=str(shared / "slp_site" / f"asl_{name}.mp4"),
                text=name,
            )
        )
    rows.append(
        make_row(
            sample_id="autsl.signer0_sample1000",
            dataset="autsl",
            split="train",
            sign_language="tsm",
            spoken_language="en",
            video_uri=str(shared / "autsl" / "signer0_sample1000_color.mp4"),
            text="request",
        )
    )
    return rows


# ------------------------------------------------------------------------------- rendered synthetic sign videos
SIGN_WORDS = {
    "APPLE": "apple",
    "BOOK": "book",
    "HOUSE": "house",
    "CAR": "car",
    "DOG": "dog",
    "CAT": "cat",
    "WATER": "water",
    "TEACHER": "teacher",
}
_ARMS = ((5, 7), (7, 9), (6, 8), (8, 10), (5, 6))  # COCO-WholeBody shoulders, elbows, wrists


def render_skeleton(kp: np.ndarray, conf: np.ndarray, size: int = 32) -> np.ndarray:
    """RGB frames [T, size, size, 3] drawing a COCO-WholeBody pose (pixels) around the signer: arms white, face a
    blue disc, left/right hand red/green discs; the signing space (4 shoulder widths) fills the frame."""
    from PIL import Image, ImageDraw

    centre = (kp[:, 5] + kp[:, 6]).mean(0) / 2
    width = float(np.linalg.norm(kp[:, 5] - kp[:, 6], axis=-1).mean())

    def px(p):
        return ((p[0] - centre[0]) / width / 4 + 0.5) * size, ((p[1] - centre[1]) / width / 4 + 0.55) * size

    frames = []
    for t in range(len(kp)):
        im = Image.new("RGB", (size, size))
        d = ImageDraw.Draw(im)
        for a, b in _ARMS:
            if conf[t, a] > 0 and conf[t, b] > 0:
                d.line([px(kp[t, a]), px(kp[t, b])], fill=(255, 255, 255), width=2)
        face = kp[t, 23:91][conf[t, 23:91] > 0]
        if len(face):
            x, y = px(face.mean(0))
            d.ellipse([x - 3, y - 4, x + 3, y + 4], fill=(64, 64, 255))
        for part, colour in ((slice(91, 112), (255, 64, 64)), (slice(112, 133), (64, 255, 64))):
            pts = kp[t, part][conf[t, part] > 0]
            if len(pts):
                x, y = px(pts.mean(0))
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        frames.append(np.asarray(im))
    return np.stack(frames)


def sign_videos(per_sign: int, seed: int) -> list[tuple[np.ndarray, str]]:
    """Isolated made-up signs of the synthetic corpus (ray_slt.data.synthetic: COCO-WholeBody poses of random
    signers) drawn as videos, each with its English word."""
    from ray_slt.data import synthetic

    inventory = synthetic.build_inventory(0)
    signers = synthetic.make_signers(6, 0)
    rng = np.random.default_rng(seed)
    out = []
    for gloss, word in SIGN_WORDS.items():
        for _ in range(per_sign):
            signer = signers[int(rng.integers(len(signers)))]
            kp, conf = synthetic.render_sentence([gloss], inventory, signer, rng)
            out.append((render_skeleton(kp, conf), word))
    return out
