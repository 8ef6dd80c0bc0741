"""cluster.yaml validates against the Ray cluster launcher's own schema and describes the cluster we document."""

from __future__ import annotations

import copy

import pytest
import yaml
from testlib import REPO


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


def test_cluster_yaml_is_valid_for_the_launcher(cluster):
    cfg = validate(cluster)
    nodes = cfg["available_node_types"]
    assert cfg["head_node_type"] == "head" and {"gpu_worker", "cpu_worker"} <= set(nodes)
    assert nodes["gpu_worker"]["min_workers"] == 0 < nodes["gpu_worker"]["max_workers"]  # autoscaling from zero
    assert cfg["max_workers"] >= sum(n.get("max_workers", 0) for k, n in nodes.items() if k != "head")
    assert all("IamInstanceProfile" in n["node_config"] for n in nodes.values())  # S3 through instance profiles
    setup = " ".join(cfg["setup_commands"])
    assert "pip install -e" in setup and "torch" in setup  # the project is installed on every node
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])  # not exposed publicly


def test_the_schema_check_catches_mistakes(cluster):
    from jsonschema.exceptions import ValidationError

    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["gpu_worker"]["max_workers"] = "eight"
    with pytest.raises(ValidationError):
        validate(bad)
    bad = copy.deepcopy(cluster)
    bad["idle_timeout_minutes"] = "soon"
    with pytest.raises(ValidationError):
        validate(bad)
