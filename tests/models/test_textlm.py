"""Text language models (ray_slt.models.textlm, stage textlm): their sequence log-probabilities against a slow
token-by-token computation, training loss against the same numbers, save/load and the predictor, the ``lm``
protocol's perplexity against its equation, a learning check against the untrained start, and what they refuse.

Learning margin asserted: after 80 AdamW steps on 400 PHOENIX-2014T training sentences, the perplexity of 100
other training sentences is below 0.5 x the untrained model's (observed on the development machine: 512.9 -> 47.8).
"""

from __future__ import annotations

import math

import pytest
import torch

from ray_slt.errors import ConfigError, DataError
from ray_slt.eval.protocols import LMProtocol, protocol_for
from ray_slt.models.checkpoint import load_textlm, save_textlm
from ray_slt.models.config import TextLMConfig
from ray_slt.models.registry import load_predictor, read_manifest
from ray_slt.models.textlm import build_textlm

TINY = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "init_std": 0.125, "dropout": 0.0}


def lm_config(**over) -> TextLMConfig:
    return TextLMConfig.model_validate({"tiny": TINY, "tokenizer": {"vocab_size": 400}, **over})


def train_steps(model, rows, steps: int, batch_size: int = 32, lr: float = 3e-3) -> None:
    torch.manual_seed(0)
    collate = model.collator()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        i = (step * batch_size) % (len(rows) - batch_size)
        loss = model(collate(rows[i : i + batch_size]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def rows(phoenix_train) -> list[dict]:
    return [{"sample_id": f"train/{i:05d}", **r} for i, r in enumerate(phoenix_train[:500])]


@pytest.fixture(scope="module")
def trained(rows):
    """(untrained copy's perplexity on held-out rows, the model after 80 steps)."""
    model = build_textlm(lm_config(), texts=[r["text"] for r in rows[:400]], seed=0)
    model.eval()
    held_out = [r["text"] for r in rows[400:]]
    lp, n = model.score(held_out)
    before = math.exp(-sum(lp) / sum(n))
    train_steps(model, rows[:400], 80)
    return before, model


def slow_logprob(model, text: str) -> tuple[float, int]:
    """log p(text): one unpadded sequence, the model re-run on each prefix for the next token."""
    ids = model.token_ids(text)
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits = model.lm(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            total += torch.log_softmax(logits.double(), -1)[ids[t]].item()
    return total, len(ids) - 1


def test_sequence_logprobs_match_the_token_by_token_computation(trained, rows):
    _, model = trained
    texts = [r["text"] for r in rows[420:426]]
    batched, counts = model.score(texts)  # one right-padded batch of different lengths
    slow = [slow_logprob(model, t) for t in texts]
    assert len(set(counts)) > 1
    assert counts == [n for _, n in slow]
    assert batched == pytest.approx([lp for lp, _ in slow], abs=2e-3)
    # the training loss (no label smoothing) is the mean negative log-probability of the same tokens
    with torch.no_grad():
        loss = float(model(model.collator()([{"text": t} for t in texts])))
    assert loss == pytest.approx(-sum(batched) / sum(counts), rel=1e-4)


def test_a_text_lm_learns_against_its_untrained_start(trained, rows):
    before, model = trained
    lp, n = model.score([r["text"] for r in rows[400:]])
    after = math.exp(-sum(lp) / sum(n))
    print(f"held-out perplexity {before:.1f} -> {after:.1f}")
    assert after < 0.5 * before


def test_save_load_and_the_predictor(trained, rows, tmp_path):
    _, model = trained
    save_textlm(model, str(tmp_path / "lm"))
    assert read_manifest(str(tmp_path / "lm"))["kind"] == "textlm"
    again = load_textlm(str(tmp_path / "lm"))
    texts = [r["text"] for r in rows[430:436]]
    assert again.score(texts) == model.score(texts)
    predictor = load_predictor(str(tmp_path / "lm"))
    assert (predictor.kind, predictor.inputs, predictor.protocol) == ("textlm", "text", "lm")
    samples = [{"sample_id": str(i), "text": t} for i, t in enumerate(texts)]
    out = predictor.predict(samples)
    lp, n = model.score(texts)
    assert [o["logprob"] for o in out] == lp and [o["tokens"] for o in out] == n
    assert [o["perplexity"] for o in out] == pytest.approx([math.exp(-a / b) for a, b in zip(lp, n)])
    with pytest.raises(DataError, match="scores text; samples without it: 7"):
        predictor.predict([{"sample_id": "7", "gloss": "WETTER"}])
    with pytest.raises(ConfigError, match="takes no option 'num_beams'"):
        load_predictor(str(tmp_path / "lm"), num_beams=4)


def test_a_gloss_lm_reads_the_gloss_column(rows, tmp_path):
    cfg = lm_config(column="gloss", tokenizer={"kind": "word", "vocab_size": 2000})
    model = build_textlm(cfg, texts=[r["gloss"] for r in rows], seed=0).eval()
    assert model.token_ids("WETTER MORGEN")[1:-1] == [model.tokenizer.convert_tokens_to_ids(g)
                                                      for g in ("WETTER", "MORGEN")]  # fmt: skip
    save_textlm(model, str(tmp_path / "glm"))
    predictor = load_predictor(str(tmp_path / "glm"))
    assert predictor.inputs == "gloss" and predictor.requirements(predictor.ref)["inputs"] == "gloss"
    out = predictor.predict([{"sample_id": "a", "gloss": rows[0]["gloss"]}])
    assert out[0]["tokens"] == len(rows[0]["gloss"].split()) + 1  # every gloss and </s>


def test_lm_protocol_is_the_equation():
    preds = [{"sample_id": "a", "logprob": -12.0, "tokens": 4}, {"sample_id": "b", "logprob": -3.5, "tokens": 2}]
    scores = LMProtocol().score(preds)
    assert scores["perplexity"] == pytest.approx(math.exp(15.5 / 6))
    assert scores["nll"] == pytest.approx(15.5 / 6) and (scores["tokens"], scores["sentences"]) == (6, 2)
    protocol = protocol_for("lm")
    assert (protocol.selection.metric, protocol.selection.mode) == ("perplexity", "min")
    assert protocol.prediction({"sample_id": 3}, {"logprob": -1.5, "tokens": 2, "perplexity": 2.1}) == {
        "sample_id": "3", "logprob": -1.5, "tokens": 2}  # fmt: skip
    with pytest.raises(DataError, match="tokens >= 1"):
        LMProtocol().score([{"sample_id": "a", "logprob": -1.0, "tokens": 0}])
    with pytest.raises(DataError, match="no predictions"):
        LMProtocol().score([])


def test_bad_settings_and_inputs_are_refused(trained):
    _, model = trained
    with pytest.raises(ValueError, match="a text LM is causal"):
        lm_config(lm="tiny:mbart")
    with pytest.raises(ValueError, match="column"):
        lm_config(column="video")
    with pytest.raises(DataError, match="samples without one: s2"):
        model.collator()([{"sample_id": "s1", "text": "ja"}, {"sample_id": "s2", "text": "  "}])
    with pytest.raises(DataError, match="non-empty"):
        model.score([""])
    with pytest.raises(ConfigError, match="needs the training texts"):
        build_textlm(lm_config(), texts=[])
    # a long text is cut to max_tokens in training batches only
    long = " ".join(["wetter"] * 200)
    assert model.collator()([{"text": long}])["input_ids"].shape[1] == model.cfg.max_tokens
    assert len(model.token_ids(long)) > model.cfg.max_tokens
