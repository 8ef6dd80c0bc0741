"""Extract poses, keypoints, crops and DINOv2 features from a manifest, as a Ray job (Ray Data pipeline).

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/extract.py conf/extract/default.yaml manifest=s3://runs/phoenix.parquet \
        out=s3://runs/phoenix-features features.kind=dinov2 frames.sampling=uniform:64

Arguments: a config of kind ``extract`` followed by ``key=value`` overrides. Re-submitting the same command
resumes (finished samples are skipped). Prints the summary as JSON on stdout. Exits 2
with a one-line reason on bad input, and 1 when every sample it tried failed (a wrong path or setting, most
likely; the errors table says which).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.features.extract import render_summary, run_extract
    from ray_slt.features.store import failure_reason
    from ray_slt.jobs import job_main, require

    def run(cfg):
        require(cfg, argv[0], "extract")
        summary = run_extract(cfg)
        print(render_summary(summary), file=sys.stderr)
        return summary

    return job_main(argv, __doc__, "extract", run, failed=failure_reason)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
