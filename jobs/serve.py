"""Deploy the translation service (Ray Serve) on a cluster, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/serve.py conf/serve.yaml translator.checkpoint=s3://runs/train_synthetic_tiny/best http.host=0.0.0.0

Arguments: a config of kind ``serve`` followed by ``key=value`` overrides. The application keeps running on the
cluster after the job returns (Serve's controller is detached); ``serve shutdown`` or ``serve delete APP`` stops
it. Prints ``{"app": ..., "url": ...}`` as JSON on the last line of the job's log; exits 2 with a one-line
reason on bad input (a missing checkpoint, an unknown key, auth required but no token).
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from ray_slt.config import load_config
    from ray_slt.errors import RaySltError
    from ray_slt.serve.app import start

    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        cfg = load_config(argv[0], argv[1:])
        if cfg.kind != "serve":
            raise RaySltError(f"{argv[0]}: a config of kind 'serve' is needed, not {cfg.kind!r}")
        url = start(cfg)
    except RaySltError as e:
        print(f"serve: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"app": cfg.app_name, "url": url}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
