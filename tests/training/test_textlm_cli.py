"""A text language model (stage textlm) through `ray-slt train` and `ray-slt eval`, in fresh processes: the
learning test.

The shipped config (conf/train/textlm/synthetic_tiny.yaml: a tiny random GPT-2 over a BPE vocabulary of the
synthetic corpus's English sentences, on two DDP workers) learns the training sentences; the best checkpoint has
the lowest dev perplexity (the ``lm`` protocol), and `ray-slt eval` of the run reproduces it. The untrained start
is evaluated with the same command.

Margin asserted (dev): the trained model's perplexity at most 0.5 x the untrained model's.
Observed on the development machine: dev perplexity 664.71 -> 3.61.
"""

from __future__ import annotations

import math
from pathlib import Path

from testlib import REPO
from train_helpers import jsonl, last_json, run_cli

CONF = str(REPO / "conf" / "train" / "textlm" / "synthetic_tiny.yaml")
RATIO = 0.5


def test_a_text_lm_learns_the_synthetic_sentences_and_is_scored_by_perplexity(synthetic_store, tmp_path):
    runs = tmp_path / "runs"
    done = run_cli("train", CONF, f"data.manifest={synthetic_store['manifest']}", f"trainer.storage={runs}", "--json",
                   timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    run = runs / "textlm_synthetic_tiny"
    assert summary["protocol"] == "lm" and summary["selection"] == {"metric": "dev_perplexity", "mode": "min"}
    dev = jsonl(run / "metrics" / "dev.jsonl")
    top = min(dev, key=lambda r: r["dev_perplexity"])
    assert summary["best"]["step"] == top["step"]

    done = run_cli("eval", str(run), "--split", "dev", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    trained = last_json(done.stdout)
    assert trained["kind"] == "textlm" and trained["protocol"]["name"] == "lm" and trained["n_samples"] == 60
    # the same sentences scored in other batches (the synthetic sentences fit max_tokens: nothing is cut)
    assert abs(trained["perplexity"] - top["dev_perplexity"]) < 1e-6 * top["dev_perplexity"]
    preds = jsonl(Path(trained["predictions"]))
    nll = -sum(p["logprob"] for p in preds) / sum(p["tokens"] for p in preds)
    assert abs(trained["perplexity"] - math.exp(nll)) < 1e-9 * trained["perplexity"]

    init = next(p for p in run.iterdir() if p.name.startswith("init-"))
    done = run_cli("eval", str(init), "--split", "dev", "--data", synthetic_store["manifest"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    untrained = last_json(done.stdout)
    print(f"dev perplexity {untrained['perplexity']:.2f} -> {trained['perplexity']:.2f}")
    assert trained["perplexity"] <= RATIO * untrained["perplexity"]
