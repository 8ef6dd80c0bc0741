"""The synthetic corpus: deterministic, well-formed COCO-WholeBody poses, a learnable grammar."""

from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest

from ray_slt.config import build_config
from ray_slt.data import manifest, synthetic
from ray_slt.data.poses import read_pose
from ray_slt.data.prepare import prepare

SPEC = synthetic.SyntheticSpec(train=24, dev=6, test=6, signers=3, seed=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    synthetic.generate(str(root), SPEC)
    return root


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(corpus, tmp_path):
    synthetic.generate(str(tmp_path), SPEC)
    assert _digest(tmp_path) == _digest(corpus)
    other = tmp_path / "other"
    synthetic.generate(str(other), synthetic.SyntheticSpec(train=24, dev=6, test=6, signers=3, seed=8))
    assert _digest(other) != _digest(corpus)


def test_manifest_is_marked_synthetic_and_held_out_sentences_are_new(corpus, tmp_path):
    out = tmp_path / "m.parquet"
    cfg = build_config({"kind": "prepare", "dataset": "synthetic", "root": str(corpus), "out": str(out)})
    assert prepare(cfg, progress=False)["splits"] == {"train": 24, "dev": 6, "test": 6}
    rows = manifest.read_manifest(str(out)).to_pylist()
    assert all(r["sign_language"] == "qsl" and '"synthetic": true' in r["meta"] for r in rows)
    train = {r["gloss"] for r in rows if r["split"] == "train"}
    assert all(r["gloss"] not in train for r in rows if r["split"] != "train")
    assert (corpus / "README.md").read_text().startswith("# Synthetic sign language corpus (NOT a real")
    # options given for an existing corpus must be the ones it was made with (else it is not what was asked)
    same = {"train": 24, "seed": 7}
    assert prepare(build_config({"kind": "prepare", "dataset": "synthetic", "root": str(corpus), "out": str(out),
                                 "options": same}), progress=False)["splits"]["train"] == 24  # fmt: skip
    from ray_slt.errors import DataError

    with pytest.raises(DataError, match=r"other options \(train: 24 there, 64 asked\)"):
        prepare(build_config({"kind": "prepare", "dataset": "synthetic", "root": str(corpus), "out": str(out),
                              "options": {"train": 64}}), progress=False)  # fmt: skip


def test_two_seeds_under_two_codes_stand_in_for_two_languages_read_as_one_source(corpus, tmp_path):
    """``sign_language``: a local-use code for the corpus's rows (ids carry it when it is not qsl); two corpora
    read as one source (a multilingual run's ``data.manifest: [a, b]``), ids in order over both; a sample id
    in both is an error."""
    from ray_slt.errors import ConfigError, DataError
    from ray_slt.features.source import SampleSource

    other = tmp_path / "other"
    synthetic.generate(str(other), synthetic.SyntheticSpec(train=24, dev=6, test=6, signers=3, seed=8))
    a, b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    prepare(build_config({"kind": "prepare", "dataset": "synthetic", "root": str(corpus), "out": a}), progress=False)
    prepare(build_config({"kind": "prepare", "dataset": "synthetic", "root": str(other), "out": b,
                          "options": {"sign_language": "qsb"}}), progress=False)  # fmt: skip
    rows_b = manifest.read_manifest(b).to_pylist()
    assert all(r["sign_language"] == "qsb" and r["sample_id"].startswith("synthetic.qsb.syn") for r in rows_b)
    both = SampleSource(manifest=[a, b])
    ids = both.ids("train")
    assert len(ids) == 48 and ids == sorted(ids)
    assert {r["sign_language"] for r in both.samples("dev")} == {"qsl", "qsb"}
    texts, glosses = both.texts("train")
    assert len(texts) == len(glosses) == 48
    shutil.copy(a, tmp_path / "a2.parquet")
    with pytest.raises(DataError, match="is in both"):
        SampleSource(manifest=[a, str(tmp_path / "a2.parquet")]).ids("train")
    with pytest.raises(ConfigError, match="listed twice"):
        SampleSource(manifest=[a, a])
    for bad in ("qsl1", "ase", "QSB"):  # never a real language's code
        with pytest.raises(ConfigError, match="local-use code"):
            prepare(build_config({"kind": "prepare", "dataset": "synthetic", "root": str(other), "out": b,
                                  "options": {"sign_language": bad}}), progress=False)  # fmt: skip


def test_translations_follow_the_grammar():
    rng = np.random.default_rng(0)
    for _ in range(300):
        glosses, text = synthetic.sample_sentence(rng)
        verb = next(g for g in glosses if g in synthetic.VERBS)
        present, past, base, _ = synthetic.VERBS[verb]
        negated = glosses[-1] == "NOT"
        assert glosses[-1 - negated] == verb  # verb-final
        if glosses[0] == "YESTERDAY":
            assert text.startswith("yesterday the ") and (f"did not {base}" if negated else f" {past} ") in text + " "
        elif glosses[0] == "TOMORROW":
            assert (f"will not {base}" if negated else f"will {base}") in text
        else:
            assert (f"does not {base}" if negated else f" {present} ") in text + " "
        adjectives = [g for g in glosses if g in synthetic.ADJECTIVES]
        if adjectives:
            adj = synthetic.ADJECTIVES[adjectives[0]]
            assert re.search(rf"\b(a|an) {adj} \w+$", text)
            assert glosses.index(adjectives[0]) == glosses.index(verb) - 1  # post-nominal, before the verb


def test_poses_are_valid_coco_wholebody_and_signs_are_distinct(corpus):
    rows = (corpus / "synthetic.tsv").read_text().splitlines()[1:]
    num_frames, pose_path = rows[0].split("\t")[5:7]
    pose = read_pose(str(corpus / pose_path))
    assert [c.name for c in pose.header.components] == ["BODY", "FACE", "LEFT_HAND", "RIGHT_HAND"]
    assert pose.body.data.shape == (int(num_frames), 1, 133, 2) and pose.body.fps == synthetic.FPS
    conf = pose.body.confidence[:, 0]
    assert (conf[:, [5, 6, 9, 10]] > 0).all()  # shoulders and wrists always detected
    assert (conf[:, 13:23] == 0).all()  # legs out of frame: masked, as an estimator reports them
    assert np.ma.getmaskarray(pose.body.data)[:, 0, 13:23].all()
    xy = pose.body.data[:, 0].filled(np.nan)
    inside = xy[conf > 0]
    assert (
        (inside[:, 0] > 0).all() and (inside[:, 0] < synthetic.WIDTH).all() and (inside[:, 1] < synthetic.HEIGHT).all()
    )
    # the dominant (right) wrist moves; every sign of the inventory has its own path/handshape
    assert np.nanstd(xy[:, 10], axis=0).max() > 10
    inventory = synthetic.build_inventory(SPEC.seed)
    forms = {(s.handshape, s.start, s.movement, s.hands) for s in inventory.values()}
    assert len(forms) == len(inventory) == len(synthetic.LEXICON)


def test_different_signs_render_differently_and_same_sign_similarly():
    inventory = synthetic.build_inventory(0)
    signer = synthetic.make_signers(1, 0)[0]

    def wrist_path(gloss, seed):
        kp, _ = synthetic.render_sentence([gloss], inventory, signer, np.random.default_rng(seed))
        path = kp[:, 10]
        return np.interp(np.linspace(0, 1, 40), np.linspace(0, 1, len(path)), path[:, 0]), np.interp(
            np.linspace(0, 1, 40), np.linspace(0, 1, len(path)), path[:, 1]
        )

    same = np.mean([np.abs(np.subtract(wrist_path("APPLE", s), wrist_path("APPLE", s + 1))).mean() for s in range(3)])
    diff = np.mean(
        [
            np.abs(np.subtract(wrist_path("APPLE", s), wrist_path(g, s))).mean()
            for s, g in enumerate(["HOUSE", "EAT", "TOMORROW"])
        ]
    )
    assert diff > 2 * same


# ------------------------------------------------------------------------------------------- isolated mode

ISO = synthetic.IsolatedSpec(classes=12, train=2, dev=1, test=1, signers=3, seed=5)


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    root = tmp_path_factory.mktemp("iso")
    synthetic.generate_isolated(str(root), ISO)
    return root


def test_isolated_generation_is_deterministic(isolated, tmp_path):
    synthetic.generate_isolated(str(tmp_path), ISO)
    assert _digest(tmp_path) == _digest(isolated)
    other = tmp_path / "other"
    synthetic.generate_isolated(str(other), synthetic.IsolatedSpec(**{**ISO.__dict__, "seed": 6}))
    assert _digest(other) != _digest(isolated)


def test_isolated_signs_are_parameter_combinations_described_one_parameter_per_fragment():
    from ray_slt.data.lexicon import fragments

    inventory = synthetic.isolated_inventory(200, seed=0)
    keys = {(s.handshape, s.orientation, s.start, s.movement, s.hands) for s in inventory.values()}
    assert len(keys) == 200  # distinct combinations
    for param, values in (("handshape", synthetic.HANDSHAPES), ("orientation", synthetic.ORIENTATIONS),
                          ("start", synthetic.LOCATIONS), ("movement", synthetic.MOVEMENTS),
                          ("hands", synthetic.HANDEDNESS)):  # fmt: skip
        used = {getattr(s, param) for s in inventory.values()}
        assert used == set(values), param  # every value of every parameter occurs
    descriptions = {g: synthetic.describe(s) for g, s in inventory.items()}
    assert len(set(descriptions.values())) == 200
    for gloss, sign in inventory.items():
        frags = fragments(descriptions[gloss])
        assert len(frags) == 5, descriptions[gloss]
        shape = synthetic.HANDSHAPE_TEXT[sign.handshape]
        assert frags[0] == shape[0].upper() + shape[1:]
        assert frags[1] == synthetic.ORIENTATION_TEXT[sign.orientation]
        assert frags[2] == f"starting {synthetic.LOCATION_TEXT[sign.start]}"
        assert frags[4] == synthetic.HANDS_TEXT[sign.hands]
        if sign.movement in ("straight", "arc"):
            assert sign.end != sign.start and frags[3].endswith(synthetic.DESTINATION_TEXT[sign.end])
        else:
            assert sign.end == sign.start
    with pytest.raises(ValueError, match="classes must be between 2 and"):
        synthetic.isolated_inventory(100000, seed=0)


def test_isolated_corpus_files_and_manifest(isolated, tmp_path):
    from ray_slt.data.lexicon import read_lexicon

    entries, bad = read_lexicon(str(isolated / "lexicon.csv"))
    assert bad == [] and len(entries) == 12 and {e.language for e in entries} == {"qsl"}
    cfg = build_config({"kind": "prepare", "dataset": "synthetic_isolated", "root": str(isolated),
                        "out": str(tmp_path / "m.parquet")})  # fmt: skip
    prepare(cfg, progress=False)
    rows = manifest.read_manifest(str(tmp_path / "m.parquet")).to_pylist()
    assert len(rows) == 12 * 4
    per = {(r["gloss"], r["split"]) for r in rows}
    assert per == {(e.gloss, s) for e in entries for s in ("train", "dev", "test")}
    assert all(r["text"] == r["gloss"] for r in rows) and len({r["signer"] for r in rows}) == 3
    # two samples of one sign differ (signers, timing) but share the handshape of the lexicon's description
    a, b = sorted((r for r in rows if r["gloss"] == entries[0].gloss and r["split"] == "train"),
                  key=lambda r: r["sample_id"])  # fmt: skip
    pa, pb = read_pose(a["pose_uri"]), read_pose(b["pose_uri"])
    assert pa.body.data.shape[2] == 133 and not np.array_equal(pa.body.data[:5], pb.body.data[:5])
