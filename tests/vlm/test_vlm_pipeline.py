"""prepare -> cache -> train -> eval on Ray for each VLM family, on real clips from ../shared/data; the cache
job's exactness, resumption, invalidation and error records."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from vlm_helpers import tiny_cfg

from ray_slt.data.manifest import make_row, read_manifest, write_manifest
from ray_slt.models.vlm.cache import VisionCache, VLMCacheConfig, run_vlm_cache

pytestmark = pytest.mark.slow


def _cache_cfg(manifest: str, vlm, out: str | None = None) -> VLMCacheConfig:
    return VLMCacheConfig.model_validate(
        {"manifest": manifest, "out": out, "vlm": vlm.model_dump(mode="json"), "progress": False}
    )


def test_cache_job_exact_resumable_and_invalidated(ray_local, tiny_paths, real_manifest, tmp_path):
    from ray_slt.models.vlm.data import VideoSource, sample_from_payload
    from ray_slt.models.vlm.model import build_vlm, prepare_video
    from ray_slt.training.task import task_for
    from ray_slt.training.tasks_vlm import VLMRowStage

    fam = "internvl"
    rows = [r for r in read_manifest(real_manifest).to_pylist() if r["dataset"] in ("phoenix14t", "slp_site")]
    (tmp_path / "zero.mp4").write_bytes(b"")
    rows.append(
        make_row(
            sample_id="broken.zero",
            dataset="broken",
            split="train",
            sign_language="ase",
            spoken_language="en",
            video_uri=str(tmp_path / "zero.mp4"),
            text="nothing",
        )
    )
    manifest = str(tmp_path / "manifest.parquet")
    write_manifest(rows, manifest)
    root = str(tmp_path / "cache")
    vlm = tiny_cfg(fam, tiny_paths[fam])
    s = run_vlm_cache(_cache_cfg(manifest, vlm, root), echo=False)
    assert (s["ok"], s["errors"], s["errors_by_stage"]) == (4, 1, {"decode": 1})
    kdir = tmp_path / "cache" / s["cache_key"]
    prov = json.loads((kdir / "provenance.json").read_text())
    assert prov["cache_key"] == s["cache_key"] and prov["key_fields"]["sampling"] == "uniform:4"
    assert prov["key_fields"]["vision_weights_sha256"] and prov["runs"][-1]["ok"] == 4
    assert pq.read_table(kdir / "errors.parquet").column("sample_id").to_pylist() == ["broken.zero"]

    # exact: each entry is the tower's output for the frames this process decodes, and a batch built from the
    # cache has the same loss as one built from the video (the task's row stage, with and without the cache)
    model = build_vlm(vlm).eval()
    cache = VisionCache.for_model(root, model)
    assert cache.key == s["cache_key"] and len(cache) == 4
    source = VideoSource(vlm.frames.t_max, vlm.decode)
    good = [r for r in rows if r["dataset"] != "broken"]
    for r in good:
        clip = source.clip(r)
        pixels, layout = prepare_video(
            model.family, model.frame_spec, clip.frames, clip.frame_indices, clip.fps, clip.span[1] - clip.span[0]
        )
        entry = sample_from_payload(VisionCache.load(cache.lookup(r), r["sample_id"], cache.key))
        assert torch.equal(entry["vision"], model.vision_features(pixels)) and entry["layout"] == layout.as_dict()
    source.close()
    # the training task's path: its row stage passes cached samples through as entry URIs (read by its
    # collator on the worker) and decodes the others; both give the same loss
    task = task_for(_train_config(manifest, tiny_cfg(fam, tiny_paths[fam], cache=root), tmp_path, fam))
    assert task.cache_key() == cache.key
    model_type, spec = task.model_spec()
    stage = VLMRowStage(model_type, spec, vlm.frames.t_max, vlm.decode.model_dump(), None, cache.key)
    from_cache = [stage.process({**r, "cache_file": cache.lookup(r)}) for r in good]
    from_video = [stage.process({**r, "cache_file": None}) for r in good]
    stage.source.close()
    assert all(r["payload"] is None and r["cache_file"] for r in from_cache)
    assert all(r["payload"] is not None and r["cache_file"] is None for r in from_video)
    collate = task.collator(model)
    cached_batch, video_batch = collate(from_cache), collate(from_video)
    assert all(v is not None for v in cached_batch["vision"]) and all(v is None for v in video_batch["vision"])
    with torch.no_grad():
        assert torch.equal(model(cached_batch).loss, model(video_batch).loss)

    # resumable: a re-run encodes only what it lacks: a row whose span changed (a miss under the same key) and
    # the broken sample (errors are retried, and it fails again)
    rows[0] = {**rows[0], "end_frame": 10}
    write_manifest(rows, manifest)
    again = run_vlm_cache(_cache_cfg(manifest, vlm, root), echo=False)
    assert again["cache_key"] == s["cache_key"]
    assert (again["skipped"], again["ok"], again["errors"]) == (3, 1, 1)
    assert len(VisionCache(root, s["cache_key"])) == 4


def _train_config(manifest: str, vlm, tmp_path, family: str):
    from ray_slt.config import build_config

    return build_config(
        {
            "kind": "train",
            "stage": "vlm",
            "data": {"manifest": manifest},
            "vlm": vlm.model_dump(mode="json"),
            "optim": {"epochs": 1, "max_steps": 2, "batch_size": 1, "grad_accum": 2, "schedule": "constant"},
            "trainer": {"storage": str(tmp_path / "runs"), "name": f"vlm_{family}"},
            "eval": {"max_new_tokens": 8, "batch_size": 4},
        }
    )


def _check_trained(model_uri: str, vlm, base_path: str) -> None:
    """Frozen vision weights identical to the base model's; the connector moved."""
    from ray_slt.models.vlm.checkpoint import load_vlm
    from ray_slt.models.vlm.model import load_base

    trained = load_vlm(model_uri)
    base, _, fam, _ = load_base(vlm, base_path)
    frozen, mine = fam.frozen_state(base), fam.frozen_state(trained.hf)
    assert frozen.keys() == mine.keys() and all(torch.equal(frozen[k], mine[k]) for k in frozen)
    base_conn = fam.connector(base).state_dict()
    assert any(not torch.equal(v, base_conn[k]) for k, v in trained.connector.state_dict().items())


def _check_eval(checkpoint: str, manifest: str, rows: list[dict], out, stage: str | None = "vlm") -> None:
    """``ray-slt eval`` (ray_slt.eval.run, the VLM predictor through the model registry) on the test split:
    greedy, 128 new tokens, shared metrics; the configs require the cache, so every test sample came from it."""
    from ray_slt.eval.run import evaluate

    result = evaluate(checkpoint, split="test", data=manifest, out=str(out), batch_size=4)
    n_test = sum(r["split"] == "test" for r in rows)
    # a run's checkpoint records its stage; a bare model directory records only its kind
    assert result["n_samples"] == n_test and result["stage"] == stage and result["kind"] == "vlm"
    assert result["decoding"]["max_new_tokens"] == 128 and result["decoding"]["num_beams"] == 1
    assert 0.0 <= result["bleu4"] <= 100.0 and result["bleu_signature"].startswith("nrefs:1")
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["sample_id"] for p in preds] == sorted(r["sample_id"] for r in rows if r["split"] == "test")
    assert json.loads((out / "metrics.json").read_text())["bleu4"] == result["bleu4"]


def test_prepare_cache_train_eval_on_ray(ray_local, tiny_paths, real_manifest, shared_data, tmp_path):
    """The paper's recipe end to end on a tiny SmolVLM: the cache job (Ray Data) stores the frozen tower's
    features of real clips; Ray Train trains with the cache required (the encoder never runs in training) and
    picks the checkpoint on dev BLEU; the test split is evaluated with the shared metrics. The frozen weights
    are unchanged after training."""
    from ray_slt.training.run import run_training

    family = "smolvlm"
    rows = read_manifest(real_manifest).to_pylist()
    vlm = tiny_cfg(family, tiny_paths[family], cache=str(tmp_path / "cache"), cache_required=True)
    s = run_vlm_cache(_cache_cfg(real_manifest, vlm), echo=False)
    assert s["ok"] == len(rows) and s["errors"] == 0

    summary = run_training(_train_config(real_manifest, vlm, tmp_path, family))
    assert summary["steps"] == 2 and summary["stage"] == "vlm"
    assert summary["last_dev"]["dev_samples"] == sum(r["split"] == "dev" for r in rows)
    assert "dev_bleu4" in summary["metrics"] and summary["best"]["model"]
    _check_trained(summary["best"]["model"], vlm, tiny_paths[family])
    _check_eval(summary["run_dir"], real_manifest, rows, tmp_path / "eval")
    _check_served(summary["run_dir"], shared_data / "slp_site" / "asl_different.mp4")


def _check_served(run_dir: str, video) -> None:
    """The VLM run served over real HTTP: a video upload goes to the model, which decodes it itself (its own
    frame settings); the answer is the one the model gives in process for the same file."""
    from testlib import serve_once

    from ray_slt.models.registry import load_predictor

    status, out, health = serve_once(run_dir, "translate", video.read_bytes(), "video/mp4")
    assert status == 200, out
    route = health["routes"]["translate"]
    assert (route["kind"], route["stage"], route["inputs"]) == ("vlm", "vlm", "video")
    assert out["input_kind"] == "video" and out["num_frames"] is None and "pose" not in out
    predictor = load_predictor(run_dir)
    try:
        assert out["model_id"] == predictor.model_id
        assert out["text"] == predictor.predict([{"sample_id": "v", "video_uri": str(video)}])[0]["text"]
    finally:
        predictor.close()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl"])
def test_prepare_cache_train_eval_in_process(family, tiny_paths, real_manifest, tmp_path):
    """The same stages for the other two families with the same code in this process (2 shared cores): the
    cache job's actor (CacheStage) and writer, the training task's row stage, collator, loss, parameter
    groups, save/load, and the evaluation."""
    import pyarrow as pa

    from ray_slt.features.source import rows_of
    from ray_slt.models.vlm.cache import STAGE_SCHEMA, CacheStage, build_index, write_entries
    from ray_slt.training.task import task_for
    from ray_slt.training.tasks_vlm import VLMRowStage, VLMTask

    rows = read_manifest(real_manifest).to_pylist()
    root = tmp_path / "cache"
    vlm = tiny_cfg(family, tiny_paths[family], cache=str(root), cache_required=True)
    task = task_for(_train_config(real_manifest, vlm, tmp_path, family))
    assert isinstance(task, VLMTask)
    key = task.cache_key()
    kdir = str(root / key)
    stage = CacheStage(vlm.model_dump(mode="json"), tiny_paths[family], key, kdir, "run0", None, None)
    results = [stage.process(r) for r in rows]
    stage.source.close()
    assert all(r["status"] == "ok" for r in results)
    write_entries(pa.Table.from_pylist(results, schema=STAGE_SCHEMA), kdir, "run0")
    assert len(build_index(kdir)) == len(rows)

    cache = VisionCache(str(root), key)
    model_type, spec = task.model_spec()
    loader = VLMRowStage(model_type, spec, vlm.frames.t_max, vlm.decode.model_dump(), None, key)
    train = [loader.process({**r, "cache_file": cache.lookup(r)}) for r in rows if r["split"] == "train"]
    loader.source.close()
    model = task.fresh()
    collate = task.collator(model)
    opt = torch.optim.AdamW(task.param_groups(model))
    model.train()
    for i in range(2):
        batch = collate(rows_of(train[2 * i : 2 * i + 2]))
        assert all(v is not None for v in batch["vision"])  # features from the cache, the tower is not run
        loss, _ = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # a worker whose model is not the one the run looked entries up with refuses them (never a stale hit)
    from ray_slt.errors import ConfigError
    from ray_slt.models.vlm.model import build_vlm

    other = build_vlm(tiny_cfg(family, tiny_paths[family], dtype="bfloat16", cache=str(root)))
    with pytest.raises(ConfigError, match="cache key"):
        task.collator(other)(rows_of(train[:1]))
    uri = str(tmp_path / "model")
    task.save(model, uri)
    assert VLMTask.load(uri).cfg == model.cfg
    _check_trained(uri, vlm, tiny_paths[family])
    _check_eval(uri, real_manifest, rows, tmp_path / "eval", stage=None)
