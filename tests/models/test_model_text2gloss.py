"""Text -> gloss (Prompt2LangGloss): templates wrap the sentence exactly and pair with samples the same way in
every process, tags are added to every gloss and stripped exactly, the gloss protocol scores whitespace tokens
(worked by hand), and a checkpoint saves, loads and predicts identically, tags stripped, as model kind
``text2gloss``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ray_slt.errors import DataError
from ray_slt.models.config import Text2GlossConfig
from ray_slt.models.text2gloss import (
    TEMPLATES,
    add_tag,
    source_text,
    strip_tag,
    template_for,
    training_pair,
    vocabulary_texts,
    words,
)

TINY = {
    "lm": "tiny:qwen3",
    "tiny": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate": 64},
    "encoder": {"type": "gloss", "hidden": 32, "heads": 2, "ffn": 64, "layers": 1},
    "projector": {"hidden": 32},
    "max_new_tokens": 8,
    "num_beams": 2,
}


def t2g(**changes) -> Text2GlossConfig:
    return Text2GlossConfig.model_validate({**TINY, **changes})


@pytest.fixture(scope="module")
def rows(phoenix_train) -> list[dict]:
    return [{"sample_id": f"train/{i:05d}", **r} for i, r in enumerate(phoenix_train)]


def test_templates_wrap_the_sentence_and_pair_by_a_stable_hash(rows):
    cfg = t2g(templates="de")
    sentence = "und nun die wettervorhersage für morgen"
    for r in rows[:50]:
        template = template_for(cfg, r["sample_id"])
        assert template in TEMPLATES["de"]
        assert source_text(cfg, sentence, r["sample_id"]) == words(template.format(text=sentence))
    # every template is used, and roughly evenly (a hash pairing, not the first template every time)
    counts = {t: 0 for t in TEMPLATES["de"]}
    for r in rows[:1200]:
        counts[template_for(cfg, r["sample_id"])] += 1
    assert min(counts.values()) >= 50
    # the same pairing in another process (no salted hash)
    code = ("from ray_slt.models.config import Text2GlossConfig as C; from ray_slt.models.text2gloss import "
            "template_for; import json, sys; c = C(templates='de'); "
            "print(json.dumps([template_for(c, f'train/{i:05d}') for i in range(40)]))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [template_for(cfg, r["sample_id"]) for r in rows[:40]]
    # no templates: the sentence alone; lower-cased and split at punctuation unless told otherwise
    assert source_text(t2g(), "Morgen, Regen!") == "morgen , regen !"
    assert source_text(t2g(lowercase=False), "Morgen, Regen!") == "Morgen , Regen !"
    assert words("nord-west's 12,5 °C") == "nord-west's 12 , 5 ° c"
    own = t2g(templates=["Bitte: {text}"])
    assert source_text(own, "Regen", "x") == "bitte : regen"
    with pytest.raises(DataError, match="non-empty input sentence"):
        source_text(cfg, "  ", "train/1")


def test_bad_templates_and_tags_are_refused():
    for bad in (["no placeholder"], ["{text} and {text}"], ["{sentence}"], []):
        with pytest.raises(ValueError, match=r"template|at least one"):
            t2g(templates=bad)
    for bad in ("", "G SL", "GSL_"):
        with pytest.raises(ValueError, match="one word without"):
            t2g(tag=bad)
    with pytest.raises(ValueError, match=r"encoder\.type: gloss"):
        t2g(encoder={"type": "skeleton", "hidden": 32, "heads": 2, "ffn": 64, "layers": 1, "gcn_channels": [8]})


def test_tags_are_added_to_every_gloss_and_stripped_exactly(rows):
    for r in rows:
        tagged = add_tag(r["gloss"], "GSL")
        assert all(g.startswith("GSL_") for g in tagged.split()) and len(tagged.split()) == len(r["gloss"].split())
        assert strip_tag(tagged, "GSL") == " ".join(r["gloss"].split())
    # what a model writes without the tag is kept (and scored as written); a bare tag is not emptied
    assert strip_tag("GSL_WETTER MORGEN GSL_ GSL_GSL_X", "GSL") == "WETTER MORGEN GSL_ GSL_X"
    assert strip_tag("  WETTER   MORGEN ", None) == "WETTER MORGEN" == add_tag(" WETTER  MORGEN", None)


def test_training_pairs_and_vocabularies(rows):
    cfg = t2g(templates="de", tag="GSL")
    pair = training_pair(cfg, rows[0])
    assert pair["text"] == add_tag(rows[0]["gloss"], "GSL")
    assert pair["gloss"] == source_text(cfg, rows[0]["text"], rows[0]["sample_id"])
    with pytest.raises(DataError, match="needs the sample's glosses"):
        training_pair(cfg, {"sample_id": "s1", "text": "regen", "gloss": " "})
    targets, inputs = vocabulary_texts(cfg, rows[:20])
    assert len(targets) == 20 and len(inputs) == 20 + len(TEMPLATES["de"])
    known = {w for text in inputs for w in text.split()}
    assert all(w in known for t in TEMPLATES["de"] for w in words(t.replace("{text}", " ")).split())


def test_the_gloss_protocol_scores_whitespace_tokens_as_they_are():
    from ray_slt.eval.protocols import protocol_for

    proto = protocol_for("gloss")
    assert (proto.predicts, proto.selection.key, proto.selection.mode) == ("gloss", "dev_bleu4", "max")
    preds = [{"sample_id": "a", "hypothesis": "__ON__ neg-HABEN C D", "reference": "__ON__ C D E"},
             {"sample_id": "b", "hypothesis": "X", "reference": "x"}]  # fmt: skip
    s = proto.score(preds)
    # ROUGE-L by hand: a: LCS(__ON__ C D) = 3 of 4 and 4 -> F1 75; b: case kept, no match -> 0; mean 37.5
    assert s["rouge_l"] == pytest.approx(37.5)
    # BLEU-1 by hand: clipped unigram matches 3 of 5 hypothesis tokens, no brevity penalty (5 vs 5)
    assert s["bleu1"] == pytest.approx(60.0) and "tok:none" in s["bleu_signature"]
    with pytest.raises(DataError, match="no reference glosses"):
        proto.prediction({"sample_id": "s", "text": "regen"}, {"gloss": "REGEN"})
    assert proto.prediction({"sample_id": "s", "gloss": "REGEN"}, {"gloss": "SONNE"}) == {
        "sample_id": "s", "hypothesis": "SONNE", "reference": "REGEN"}  # fmt: skip


def test_checkpoint_round_trip_and_predictor(rows, tmp_path):
    from ray_slt.models.checkpoint import load_translator, save_translator
    from ray_slt.models.registry import load_predictor, resolve
    from ray_slt.models.sft import build_translator, param_groups

    cfg = t2g(templates="de", tag="GSL")
    targets, inputs = vocabulary_texts(cfg, rows[:300])
    model = build_translator(cfg, texts=targets, glosses=inputs, seed=0)
    assert not cfg.uses_lora and [g["name"] for g in param_groups(model)] == ["lm", "projector", "encoder"]
    batch = model.collator()([training_pair(cfg, r) for r in rows[:8]])
    opt = torch.optim.AdamW(param_groups(model), lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_translator(model, str(tmp_path / "t2g"), kind="text2gloss")
    loaded = load_translator(str(tmp_path / "t2g"))
    assert isinstance(loaded.cfg, Text2GlossConfig) and loaded.cfg == cfg
    assert loaded.generate(batch) == model.generate(batch)

    ref = resolve(str(tmp_path / "t2g"))
    assert ref.kind == "text2gloss"
    predictor = load_predictor(ref)
    assert (predictor.inputs, predictor.predicts, predictor.protocol) == ("text", "gloss", "gloss")
    samples = [{"sample_id": r["sample_id"], "text": r["text"]} for r in rows[:8]]
    out = predictor.predict(samples)
    assert [o["gloss"] for o in out] == [strip_tag(g, "GSL") for g in model.generate(batch)]
    assert all("GSL_" not in o["gloss"] for o in out)
    with pytest.raises(DataError, match="reads text"):
        predictor.predict([{"sample_id": "x", "gloss": "REGEN"}])


def test_the_multilingual_model_tags_each_row_with_its_own_language_and_is_asked_by_a_target_token():
    """``tag: auto``: one model for several sign languages (SignLLM's shared Prompt2LangGloss). Each training
    row's glosses carry its own language's tag, its input starts with that language's target token, and with
    ``templates: auto`` its sentence is wrapped in a template of its spoken language."""
    from ray_slt.models.langgloss import TAGS, languages_of, sample_language, tag_of, target_token

    cfg = t2g(tag="auto", templates="auto", tags={"qsb": "BSLX"})
    de = {"sample_id": "d1", "text": "Morgen Regen", "gloss": "MORGEN REGEN", "sign_language": "gsg",
          "spoken_language": "de"}  # fmt: skip
    en = {"sample_id": "e1", "text": "rain tomorrow", "gloss": "TOMORROW RAIN", "sign_language": "ase",
          "spoken_language": "en-US"}  # fmt: skip
    qsb = {**en, "sample_id": "q1", "sign_language": "qsb"}
    fr = {**en, "sample_id": "f1", "sign_language": "qsc", "spoken_language": "fr"}
    pairs = [training_pair(cfg, r) for r in (de, en, qsb, fr)]
    # the paper's tags for ASL and GSL, a config's own where it gives one, else the ISO code upper-cased
    assert [p["text"] for p in pairs] == ["GSL_MORGEN GSL_REGEN", "ASL_TOMORROW ASL_RAIN", "BSLX_TOMORROW BSLX_RAIN",
                                          "QSC_TOMORROW QSC_RAIN"]  # fmt: skip
    assert TAGS["ase"] == "ASL" and tag_of("qsc") == "QSC" and target_token("GSL") == "<2GSL>"
    first = [p["gloss"].split()[0] for p in pairs]
    assert first == ["<2GSL>", "<2ASL>", "<2BSLX>", "<2QSC>"]
    # the rest is the sentence in a template of its own spoken language (en-US -> en; none for fr: the sentence)
    assert pairs[0]["gloss"] == "<2GSL> " + words(template_for(cfg, "d1", "de").format(text=de["text"]))
    assert template_for(cfg, "d1", "de") in TEMPLATES["de"] and template_for(cfg, "e1", "en-US") in TEMPLATES["en"]
    assert pairs[3]["gloss"] == "<2QSC> rain tomorrow"
    # the same sentence asked in two languages differs only in the target token
    other = training_pair(cfg, {**en, "sign_language": "qsb"})["gloss"].split()
    assert other[0] == "<2BSLX>" and other[1:] == pairs[1]["gloss"].split()[1:]
    # what a model knows: its training rows' languages (or the config's, every row one of them)
    assert languages_of([de, en, en]) == ["ase", "gsg"]
    with pytest.raises(DataError, match="not in languages"):
        languages_of([de, en], ["gsg"])
    with pytest.raises(DataError, match="needs every training sample's sign_language"):
        languages_of([de, {**en, "sign_language": None}])
    known = t2g(tag="auto", languages=["ase", "gsg"])
    with pytest.raises(DataError, match="knows the sign languages ase, gsg, not 'bfi'"):
        training_pair(known, {**en, "sign_language": "bfi"})
    assert sample_language({}, ["gsg"]) == "gsg"
    with pytest.raises(DataError, match=r"say which sign language \(sign_language: one of ase, gsg\)"):
        sample_language({"text": "x"}, ["ase", "gsg"])
    # tags and languages only with tag: auto; two languages may not share a tag
    with pytest.raises(ValueError, match="for the multilingual model"):
        t2g(tag="GSL", languages=["gsg"])
    with pytest.raises(ValueError, match="share a tag"):
        t2g(tag="auto", tags={"ase": "X", "bfi": "X"})


def test_the_multilingual_predictor_writes_the_language_asked_for(tmp_path):
    from testlib import tiny_text2gloss

    from ray_slt.models.registry import load_predictor

    uri = tiny_text2gloss(str(tmp_path / "multi"), tag="auto", languages=("ase", "qsb"))
    predictor = load_predictor(uri)
    assert predictor.settings()["languages"] == ["ase", "qsb"]
    model, cfg = predictor.model, predictor.model.cfg
    samples = [{"sample_id": "a", "text": "my sister eats an apple", "sign_language": "ase"},
               {"sample_id": "b", "text": "my sister eats an apple", "sign_language": "qsb"}]  # fmt: skip
    out = predictor.predict(samples)
    rows = [{"gloss": source_text(cfg, s["text"], s["sample_id"], None, t)} for s, t in zip(samples, ("ASL", "QSB"))]
    raw = model.generate(model.collator()(rows))
    assert [o["langgloss"] for o in out] == [" ".join(g.split()) for g in raw]
    assert [o["gloss"] for o in out] == [strip_tag(raw[0], "ASL"), strip_tag(raw[1], "QSB")]
    assert [o["sign_language"] for o in out] == ["ase", "qsb"]
    with pytest.raises(DataError, match="one of ase, qsb"):
        predictor.predict([{"text": "hello"}])
    with pytest.raises(DataError, match="not 'gsg'"):
        predictor.predict([{"text": "hello", "sign_language": "gsg"}])


def test_lm_dropout_knobs_act_while_training_only(rows):
    """``embed_dropout`` drops the LM's input embeddings in training mode only (eval: the same loss as without it,
    and its rate 0 draws nothing, so the loss equals a model without the key); ``tiny.dropout`` sets the random
    LM's own dropout (Qwen3: attention dropout; mBART: dropout and attention dropout)."""
    from ray_slt.models.sft import build_translator

    targets, inputs = vocabulary_texts(t2g(), rows[:200])
    batch = None
    losses = {}
    for rate in (0.0, 0.5):
        cfg = t2g(embed_dropout=rate, encoder={**TINY["encoder"], "dropout": 0.0})  # no other dropout
        model = build_translator(cfg, texts=targets, glosses=inputs, seed=0)
        batch = batch or model.collator()([training_pair(model.cfg, r) for r in rows[:8]])
        with torch.no_grad():
            model.eval()
            losses[rate, "eval"] = model(batch).loss.item()
            model.train()
            torch.manual_seed(1)
            losses[rate, "train"] = [model(batch).loss.item() for _ in range(2)]
    assert losses[0.0, "eval"] == pytest.approx(losses[0.5, "eval"], abs=0)
    assert losses[0.0, "train"][0] == losses[0.0, "train"][1]  # nothing random without dropout
    assert losses[0.5, "train"][0] != losses[0.5, "train"][1]  # a new mask each pass
    assert all(abs(v - losses[0.0, "eval"]) > 1e-4 for v in losses[0.5, "train"])

    qwen = build_translator(t2g(tiny={**TINY["tiny"], "dropout": 0.2}), texts=targets, glosses=inputs, seed=0)
    assert qwen.lm.config.attention_dropout == 0.2
    assert build_translator(t2g(), texts=targets, glosses=inputs, seed=0).lm.config.attention_dropout == 0.0
    mbart = build_translator(t2g(lm="tiny:mbart", tiny={**TINY["tiny"], "dropout": 0.3}), texts=targets,
                             glosses=inputs, seed=0)  # fmt: skip
    assert (mbart.lm.config.dropout, mbart.lm.config.attention_dropout) == (0.3, 0.3)
    with pytest.raises(ValueError, match="embed_dropout"):
        t2g(embed_dropout=1.0)
