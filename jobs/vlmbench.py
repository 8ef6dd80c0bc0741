"""Run a VLM benchmark (zero-shot WLASL recognition, binary matching or LexSign-Bench) as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/vlmbench.py conf/vlmbench/lexsign_qwen2_5_vl_7b_cluster.yaml out=runs/vlmbench/lexsign_qwen7b

Arguments: those of ``ray-slt vlmbench`` (a ``kind: vlmbench`` config, then ``key=value`` overrides). The answers
are appended to ``out/answers.jsonl`` as they arrive (a resubmitted job resumes from it), the Ray Data actors
answering on the cluster's GPUs (``gpus_per_worker``); metrics.json, summary.md and scores.png are written to
``out`` and the headline scores printed as JSON on the last line of the job's log. Build the question file first
(``ray-slt vlmbench-wlasl`` / ``ray-slt vlmbench-lexsign``). Exits 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.cli import main as cli

    if not argv:
        print(__doc__)
        return 2
    return cli(
        ["vlmbench", *argv] if "--json" in argv or argv[0] in ("-h", "--help") else ["vlmbench", "--json", *argv]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
