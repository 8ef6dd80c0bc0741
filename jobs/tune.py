"""Sweep hyperparameters of a translator on Ray Tune, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/tune.py conf/tune/phoenix_gloss2text.yaml storage=s3://my-bucket/sweeps

Arguments: a config of kind ``tune`` followed by ``key=value`` overrides (the same as ``ray-slt tune``). The job
connects to the cluster it runs on (RAY_ADDRESS), runs the sweep (each trial a Ray Train run of the training
stage's ``train_func``; ASHA on dev BLEU-4), writes the results table, plots and ``best.json`` under
``{storage}/{name}``, and prints the summary (best trial: parameters, dev score, checkpoint) as JSON on the last
line of its log. Exits 2 with a one-line reason on bad input or a failed sweep. Submitting it again with the
same config resumes the sweep (finished trials are kept).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.jobs import job_main
    from ray_slt.training.commands import init_ray
    from ray_slt.tune.config import base_train_dict, check_space, load_sweep
    from ray_slt.tune.sweep import run_sweep

    def run(cfg):
        check_space(cfg, base_train_dict(cfg))  # bad paths/values fail before Ray starts
        init_ray(None)
        return run_sweep(cfg)

    return job_main(argv, __doc__, "tune", run, load=load_sweep)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
