"""``ray-slt eval``: run a saved model over a split and score it with its evaluation protocol.

``evaluate(checkpoint, split)`` takes a run directory (its best checkpoint, from ``run.json``), a checkpoint
directory or a model directory, loads the model through the registry of saved models
(:func:`ray_slt.models.registry.load_predictor`: the kind recorded in its manifest picks the predictor, which
reads safetensors + JSON only), reads the split's samples in sample_id order from the run's data (the
training config's ``data.features`` or ``data.manifest``) or from ``data`` (a feature store directory or a
manifest ``.parquet``), and scores the outputs with the protocol (:mod:`ray_slt.eval.protocols`) of the stage
that trained the model (recorded in its checkpoint), or ``protocol``. No training code is involved.

Outputs (``out``, default ``{checkpoint}/eval/{split}``): the protocol's files (``predictions.jsonl``; for
translation ``hypotheses.txt`` and ``references.txt``, which ``ray-slt score`` re-scores) and ``metrics.json``
(the scores, their signatures, the protocol, the checkpoint, the model id (content hash of its files), the
config hash, split, data, sample count and the predictor's settings, e.g. decoding).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ray_slt import storage
from ray_slt.errors import ConfigError, DataError


def _batches(it: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for r in it:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def data_source(data: str | None, train_config: Mapping[str, Any] | None):
    """The samples to evaluate on: ``data`` (a manifest ``.parquet`` or a feature store) or the run's."""
    from ray_slt.features.source import SampleSource

    if data is not None:
        is_manifest = data.rstrip("/").endswith(".parquet")
        return SampleSource(manifest=data) if is_manifest else SampleSource(features=data)
    d = (train_config or {}).get("data") or {}
    if not d.get("features") and not d.get("manifest"):
        raise ConfigError("no data to evaluate on: pass --data (a feature store or a manifest .parquet)")
    return SampleSource(features=d.get("features"), manifest=d.get("manifest"))


def evaluate(
    checkpoint: str,
    split: str = "dev",
    data: str | None = None,
    out: str | None = None,
    protocol: str | None = None,
    protocol_options: Mapping[str, Any] | None = None,
    predictor_options: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    extra: Mapping[str, Any] | None = None,
    predictor=None,
) -> dict[str, Any]:
    """Predict ``split`` with ``checkpoint``, score it, write the outputs; returns what ``metrics.json`` holds
    (with ``extra``, e.g. where the decoding settings were chosen, recorded beside the scores).

    ``protocol_options`` go to the protocol (translation: ``lang``, ``semantic``, ``embedder``);
    ``predictor_options`` to the predictor (translators: ``num_beams``, ``max_new_tokens``), over what the run's
    training config implies (e.g. a VLM's vision cache). ``predictor``: one already loaded for ``checkpoint`` with
    these options (:func:`open_predictor`), used instead of loading one and left open (a decoding grid reuses it)."""
    from ray_slt.config import config_hash
    from ray_slt.eval.protocols import protocol_for
    from ray_slt.features.video import media_uri
    from ray_slt.models.registry import predictor_class, resolve

    t0 = time.perf_counter()
    ref = resolve(checkpoint)
    cls = predictor_class(ref.kind)
    name = protocol or ref.protocol or cls.protocol
    given = {k: v for k, v in (protocol_options or {}).items() if v is not None}

    def make_protocol(opts: Mapping[str, Any]):
        try:
            return protocol_for(name, **opts)
        except TypeError as e:
            raise ConfigError(f"protocol {name!r} does not take these options ({e})") from None

    evaluator = make_protocol(given)  # bad options fail before the model loads
    source = data_source(data, ref.train_config)
    owned = predictor is None
    if owned:
        predictor = open_predictor(checkpoint, predictor_options, device)
    implied = predictor.protocol_defaults() if name == (ref.protocol or cls.protocol) else {}
    if any(k not in given for k in implied):
        evaluator = make_protocol({**implied, **given})
    if predictor.inputs == "video" and len(source.manifests) > 1:
        raise ConfigError("a video model is evaluated on one manifest at a time (give --data)")
    manifest_dir = storage.parent(source.manifest) if source.manifest else None
    preds: list[dict[str, Any]] = []
    try:
        evaluator.setup(predictor, split)  # e.g. a zero-shot protocol's candidate classes
        samples = (s for s in source.samples(split) if evaluator.keep(s))
        for rows in _batches(samples, batch_size):
            if predictor.inputs == "video":  # media paths in a manifest are relative to its folder
                rows = [{**r, "video_uri": media_uri(r.get("video_uri"), manifest_dir)} for r in rows]
            outputs = predictor.predict(rows)
            preds += [evaluator.prediction(r, o) for r, o in zip(rows, outputs)]
    finally:
        if owned:
            predictor.close()
    if not preds:
        raise DataError(f"no samples of split {split!r}", source.uri)
    scores = evaluator.score(preds)
    default = ref.protocol or cls.protocol
    # the model's own protocol writes eval/SPLIT; another one eval/SPLIT-PROTOCOL (zsl and gzsl of one run side by side)
    out = out or storage.join(ref.checkpoint, "eval", split if name == default else f"{split}-{name}")
    files = evaluator.write(out, preds, scores)
    result = {
        "split": split,
        "n_samples": len(preds),
        **scores,
        "protocol": evaluator.describe(),
        "checkpoint": ref.checkpoint,
        "model": ref.model,
        "kind": ref.kind,
        "model_id": predictor.model_id,
        "checkpoint_id": predictor.model_id.rpartition("@")[2],
        "stage": ref.stage,
        "step": ref.step,
        "config_hash": config_hash(ref.train_config) if ref.train_config else None,
        "data": source.uri,
        "decoding": {**predictor.settings(), "batch_size": batch_size},
        "out": out,
        **files,
        "metrics_file": storage.join(out, "metrics.json"),
        "wall_s": round(time.perf_counter() - t0, 3),
        **(extra or {}),
    }
    storage.write_text(result["metrics_file"], json.dumps(result, indent=1, ensure_ascii=False, default=str))
    return result


def open_predictor(checkpoint: str, predictor_options: Mapping[str, Any] | None = None, device: str = "cpu"):
    """The predictor of ``checkpoint`` (:func:`ray_slt.models.registry.load_predictor`) with ``predictor_options``
    (None values left out) over what its training config implies."""
    from ray_slt.models.registry import load_predictor, predictor_class, resolve

    ref = resolve(checkpoint)
    options = {**predictor_class(ref.kind).options_from(ref.train_config),
               **{k: v for k, v in (predictor_options or {}).items() if v is not None}}  # fmt: skip
    return load_predictor(ref, device, **options)


#: Where a checkpoint's decoding choice is kept (``{checkpoint}/eval/decoding.json``).
DECODING_FILE = "decoding.json"


def choose_decoding(
    checkpoint: str,
    grid: Mapping[str, list[Any]],
    split: str = "dev",
    data: str | None = None,
    protocol_options: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate every combination of the decoding options in ``grid`` (predictor options, e.g.
    ``{"num_beams": [1, 4], "length_penalty": [0.8, 1.0]}``) on ``split`` and keep the best on the protocol's
    selection metric in ``{checkpoint}/eval/decoding.json``, where ``ray-slt eval --decoding-from-dev`` finds it.
    ``fixed``: options every combination uses (e.g. the ``channel`` model of re-ranking), part of the choice.
    Dev chooses, test reports: a split whose name says test is refused. Ties go to the earlier combination (the
    grid's order: smaller beams first when listed so; the predictor's re-scoring options, e.g. re-ranking weights,
    vary fastest, so that each decoding is run once)."""
    import itertools

    from ray_slt.eval.protocols import protocol_for
    from ray_slt.models.registry import predictor_class, resolve

    if "test" in split.lower():
        raise ConfigError(
            f"decoding settings are chosen on a dev split, never on {split!r} (dev chooses, test reports)"
        )
    if not grid or any(not values for values in grid.values()):
        raise ConfigError("give at least one decoding option with at least one value (e.g. num_beams=1,4)")
    ref = resolve(checkpoint)
    cls = predictor_class(ref.kind)
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    if set(fixed) & set(grid):
        raise ConfigError(f"{sorted(set(fixed) & set(grid))[0]!r} is both fixed and in the grid")
    cls.check_options({**dict.fromkeys(grid), **fixed})
    selection = protocol_for(ref.protocol or cls.protocol).selection
    # combinations that differ only in re-scoring options (e.g. re-ranking weights) share one loaded predictor,
    # which decodes each batch once: those options vary fastest
    rescoring = set(cls.rescoring_options)
    keys = [k for k in grid if k not in rescoring] + [k for k in grid if k in rescoring]
    results = []
    loaded, loaded_key = None, None
    try:
        for combo in itertools.product(*(grid[k] for k in keys)):
            options = dict(zip(keys, combo))
            merged = {**fixed, **options}
            key = sorted((k, repr(v)) for k, v in merged.items() if k not in rescoring)
            if loaded is not None and key == loaded_key:
                loaded.rescore(**{k: merged.get(k) for k in rescoring})
            else:
                if loaded is not None:
                    loaded.close()
                loaded, loaded_key = open_predictor(checkpoint, merged, device), key
            tag = re.sub(r"[^\w.=-]+", "_", "-".join(f"{k}{v}" for k, v in options.items()))
            where = storage.join(ref.checkpoint, "eval", "decoding", f"{split}-{tag}")
            r = evaluate(checkpoint, split=split, data=data, out=where, protocol_options=protocol_options,
                         predictor_options=merged, batch_size=batch_size, device=device, predictor=loaded)  # fmt: skip
            results.append({"options": options, selection.metric: r[selection.metric],
                            "metrics_file": r["metrics_file"]})  # fmt: skip
    finally:
        if loaded is not None:
            loaded.close()
    best = results[0]
    for r in results[1:]:
        if selection.better(r[selection.metric], best[selection.metric]):
            best = r
    out = {"checkpoint": ref.checkpoint, "split": split, "grid": {k: list(v) for k, v in grid.items()},
           "fixed": fixed, "metric": selection.metric, "mode": selection.mode, "results": results,
           "best": {**fixed, **best["options"]}, "best_score": best[selection.metric]}  # fmt: skip
    out["file"] = storage.join(ref.checkpoint, "eval", DECODING_FILE)
    storage.write_text(out["file"], json.dumps(out, indent=1, ensure_ascii=False, default=str))
    return out


def decoding_from_dev(checkpoint: str) -> dict[str, Any]:
    """The decoding options chosen on dev for ``checkpoint`` (:func:`choose_decoding`), with where they came from."""
    from ray_slt.models.registry import resolve

    ref = resolve(checkpoint)
    uri = storage.join(ref.checkpoint, "eval", DECODING_FILE)
    if not storage.exists(uri):
        raise ConfigError(f"no decoding chosen for {ref.checkpoint} yet: run `ray-slt eval {checkpoint} --split dev "
                          "--grid num_beams=1,4 ...` first")  # fmt: skip
    chosen = json.loads(storage.read_text(uri))
    return {"options": chosen["best"], "split": chosen["split"], "metric": chosen["metric"], "file": uri}
