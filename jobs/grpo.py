"""RVLF stage 3: GRPO of an SFT translator with TRL on Ray Train, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/grpo.py conf/train/grpo_phoenix_gloss2text.yaml grpo.init=runs/phoenix_gloss2text

Arguments: a config of kind ``train`` with ``stage: grpo`` followed by ``key=value`` overrides (the same as
``ray-slt train``). The job connects to the cluster it runs on (RAY_ADDRESS), runs GRPO (one TRL trainer per
Ray Train worker, DDP), and prints the run summary (best checkpoint on dev BLEU-4, run directory, curves,
completions/s) as JSON on the last line of its log. Exits 2 with a one-line reason on bad input or a failed
run. Submitting it again with the same config resumes the run from its latest checkpoint. (``jobs/train.py``
runs the same config too: every stage goes through one driver; this entry point only insists on stage grpo.)
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.jobs import job_main, require
    from ray_slt.training.commands import init_ray

    def run(cfg):
        require(cfg, argv[0], "train", stage="grpo")
        from ray_slt.training.grpo import read_sft_config
        from ray_slt.training.run import run_training

        read_sft_config(cfg.grpo.init)  # a missing SFT checkpoint fails here, before Ray starts
        init_ray(None)
        return run_training(cfg)  # the one driver; the stage's recipe is TRL's GRPO

    return job_main(argv, __doc__, "grpo", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
