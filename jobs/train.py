"""Train a translator on Ray Train, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/train.py conf/train_sft_qwen3_8b_cluster.yaml trainer.storage=s3://my-bucket/runs

Arguments: a config of kind ``train`` followed by ``key=value`` overrides (the same as ``ray-slt train``).
The job connects to the cluster it runs on (RAY_ADDRESS), trains, and prints the run summary (best
checkpoint on dev BLEU-4, run directory, curves) as JSON on the last line of its log. Exits 2 with a one-line
reason on bad input or a failed run. Submitting it again with the same config resumes the run.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from ray_slt.config import load_config
    from ray_slt.errors import RaySltError
    from ray_slt.training.commands import init_ray
    from ray_slt.training.config import TrainConfig
    from ray_slt.training.run import run_training

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        cfg = load_config(argv[0], argv[1:])
        if not isinstance(cfg, TrainConfig):
            raise RaySltError(f"{argv[0]}: a config of kind 'train' is needed, not {cfg.kind!r}")
        init_ray(None)
        summary = run_training(cfg)
    except RaySltError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
