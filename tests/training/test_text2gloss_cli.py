"""Text -> gloss through `ray-slt train` and `ray-slt eval`, in fresh processes: the learning test.

The shipped config (conf/train/text2gloss/synthetic_tiny.yaml: English prompt templates around each sentence,
ASL_-tagged gloss targets, word-level vocabularies, a tiny random Qwen3 trained in full on two DDP workers; here
with batches grouped by length, optim.group_by_length) learns the synthetic corpus's sentences -> glosses; the dev
gloss sequences were never seen in training. The best checkpoint (highest dev BLEU-4 on the glosses, tags
stripped) and the untrained start are evaluated with the same command.

Margins asserted (dev): BLEU-4 at least 20 points and ROUGE-L at least 30 points above the untrained model.
Observed on the development machine: dev gloss BLEU-4 0.10 -> 58.61, ROUGE-L 2.51 -> 80.54.

Then the recipe knobs around a trained model: decoding (beam width x length penalty) chosen on dev with
`ray-slt eval --grid` and used on test with `--decoding-from-dev` (a grid on test is refused), and `ray-slt
average` of the last two checkpoints, evaluated like any checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from testlib import REPO
from train_helpers import jsonl, last_json, run_cli

CONF = str(REPO / "conf" / "train" / "text2gloss" / "synthetic_tiny.yaml")
BLEU_MARGIN, ROUGE_MARGIN = 20.0, 30.0


def test_text2gloss_learns_the_synthetic_corpus_and_evaluates_on_glosses(synthetic_store, tmp_path):
    runs = tmp_path / "runs"
    done = run_cli("train", CONF, f"data.manifest={synthetic_store['manifest']}", f"trainer.storage={runs}",
                   "optim.group_by_length=4", "--json", timeout=1200)  # fmt: skip
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

    # decoding chosen on dev, used on test
    done = run_cli("eval", str(run), "--split", "dev", "--grid", "num_beams=1,3", "--grid", "length_penalty=0.5,2.0",
                   "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    grid = last_json(done.stdout)
    assert [r["options"] for r in grid["results"]] == [{"num_beams": b, "length_penalty": p}
                                                       for b in (1, 3) for p in (0.5, 2.0)]  # fmt: skip
    scores = [r["bleu4"] for r in grid["results"]]
    assert grid["best_score"] == max(scores) and grid["best"] == grid["results"][scores.index(max(scores))]["options"]
    assert scores[0] == trained["bleu4"]  # greedy: the length penalty plays no part, the same as the default eval
    done = run_cli("eval", str(run), "--split", "test", "--decoding-from-dev", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    test = last_json(done.stdout)
    assert test["decoding_chosen_on"]["split"] == "dev" and test["decoding_chosen_on"]["options"] == grid["best"]
    assert {k: test["decoding"][k] for k in grid["best"]} == grid["best"]
    assert json.loads(Path(test["metrics_file"]).read_text())["decoding_chosen_on"]["options"] == grid["best"]
    done = run_cli("eval", str(run), "--split", "test", "--grid", "num_beams=1,3")
    assert done.returncode == 2 and "never on 'test'" in done.stderr
    # options beside --grid hold for every combination and are part of the choice; switches take true/false
    done = run_cli("eval", str(run), "--split", "dev", "--num-beams", "3", "--grid", "mbr=false,true", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    switch = last_json(done.stdout)
    assert switch["fixed"] == {"num_beams": 3} and [r["options"] for r in switch["results"]] == [
        {"mbr": False},
        {"mbr": True},
    ]
    assert switch["best"]["num_beams"] == 3 and "mbr" in switch["best"]

    # the average of the last two checkpoints, evaluated like any checkpoint of the run
    done = run_cli("average", str(run), "--last", "2", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    avg = last_json(done.stdout)
    assert avg["out"] == str(run / "averaged-last2") and len(avg["steps"]) == 2
    done = run_cli("eval", avg["out"], "--split", "dev", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    averaged = last_json(done.stdout)
    print(f"dev gloss BLEU-4: best checkpoint {trained['bleu4']:.2f}, average of the last two {averaged['bleu4']:.2f}")
    assert averaged["kind"] == "text2gloss" and averaged["bleu4"] >= untrained["bleu4"] + BLEU_MARGIN
