"""SignLLM's producer set (MLSF + Prompt2LangGloss as served): languages are added and removed leaving the others'
files byte-identical, bad chains are refused before anything is written, the set produces what its chains'
models produce in process, and `ray-slt producer-set` / `ray-slt produce` write a .pose that pose-format reads
and a GIF of every frame."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from testlib import tiny_producer, tiny_text2gloss

from ray_slt.cli import main
from ray_slt.errors import ConfigError, DataError
from ray_slt.models.producer_set import add_language, choose_language, read_set, remove_language
from ray_slt.models.registry import load_predictor, model_kind


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("parts")
    return {"t2g": tiny_text2gloss(str(d / "t2g")), "gloss": tiny_producer(str(d / "gloss")),
            "text": tiny_producer(str(d / "text"), input="text", seed=1),
            "gloss2": tiny_producer(str(d / "gloss2"), seed=2),
            "t2g_multi": tiny_text2gloss(str(d / "t2g_multi"), tag="auto", languages=("ase", "qsb")),
            "multi": tiny_producer(str(d / "multi"), seed=3, languages=("ase", "qsb"))}  # fmt: skip


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_languages_are_added_and_removed_without_touching_the_others(parts, tmp_path):
    s = tmp_path / "set"
    add_language(str(s), "ase", parts["gloss"], parts["t2g"], spoken=["en", "en"])
    add_language(str(s), "bfi", parts["text"])
    before = {code: digests(s / "languages" / code) for code in ("ase", "bfi")}
    assert {"producer/modules.safetensors", "text2gloss/MANIFEST.json"} <= set(before["ase"])
    add_language(str(s), "gsg", parts["gloss2"], parts["t2g"], spoken=["de"])
    assert {code: digests(s / "languages" / code) for code in ("ase", "bfi")} == before
    index = read_set(str(s))
    assert sorted(index["languages"]) == ["ase", "bfi", "gsg"]
    assert index["languages"]["ase"]["spoken"] == ["en"] and index["languages"]["bfi"]["text2gloss"] is None
    assert model_kind(str(s)) == "producer_set"
    # the manifest lists every file of the set (what the model id hashes), nothing else
    listed = {f["path"] for f in json.loads((s / "MANIFEST.json").read_text())["files"]}
    assert listed == set(digests(s)) - {"MANIFEST.json"}
    remove_language(str(s), "gsg")
    assert not (s / "languages" / "gsg").exists()
    assert {code: digests(s / "languages" / code) for code in ("ase", "bfi")} == before
    assert sorted(read_set(str(s))["languages"]) == ["ase", "bfi"]


@pytest.mark.parametrize(
    ("code", "producer", "t2g", "spoken", "says"),
    [
        ("GSG", "gloss", "t2g", [], "ISO 639-3"),
        ("gsg", "gloss", "t2g", ["Deutsch"], "BCP-47"),
        ("gsg", "gloss", None, [], "reads glosses: give the text -> gloss model"),
        ("gsg", "text", "t2g", [], "reads sentences: its chain takes no text -> gloss model"),
        ("gsg", "t2g", None, [], "holds a text2gloss model, not a producer"),
        ("gsg", "gloss", "gloss2", [], "holds a producer model, not a text2gloss"),
        ("ase", "gloss", "t2g", [], "already has ase"),
    ],
)
def test_bad_chains_are_refused_before_anything_is_written(parts, tmp_path, code, producer, t2g, spoken, says):
    s = tmp_path / "set"
    add_language(str(s), "ase", parts["gloss"], parts["t2g"])
    before = digests(s)
    with pytest.raises(ConfigError, match=says):
        add_language(str(s), code, parts[producer], parts[t2g] if t2g else None, spoken=spoken)
    assert digests(s) == before
    with pytest.raises(ConfigError, match="has no fsl"):
        remove_language(str(s), "fsl")


def test_the_set_produces_what_its_chains_produce(parts, tmp_path):
    s = str(tmp_path / "set")
    add_language(s, "ase", parts["gloss"], parts["t2g"], spoken=["en"])
    add_language(s, "bfi", parts["text"])
    pred = load_predictor(s)
    sentences = ["my sister eats an apple", "tomorrow it rains"]
    samples = [{"sample_id": "a", "text": sentences[0], "sign_language": "ase", "spoken_language": "en"},
               {"sample_id": "b", "text": sentences[1], "sign_language": "bfi"},
               {"sample_id": "c", "text": sentences[1], "sign_language": "ase"}]  # fmt: skip
    out = pred.predict(samples)
    glosses = load_predictor(parts["t2g"]).predict([{"text": t} for t in (sentences[0], sentences[1])])
    gloss_producer, text_producer = load_predictor(parts["gloss"]), load_predictor(parts["text"])
    # each language's samples go through its chain as one batch, as here
    ase = gloss_producer.predict([{"gloss": g["gloss"]} for g in glosses])
    want = [ase[0], text_producer.predict([{"text": sentences[1]}])[0], ase[1]]
    assert [o["sign_language"] for o in out] == ["ase", "bfi", "ase"]
    assert [o["gloss"] for o in out] == [glosses[0]["gloss"], None, glosses[1]["gloss"]]
    assert [o["frames"] for o in out] == [w["frames"] for w in want]
    assert pred.info()["languages"] == {"ase": {"spoken": ["en"], "text2gloss": True, "shared": False},
                                        "bfi": {"spoken": [], "text2gloss": False, "shared": False}}  # fmt: skip
    with pytest.raises(DataError, match="no producer for sign language 'gsg'"):
        pred.predict([{"text": "hello", "sign_language": "gsg"}])
    with pytest.raises(DataError, match="reads en, not 'de'"):
        pred.predict([{"text": "hallo", "sign_language": "ase", "spoken_language": "de"}])
    with pytest.raises(DataError, match="reads sentences"):
        pred.predict([{"gloss": "MAN", "sign_language": "ase"}])


def test_choose_language_takes_the_only_language_when_none_is_given():
    one = {"ase": {"spoken": []}}
    assert choose_language(one, None, "fr") == "ase"  # no spoken languages listed: any
    two = {"ase": {"spoken": ["en"]}, "bfi": {"spoken": ["en"]}}
    with pytest.raises(DataError, match="one of ase, bfi"):
        choose_language(two, " ", None)
    assert choose_language(two, "bfi", "en") == "bfi"


def test_cli_assembles_a_set_and_produces_a_pose_file_a_gif_and_a_video(parts, tmp_path, capsys):
    import av
    from PIL import Image
    from pose_format import Pose

    s = str(tmp_path / "signllm")
    assert main(["producer-set", "add", s, "--sign-language", "ase", "--spoken", "en", "--producer", parts["gloss"],
                 "--text2gloss", parts["t2g"]]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "ase: text -> gloss -> pose (spoken: en" in shown and "ray-slt serve" in shown
    assert main(["producer-set", "add", s, "--sign-language", "bfi", "--producer", parts["gloss"]]) == 2
    assert "reads glosses" in capsys.readouterr().err
    pose_file, gif_file, mp4_file = tmp_path / "out.pose", tmp_path / "out.gif", tmp_path / "out.mp4"
    assert main(["produce", s, "my sister eats an apple", "--out", str(pose_file), "--gif", str(gif_file),
                 "--video", str(mp4_file), "--json"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    want = load_predictor(s).predict([{"text": "my sister eats an apple"}])[0]
    assert result["num_frames"] == want["num_frames"] and result["gloss"] == want["gloss"]
    assert result["sign_language"] == "ase"
    pose = Pose.read(pose_file.read_bytes())
    assert pose.body.data.shape[:3] == (want["num_frames"], 1, 50)
    gif = Image.open(io.BytesIO(gif_file.read_bytes()))
    assert gif.n_frames == want["num_frames"]
    with av.open(str(mp4_file)) as container:  # an H.264 video of every frame, at the production's rate
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert stream.codec_context.name == "h264" and decoded == want["num_frames"]
        assert float(stream.average_rate) == pytest.approx(want["fps"], rel=0.01)
    assert main(["produce", s, "x", "--out", str(tmp_path / "out.mp4")]) == 2
    assert "name a .pose file" in capsys.readouterr().err


def test_one_shared_multilingual_chain_serves_several_languages(parts, tmp_path):
    """Prompt2LangGloss as the paper has it: one shared text -> LangGloss model and one shared producer for
    several languages. The set keeps one copy of each (kept while a language uses it), produces each sample in the
    language asked for (what the models produce with that language's tag), and a per-language chain added beside
    it leaves the shared files byte-identical."""
    root = tmp_path / "set"
    s = str(root)
    add_language(s, "ase", parts["multi"], parts["t2g_multi"], spoken=["en"])
    add_language(s, "qsb", parts["multi"], parts["t2g_multi"], spoken=["en"])
    index = read_set(s)["languages"]
    assert index["ase"]["producer"] == index["qsb"]["producer"] == "shared/producer-0"
    assert index["ase"]["text2gloss"] == index["qsb"]["text2gloss"] == "shared/text2gloss-0"
    assert not (root / "languages").exists()
    listed = [f["path"] for f in json.loads((root / "MANIFEST.json").read_text())["files"]]
    assert len(listed) == len(set(listed))  # each shared file once
    assert {p.split("/")[0] for p in listed} == {"producer_set.json", "shared"}
    shared = {k: v for k, v in digests(root).items() if k.startswith("shared/")}

    pred = load_predictor(s)
    assert pred.info()["languages"]["qsb"] == {"spoken": ["en"], "text2gloss": True, "shared": True}
    assert pred.chains["ase"][0] is pred.chains["qsb"][0] and pred.chains["ase"][1] is pred.chains["qsb"][1]
    sentence = "my sister eats an apple"
    out = pred.predict([{"sample_id": "a", "text": sentence, "sign_language": "ase"},
                        {"sample_id": "b", "text": sentence, "sign_language": "qsb"}])  # fmt: skip
    asked = [{"sample_id": "a", "text": sentence, "sign_language": "ase", "spoken_language": "en"},
             {"sample_id": "b", "text": sentence, "sign_language": "qsb", "spoken_language": "en"}]  # fmt: skip
    fronts = load_predictor(parts["t2g_multi"]).predict(asked)
    produced = load_predictor(parts["multi"]).predict([{**a, "gloss": f["gloss"]} for a, f in zip(asked, fronts)])
    assert [o["langgloss"] for o in out] == [f["langgloss"] for f in fronts]
    assert [o["gloss"] for o in out] == [f["gloss"] for f in fronts]
    assert [o["frames"] for o in out] == [p["frames"] for p in produced]
    # the shared producer reads the same glosses as two languages' signs: ASL_X is not QSB_X
    same = load_predictor(parts["multi"]).predict([{"gloss": "MAN EAT", "sign_language": "ase"},
                                                   {"gloss": "MAN EAT", "sign_language": "qsb"}])  # fmt: skip
    assert same[0]["frames"] != same[1]["frames"]
    with pytest.raises(DataError, match="one of ase, qsb"):
        load_predictor(parts["multi"]).predict([{"gloss": "MAN EAT"}])
    # served alone, a multilingual model says which languages it takes (the server refuses others with a 400)
    assert load_predictor(parts["multi"]).info()["languages"] == {"ase": {"spoken": []}, "qsb": {"spoken": []}}
    assert sorted(load_predictor(parts["t2g_multi"]).info()["languages"]) == ["ase", "qsb"]

    # MLSF beside it: a language with its own chain; the shared copies stay byte-identical
    add_language(s, "bfi", parts["gloss"], parts["t2g"], spoken=["en"])
    assert {k: v for k, v in digests(root).items() if k.startswith("shared/")} == shared
    # a shared model must know the language it is added for
    with pytest.raises(ConfigError, match="does not know gsg"):
        add_language(s, "gsg", parts["multi"], parts["t2g_multi"])
    # a shared copy stays while a language uses it, and goes with the last one
    remove_language(s, "ase")
    assert {k: v for k, v in digests(root).items() if k.startswith("shared/")} == shared
    remove_language(s, "qsb")
    assert not any(k.startswith("shared/") for k in digests(root)) and sorted(read_set(s)["languages"]) == ["bfi"]
    assert load_predictor(s).predict([{"text": sentence}])[0]["sign_language"] == "bfi"
