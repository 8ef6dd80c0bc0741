"""`ray-slt tune` end to end on a local 2-CPU Ray, in fresh processes: a sweep of three tiny trials of the synthetic
translator (learning rate on a grid of two that learn and one that does not, the projector's tied to the LLM's;
projector width sampled per trial), two at a time, ASHA on dev BLEU-4 at every epoch; interrupted (SIGINT to the driver)
once two trials have finished, then resumed by running the same command again. Then the best trial's checkpoint is
evaluated with `ray-slt eval`.

What must hold:
- the trial with learning rate 1e-6 (it hardly moves from its random start) is stopped by ASHA before its last
  epoch; the best trial is one that learns (at least one of those trains through both epochs);
- the resumed sweep does not run the finished trials again (one attempt each, their runs untouched), restarts
  the interrupted one, and ASHA still stops it (its rungs are rebuilt from the runs' dev curves);
- the best trial's checkpoint reproduces its reported dev BLEU-4 under `ray-slt eval`, and its training config
  (best/train_config.yaml) carries its parameters;
- the results table (markdown/CSV/JSON) and the PNG plots are written under the sweep's directory;
- the feature store is read, never written (trials do not extract again).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from testlib import REPO
from tune_helpers import last_json, run_cli, start_cli

from ray_slt.config import load_config
from ray_slt.training.config import TrainConfig

CONF = str(REPO / "conf" / "tune" / "synthetic_tiny.yaml")
GOOD_LRS, BAD_LR, EPOCHS = (3.0e-3, 2.0e-3), 1.0e-6, 2
# grid entries are expanded (3 trials), the width sampled once per grid point (seeded)
SPACE = (
    f"space={{sft.projector.hidden: {{randint: [32, 128]}}, "
    f"sft.lr_llm: {{grid: [{GOOD_LRS[0]}, {GOOD_LRS[1]}, {BAD_LR}]}}, sft.lr_projector: {{same_as: sft.lr_llm}}}}"
)


def tree_state(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in sorted(root.rglob("*")) if p.is_file()}


def finished_trials(trials: Path) -> list[str]:
    """Trials whose record shows an ended attempt (trained to the end, or stopped by ASHA)."""
    done = []
    for record in trials.glob("*/tune_trial.json"):
        try:
            attempts = json.loads(record.read_text())["attempts"]
        except (json.JSONDecodeError, KeyError):
            continue  # being rewritten
        if attempts and ("finished" in attempts[-1] or "stopped" in attempts[-1]):
            done.append(record.parent.name)
    return done


def test_sweep_asha_interrupt_resume_and_best_reproduces(tiny_store, tmp_path):
    runs = tmp_path / "sweeps"
    args = [
        "tune", CONF, f"storage={runs}", "name=tiny", f"overrides.data.features={tiny_store['features']}",
        "overrides.optim.batch_size=8", f"overrides.optim.epochs={EPOCHS}",
        "overrides.sft.max_new_tokens=8", "overrides.trainer.log_every=100", "search.algorithm=random", SPACE,
        "--json",
    ]  # fmt: skip
    store_before = tree_state(Path(tiny_store["features"]))
    sweep = runs / "tiny"
    trials = sweep / "trials"

    # 1. start the sweep; interrupt it (Ctrl-C) as soon as two trials have ended
    with open(tmp_path / "first.log", "w") as log:
        proc = start_cli(*args, log=log)
        deadline = time.time() + 900
        while len(finished_trials(trials)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(2)
        first_done = sorted(finished_trials(trials))
        assert len(first_done) >= 2, (tmp_path / "first.log").read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=300)
    started = {p.parent.name for p in trials.glob("*/tune_trial.json")}
    first_log = (tmp_path / "first.log").read_text()
    assert rc == 2 and "unfinished trials (interrupted)" in first_log, first_log[-3000:]
    before = {t: tree_state(trials / t) for t in first_done}

    # 2. the same command again resumes it
    done = run_cli(*args, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = last_json(done.stdout)
    assert summary["resumed"] is True and summary["unfinished"] == 0 and summary["num_trials"] == 3
    rows = {r["trial_id"]: r for r in summary["trials"]}
    for trial_id in first_done:  # finished before the interruption: not run again
        record = json.loads((trials / trial_id / "tune_trial.json").read_text())
        assert len(record["attempts"]) == 1, record
        assert tree_state(trials / trial_id) == before[trial_id]
    assert set(rows) - set(first_done), "the interruption left no trial to resume"
    for trial_id in set(rows) - set(first_done):  # interrupted: started again; not started: started once
        record = json.loads((trials / trial_id / "tune_trial.json").read_text())
        assert len(record["attempts"]) == (2 if trial_id in started else 1), record

    # 3. ASHA stopped the trials that do not learn (a learning one may be stopped too, if the other is better)
    completed = 0
    for r in rows.values():
        assert r["params"]["sft.lr_projector"] == r["params"]["sft.lr_llm"]  # tied
        assert type(r["params"]["sft.projector.hidden"]) is int and 32 <= r["params"]["sft.projector.hidden"] <= 128
        if r["params"]["sft.lr_llm"] == BAD_LR:
            assert r["status"] == "stopped" and r["epochs"] < EPOCHS, r
        else:
            assert r["status"] in ("completed", "stopped"), r
            completed += r["status"] == "completed"
            assert (r["status"] == "completed") == (r["epochs"] == EPOCHS)
            assert (Path(r["run_dir"]) / "run.json").exists() == (r["status"] == "completed")
    assert completed >= 1
    best = summary["best"]
    assert best["params"]["sft.lr_llm"] in GOOD_LRS
    assert (
        best["dev_bleu4"]
        == max(r["best"] for r in rows.values())
        > max(r["best"] for r in rows.values() if r["params"]["sft.lr_llm"] == BAD_LR)
    )

    # 4. the best trial's checkpoint and config reproduce its dev score
    done = run_cli("eval", best["checkpoint"], "--split", "dev", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    scored = last_json(done.stdout)
    assert scored["n_samples"] == 12
    assert scored["bleu4"] == pytest.approx(best["dev_bleu4"], abs=1e-9)
    cfg = load_config(best["train_config"])
    assert isinstance(cfg, TrainConfig)
    lr = best["params"]["sft.lr_llm"]
    assert (cfg.sft.projector.hidden, cfg.sft.lr_llm, cfg.sft.lr_projector) == (
        best["params"]["sft.projector.hidden"], lr, lr)  # fmt: skip
    assert cfg.trainer.storage == str(trials) and cfg.trainer.name == best["trial_id"]
    assert json.loads((sweep / "best.json").read_text())["checkpoint"] == best["checkpoint"]

    # 5. results table and plots
    md = (sweep / "results.md").read_text()
    assert all(f"| {t} |" in md for t in rows)
    csv_lines = (sweep / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("trial_id,status,sft.projector.hidden,sft.lr_llm")
    assert json.loads((sweep / "results.json").read_text())[0]["trial_id"] == best["trial_id"]
    for name in ("sft.projector.hidden.png", "sft.lr_llm.png", "curves.png"):
        assert (sweep / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 6. the trials read the feature store and wrote nothing into it
    assert tree_state(Path(tiny_store["features"])) == store_before
