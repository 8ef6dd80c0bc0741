"""Train any stage (pretrain, sft, vlm, grpo, islr, hali, ...) on Ray Train, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py conf/train/sft_qwen3_8b_cluster.yaml trainer.storage=s3://my-bucket/runs

Arguments: a config of kind ``train`` followed by ``key=value`` overrides (the same as ``ray-slt train``).
The job connects to the cluster it runs on (RAY_ADDRESS), trains with the stage's recipe, and prints the run
summary (best checkpoint on the stage's selection metric, e.g. dev BLEU-4 or zero-shot top-1; run directory,
curves) as JSON on the last line of its log. Exits 2 with a one-line reason on bad input or a failed run.
Submitting it again with the same config resumes the run.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.jobs import job_main, require
    from ray_slt.training.commands import init_ray
    from ray_slt.training.run import preflight, run_training

    def run(cfg):
        require(cfg, argv[0], "train")
        preflight(cfg)
        init_ray(None)
        return run_training(cfg)

    return job_main(argv, __doc__, "train", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
