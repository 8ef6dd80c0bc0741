"""Produce many sentences as poses (a producer set, a producer or a lexicon producer), as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/produce.py s3://my-bucket/models/signllm --sentences s3://my-bucket/sentences.tsv \
        --out s3://my-bucket/produced --workers 8

Arguments: those of ``ray-slt produce`` with ``--sentences`` (``python jobs/produce.py --help`` lists them). Each
sentence becomes OUT/poses/ID.pose and a record of OUT/index.jsonl (a bad one a record of OUT/errors.jsonl); a
resubmitted job skips what is done. The counts are printed as JSON on the last line of the job's log. Exits 2 with
a one-line reason on bad input.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.cli import main as cli

    if not argv:
        print(__doc__)
        return 2
    return cli(["produce", *argv] if "--json" in argv or argv[0] in ("-h", "--help") else ["produce", "--json", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
