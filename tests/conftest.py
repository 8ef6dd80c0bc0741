"""Shared fixtures: the real sample data, a real S3-compatible server on loopback, one Ray per module."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from testlib import REPO, SHARED_DATA, free_port, shared  # noqa: F401  (re-exported for older imports)

# Keep Ray and friends quiet and offline in tests.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SESSION: list[pytest.Session] = []  # the finished session, whose exit status pytest_unconfigure passes on


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Shut down a Ray that a test started in this process and left running (Ray's own exit hook would otherwise)."""
    _SESSION.append(session)
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's exit status once every report is written, skipping the interpreter's teardown.

    After a full run this process holds the native threads of Ray's core worker, gRPC, torch's thread pools and
    the S3 server's sockets; tearing them down at interpreter exit crashed once with a segmentation fault after the
    summary line (the CI reported 1 failed, 789 passed, then make saw SIGSEGV instead of pytest's status). The
    results are already reported at this point (this hook runs last), so nothing is lost by not tearing down.
    Only when this process is pytest itself (``pytest``, ``python -m pytest``): a program that calls
    ``pytest.main()`` keeps running.
    """
    launcher = Path(sys.argv[0])
    if _SESSION and "pytest" in (launcher.name, launcher.parent.name):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(_SESSION[0].exitstatus))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto's server mode) on 127.0.0.1, for the whole session.

    The AWS environment variables point every client (s3fs in this process and in Ray workers started
    afterwards) at it. Yields the endpoint URL.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the loopback server; yields its ``s3://`` URI."""
    import fsspec

    name = f"test-{uuid.uuid4().hex[:10]}"
    fs = fsspec.filesystem("s3")
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) per test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
