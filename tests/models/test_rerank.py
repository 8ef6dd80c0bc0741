"""Noisy-channel re-ranking (ray_slt.models.rerank): the sequence log-probabilities it adds up against a slow
token-by-token computation on one unpadded row at a time, its score against the equation
log p(y|x) + eta * sum_j log p_j(y|x) + lambda * log p(x|y) + nu * log p(y) + mu * |y| evaluated directly, and
the predictors' ``channel``, ``lm`` and ``peer`` options of both text-side kinds (a gloss -> text translator
re-ranked with a text -> gloss model, a language model of the sentences and another gloss -> text translator, and
the other way round), with the settings they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_helpers import tiny_sft

from ray_slt.errors import ConfigError
from ray_slt.models.checkpoint import save_textlm, save_translator
from ray_slt.models.config import Text2GlossConfig, TextLMConfig
from ray_slt.models.registry import load_predictor
from ray_slt.models.rerank import pair_logprobs, pair_row, rerank_index
from ray_slt.models.sft import build_translator
from ray_slt.models.text2gloss import strip_tag, training_pair, vocabulary_texts
from ray_slt.models.textlm import build_textlm

TINY_LM = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64}
GLOSS_ENCODER = {"type": "gloss", "hidden": 32, "heads": 4, "ffn": 64, "layers": 1}


@pytest.fixture(scope="module")
def rows(phoenix_train) -> list[dict]:
    return [{"sample_id": f"train/{i:05d}", **r} for i, r in enumerate(phoenix_train[:300])]


def both_directions(rows, tmp_path_factory, torch_seed: int, seeds: tuple[int, int], train: slice, name: str):
    """A tiny gloss -> text GPT-2 translator and a tiny text -> gloss GPT-2 model (init ``seeds``), a few steps
    trained on ``rows[train]`` (so that their scores are not flat), saved as their kinds under ``name``. Seeded
    (``torch_seed``): the training steps draw dropout masks."""
    torch.manual_seed(torch_seed)
    g2t_cfg = tiny_sft(lm="tiny:gpt2", lm_training="auto", tiny=TINY_LM, encoder=GLOSS_ENCODER,
                       fusion={"face": False, "hand": False}, num_beams=4, max_new_tokens=8)  # fmt: skip
    g2t = build_translator(g2t_cfg, texts=[r["text"] for r in rows], glosses=[r["gloss"] for r in rows],
                           seed=seeds[0])  # fmt: skip
    t2g_cfg = Text2GlossConfig.model_validate({"lm": "tiny:gpt2", "tiny": TINY_LM, "encoder": GLOSS_ENCODER,
                                               "projector": {"hidden": 32}, "tag": "GSL", "num_beams": 4,
                                               "max_new_tokens": 8})  # fmt: skip
    targets, inputs = vocabulary_texts(t2g_cfg, rows)
    t2g = build_translator(t2g_cfg, texts=targets, glosses=inputs, seed=seeds[1])
    for model, batch in ((g2t, g2t.collator()(rows[train])), (t2g, t2g.collator()([training_pair(t2g_cfg, r)
                                                                                  for r in rows[train]]))):  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(8):
            loss = model(batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    root = tmp_path_factory.mktemp(name)
    save_translator(g2t, str(root / "g2t"))
    save_translator(t2g, str(root / "t2g"), kind="text2gloss")
    return {"g2t": g2t, "t2g": t2g, "g2t_dir": str(root / "g2t"), "t2g_dir": str(root / "t2g")}


@pytest.fixture(scope="module")
def models(rows, tmp_path_factory):
    """The models re-ranked (and re-ranking each other as channels)."""
    return both_directions(rows, tmp_path_factory, 0, (1, 2), slice(0, 16), "rerank")


@pytest.fixture(scope="module")
def lms(rows, tmp_path_factory):
    """Tiny language models of the sentences and of the glosses, a few steps trained, saved (kind textlm)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lms")
    out = {}
    for column, tokenizer in (("text", {"vocab_size": 400}), ("gloss", {"kind": "word", "vocab_size": 2000})):
        cfg = TextLMConfig.model_validate({"column": column, "tiny": {**TINY_LM, "dropout": 0.0},
                                           "tokenizer": tokenizer})  # fmt: skip
        model = build_textlm(cfg, texts=[r[column] for r in rows], seed=3)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        batch = model.collator()(rows[:32])
        for _ in range(10):
            loss = model(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        save_textlm(model, str(root / column))
        out[column], out[f"{column}_dir"] = model, str(root / column)
    return out


def beam_candidates(forward, direction: str, samples: list[dict]) -> list[tuple[str, list[str]]]:
    """Each sample's source and the 4-beam hypotheses of ``forward`` in the channel's plain form (GSL tags
    stripped from a text -> gloss model's), as the predictors decode them."""
    if direction == "g2t":
        batch = forward.collator()(samples)
    else:
        batch = forward.collator()([{"gloss": training_pair(forward.cfg, s)["gloss"]} for s in samples])
    nbest = forward.generate_nbest(batch, num_beams=4)
    if direction == "t2g":
        nbest = [[strip_tag(c, "GSL") for c in cands] for cands in nbest]
    return [(s["gloss"] if direction == "g2t" else s["text"], cands) for s, cands in zip(samples, nbest)]


def slow_logprob(model, row: dict) -> tuple[float, int]:
    """log p(target | input) token by token: one unpadded row, the prefix re-run for every target token."""
    batch = model.collator()([row])
    prefix, mask = model.sign_embeddings(batch)
    target = batch["target_ids"][0][batch["target_mask"][0].bool()]
    embed = model.lm.get_input_embeddings()
    context = torch.cat([prefix[0, mask[0]], embed(model.prompt_ids)])
    total = 0.0
    for t in range(len(target)):
        seq = torch.cat([context, embed(target[:t])])[None]
        logits = model.lm(inputs_embeds=seq, position_ids=torch.arange(seq.shape[1])[None]).logits[0, -1]
        total += torch.log_softmax(logits.double(), -1)[target[t]].item()
    return total, len(target)


def test_sequence_logprobs_match_the_token_by_token_computation(models, rows):
    for name in ("g2t", "t2g"):
        model = models[name]
        pairs = [pair_row(model, r["gloss"], r["text"], r) if name == "g2t" else
                 pair_row(model, r["text"], r["gloss"], r) for r in rows[20:26]]  # fmt: skip
        with torch.no_grad():
            batched, lengths = pair_logprobs(model, pairs, "cpu")  # a left-padded batch of different lengths
            slow = [slow_logprob(model, p) for p in pairs]
        assert len(set(lengths)) > 1
        assert lengths == [n for _, n in slow]
        assert batched == pytest.approx([lp for lp, _ in slow], abs=2e-3)
    # the text -> gloss pair is its training pair: the sentence in, the tagged glosses scored
    t2g_row = pair_row(models["t2g"], rows[0]["text"], rows[0]["gloss"], rows[0])
    assert t2g_row == training_pair(models["t2g"].cfg, rows[0])


def test_rerank_index_is_the_equation():
    d, c, n, p = [-3.0, -2.0, -4.0, -2.5], [-5.0, -9.0, -2.0, -6.0], [4, 3, 6, 5], [-20.0, -14.0, -30.0, -9.0]
    chosen = set()
    for lam in (0.0, 0.3, 1.0, 2.0):
        for mu in (0.0, 0.2, 1.0):
            scores = [d[i] + lam * c[i] + mu * n[i] for i in range(4)]
            assert rerank_index(d, c, n, lam, mu) == scores.index(max(scores))
            for nu in (-0.5, 0.0, 0.25, 1.0):
                scores = [d[i] + lam * c[i] + nu * p[i] + mu * n[i] for i in range(4)]
                chosen.add(rerank_index(d, c, n, lam, mu, lm=p, lm_weight=nu))
                assert rerank_index(d, c, n, lam, mu, lm=p, lm_weight=nu) == scores.index(max(scores))
    assert chosen == {1, 2, 3}  # the weights reach three of the four candidates
    assert rerank_index(d, c, n, 0.0, 0.0) == 1 and rerank_index(d, c, n, 1.0, 0.0) == 2
    assert rerank_index([-1.0, -1.0], [0.0, 0.0], [1, 1], 1.0, 0.0) == 0  # ties: the beam's order
    assert rerank_index(d, c, n, 1.0, 0.0, valid=[True, True, False, True]) == 0  # -8 beats -11 and -8.5
    assert rerank_index(d, c, n, 1.0, 0.0, valid=[False] * 4) == 0
    e = [-9.0, -1.0, -8.0, -0.5]  # the peers' summed scores
    for eta in (0.0, 0.5, 2.0):
        for nu in (0.0, 0.25):
            scores = [d[i] + eta * e[i] + 0.5 * c[i] + nu * p[i] + 0.2 * n[i] for i in range(4)]
            got = rerank_index(d, c, n, 0.5, 0.2, lm=p, lm_weight=nu, peer=e, peer_weight=eta)
            assert got == scores.index(max(scores))
    assert rerank_index(d, c, n, 1.0, 0.0, peer=e, peer_weight=2.0) == 3 != rerank_index(d, c, n, 1.0, 0.0)


@pytest.mark.parametrize("direction", ["g2t", "t2g"])
def test_predictor_re_ranks_the_beams_hypotheses_with_the_reverse_model(models, rows, direction):
    forward, reverse = (models["g2t"], models["t2g"]) if direction == "g2t" else (models["t2g"], models["g2t"])
    forward_dir, reverse_dir = (models[f"{direction}_dir"], models["t2g_dir" if direction == "g2t" else "g2t_dir"])
    samples = rows[40:46]
    lam, mu = 0.7, 0.4
    predictor = load_predictor(forward_dir, channel=reverse_dir, channel_weight=lam, length_bonus=mu)
    out = predictor.predict(samples)
    key = "text" if direction == "g2t" else "gloss"
    plain = load_predictor(forward_dir).predict(samples)
    # the expected choice, scored one candidate at a time
    changed = 0
    for s, (source, cands), o, p in zip(samples, beam_candidates(forward, direction, samples), out, plain):
        scores = []
        for c in cands:
            if not c.strip():
                scores.append(float("-inf"))
                continue
            d, n = pair_logprobs(forward, [pair_row(forward, source, c, s)], "cpu")
            ch, _ = pair_logprobs(reverse, [pair_row(reverse, c, source, s)], "cpu")
            scores.append(d[0] + lam * ch[0] + mu * n[0])
        assert o[key] == cands[scores.index(max(scores))]
        assert p[key] == cands[0]  # without a channel: the beam's best
        changed += o[key] != p[key]
    assert changed >= 1  # re-ranking chose another hypothesis than the beam for some sample
    settings = predictor.settings()
    assert (settings["channel_weight"], settings["length_bonus"]) == (lam, mu) and settings["channel"]
    # new weights on the loaded predictor (a decoding grid over them): the same choice as a fresh predictor,
    # from the candidates decoded once
    predictor.rescore(channel_weight=0.0, length_bonus=2.0)
    again = predictor.predict(samples)
    fresh = load_predictor(forward_dir, channel=reverse_dir, channel_weight=0.0, length_bonus=2.0).predict(samples)
    assert again == fresh and len(predictor.reranker._nbest) == 1
    assert predictor.settings()["length_bonus"] == 2.0
    with pytest.raises(ConfigError, match="give channel too"):
        load_predictor(forward_dir).rescore(channel_weight=0.5)
    if direction == "t2g":
        assert all("GSL_" not in o["gloss"] for o in out)


def test_bad_re_ranking_settings_are_refused(models, rows, tmp_path):
    with pytest.raises(ConfigError, match="give channel too"):
        load_predictor(models["g2t_dir"], channel_weight=0.5)
    with pytest.raises(ConfigError, match="choose one of mbr and re-ranking"):
        load_predictor(models["g2t_dir"], channel=models["t2g_dir"], mbr=True)
    with pytest.raises(ConfigError, match="must translate the other way"):
        load_predictor(models["g2t_dir"], channel=models["g2t_dir"])
    with pytest.raises(ConfigError, match="must translate the other way"):
        load_predictor(models["t2g_dir"], channel=models["t2g_dir"])
    pose = build_translator(tiny_sft(), texts=[r["text"] for r in rows], seed=0)
    save_translator(pose, str(tmp_path / "pose"))
    with pytest.raises(ConfigError, match="reads poses"):
        load_predictor(models["g2t_dir"], channel=str(tmp_path / "pose"))
    with pytest.raises(ConfigError, match="reads poses"):
        load_predictor(str(tmp_path / "pose"), channel=models["t2g_dir"])


def test_a_decoding_grid_over_the_weights_decodes_once_and_matches_fresh_predictors(models, rows, tmp_path):
    """``choose_decoding`` with the channel fixed beside the grid: the weights vary fastest (one decoding per beam
    width), and every combination scores what a freshly loaded predictor with those options scores."""
    from ray_slt.data.manifest import write_manifest
    from ray_slt.eval.run import choose_decoding, evaluate

    manifest = str(tmp_path / "dev.parquet")
    write_manifest([{"sample_id": f"dev/{i}", "dataset": "phoenix14t", "split": "dev", "sign_language": "gsg",
                     "spoken_language": "de", "text": r["text"], "gloss": r["gloss"], "meta": "{}"}
                    for i, r in enumerate(rows[100:124])], manifest)  # fmt: skip
    grid = {"channel_weight": [0.0, 3.0], "num_beams": [2, 4]}
    choice = choose_decoding(models["g2t_dir"], grid, data=manifest, fixed={"channel": models["t2g_dir"]})
    assert [r["options"] for r in choice["results"]] == [{"num_beams": b, "channel_weight": w}
                                                         for b in (2, 4) for w in (0.0, 3.0)]  # fmt: skip
    assert choice["fixed"] == {"channel": models["t2g_dir"]} and choice["best"]["channel"] == models["t2g_dir"]
    outputs = []
    for r in choice["results"]:
        fresh = evaluate(models["g2t_dir"], split="dev", data=manifest, out=str(tmp_path / "fresh"),
                         predictor_options={"channel": models["t2g_dir"], **r["options"]})  # fmt: skip
        grid_metrics = json.loads(Path(r["metrics_file"]).read_text())
        assert hypotheses(grid_metrics["predictions"]) == hypotheses(fresh["predictions"])
        assert fresh["bleu4"] == r["bleu4"]
        outputs.append(hypotheses(fresh["predictions"]))
    assert outputs[0] != outputs[1] or outputs[2] != outputs[3]  # the weight changes what is chosen


def hypotheses(predictions: str) -> list[str]:
    lines = Path(predictions).read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["hypothesis"] for x in lines if x.strip()]


@pytest.mark.parametrize("direction", ["g2t", "t2g"])
def test_a_language_model_of_the_output_side_adds_its_weighted_log_probability(models, lms, rows, direction):
    forward, reverse = (models["g2t"], models["t2g"]) if direction == "g2t" else (models["t2g"], models["g2t"])
    forward_dir = models[f"{direction}_dir"]
    reverse_dir = models["t2g_dir"] if direction == "g2t" else models["g2t_dir"]
    column = "text" if direction == "g2t" else "gloss"
    lm, lm_dir = lms[column], lms[f"{column}_dir"]
    samples = rows[50:70]
    lam, nu, mu = 0.5, 3.0, 0.3
    with_lm = load_predictor(forward_dir, channel=reverse_dir, lm=lm_dir, channel_weight=lam, lm_weight=nu,
                             length_bonus=mu).predict(samples)  # fmt: skip
    lm_only = load_predictor(forward_dir, lm=lm_dir, lm_weight=nu).predict(samples)
    changed = 0
    for s, (source, cands), a, b in zip(samples, beam_candidates(forward, direction, samples), with_lm, lm_only):
        full, alone, direct = [], [], []
        for c in cands:
            if not c.strip():
                full.append(float("-inf"))
                alone.append(float("-inf"))
                direct.append(float("-inf"))
                continue
            d, n = pair_logprobs(forward, [pair_row(forward, source, c, s)], "cpu")
            ch, _ = pair_logprobs(reverse, [pair_row(reverse, c, source, s)], "cpu")
            (prior,), _ = lm.score([c])
            full.append(d[0] + lam * ch[0] + nu * prior + mu * n[0])
            alone.append(d[0] + nu * prior)
            direct.append(d[0])
        assert a[column] == cands[full.index(max(full))]
        assert b[column] == cands[alone.index(max(alone))]
        changed += b[column] != cands[direct.index(max(direct))]
    assert changed >= 1  # the language model's term changed some choice


def test_language_model_settings_that_cannot_work_are_refused(models, lms):
    with pytest.raises(ConfigError, match="lm_weight weighs a language model's score: give lm too"):
        load_predictor(models["g2t_dir"], channel=models["t2g_dir"], lm_weight=0.5)
    with pytest.raises(ConfigError, match="length_bonus re-ranks with a channel model, a language model or a peer"):
        load_predictor(models["g2t_dir"], length_bonus=0.5)
    with pytest.raises(ConfigError, match="language model of the gloss column; the model it would re-rank writes text"):
        load_predictor(models["g2t_dir"], lm=lms["gloss_dir"])
    with pytest.raises(ConfigError, match="language model of the text column; the model it would re-rank writes gloss"):
        load_predictor(models["t2g_dir"], lm=lms["text_dir"])
    with pytest.raises(ConfigError, match="must be a textlm model"):
        load_predictor(models["g2t_dir"], lm=models["t2g_dir"])
    with pytest.raises(ConfigError, match="choose one of mbr and re-ranking"):
        load_predictor(models["g2t_dir"], lm=lms["text_dir"], mbr=True)
    with pytest.raises(ConfigError, match="give channel too"):
        load_predictor(models["g2t_dir"], lm=lms["text_dir"]).rescore(channel_weight=1.0)


def test_a_grid_over_the_lm_weight_rescores_what_it_decoded_once(models, lms, rows, tmp_path):
    from ray_slt.data.manifest import write_manifest
    from ray_slt.eval.run import choose_decoding, evaluate

    manifest = str(tmp_path / "dev.parquet")
    write_manifest([{"sample_id": f"dev/{i}", "dataset": "phoenix14t", "split": "dev", "sign_language": "gsg",
                     "spoken_language": "de", "text": r["text"], "gloss": r["gloss"], "meta": "{}"}
                    for i, r in enumerate(rows[130:150])], manifest)  # fmt: skip
    fixed = {"channel": models["t2g_dir"], "lm": lms["text_dir"], "num_beams": 4}
    choice = choose_decoding(models["g2t_dir"], {"lm_weight": [0.0, 4.0]}, data=manifest, fixed=fixed)
    assert choice["best"]["lm"] == lms["text_dir"]
    outputs = []
    for r in choice["results"]:
        fresh = evaluate(models["g2t_dir"], split="dev", data=manifest, out=str(tmp_path / "fresh"),
                         predictor_options={**fixed, **r["options"]})  # fmt: skip
        grid_metrics = json.loads(Path(r["metrics_file"]).read_text())
        assert hypotheses(grid_metrics["predictions"]) == hypotheses(fresh["predictions"])
        assert grid_metrics["decoding"]["lm_weight"] == r["options"]["lm_weight"]
        outputs.append(hypotheses(fresh["predictions"]))
    assert outputs[0] != outputs[1]


@pytest.fixture(scope="module")
def peers(rows, tmp_path_factory):
    """A second model of each direction (other seeds, other training rows): the peers of an n-best ensemble."""
    return both_directions(rows, tmp_path_factory, 1, (7, 8), slice(16, 32), "peers")


@pytest.mark.parametrize("direction", ["g2t", "t2g"])
def test_peers_pool_their_candidates_and_add_their_weighted_scores(models, peers, rows, direction):
    """An n-best ensemble: the candidates are the direct model's beam then the peer's new hypotheses (the same
    decoding), each scored d + eta * d_peer + lambda * c + mu * n, computed here candidate by candidate; a grid
    over eta re-scores what was decoded once, as a fresh predictor would."""
    forward, peer = models[direction], peers[direction]
    forward_dir, peer_dir = models[f"{direction}_dir"], peers[f"{direction}_dir"]
    reverse_name = "t2g" if direction == "g2t" else "g2t"
    reverse, reverse_dir = models[reverse_name], models[f"{reverse_name}_dir"]
    key = "text" if direction == "g2t" else "gloss"
    samples = rows[60:80]
    eta, lam, mu = 1.5, 0.5, 0.3
    predictor = load_predictor(forward_dir, num_beams=4, peer=peer_dir, peer_weight=eta, channel=reverse_dir,
                               channel_weight=lam, length_bonus=mu)  # fmt: skip
    out = predictor.predict(samples)
    alone = load_predictor(forward_dir, num_beams=4, peer=[peer_dir], peer_weight=eta).predict(samples)
    from_peer = 0
    own = beam_candidates(forward, direction, samples)
    theirs = beam_candidates(peer, direction, samples)
    for s, (source, mine), (_, other), o, a in zip(samples, own, theirs, out, alone):
        pool = list(dict.fromkeys([c.strip() for c in mine + other]))
        full, pair = [], []
        for c in pool:
            if not c:
                full.append(float("-inf"))
                pair.append(float("-inf"))
                continue
            d, n = pair_logprobs(forward, [pair_row(forward, source, c, s)], "cpu")
            e, _ = pair_logprobs(peer, [pair_row(peer, source, c, s)], "cpu")
            ch, _ = pair_logprobs(reverse, [pair_row(reverse, c, source, s)], "cpu")
            full.append(d[0] + eta * e[0] + lam * ch[0] + mu * n[0])
            pair.append(d[0] + eta * e[0])
        assert o[key] == pool[full.index(max(full))]
        assert a[key] == pool[pair.index(max(pair))]
        from_peer += o[key] not in {c.strip() for c in mine}
    assert from_peer >= 1  # some choice came from the peer's beam only
    settings = predictor.settings()
    assert settings["peer"] == [peer_dir] and settings["peer_weight"] == eta
    predictor.rescore(peer_weight=0.0, channel_weight=lam, length_bonus=mu)
    again = predictor.predict(samples)
    fresh = load_predictor(forward_dir, num_beams=4, peer=peer_dir, peer_weight=0.0, channel=reverse_dir,
                           channel_weight=lam, length_bonus=mu).predict(samples)  # fmt: skip
    assert again == fresh and len(predictor.reranker._nbest) == 1 and len(predictor.reranker._peer_nbest) == 20


def test_peer_settings_that_cannot_work_are_refused(models, peers):
    with pytest.raises(ConfigError, match="a peer must translate the same way as the model it joins"):
        load_predictor(models["g2t_dir"], peer=models["t2g_dir"])
    with pytest.raises(ConfigError, match="a peer must translate the same way as the model it joins"):
        load_predictor(models["t2g_dir"], peer=peers["g2t_dir"])
    with pytest.raises(ConfigError, match="peer_weight weighs the peers' scores: give peer too"):
        load_predictor(models["g2t_dir"], channel=models["t2g_dir"], peer_weight=0.5)
    with pytest.raises(ConfigError, match="choose one of mbr and re-ranking"):
        load_predictor(models["g2t_dir"], peer=peers["g2t_dir"], mbr=True)
    with pytest.raises(ConfigError, match="give peer too"):
        load_predictor(models["g2t_dir"]).rescore(peer_weight=1.0)
