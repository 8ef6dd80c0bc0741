"""Text -> gloss through `ray-slt train` and `ray-slt eval`, in fresh processes: the learning test.

The shipped config (conf/train/text2gloss/synthetic_tiny.yaml: English prompt templates around each sentence,
ASL_-tagged gloss targets, word-level vocabularies, a tiny random Qwen3 trained in full on two DDP workers) learns
the synthetic corpus's sentences -> glosses; the dev gloss sequences were never seen in training. The best
checkpoint (highest dev BLEU-4 on the glosses, tags stripped) and the untrained start are evaluated with the same
command.

Margins asserted (dev): BLEU-4 at least 20 points and ROUGE-L at least 30 points above the untrained model.
Observed on the development machine: see the print (BLEU-4 ~0 untrained).
"""

from __future__ import annotations

import json
from pathlib import Path

from testlib import REPO
from train_helpers import last_json, run_cli

CONF = str(REPO / "conf" / "train" / "text2gloss" / "synthetic_tiny.yaml")
BLEU_MARGIN, ROUGE_MARGIN = 20.0, 30.0


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_text2gloss_learns_the_synthetic_corpus_and_evaluates_on_glosses(synthetic_store, tmp_path):
    runs = tmp_path / "runs"
    done = run_cli("train", CONF, f"data.manifest={synthetic_store['manifest']}", f"trainer.storage={runs}", "--json",
                   timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    run = runs / "text2gloss_synthetic_tiny"
    assert summary["protocol"] == "gloss" and summary["selection"] == {"metric": "dev_bleu4", "mode": "max"}
    dev = jsonl(run / "metrics" / "dev.jsonl")
    top = max(dev, key=lambda r: r["dev_bleu4"])
    assert summary["best"]["step"] == top["step"] and "tok:none" in top["dev_bleu_signature"]

    # ray-slt eval of the run: its best checkpoint, model kind text2gloss, scored on the reference glosses
    done = run_cli("eval", str(run), "--split", "dev", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    trained = last_json(done.stdout)
    assert trained["kind"] == "text2gloss" and trained["protocol"]["name"] == "gloss"
    assert abs(trained["bleu4"] - top["dev_bleu4"]) < 1e-9
    preds = jsonl(Path(trained["predictions"]))
    assert len(preds) == 60 and not any("ASL_" in p["hypothesis"] for p in preds)  # tags stripped
    manifest_glosses = {p["sample_id"]: p["reference"] for p in preds}
    assert all(g == " ".join(g.split()) and g for g in manifest_glosses.values())

    init = next(p for p in run.iterdir() if p.name.startswith("init-"))
    done = run_cli("eval", str(init), "--split", "dev", "--data", synthetic_store["manifest"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    untrained = last_json(done.stdout)
    print(f"dev gloss BLEU-4 {untrained['bleu4']:.2f} -> {trained['bleu4']:.2f}, "
          f"ROUGE-L {untrained['rouge_l']:.2f} -> {trained['rouge_l']:.2f}")  # fmt: skip
    assert trained["bleu4"] >= untrained["bleu4"] + BLEU_MARGIN
    assert trained["rouge_l"] >= untrained["rouge_l"] + ROUGE_MARGIN
