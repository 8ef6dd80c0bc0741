"""Typed configs: every file in conf/ loads and validates; overrides are type-checked and name bad keys."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ray_slt.config import CONFIG_KINDS, build_config, config_hash, load_config
from ray_slt.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def all_configs():
    return sorted(CONF.glob("*.yaml"))


def test_conf_has_configs():
    assert all_configs(), "conf/ holds no YAML configs"


@pytest.mark.parametrize("path", all_configs(), ids=lambda p: p.name)
def test_every_config_loads_and_starts_with_a_comment(path):
    text = path.read_text(encoding="utf-8")
    header = list(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines()))
    assert header, f"{path.name} must open with a comment saying what it is and how to run it"
    assert any(cmd in line for line in header for cmd in ("ray-slt ", "ray job submit", "python jobs/")), (
        f"{path.name}: the opening comment does not say how to run it"
    )
    cfg = load_config(str(path))
    assert cfg.kind in CONFIG_KINDS
    absolute = [f"{key}={v}" for key, v in _paths(cfg.model_dump()) if v.startswith("/") and key not in URL_KEYS]
    assert not absolute, f"absolute paths in a config (configs must run on any machine): {absolute}"


URL_KEYS = {"route_prefix"}  # HTTP routes start with '/' and are not file paths


def _paths(data, key=""):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, k)
    elif isinstance(data, list):
        for v in data:
            yield from _paths(v, key)
    elif isinstance(data, str):
        yield key, data


BASE = {"kind": "prepare", "dataset": "wlasl", "root": "data/wlasl", "out": "runs/w.parquet"}


def test_overrides_are_parsed_and_type_checked():
    cfg = build_config(
        BASE, ["skip_bad=true", "splits=[dev, test]", "options.subset=100", "curation.rare_subset.rare=5"]
    )
    assert cfg.skip_bad is True and cfg.splits == ["dev", "test"] and cfg.options == {"subset": 100}
    assert cfg.curation.rare_subset.rare == 5 and cfg.curation.rare_subset.rest == 20000
    with pytest.raises(ConfigError, match=r"skip_bad: .*boolean.*from override skip_bad='maybe'"):
        build_config(BASE, ["skip_bad=maybe"])
    with pytest.raises(ConfigError, match=r"curation.rare_subset.rare: .*greater than or equal to 0"):
        build_config(BASE, ["curation.rare_subset.rare=-1"])


def test_unknown_keys_are_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'skip_bda'.*did you mean 'skip_bad'"):
        build_config(BASE, ["skip_bda=true"])
    with pytest.raises(ConfigError, match=r"unknown key 'curation.clen'.*did you mean 'curation.clean'"):
        build_config(BASE, ["curation.clen=true"])
    with pytest.raises(ConfigError, match=r"'root' is a value, not a section"):
        build_config(BASE, ["root.x=1"])
    with pytest.raises(ConfigError, match=r"splitz: unknown key"):
        build_config({**BASE, "splitz": ["dev"]})
    with pytest.raises(ConfigError, match="not of the form key=value"):
        build_config(BASE, ["skip_bad"])
    with pytest.raises(ConfigError, match="unknown config kind 'trian'"):
        build_config({**BASE, "kind": "trian"})


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("# comment\nkind: prepare\nroot: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(str(bad))


def test_config_hash_is_stable_and_sensitive():
    a, b = build_config(BASE), build_config(BASE, ["skip_bad=true"])
    assert config_hash(a) == config_hash(build_config(dict(BASE))) and config_hash(a) != config_hash(b)
