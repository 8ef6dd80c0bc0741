"""Extract poses, keypoints, crops and DINOv2 features from a manifest, as a Ray job (Ray Data pipeline).

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/extract.py conf/extract.yaml manifest=s3://runs/phoenix.parquet out=s3://runs/phoenix-features \
        features.kind=dinov2 frames.sampling=uniform:64

Arguments: a config of kind ``extract`` followed by ``key=value`` overrides. Re-submitting the same command
resumes (finished samples are skipped). Prints the summary as JSON on the last line of the job's log. Exits 2
with a one-line reason on bad input.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from ray_slt.config import load_config
    from ray_slt.errors import RaySltError
    from ray_slt.features.extract import render_summary, run_extract

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        cfg = load_config(argv[0], argv[1:])
        summary = run_extract(cfg)
    except RaySltError as e:
        print(f"extract: error: {e}", file=sys.stderr)
        return 2
    print(render_summary(summary), file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
