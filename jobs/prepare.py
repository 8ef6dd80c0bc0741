"""Build a manifest from a corpus's official files, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/prepare.py conf/prepare/phoenix14t.yaml root=s3://corpora/phoenix out=s3://runs/phoenix.parquet

Arguments: a config of kind ``prepare`` followed by ``key=value`` overrides. Prints the summary as JSON on
the last line of the job's log. Exits 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.data.prepare import prepare
    from ray_slt.jobs import job_main, require

    def run(cfg):
        require(cfg, argv[0], "prepare")
        return prepare(cfg, progress=True)

    return job_main(argv, __doc__, "prepare", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
