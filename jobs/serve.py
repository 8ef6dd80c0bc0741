"""Deploy the translation service (Ray Serve) on a cluster, as a Ray job.

Launch (from the repository root; token auth is on by default in Ray >= 2.60, see README):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/serve.py conf/serve/default.yaml models.translate.checkpoint=s3://runs/train_synthetic_tiny/best \
        http.host=0.0.0.0 auth.token_env=SLT_TOKEN auth.required=true

(``http.host=0.0.0.0`` opens the service beyond the node, so the example turns bearer-token auth on: the job's
environment must then carry ``SLT_TOKEN``, e.g. ``--runtime-env-json '{"env_vars": {"SLT_TOKEN": "..."}}'``.)

Arguments: a config of kind ``serve`` followed by ``key=value`` overrides. The application keeps running on the
cluster after the job returns (Serve's controller is detached); ``serve shutdown`` or ``serve delete APP`` stops
it. Prints ``{"app": ..., "url": ...}`` as JSON on the last line of the job's log; exits 2 with a one-line
reason on bad input (a missing checkpoint, an unknown key, auth required but no token).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from ray_slt.jobs import job_main, require
    from ray_slt.serve.app import start

    def run(cfg):
        require(cfg, argv[0], "serve")
        return {"app": cfg.app_name, "url": start(cfg)}

    return job_main(argv, __doc__, "serve", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
