"""Typed configs: every file in conf/ loads and validates; overrides are type-checked and name bad keys."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ray_slt.config import CONFIG_KINDS, build_config, config_hash, load_config
from ray_slt.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def is_partial(path: Path) -> bool:
    """Base files that configs extend (base_*.yaml, data_*.yaml): not runs themselves."""
    return path.name.startswith(("base_", "data_"))


def all_configs():
    return sorted(p for p in CONF.rglob("*.yaml") if not is_partial(p))


def test_conf_has_configs_grouped_by_family():
    assert all_configs(), "conf/ holds no YAML configs"
    assert not list(CONF.glob("*.yaml")), (
        "configs live in conf/<family>/ (prepare, extract, train, tune, serve, vlmbench)"
    )
    families = {p.relative_to(CONF).parts[0] for p in all_configs()}
    assert families == {"prepare", "extract", "train", "tune", "serve", "vlmbench"}


def test_every_base_file_is_extended_and_says_so():
    from ray_slt.config import _read_yaml

    partials = sorted(p for p in CONF.rglob("*.yaml") if is_partial(p))
    assert partials
    used = set()
    for path in all_configs():
        bases = _read_yaml(str(path)).get("extends") or []
        used |= {(path.parent / b).resolve() for b in ([bases] if isinstance(bases, str) else bases)}
    for path in partials:
        assert path.resolve() in used, f"{path.name} is extended by no config"
        assert path.read_text(encoding="utf-8").startswith("# Base of "), f"{path.name}: say what it is a base of"


@pytest.mark.parametrize("path", all_configs(), ids=lambda p: str(p.relative_to(CONF)))
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


def test_extends_merges_bases_in_order_and_the_file_over_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text(
        "kind: prepare\ndataset: wlasl\nroot: data/a\nout: runs/a.parquet\n"
        "options: {subset: 100}\nsplits: [train, dev]\n"
    )
    (tmp_path / "sub" / "delta.yaml").write_text("root: data/b\noptions: {}\nsplits: [test]\n")
    (tmp_path / "sub" / "run.yaml").write_text(
        "# a run\nextends: [../base.yaml, delta.yaml]\nout: runs/c.parquet\noptions: {subset: 300}\n"
    )
    cfg = load_config(str(tmp_path / "sub" / "run.yaml"), ["root=data/d"])
    # the later base over the earlier, the file over both, mappings merged key by key, lists replaced
    assert (cfg.root, cfg.out, cfg.splits, cfg.options) == ("data/d", "runs/c.parquet", ["test"], {"subset": 300})
    (tmp_path / "loop_a.yaml").write_text("extends: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("extends: loop_a.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(str(tmp_path / "loop_a.yaml"))
    (tmp_path / "missing.yaml").write_text("extends: nowhere.yaml\nkind: prepare\n")
    with pytest.raises(ConfigError, match=r"extends nowhere\.yaml, which does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("extends: {a: 1}\n")
    with pytest.raises(ConfigError, match="extends must be a file name or a list"):
        load_config(str(tmp_path / "bad.yaml"))
