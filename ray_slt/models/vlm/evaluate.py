"""Evaluation of a VLM translator checkpoint on a manifest split, with the shared metrics.

``evaluate_vlm(checkpoint, manifest, split)`` translates every sample of the split (greedy, at most
``max_new_tokens``; the checkpoint's settings by default: the paper's 128), reading the frozen tower's output
from the vision-feature cache where it has the sample and decoding the video otherwise, and scores the
translations with :func:`ray_slt.eval.metrics.corpus_scores` against the raw reference strings. With ``out``
it writes ``predictions.jsonl`` (sample_id, hypothesis, reference), ``hypotheses.txt``/``references.txt``
(one sentence per line, for ``ray-slt score``) and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray_slt import storage
from ray_slt.errors import DataError


def evaluate_vlm(
    checkpoint: str,
    manifest: str,
    split: str = "test",
    out: str | None = None,
    *,
    cache: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    num_beams: int | None = None,
    limit: int | None = None,
    lang: str | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Translate and score one split (see the module docstring); returns the metrics."""
    import torch

    from ray_slt.data.manifest import read_manifest
    from ray_slt.eval.metrics import corpus_scores
    from ray_slt.features.sampling import SampleError
    from ray_slt.features.vlm_cache import VisionCache
    from ray_slt.models.vlm.checkpoint import load_vlm
    from ray_slt.models.vlm.data import VideoSource, sample_from_payload
    from ray_slt.models.vlm.model import prepare_video

    started = time.time()
    model = load_vlm(checkpoint, dtype=dtype)
    if torch.cuda.is_available():
        model.to("cuda")
    rows = sorted(
        (r for r in read_manifest(manifest).to_pylist() if r["split"] == split), key=lambda r: r["sample_id"]
    )[:limit]
    if not rows:
        raise DataError(f"no samples of split {split!r}", manifest)
    root = cache or model.cfg.cache
    vc = VisionCache.for_model(root, model) if root else None
    source = VideoSource(model.cfg.frames.t_max, model.cfg.decode, storage.parent(manifest))
    preds, hits, failed = [], 0, []
    try:
        for start in range(0, len(rows), batch_size):
            samples = []
            for r in rows[start : start + batch_size]:
                uri = vc.lookup(r) if vc is not None else None
                if uri is not None:
                    s = sample_from_payload(VisionCache.load(uri, r["sample_id"], vc.key))
                    hits += 1
                else:
                    try:
                        clip = source.clip(r)
                    except SampleError as e:
                        failed.append({"sample_id": r["sample_id"], "stage": e.stage, "reason": e.reason})
                        continue
                    pixels, layout = prepare_video(
                        model.family,
                        model.frame_spec,
                        clip.frames,
                        clip.frame_indices,
                        clip.fps,
                        clip.span[1] - clip.span[0],
                    )
                    s = {"vision": None, "pixels": pixels, "layout": layout}
                s.update(sample_id=r["sample_id"], sign_language=r["sign_language"], text=None)
                s["reference"], s["spoken_language"] = r["text"], r["spoken_language"]
                samples.append(s)
            if not samples:
                continue
            with torch.no_grad():
                hyps = model.generate(model.collate(samples), max_new_tokens=max_new_tokens, num_beams=num_beams)
            preds += [
                {"sample_id": s["sample_id"], "hypothesis": h, "reference": s["reference"]}
                for s, h in zip(samples, hyps)
            ]
    finally:
        source.close()
    if not preds:
        raise DataError(f"no sample of split {split!r} could be decoded ({failed[:3]})", manifest)
    lang = lang or rows[0]["spoken_language"]
    scores = corpus_scores([p["hypothesis"] for p in preds], [p["reference"] for p in preds], lang=lang)
    metrics = {
        **scores,
        "checkpoint": checkpoint,
        "manifest": manifest,
        "split": split,
        "lang": lang,
        "samples": len(preds),
        "failed": failed,
        "cache_hits": hits,
        "max_new_tokens": max_new_tokens or model.cfg.max_new_tokens,
        "num_beams": num_beams or model.cfg.num_beams,
        "wall_s": round(time.time() - started, 3),
    }
    if out is not None:
        storage.write_text(
            storage.join(out, "predictions.jsonl"), "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds)
        )
        for name, key in (("hypotheses.txt", "hypothesis"), ("references.txt", "reference")):
            lines = "".join(" ".join(p[key].splitlines()) + "\n" for p in preds)
            storage.write_text(storage.join(out, name), lines)
        storage.write_text(storage.join(out, "metrics.json"), json.dumps(metrics, indent=1, ensure_ascii=False))
    return metrics
