"""``ray-slt eval``: translate a split with a checkpoint; write predictions and ``metrics.json`` beside them.

``evaluate(checkpoint, split)`` accepts a run directory (its best checkpoint on dev BLEU-4, from
``run.json``), a Ray Train checkpoint directory (``checkpoint_*/`` with ``model/`` and ``train_state.json``)
or a model directory itself (``MANIFEST.json``; a translator or stage-1 model). The data default to the
training config's (``data.features`` or ``data.manifest``); ``data`` overrides them (a feature store
directory or a manifest ``.parquet``). Decoding is deterministic (Eq. 1 frame sampling, greedy or beam
search); samples are processed in sample_id order.

Outputs (``out``, default ``{checkpoint}/eval/{split}``)::

    predictions.jsonl   {"sample_id", "hypothesis", "reference"} per line, in sample_id order
    hypotheses.txt      one hypothesis per line (same order)  \
    references.txt      one reference per line                 > `ray-slt score --hyp ... --ref ...` re-scores
    metrics.json        bleu1..4, rouge_l, chrf (+ tsr/pger with --semantic), the sacrebleu signatures,
                        checkpoint path and id (hash of its files), config hash, split, data, sample count,
                        decoding settings, language
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from ray_slt import storage
from ray_slt.config import build_config
from ray_slt.errors import ConfigError, DataError, StorageError
from ray_slt.training.loop import MODEL_DIR, STATE_FILE

META_STAGES = {"translator.json": "sft", "pretrain.json": "pretrain", "vlm.json": "vlm"}


def resolve_checkpoint(uri: str) -> dict[str, Any]:
    """``{"model", "stage", "checkpoint", "train_config"}`` of a run dir, checkpoint dir or model dir."""
    from ray_slt.models.checkpoint import MANIFEST

    uri = storage.normalize(uri)
    run_json = storage.join(uri, "run.json")
    if storage.exists(run_json):
        run = json.loads(storage.read_text(run_json))
        best = (run.get("best") or {}).get("checkpoint")
        if not best:
            raise StorageError(f"{uri}: the run has no checkpoint")
        return resolve_checkpoint(best)
    state_uri = storage.join(uri, STATE_FILE)
    if storage.exists(state_uri):
        state = json.loads(storage.read_text(state_uri))
        return {
            "model": storage.join(uri, MODEL_DIR),
            "stage": state["stage"],
            "checkpoint": uri,
            "train_config": state.get("config"),
            "step": state.get("step"),
        }
    if storage.exists(storage.join(uri, MANIFEST)):
        for name, stage in META_STAGES.items():
            if storage.exists(storage.join(uri, name)):
                return {"model": uri, "stage": stage, "checkpoint": uri, "train_config": None, "step": None}
        raise StorageError(f"{uri}: a checkpoint of an unknown kind (no {' or '.join(META_STAGES)})")
    raise StorageError(
        f"{uri}: not a run directory, checkpoint or model directory (no run.json, {STATE_FILE} or {MANIFEST})"
    )


def checkpoint_id(model_uri: str) -> str:
    """A content hash of the model's files (as listed by its manifest): the same weights, the same id."""
    from ray_slt.models.checkpoint import MANIFEST

    files = json.loads(storage.read_text(storage.join(model_uri, MANIFEST)))["files"]
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f["path"]):
        h.update(f["path"].encode() + b"\0")
        with storage.open_read(storage.join(model_uri, *f["path"].split("/"))) as fin:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _train_config(ref: dict[str, Any], model, data: str | None):
    """The TrainConfig the evaluation runs under: the checkpoint's training config (or a minimal one built
    from the model's own config), with its data source replaced by ``data`` when given."""
    from ray_slt.training.config import TrainConfig

    base = dict(ref["train_config"] or {"kind": "train", "stage": ref["stage"], ref["stage"]: model.cfg.model_dump()})
    section = dict(base.get("data") or {})
    if data is not None:
        is_manifest = data.rstrip("/").endswith(".parquet")
        section["features"], section["manifest"] = (None, data) if is_manifest else (data, None)
    if not section.get("features") and not section.get("manifest"):
        raise ConfigError("no data to evaluate on: pass --data (a feature store or a manifest .parquet)")
    section.update(limit_train=None, limit_dev=None)
    cfg = build_config({**base, "data": section}, source=ref["checkpoint"])
    assert isinstance(cfg, TrainConfig)
    return cfg


def _samples(data, split: str, columns: list[str] | None) -> Iterator[dict[str, Any]]:
    """The split's samples in sample_id order (feature-store rows or manifest rows)."""
    if data.manifest is not None:
        from ray_slt.data.manifest import read_manifest

        table = read_manifest(data.manifest)
        rows = sorted((r for r in table.to_pylist() if r["split"] == split), key=lambda r: r["sample_id"])
        yield from rows
        return
    from ray_slt.features.store import iter_samples, read_index

    ids = sorted(read_index(data.features, split).column("sample_id").to_pylist())
    rows = {r["sample_id"]: r for r in iter_samples(data.features, split=split, columns=columns)}
    for i in ids:
        yield rows[i]


def _batches(it: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for r in it:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    checkpoint: str,
    split: str = "dev",
    data: str | None = None,
    out: str | None = None,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    lang: str | None = None,
    semantic: bool = False,
    embedder: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Translate ``split`` with ``checkpoint``, score it with the shared metrics, write the outputs."""
    import torch

    from ray_slt.config import config_hash
    from ray_slt.eval.metrics import corpus_scores
    from ray_slt.models.batch import to_device
    from ray_slt.training.task import task_class
    from ray_slt.training.tasks import decode_rows

    t0 = time.perf_counter()
    ref = resolve_checkpoint(checkpoint)
    cls = task_class(ref["stage"])
    model = cls.load(ref["model"], trainable=False).to(device)
    model.eval()
    cfg = _train_config(ref, model, data)
    task = cls(cfg)
    columns = task.columns() if hasattr(task, "columns") else None
    source = cfg.data.features or cfg.data.manifest
    # a task whose samples need more than the model's collator (e.g. video decoding) provides eval_collator
    collate = task.eval_collator(model) if hasattr(task, "eval_collator") else model.collator()
    mcfg = model.cfg
    beams = num_beams or mcfg.num_beams
    new_tokens = max_new_tokens or mcfg.max_new_tokens
    preds: list[dict[str, Any]] = []
    spoken = None
    with torch.no_grad():
        for rows in _batches(_samples(cfg.data, split, columns), batch_size):
            rows = decode_rows(rows)
            spoken = spoken or rows[0].get("spoken_language")
            batch = to_device(collate(rows), device)
            if "texts" not in batch:
                raise DataError(f"split {split!r} has no reference texts", source)
            hyps = task.generate(model, batch, num_beams=beams, max_new_tokens=new_tokens)
            preds += [{"sample_id": i, "hypothesis": h, "reference": r}
                      for i, h, r in zip(batch["sample_ids"], hyps, batch["texts"])]  # fmt: skip
    if not preds:
        raise DataError(f"no samples of split {split!r}", source)
    lang = lang or cfg.data.lang or spoken
    hyps, refs = [p["hypothesis"] for p in preds], [p["reference"] for p in preds]
    scores = corpus_scores(hyps, refs, lang=lang)
    if semantic:
        scores.update(_semantic(hyps, refs, lang, embedder))
    out = out or storage.join(ref["checkpoint"], "eval", split)
    result = {
        "split": split,
        "n_samples": len(preds),
        "lang": lang,
        **scores,
        "checkpoint": ref["checkpoint"],
        "model": ref["model"],
        "checkpoint_id": checkpoint_id(ref["model"]),
        "stage": ref["stage"],
        "step": ref["step"],
        "config_hash": config_hash(ref["train_config"]) if ref["train_config"] else None,
        "model_config_hash": config_hash(mcfg),
        "data": source,
        "decoding": {"num_beams": beams, "max_new_tokens": new_tokens, "do_sample": False, "batch_size": batch_size,
                     "max_frames": getattr(mcfg, "max_frames", None), "frame_sampling": "Eq. 1 (deterministic)"},
        "out": out,
        "predictions": storage.join(out, "predictions.jsonl"),
        "metrics_file": storage.join(out, "metrics.json"),
        "wall_s": round(time.perf_counter() - t0, 3),
    }  # fmt: skip
    storage.write_text(result["predictions"], "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
    storage.write_text(storage.join(out, "hypotheses.txt"), "".join(h.replace("\n", " ") + "\n" for h in hyps))
    storage.write_text(storage.join(out, "references.txt"), "".join(r.replace("\n", " ") + "\n" for r in refs))
    storage.write_text(result["metrics_file"], json.dumps(result, indent=1, ensure_ascii=False))
    return result


def _semantic(hyps: list[str], refs: list[str], lang: str | None, embedder: str | None) -> dict[str, Any]:
    from ray_slt.eval.semantic import DEFAULT_EMBEDDER, EmbeddingSimilarity, corpus_pger, corpus_tsr

    pg = corpus_pger(hyps, refs, lang=lang)
    return {
        "tsr": corpus_tsr(hyps, refs, sim=EmbeddingSimilarity(embedder or DEFAULT_EMBEDDER)),
        "tsr_embedder": embedder or DEFAULT_EMBEDDER,
        "pger": pg["pger"],
        "pger_scored": pg["n_scored"],
    }
