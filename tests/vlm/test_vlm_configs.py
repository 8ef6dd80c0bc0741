"""The conf/train/vlm/ configs: the paper's runs (a base per family + a dataset file, real model ids, cluster
settings) and the tiny CPU ones."""

from __future__ import annotations

import pytest
from testlib import REPO

from ray_slt.config import load_config
from ray_slt.models.vlm.cache import VLMCacheConfig, config_from
from ray_slt.models.vlm.config import FAMILY_DEFAULTS

CONFS = sorted(p for p in (REPO / "conf" / "train" / "vlm").glob("*.yaml") if not p.name.startswith(("base_", "data_")))
PAPER_RUNS = [p for p in CONFS if not p.name.startswith("tiny_")]


def test_there_is_a_config_per_family_and_dataset_and_a_tiny_one_per_family():
    names = {p.stem for p in CONFS}
    for fam in FAMILY_DEFAULTS:
        assert f"tiny_{fam}" in names
        for ds in ("phoenix14t", "how2sign", "openasl", "isign"):
            assert f"{fam}_{ds}" in names


@pytest.mark.parametrize("path", CONFS, ids=[p.stem for p in CONFS])
def test_config_loads_says_how_to_run_and_feeds_the_cache_job(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "Train:" in text and "Cache:" in text
    cfg = load_config(str(path))
    assert cfg.kind == "train" and cfg.stage == "vlm" and cfg.data.manifest
    cache = config_from(str(path))
    assert isinstance(cache, VLMCacheConfig) and cache.vlm == cfg.vlm and cache.root == cfg.vlm.cache


@pytest.mark.parametrize("path", PAPER_RUNS, ids=[p.stem for p in PAPER_RUNS])
def test_paper_runs_use_the_papers_settings(path):
    cfg = load_config(str(path))
    fam = next(f for f in FAMILY_DEFAULTS if path.stem.startswith(f"{f}_"))
    v = cfg.vlm
    assert v.model == FAMILY_DEFAULTS[fam]["model"]
    assert (v.lr or FAMILY_DEFAULTS[fam]["lr"]) == FAMILY_DEFAULTS[fam]["lr"]
    assert v.lora.r is None and v.lora.alpha is None and v.lora.dropout is None  # the family's paper LoRA
    assert v.frames.t_max == 64 and v.max_new_tokens == 128 and v.num_beams == 1
    assert cfg.optim.schedule == ("constant" if fam == "smolvlm" else "cosine")
    assert cfg.optim.epochs == 10
    assert cfg.optim.batch_size * cfg.optim.grad_accum * cfg.trainer.num_workers == 4  # paper: 1 x grad-accum 4
    assert cfg.trainer.use_gpu and cfg.trainer.precision == "bf16" and v.dtype == "auto"
    assert v.cache and v.cache_required
