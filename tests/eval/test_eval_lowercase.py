"""Lower-cased targets (``sft.lowercase``): the stage trains on lower-cased sentences and scores its dev split
case-insensitively; `ray-slt eval` of such a translator scores case-insensitively by default and says so in
metrics.json (``case: lc``, ``case:lc`` in the signatures); an explicit ``lowercase`` option wins."""

from __future__ import annotations

import json

import pytest
from testlib import SHARED_DATA

from ray_slt import storage
from ray_slt.config import build_config
from ray_slt.models import build_translator, save_translator
from ray_slt.models.config import SFTConfig

PHOENIX = SHARED_DATA / "phoenix14t"
pytestmark = pytest.mark.skipif(not (PHOENIX / "PHOENIX-2014-T.dev.corpus.csv").exists(),
                                reason="../shared/data/phoenix14t is not beside the repository")  # fmt: skip


def tiny(lowercase: bool) -> SFTConfig:
    return SFTConfig.model_validate({
        "lm": "tiny:qwen3", "tiny": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 64},
        "tokenizer": {"kind": "word", "vocab_size": 500},
        "encoder": {"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1},
        "fusion": {"face": False, "hand": False}, "projector": {"hidden": 32}, "max_new_tokens": 6,
        "num_beams": 1, "lowercase": lowercase,
    })  # fmt: skip


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    from ray_slt.data.prepare import prepare

    out = str(tmp_path_factory.mktemp("phoenix") / "manifest.parquet")
    prepare(build_config({"kind": "prepare", "dataset": "phoenix14t", "root": str(PHOENIX), "out": out}))
    return out


def train_config(manifest: str, lowercase: bool):
    return build_config({"kind": "train", "stage": "sft", "data": {"manifest": manifest, "lang": "de"},
                         "sft": tiny(lowercase).model_dump(mode="json")})  # fmt: skip


def test_the_stage_trains_on_lower_cased_targets_and_scores_case_insensitively(manifest):
    from ray_slt.training.task import task_for

    rows = [{"sample_id": "a", "gloss": "REGEN", "text": "Morgen Regen im Norden"}]
    texts = ["morgen regen im norden", "Morgen Regen im Norden"]
    for lowercase in (True, False):
        task = task_for(train_config(manifest, lowercase))
        model = build_translator(tiny(lowercase), texts=texts, glosses=["REGEN"])
        batch = task.collator(model)(rows)
        written = model.tokenizer.decode(batch["target_ids"][0], skip_special_tokens=True).strip()
        assert written == texts[0 if lowercase else 1]
        assert task.protocol_options().get("lowercase", False) is lowercase
        assert task.evaluator().lowercase is lowercase


def test_eval_of_a_lower_case_translator_scores_case_insensitively_by_default(manifest, tmp_path):
    from ray_slt.eval.run import evaluate

    texts = ["und nun die wettervorhersage", "Morgen Regen im Norden"] * 5
    for lowercase in (True, False):
        uri = str(tmp_path / f"lc{lowercase}")
        save_translator(build_translator(tiny(lowercase), texts=texts, glosses=["REGEN WETTER"], seed=0), uri)
        result = evaluate(uri, split="dev", data=manifest, batch_size=64)
        case = "lc" if lowercase else "mixed"
        assert result["case"] == case and f"|case:{case}|" in result["bleu_signature"]
        assert json.loads(storage.read_text(result["metrics_file"]))["case"] == case
    forced = evaluate(uri.replace("lcFalse", "lcTrue"), split="dev", data=manifest, batch_size=64,
                      protocol_options={"lowercase": False}, out=str(tmp_path / "forced"))  # fmt: skip
    assert forced["case"] == "mixed"
