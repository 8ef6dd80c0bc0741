"""Evaluate a saved model on a split (any kind: translators, recognizers), as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/eval.py s3://my-bucket/runs/hali_wlasl2000 --split test --protocol gzsl

Arguments: those of ``ray-slt eval`` (a run, checkpoint or model directory, then --split, --protocol, --data,
--out, ...; ``python jobs/eval.py --help`` lists them). The model is read where it is (s3:// included), the
protocol's files and metrics.json are written beside it (or to --out), and the metrics are printed as JSON on the
last line of the job's log. Exits 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.cli import main as cli

    if not argv:
        print(__doc__)
        return 2
    return cli(["eval", *argv] if "--json" in argv or argv[0] in ("-h", "--help") else ["eval", "--json", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
