"""The notebooks in notebooks/ run headless on a tiny real run, so they never rot.

A two-epoch, one-worker, 200-sentence `ray-slt train` of the demo config on the synthetic corpus and a
`ray-slt eval` of its test split make the run; the run report and the corpus statistics notebooks are executed
by a Jupyter kernel (nbclient) exactly as a user opens them, pointed at the run through their environment
variables. Their outputs are checked against the files they read and the package functions they call.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
from testlib import REPO
from train_helpers import last_json, run_cli

NOTEBOOKS = REPO / "notebooks"


def execute(name: str, env: dict[str, str], monkeypatch) -> list[dict]:
    """Run a notebook in a fresh kernel (cwd notebooks/, like Jupyter); return the code cells' outputs."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    where = {"metadata": {"path": str(NOTEBOOKS)}}  # the kernel's working directory, as in Jupyter
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources=where).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def texts(outputs: list[dict]) -> str:
    return "\n".join(o.get("text") or o.get("data", {}).get("text/plain", "") for o in outputs)


def images(outputs: list[dict]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_notebooks_are_clean_and_valid():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["corpus_stats.ipynb", "run_report.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        # committed without outputs: a notebook's results come from the user's run, not from ours
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_run_report_on_a_tiny_run(synthetic_store, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    done = run_cli("train", str(REPO / "conf" / "train" / "synthetic_tiny.yaml"), f"trainer.storage={runs}",
                   f"data.features={synthetic_store['features']}", "data.limit_train=200", "data.limit_dev=30",
                   "optim.epochs=2", "eval.every_epochs=1", "trainer.num_workers=1", "--json", timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    run = Path(summary["run_dir"])
    done = run_cli("eval", str(run), "--split", "test", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    evaluation = last_json(done.stdout)
    metrics = json.loads(Path(evaluation["metrics_file"]).read_text())

    # EVAL left empty: the notebook finds the best checkpoint's test evaluation itself
    out = execute("run_report.ipynb", {"RAY_SLT_RUN": str(run), "RAY_SLT_EVAL": ""}, monkeypatch)
    text = texts(out)
    best = summary["best"]
    assert f"{summary['steps']} steps, 200 training samples" in text
    assert f"best checkpoint: step {best['step']}, dev BLEU-4 {best['dev_bleu4']:.2f}" in text
    # the score table is metrics.json's scores, rounded to 2 decimals
    table = next(t for t in map(texts, ([o] for o in out)) if t.lstrip().startswith("bleu1"))
    row = table.splitlines()[1].split()
    assert row[:2] == ["test", "(60)"]
    keys = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"]
    assert [float(x) for x in row[2:]] == [round(metrics[k], 2) for k in keys]
    assert metrics["bleu_signature"] in text
    markdown = "\n".join(o.get("data", {}).get("text/markdown", "") for o in out)
    assert "# Vocabulary bias" in markdown and "Sentences / word tokens: predicted 60 /" in markdown
    assert "train 200 /" in markdown  # the sentences the model was trained on (limit_train)
    # curves, sentence-score histograms, vocabulary-bias bars
    assert images(out) == 3


def test_corpus_stats_notebook(synthetic_store, monkeypatch):
    from ray_slt.data.manifest import read_manifest
    from ray_slt.data.stats import corpus_stats, render

    out = execute("corpus_stats.ipynb", {"RAY_SLT_MANIFEST": synthetic_store["manifest"]}, monkeypatch)
    text = texts(out)
    assert render(corpus_stats(read_manifest(synthetic_store["manifest"]))) in text
    assert images(out) == 2  # frame lengths, rank-frequency
    assert "all" in text and "720" in text  # the signer x split table's grand total
